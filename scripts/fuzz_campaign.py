#!/usr/bin/env python3
"""Long mutation-fuzzing campaign over every reader (the CI run is tests/test_fuzz.py).

    nice -n 19 python scripts/fuzz_campaign.py --inputs 100000 --deadline 18:45 \
        --out fuzz_campaign.json

Each reader gets up to ``--inputs`` mutated files (seeded, so a run can be repeated), stopping
early at ``--deadline`` (UTC, HH:MM) or after ``--budget-s`` seconds per reader. Every case is
classified: success, one of our errors, or another exception (a bug: its type, message and the
place it was raised are kept with the mutation that made it, to replay). Cases slower than 5 s
and peak-RSS jumps over 256 MiB in a batch are counted too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import fuzz_targets as ft

SLOW_S = 5.0
RSS_LIMIT_KIB = 256 * 1024
BATCH = 500


class _CaseTimeoutError(Exception):
    pass


def _alarm(signum, frame):
    raise _CaseTimeoutError


def random_ops(rng: random.Random) -> list[tuple[int, int, int]]:
    return [(rng.randrange(ft.N_OPS), rng.getrandbits(32), rng.getrandbits(32))
            for _ in range(rng.randint(1, 4))]


def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    return f"{tb[-1].filename.split('site-packages/')[-1]}:{tb[-1].lineno}" if tb else "?"


def run_reader(reader: ft.Reader, n: int, seed: int, stop_at: float, folder: Path) -> dict:
    rng = random.Random(f"{reader.name}:{seed}")
    base = reader.seed()
    ours = ft.our_errors()
    counts = {"inputs": 0, "successes": 0, "our_errors": 0, "other_exceptions": 0,
              "slow_over_5s": 0, "rss_jumps_over_256MiB": 0}
    others: dict[str, dict] = {}
    slowest = 0.0
    ft.peak_rss_reset()
    rss0 = ft.rss_kib("VmRSS")
    for i in range(n):
        if time.time() > stop_at:
            counts["stopped_early"] = True
            break
        ops = random_ops(rng)
        try:
            data = ft.mutate(reader, base.files[base.mutable], ops)
        except Exception as exc:  # a mutator bug must not end the campaign
            counts["harness_errors"] = counts.get("harness_errors", 0) + 1
            others.setdefault(f"harness {type(exc).__name__}", {"ops": ops, "count": 0})[
                "count"] += 1
            continue
        path = ft.write_case(folder, base, data)
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        try:
            reader.read(path)
            counts["successes"] += 1
        except ours:
            counts["our_errors"] += 1
        except _CaseTimeoutError:
            counts["slow_over_5s"] += 1
            others.setdefault("timeout", {"ops": ops, "count": 0})["count"] += 1
        except Exception as exc:
            counts["other_exceptions"] += 1
            key = f"{type(exc).__name__} at {_where(exc)}"
            entry = others.setdefault(key, {"ops": ops, "message": str(exc)[:300], "count": 0})
            entry["count"] += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = time.perf_counter() - t0
        slowest = max(slowest, elapsed)
        if elapsed > SLOW_S:
            counts["slow_over_5s"] += 1
        counts["inputs"] += 1
        if (i + 1) % BATCH == 0:
            if ft.rss_kib("VmHWM") - rss0 > RSS_LIMIT_KIB:
                counts["rss_jumps_over_256MiB"] += 1
            ft.peak_rss_reset()
            rss0 = ft.rss_kib("VmRSS")
    counts["slowest_case_s"] = round(slowest, 3)
    counts["distinct_other_exceptions"] = others
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=100_000, help="mutated files per reader")
    ap.add_argument("--readers", default=",".join(ft.READERS), help="comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--deadline", help="UTC HH:MM at which every reader stops")
    ap.add_argument("--budget-s", type=float, default=None, help="seconds per reader at most")
    ap.add_argument("--out", type=Path, default=Path("fuzz_campaign.json"))
    args = ap.parse_args(argv)
    signal.signal(signal.SIGALRM, _alarm)
    names = [n for n in args.readers.split(",") if n]
    end = float("inf")
    if args.deadline:
        hh, mm = (int(x) for x in args.deadline.split(":"))
        now = dt.datetime.now(dt.UTC)
        end = now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(dir=ft.scratch_dir(), prefix="qtfuzz-") as tmp:
        for k, name in enumerate(names):
            reader = ft.READERS[name]
            # What is left is shared evenly by the readers still to run.
            share = (end - time.time()) / (len(names) - k) if end != float("inf") else None
            limit = min(x for x in (share, args.budget_s, float("inf")) if x is not None)
            t0 = time.time()
            results[name] = run_reader(reader, args.inputs, args.seed, t0 + limit, Path(tmp))
            results[name]["wall_s"] = round(time.time() - t0, 1)
            print(json.dumps({name: {k2: v for k2, v in results[name].items()
                                     if k2 != "distinct_other_exceptions"}}), flush=True)
            for key, e in results[name]["distinct_other_exceptions"].items():
                print(f"  {name}: {key} x{e['count']}: {e.get('message', '')[:160]} "
                      f"ops={e['ops']}", flush=True)
            args.out.write_text(json.dumps(results, indent=1) + "\n")
    bad = sum(r["other_exceptions"] + r["slow_over_5s"] + r["rss_jumps_over_256MiB"]
              for r in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
