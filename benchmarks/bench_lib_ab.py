"""Same-run A/B of two builds of qtstudio's native library: is a change to the kernels slower?

Both shared libraries are loaded into this one process (ctypes, each file under its own path)
and every kernel is timed through A, then B, then B, then A ... on the same inputs, so machine
load and frequency drift fall on both sides alike. Per type and operation it prints the best
(lowest) time of each side over many short alternating samples, the figure least disturbed by
other processes on a shared machine, and A/B (above 1.0: B, the candidate, is faster). Before
timing, it checks that both libraries produce the same bytes (quantize), the same floats
(dequantize) and the same qmatmul outputs, bit for bit: a refactor of the kernels must change
nothing but speed.

Typical use, comparing main (A) with a branch (B) at the AVX2 level:

    cmake -S . -B build/ab-new -G Ninja && cmake --build build/ab-new --target qtnative
    git worktree add /tmp/base main && cmake -S /tmp/base -B /tmp/base/build -G Ninja && \
        cmake --build /tmp/base/build --target qtnative
    QTSTUDIO_ISA=avx2 python benchmarks/bench_lib_ab.py \
        /tmp/base/build/native/libqtnative.so build/ab-new/native/libqtnative.so

QTSTUDIO_ISA (read by each library when it loads) or --level picks the kernel level for both.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import sys
import time
from collections.abc import Callable
from ctypes import POINTER, c_char_p, c_int32, c_int64, c_size_t, c_void_p
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qtstudio.kernels._traits import TypeTraits

DEFAULT_TYPES = (
    "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
    "Q6_K", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4",
)
OPS = ("quantize", "dequantize", "gemv", "gemm")
# Quantizers of these types search scales and run at well under 1 GiB/s: timed on fewer rows.
SLOW_QUANT = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0"}


class NativeLib:
    """One build of libqtnative, loaded from its own path, with the calls this script times."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise SystemExit(f"bench_lib_ab: {path}: no such library file")
        self.path = path
        self.lib = ctypes.CDLL(str(path.resolve()))
        sigs: dict[str, tuple[object, list[object]]] = {
            "qt_version": (c_char_p, []),
            "qt_active_isa": (c_int32, []),
            "qt_isa_name": (c_char_p, [c_int32]),
            "qt_type_get_traits": (c_int32, [c_int32, POINTER(TypeTraits)]),
            "qt_row_size": (c_size_t, [c_int32, c_int64]),
            "qt_quantize": (c_int32, [c_int32, c_void_p, c_void_p, c_int64, c_int64, c_void_p,
                                      c_int32, c_int32]),
            "qt_dequantize": (c_int32, [c_int32, c_void_p, c_void_p, c_int64, c_int64, c_int32,
                                        c_int32]),
            "qt_qmatmul": (c_int32, [c_int32, c_void_p, c_void_p, c_void_p, c_int64, c_int64,
                                     c_int64, c_int32, c_int32, c_int32]),
        }
        for name, (restype, argtypes) in sigs.items():
            fn = getattr(self.lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        self.types: dict[str, int] = {}
        tr = TypeTraits()
        for type_id in range(64):
            if self.lib.qt_type_get_traits(type_id, ctypes.byref(tr)) == 0 and tr.name:
                self.types[tr.name.decode()] = type_id

    def level_name(self, level: int) -> str:
        lv = self.lib.qt_active_isa() if level < 0 else level
        return self.lib.qt_isa_name(lv).decode()

    def check(self, status: int, what: str) -> None:
        if status != 0:
            raise SystemExit(f"bench_lib_ab: {self.path}: {what} failed with status {status}")


@dataclass
class Case:
    op: str
    type_name: str
    run_a: Callable[[], None]
    run_b: Callable[[], None]
    values: int  # float32 values on the unquantized side, for the GiB/s column


def best_pair(case: Case, repeats: int, min_time: float) -> tuple[float, float]:
    """Best seconds per call of A and B, alternating ABBA so neither side always goes first."""
    # Calls per sample: enough that one sample lasts about min_time.
    case.run_a()
    case.run_b()
    t0 = time.perf_counter()
    case.run_a()
    once = max(time.perf_counter() - t0, 1e-6)
    calls = max(1, int(min_time / once))
    ta: list[float] = []
    tb: list[float] = []

    def sample(fn: Callable[[], None]) -> float:
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t) / calls

    for r in range(repeats):
        if r % 2 == 0:
            ta.append(sample(case.run_a))
            tb.append(sample(case.run_b))
        else:
            tb.append(sample(case.run_b))
            ta.append(sample(case.run_a))
    return min(ta), min(tb)


def build_cases(a: NativeLib, b: NativeLib, type_name: str, ops: list[str], rows: int, cols: int,
                gemm_n: int, threads: int, level: int, rng: np.random.Generator,
                tolerance: float = 0.0) -> list[Case]:
    tid = a.types.get(type_name)
    if tid is None or b.types.get(type_name) != tid:
        raise SystemExit(f"bench_lib_ab: type {type_name} is not in both libraries")
    row_bytes = a.lib.qt_row_size(tid, cols)
    if row_bytes == 0:
        raise SystemExit(f"bench_lib_ab: {cols} is not a multiple of {type_name}'s block")
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    qa = np.empty(rows * row_bytes, np.uint8)
    qb = np.empty_like(qa)
    # Reference bytes from A over every row (one thread, so the slow searches stay bounded).
    a.check(a.lib.qt_quantize(tid, x.ctypes.data, qa.ctypes.data, rows, cols, None, 0, level),
            f"quantize {type_name}")
    cases: list[Case] = []
    if "quantize" in ops:
        qrows = min(rows, 256) if type_name in SLOW_QUANT else rows
        b.check(b.lib.qt_quantize(tid, x.ctypes.data, qb.ctypes.data, qrows, cols, None, 0,
                                  level), f"quantize {type_name}")
        if not np.array_equal(qa[: qrows * row_bytes], qb[: qrows * row_bytes]):
            raise SystemExit(f"bench_lib_ab: {type_name} quantize bytes differ between A and B")

        def quant(lib: NativeLib, out: np.ndarray, n: int = qrows) -> Callable[[], None]:
            return lambda: lib.lib.qt_quantize(tid, x.ctypes.data, out.ctypes.data, n, cols,
                                               None, threads, level)

        cases.append(Case("quantize", type_name, quant(a, qb), quant(b, qb), qrows * cols))
    if "dequantize" in ops:
        ya = np.empty((rows, cols), np.float32)
        yb = np.empty_like(ya)
        a.check(a.lib.qt_dequantize(tid, qa.ctypes.data, ya.ctypes.data, rows, cols, threads,
                                    level), f"dequantize {type_name}")
        b.check(b.lib.qt_dequantize(tid, qa.ctypes.data, yb.ctypes.data, rows, cols, threads,
                                    level), f"dequantize {type_name}")
        if ya.tobytes() != yb.tobytes():
            raise SystemExit(f"bench_lib_ab: {type_name} dequantize floats differ between A and B")

        def deq(lib: NativeLib) -> Callable[[], None]:
            return lambda: lib.lib.qt_dequantize(tid, qa.ctypes.data, yb.ctypes.data, rows, cols,
                                                 threads, level)

        cases.append(Case("dequantize", type_name, deq(a), deq(b), rows * cols))
    for op, n in (("gemv", 1), ("gemm", gemm_n)):
        if op not in ops or cols % 16:
            continue
        act = rng.standard_normal((n, cols), dtype=np.float32)
        oa = np.empty((n, rows), np.float32)
        ob = np.empty_like(oa)
        for lib, out in ((a, oa), (b, ob)):
            lib.check(lib.lib.qt_qmatmul(tid, act.ctypes.data, qa.ctypes.data, out.ctypes.data,
                                         n, rows, cols, 0, threads, level), f"qmatmul {type_name}")
        if oa.tobytes() != ob.tobytes():
            diff = float(np.max(np.abs(oa.astype(np.float64) - ob)))
            scale = float(np.max(np.abs(oa))) or 1.0
            if diff > tolerance * scale:
                raise SystemExit(f"bench_lib_ab: {type_name} {op} outputs differ between A and B "
                                 f"(max |A - B| = {diff / scale:.2e} of max |A|)")

        def mm(lib: NativeLib, act: np.ndarray = act, out: np.ndarray = ob,
               n: int = n) -> Callable[[], None]:
            return lambda: lib.lib.qt_qmatmul(tid, act.ctypes.data, qa.ctypes.data,
                                              out.ctypes.data, n, rows, cols, 0, threads, level)

        cases.append(Case(op, type_name, mm(a), mm(b), n * rows * cols))
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("lib_a", type=Path, help="baseline libqtnative (e.g. built from main)")
    ap.add_argument("lib_b", type=Path, help="candidate libqtnative (the change)")
    ap.add_argument("--types", default=",".join(DEFAULT_TYPES), help="comma-separated encodings")
    ap.add_argument("--ops", default=",".join(OPS), help="of: " + ", ".join(OPS))
    ap.add_argument("--rows", type=int, default=4096, help="weight rows (m)")
    ap.add_argument("--cols", type=int, default=4096, help="values per row (k)")
    ap.add_argument("--gemm-n", type=int, default=64, help="activation rows for the gemm case")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--level", type=int, default=-1,
                    help="ISA level id for both (-1: each library's active level)")
    ap.add_argument("--repeats", type=int, default=11, help="samples per side (best taken)")
    ap.add_argument("--min-time", type=float, default=0.03, help="seconds per sample")
    ap.add_argument("--tolerance", type=float, default=0.0, metavar="REL",
                    help="let qmatmul outputs differ by REL of their largest magnitude (a change "
                         "of float summation order); default 0: bit for bit")
    args = ap.parse_args(argv)
    ops = [o for o in args.ops.split(",") if o]
    bad = [o for o in ops if o not in OPS]
    if bad:
        ap.error(f"unknown op(s): {', '.join(bad)}")
    # ctypes keys loaded libraries by path; two copies of the same file would share one handle.
    if args.lib_a.resolve() == args.lib_b.resolve():
        ap.error("lib_a and lib_b are the same file")
    a, b = NativeLib(args.lib_a), NativeLib(args.lib_b)
    rng = np.random.default_rng(0)
    print(f"# bench_lib_ab  {platform.machine()}  {platform.processor() or ''}  "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"# A: {a.path} ({a.lib.qt_version().decode()}, level {a.level_name(args.level)})")
    print(f"# B: {b.path} ({b.lib.qt_version().decode()}, level {b.level_name(args.level)})")
    print(f"# {args.rows}x{args.cols}, gemm n={args.gemm_n}, threads {args.threads}, "
          f"best of {args.repeats}; A/B > 1: B faster; outputs "
          + ("bit-identical" if args.tolerance == 0 else f"within {args.tolerance:g} relative"))
    print("| type | op | A ms | B ms | B GiB/s | A/B |")
    print("|---|---|---:|---:|---:|---:|")
    ratios: list[float] = []
    for type_name in [t for t in args.types.split(",") if t]:
        for case in build_cases(a, b, type_name, ops, args.rows, args.cols, args.gemm_n,
                                args.threads, args.level, rng, args.tolerance):
            ta, tb = best_pair(case, args.repeats, args.min_time)
            ratios.append(ta / tb)
            gib = case.values * 4 / tb / (1 << 30)
            print(f"| {case.type_name} | {case.op} | {ta * 1e3:.3f} | {tb * 1e3:.3f} | "
                  f"{gib:.2f} | {ta / tb:.3f} |", flush=True)
    if ratios:
        geo = float(np.exp(np.mean(np.log(ratios))))
        print(f"# {len(ratios)} cases: A/B geometric mean {geo:.3f}, min {min(ratios):.3f}, "
              f"max {max(ratios):.3f}  (load {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
