"""Quantize / dequantize throughput of qtstudio's native codecs next to ggml and gguf-py.

Every figure is GiB/s of float32 (the unquantized side), best of a few repetitions, measured in
this one run for all three implementations on the same random-normal tensor:

* ours:  qt_quantize / qt_dequantize from qtstudio's native library, `threads` = 1 or 2;
* ggml:  ggml_quantize_chunk and the type traits' to_float from the libggml-base.so that
         llama-cpp-python ships, or the build in --ggml-lib DIR / $QTSTUDIO_GGML_LIB (e.g. an
         AVX2-only build next to QTSTUDIO_ISA=avx2; skipped when none is found); two threads
         means two Python threads each running half of the rows (ctypes releases the GIL),
         which is how llama-quantize splits work;
* numpy: gguf.quants.quantize / dequantize (one thread; numpy does not parallelize these).

Output buffers are allocated once and touched before timing, so page faults are not counted
for anyone. The script also checks that our bytes equal ggml's for every quantized type it
times. Run `python benchmarks/bench_codecs.py` (about 3 minutes on 2 cores) or `--quick`.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qtstudio import kernels
from qtstudio.kernels._raw import lib as qtlib

GIB = float(1 << 30)
RESULTS = Path(__file__).with_name("RESULTS.md")
GGML_FEATURES = ("avx", "avx2", "fma", "f16c", "avx_vnni", "avx512", "avx512_vnni", "avx512_bf16")


def markers(level: str) -> tuple[str, str]:
    """RESULTS.md keeps one codec section per ISA level, each against its own ggml peer."""
    return f"<!-- bench_codecs:{level}:begin -->", f"<!-- bench_codecs:{level}:end -->"
FIRST_TYPES = ("F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0")
# Quantizers slower than this (GiB/s, ggml figures) are timed on a row slice to bound run time.
SLOW_QUANT_TYPES = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0"}
SLOW_QUANT_ROWS = 128


# ------------------------------------------------------------------ ggml through ctypes


class GgmlTypeTraits(ctypes.Structure):
    # struct ggml_type_traits in ggml.h (ggml 0.25.3): name, block size, interleave, block
    # bytes, is_quantized, to_float, from_float_ref.
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class Ggml:
    """The two codec entry points of libggml-base.so, or None when llama-cpp-python is absent."""

    def __init__(self, libdir: Path) -> None:
        self.libdir = libdir
        self.lib = ctypes.CDLL(str(libdir / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
        # The codecs live in ggml-base; the CPU backend only says what the build targets.
        self.features: list[str] = []
        if (libdir / "libggml-cpu.so").exists():
            cpu = ctypes.CDLL(str(libdir / "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
            self.features = [f for f in GGML_FEATURES
                             if getattr(cpu, f"ggml_cpu_has_{f}", lambda: 0)()]
        self.lib.ggml_get_type_traits.restype = ctypes.POINTER(GgmlTypeTraits)
        self.lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
        self.lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        self.lib.ggml_quantize_chunk.argtypes = [
            ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
            ctypes.c_int64, ctypes.c_void_p,
        ]  # fmt: skip
        self.lib.ggml_quantize_init.argtypes = [ctypes.c_int]
        # The versioned file name (libggml-base.so.0.25.3) is the only version stamp shipped.
        names = sorted(p.name for p in libdir.glob("libggml-base.so.*.*"))
        self.version = names[-1].removeprefix("libggml-base.so.") if names else "unknown"

    @classmethod
    def find(cls, explicit: str | None = None) -> Ggml | None:
        """--ggml-lib, else $QTSTUDIO_GGML_LIB, else llama-cpp-python's libraries."""
        given = explicit or os.environ.get("QTSTUDIO_GGML_LIB")
        if given:
            libdir = Path(given)
            if not (libdir / "libggml-base.so").exists():
                raise SystemExit(f"{libdir / 'libggml-base.so'}: not found")
            return cls(libdir)
        try:
            import llama_cpp
        except ImportError:
            return None
        libdir = Path(llama_cpp.__file__).parent / "lib"
        return cls(libdir) if (libdir / "libggml-base.so").exists() else None

    def to_float(self, type_id: int) -> Callable | None:
        tr = self.lib.ggml_get_type_traits(type_id).contents
        return TO_FLOAT(tr.to_float) if tr.to_float else None

    def quantize(self, type_id: int, x: np.ndarray, out: np.ndarray, r0: int, r1: int) -> None:
        n = x.shape[1]
        self.lib.ggml_quantize_chunk(type_id, x.ctypes.data, out.ctypes.data, r0 * n, r1 - r0,
                                     n, None)


def split_rows(rows: int, threads: int) -> list[tuple[int, int]]:
    step = -(-rows // threads)
    return [(r, min(rows, r + step)) for r in range(0, rows, step)]


def run_threads(fn: Callable[[int, int], None], rows: int, threads: int) -> None:
    if threads == 1:
        fn(0, rows)
        return
    workers = [threading.Thread(target=fn, args=span) for span in split_rows(rows, threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


# ------------------------------------------------------------------ timing


def best_of(fn: Callable[[], None], reps: int) -> float:
    return best_interleaved([fn], reps)[0]


def best_interleaved(fns: list[Callable[[], None]], reps: int) -> list[float]:
    """Best time of each function, alternating between them on every repetition.

    The machine is shared, so load comes and goes; taking turns gives every contender the same
    chance of a quiet moment, which keeps same-run ratios honest.
    """
    for fn in fns:
        fn()  # warm-up: touches output pages and code
    best = [float("inf")] * len(fns)
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


@dataclass
class Row:
    shape: str
    type_name: str
    op: str
    threads: int
    rows_timed: int
    ours: float
    ggml: float | None
    numpy: float | None
    exact: str


def fmt_rate(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def fmt_ratio(a: float, b: float | None) -> str:
    return "n/a" if b is None or b == 0 else f"{a / b:.2f}x"


# ------------------------------------------------------------------ one type


def bench_type(
    t: kernels.NativeType, x: np.ndarray, threads_list: list[int], reps: int,
    ggml: Ggml | None, numpy_reps: int,
) -> list[Row]:
    import gguf

    rows_all, n = x.shape
    shape = f"{rows_all}x{n}"
    tid = t.type_id
    rs = kernels.row_bytes(tid, n)
    results: list[Row] = []
    try:
        qtype = gguf.GGMLQuantizationType(tid)
    except ValueError:
        qtype = None

    # ---- quantize
    if t.can_quantize:
        slow = t.name in SLOW_QUANT_TYPES
        qrows = min(rows_all, SLOW_QUANT_ROWS) if slow else rows_all
        qreps = 1 if slow else reps
        xs = np.ascontiguousarray(x[:qrows])
        ours_q = np.empty((qrows, rs), dtype=np.uint8)
        xp = xs.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        gb = xs.nbytes / GIB
        ggml_q = np.empty_like(ours_q) if ggml is not None else None
        exact = "n/a"
        np_rate = None
        if qtype is not None and numpy_reps > 0:
            try:
                np_rate = gb / best_of(lambda: gguf.quants.quantize(xs, qtype), numpy_reps)
            except NotImplementedError:
                np_rate = None
        for th in threads_list:
            def ours(th: int = th) -> None:
                st = qtlib.qt_quantize(tid, xp, ours_q.ctypes.data, qrows, n, None, th, -1)
                if st != 0:
                    raise RuntimeError(f"qt_quantize {t.name} failed with status {st}")
            fns = [ours]
            if ggml is not None:
                fns.append(lambda th=th: run_threads(
                    lambda a, b: ggml.quantize(tid, xs, ggml_q, a, b), qrows, th))
            times = best_interleaved(fns, qreps)
            ours_rate = gb / times[0]
            g_rate = None
            if ggml is not None:
                g_rate = gb / times[1]
                exact = "yes" if np.array_equal(ours_q, ggml_q) else "NO"
            results.append(Row(shape, t.name, "quantize", th, qrows, ours_rate, g_rate,
                               np_rate if th == 1 else None, exact))
        src_q = ours_q if qrows == rows_all else None
    else:
        src_q = None

    # ---- dequantize (needs bytes for the whole tensor)
    if t.can_dequantize:
        if src_q is None:
            src_q = np.empty((rows_all, rs), dtype=np.uint8)
            if t.can_quantize:
                # Real encoder output, tiled: slow quantizers only encoded a row slice above.
                reps_needed = -(-rows_all // ours_q.shape[0])
                src_q[:] = np.tile(ours_q, (reps_needed, 1))[:rows_all]
            else:
                src_q[:] = np.random.default_rng(1).integers(0, 256, src_q.shape, np.uint8)
        out = np.empty((rows_all, n), dtype=np.float32)
        outp = out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        gb = out.nbytes / GIB
        to_float = ggml.to_float(tid) if ggml is not None else None
        g_out = np.empty_like(out) if to_float is not None else None
        np_rate = None
        if qtype is not None and numpy_reps > 0:
            np_rate = gb / best_of(lambda: gguf.quants.dequantize(src_q, qtype), numpy_reps)
        for th in threads_list:
            def ours_d(th: int = th) -> None:
                st = qtlib.qt_dequantize(tid, src_q.ctypes.data, outp, rows_all, n, th, -1)
                if st != 0:
                    raise RuntimeError(f"qt_dequantize {t.name} failed with status {st}")
            g_rate = None
            exact = "n/a"
            if to_float is None:
                ours_rate = gb / best_of(ours_d, reps)
            else:
                def g_run(a: int, b: int) -> None:
                    to_float(src_q.ctypes.data + a * rs, g_out.ctypes.data + a * n * 4,
                             (b - a) * n)
                t_ours, t_ggml = best_interleaved(
                    [ours_d, lambda th=th: run_threads(g_run, rows_all, th)], reps)
                ours_rate, g_rate = gb / t_ours, gb / t_ggml
                exact = "yes" if np.array_equal(out.view(np.uint32), g_out.view(np.uint32)) \
                    else "NO"
            results.append(Row(shape, t.name, "dequantize", th, rows_all, ours_rate, g_rate,
                               np_rate if th == 1 else None, exact))
    return results


# ------------------------------------------------------------------ decode inside the cache


CACHE_ROWS, CACHE_COLS, CACHE_CALLS = 16, 4096, 20


def bench_cache_decode(types: list[kernels.NativeType], ggml: Ggml | None,
                       reps: int) -> list[tuple[str, float, float | None]]:
    """One-thread decode of a 256 KiB float tensor that stays in L2, called repeatedly.

    The full-size runs above are bounded by memory write bandwidth for everyone; this shows how
    much decode work each implementation does per value when memory is not the limit.
    """
    x = np.random.default_rng(2).standard_normal((CACHE_ROWS, CACHE_COLS), dtype=np.float32)
    out, g_out = np.empty_like(x), np.empty_like(x)
    outp = out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    gb = CACHE_CALLS * x.nbytes / GIB
    results = []
    for t in types:
        if not (t.can_quantize and t.can_dequantize):
            continue
        q = kernels.quantize_rows(t.type_id, x)
        tid = t.type_id

        def ours(q: np.ndarray = q, tid: int = tid) -> None:
            for _ in range(CACHE_CALLS):
                qtlib.qt_dequantize(tid, q.ctypes.data, outp, CACHE_ROWS, CACHE_COLS, 1, -1)
        fns = [ours]
        to_float = ggml.to_float(tid) if ggml is not None else None
        if to_float is not None:
            def theirs(q: np.ndarray = q, to_float: Callable = to_float) -> None:
                for _ in range(CACHE_CALLS):
                    to_float(q.ctypes.data, g_out.ctypes.data, x.size)
            fns.append(theirs)
        times = best_interleaved(fns, reps)
        results.append((t.name, gb / times[0], gb / times[1] if len(times) > 1 else None))
    return results


# ------------------------------------------------------------------ report


def table(rows: list[Row]) -> str:
    head = ("| shape | type | op | threads | rows timed | ours GiB/s | ggml GiB/s | numpy GiB/s "
            "| ours/ggml | ours/numpy | bytes = ggml |")
    sep = "|" + "---|" * 11
    lines = [head, sep]
    for r in rows:
        lines.append(
            f"| {r.shape} | {r.type_name} | {r.op} | {r.threads} | {r.rows_timed} "
            f"| {r.ours:.2f} | {fmt_rate(r.ggml)} | {fmt_rate(r.numpy)} "
            f"| {fmt_ratio(r.ours, r.ggml)} | {fmt_ratio(r.ours, r.numpy)} | {r.exact} |"
        )
    return "\n".join(lines)


def header(ggml: Ggml | None, args: argparse.Namespace) -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    import gguf

    try:
        gguf_version = pkg_version("gguf")
    except PackageNotFoundError:
        gguf_version = getattr(gguf, "__version__", "?")
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    peer = "not installed"
    if ggml is not None:
        peer = (f"{ggml.version} from {ggml.libdir}, CPU backend built for "
                f"{' '.join(ggml.features) or 'unknown'}")
    return (
        f"qtnative {kernels.version()} level {kernels.active_isa().name.lower()} "
        f"({', '.join(kernels.cpu_features())}); ggml {peer}; "
        f"gguf {gguf_version}; numpy {np.__version__}; {cpu}, {os.cpu_count()} cores; "
        f"best of {args.reps} (ours and ggml alternating){' (quick)' if args.quick else ''}; "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )


def write_results(text: str, level: str) -> None:
    begin, end = markers(level)
    block = f"{begin}\n{text}\n{end}"
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if begin in old and end in old:
        pre, rest = old.split(begin, 1)
        post = rest.split(end, 1)[1]
        new = pre + block + post
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS.write_text(new)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1024x4096 only, fewer repetitions")
    p.add_argument("--types", default="", help="comma-separated type names (default: all)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (best is kept)")
    p.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2")
    p.add_argument("--ggml-lib", default=None, metavar="DIR",
                   help="folder with libggml-base.so (and libggml-cpu.so) to compare against "
                        "(default $QTSTUDIO_GGML_LIB, else llama-cpp-python's)")
    p.add_argument("--no-write", action="store_true", help=f"do not update {RESULTS.name}")
    args = p.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 3)
    shapes = [(1024, 4096)] if args.quick else [(4096, 4096), (4096, 14336)]
    threads_list = [int(s) for s in args.threads.split(",") if s]

    wanted = {s.strip().upper() for s in args.types.split(",") if s.strip()}
    types = [t for t in kernels.native_types()
             if (t.can_quantize or t.can_dequantize) and t.name != "F32"
             and (not wanted or t.name in wanted)]
    order = {name: i for i, name in enumerate(FIRST_TYPES)}
    types.sort(key=lambda t: (order.get(t.name, len(order)), t.type_id))

    ggml = Ggml.find(args.ggml_lib)
    level = kernels.active_isa().name.lower()
    head = header(ggml, args)
    print(head, flush=True)
    rng = np.random.default_rng(0)
    all_rows: list[Row] = []
    for rows, n in shapes:
        x = rng.standard_normal((rows, n), dtype=np.float32)
        for t in types:
            got = bench_type(t, x, threads_list, args.reps, ggml,
                             numpy_reps=1 if rows * n > (1 << 24) else args.reps)
            for r in got:
                print(f"{r.shape:>11} {r.type_name:>6} {r.op:>10} {r.threads}t "
                      f"ours {r.ours:7.2f}  ggml {fmt_rate(r.ggml):>6}  numpy "
                      f"{fmt_rate(r.numpy):>6}  ours/ggml {fmt_ratio(r.ours, r.ggml):>7}  "
                      f"ours/numpy {fmt_ratio(r.ours, r.numpy):>7}  exact {r.exact}", flush=True)
            all_rows.extend(got)
        del x
    cache = bench_cache_decode(types, ggml, reps=10)
    for name, ours_rate, g_rate in cache:
        print(f"in-cache decode {name:>6}: ours {ours_rate:6.2f}  ggml {fmt_rate(g_rate):>6}  "
              f"ours/ggml {fmt_ratio(ours_rate, g_rate)}", flush=True)
    cache_lines = ["| type | ours GiB/s | ggml GiB/s | ours/ggml |", "|---|---|---|---|"]
    cache_lines += [f"| {name} | {o:.2f} | {fmt_rate(g)} | {fmt_ratio(o, g)} |"
                    for name, o, g in cache]
    text = "\n".join([
        f"## Codec throughput, {level.upper()} level (benchmarks/bench_codecs.py)",
        "",
        head,
        "",
        "GiB/s of float32 processed; ratios are same-run. numpy = gguf.quants, one thread.",
        f"K-quant/IQ/TQ quantizers are timed on the first {SLOW_QUANT_ROWS} rows, best of 1 "
        "after a warm-up; their decoders read those rows' bytes tiled to the full shape.",
        "",
        table(all_rows),
        "",
        f"Decode of a cache-resident {CACHE_ROWS}x{CACHE_COLS} tensor, one thread, "
        f"{CACHE_CALLS} calls per timing (per-call overhead included):",
        "",
        *cache_lines,
    ])
    print()
    print(text)
    if not args.no_write:
        write_results(text, level)
        print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
