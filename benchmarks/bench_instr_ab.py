"""Instruction counts of two builds of qtstudio's native library, kernel by kernel (callgrind).

Timings on a shared machine move by 5-15% with other processes' load; the number of instructions
a kernel executes does not. For each encoding, operation and ISA level this script runs one call
(benchmarks/instr_harness.c, compiled here with the system C compiler) under
`valgrind --tool=callgrind --toggle-collect=<entry point>` against library A and library B, and
prints both counts and B/A (below 1.0: B executes fewer instructions). Inputs are the same for
both; the harness hashes each output and the script stops if A and B disagree, so a refactor that
changed a single byte is caught here too.

Instructions are not time (a divide or a cache miss counts once), so read this next to a timing
(bench_lib_ab.py) when the code's mix changed; for a rewrite meant to emit the same code, equal
counts are the proof. Valgrind runs the scalar and AVX2 levels, not AVX-512.

    python benchmarks/bench_instr_ab.py BASE/libqtnative.so NEW/libqtnative.so
    python benchmarks/bench_instr_ab.py A.so B.so --levels avx2 --types Q4_K --ops qmatmul
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_lib_ab import DEFAULT_TYPES, NativeLib

HERE = Path(__file__).resolve().parent
OPS = ("quantize", "quantize-imatrix", "dequantize", "qmatmul-1", "qmatmul-16")
ENTRY = {"quantize": "qt_quantize", "quantize-imatrix": "qt_quantize",
         "dequantize": "qt_dequantize", "qmatmul": "qt_qmatmul"}


def build_harness(workdir: Path) -> Path:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise SystemExit("bench_instr_ab: no C compiler (cc/gcc) to build the harness")
    exe = workdir / "instr_harness"
    subprocess.run([cc, "-O2", "-std=c11", "-D_GNU_SOURCE", str(HERE / "instr_harness.c"), "-o",
                    str(exe), "-ldl"], check=True)
    return exe


def count(exe: Path, lib: Path, op: str, type_id: int, rows: int, cols: int, level: str,
          workdir: Path) -> tuple[int, str]:
    """Instructions executed inside the op's entry point, and the output's hash."""
    base, _, n = op.partition("-") if op.startswith("qmatmul") else (op, "", "1")
    fd, out = tempfile.mkstemp(dir=workdir, suffix=".cg")
    os.close(fd)
    env = dict(os.environ, QTSTUDIO_ISA=level)
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
           f"--toggle-collect={ENTRY[base]}", str(exe), str(lib.resolve()), base, str(type_id),
           str(rows), str(cols), n]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bench_instr_ab: {lib}: {op} type {type_id} at {level} failed:\n"
                         f"{r.stderr[-2000:]}")
    total = None
    for line in Path(out).read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            total = int(line.split()[1])
    os.unlink(out)
    if total is None:
        raise SystemExit(f"bench_instr_ab: no instruction total in callgrind's output for {op}")
    return total, r.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("lib_a", type=Path, help="baseline libqtnative")
    ap.add_argument("lib_b", type=Path, help="candidate libqtnative")
    ap.add_argument("--types", default=",".join(DEFAULT_TYPES))
    ap.add_argument("--ops", default=",".join(OPS), help="of: " + ", ".join(OPS))
    ap.add_argument("--levels", default="scalar,avx2", help="QTSTUDIO_ISA values")
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    if not shutil.which("valgrind"):
        raise SystemExit("bench_instr_ab: valgrind is not installed (apt-get install valgrind)")
    ops = [o for o in args.ops.split(",") if o]
    bad = [o for o in ops if o not in OPS]
    if bad:
        ap.error(f"unknown op(s): {', '.join(bad)}")
    types = NativeLib(args.lib_a).types
    names = [t for t in args.types.split(",") if t]
    missing = [t for t in names if t not in types]
    if missing:
        ap.error(f"unknown type(s): {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="qt-instr-") as tmp:
        work = Path(tmp)
        exe = build_harness(work)
        cells = [(lv, t, op) for lv in args.levels.split(",") for t in names for op in ops]
        jobs = [(cell, lib) for cell in cells for lib in (args.lib_a, args.lib_b)]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(lambda j: count(exe, j[1], j[0][2], types[j[0][1]],
                                                    args.rows, args.cols, j[0][0], work), jobs))
    print(f"# bench_instr_ab  A: {args.lib_a}  B: {args.lib_b}")
    print(f"# one call on {args.rows}x{args.cols} (qmatmul-N: N activation rows), one thread; "
          "instructions inside the entry point")
    print("| level | type | op | A | B | B/A |")
    print("|---|---|---|---:|---:|---:|")
    worst = 0.0
    for i, (lv, t, op) in enumerate(cells):
        (ca, ha), (cb, hb) = results[2 * i], results[2 * i + 1]
        if ha != hb:
            raise SystemExit(f"bench_instr_ab: {t} {op} at {lv}: A and B give different outputs")
        worst = max(worst, cb / ca)
        print(f"| {lv} | {t} | {op} | {ca} | {cb} | {cb / ca:.3f} |")
    print(f"# {len(cells)} cells, outputs identical; largest B/A {worst:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
