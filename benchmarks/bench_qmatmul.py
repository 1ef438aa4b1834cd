"""qmatmul against its peers, in one run: y[n, m] = x[n, k] @ W[m, k].T.

Peers: torch F.linear (f32 and bf16 weights), torch weight-only int8 / int4 matmul (bf16
activations, their fast CPU path), ggml's MUL_MAT through a libggml (a one-node ggml graph called
through ctypes; by default the one llama-cpp-python ships, or the build in --ggml-lib DIR /
$QTSTUDIO_GGML_LIB, e.g. an AVX2-only build to pair with QTSTUDIO_ISA=avx2; skipped when none
is found), and the
machine's read bandwidth (numpy sum or max over 1 GiB, the faster). Weights are cold: every
timed call uses the next of enough distinct copies to overflow a 32 MiB L3.

    python benchmarks/bench_qmatmul.py            # full run (~5 minutes on 2 cores)
    python benchmarks/bench_qmatmul.py --quick    # smaller shapes and fewer types
    QTSTUDIO_ISA=avx2 python benchmarks/bench_qmatmul.py --ggml-lib /path/to/ggml-avx2/bin
"""

from __future__ import annotations

import os

# numpy's BLAS threads spin between calls and steal the cores being measured.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import ctypes
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import qtstudio as qs
from qtstudio import kernels

COLD_BYTES = 96 << 20  # distinct weight bytes rotated per measurement (3x the L3)
RESULTS = Path(__file__).with_name("RESULTS.md")
BLOCK = 4  # consecutive calls of one implementation before the next takes its turn


def heading(level: str) -> str:
    """RESULTS.md keeps one section per ISA level, each measured against its own ggml peer."""
    return f"## qmatmul, {level.upper()} level (benchmarks/bench_qmatmul.py)"


def timeit(call: Callable[[int], object], copies: int, min_time: float, min_calls: int) -> float:
    """Best seconds per call (the machine is shared: the best call is the least disturbed one);
    call(i) must use weight copy i % copies."""
    return timeit_alternating([call], copies, min_time, min_calls)[0]


def timeit_alternating(calls: list[Callable[[int], object]], copies: int, min_time: float,
                       min_calls: int, block: int = BLOCK) -> list[float]:
    """Best seconds per call of each of calls. Each runs `block` calls back to back (as an
    inference loop calls one library), and the blocks take turns so that load from other
    processes falls on all of them alike. Blocks rather than single calls: ggml's OpenMP team
    keeps spinning on a core for a while after each call, and a peer called right after it
    would run with one core fewer than it asked for."""
    for c in calls:
        c(0)
    times: list[list[float]] = [[] for _ in calls]
    start = time.perf_counter()
    i = 1
    while len(times[0]) < min_calls or time.perf_counter() - start < min_time * len(calls):
        for c, ts in zip(calls, times, strict=True):
            for j in range(block):
                t0 = time.perf_counter()
                c((i + j) % copies)
                ts.append(time.perf_counter() - t0)
        i += block
    return [min(ts) for ts in times]


def aligned_copy(a: np.ndarray) -> np.ndarray:
    """A copy laid out as qs.quantize lays out its output (64-byte aligned; a plain numpy copy
    is only 16-byte aligned)."""
    out = kernels.aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out


def read_bandwidth(threads: int, nbytes: int) -> float:
    """GB/s of the faster of numpy's sum and max over nbytes, split over threads. numpy's
    pairwise float sum is itself compute-bound near 20 GB/s on one core of this machine kind
    (measured), so max, which vectorises fully, is the truer read line."""
    a = np.ones(nbytes // 4, dtype=np.float32)
    parts = np.array_split(a, threads)
    best = 0.0
    with ThreadPoolExecutor(threads) as pool:
        for reduce in (np.sum, np.max):
            for _ in range(4):
                t0 = time.perf_counter()
                list(pool.map(reduce, parts))
                best = max(best, a.nbytes / (time.perf_counter() - t0))
    return best / 1e9


# ------------------------------------------------------------------------------------ ggml


class GgmlInitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p),
                ("no_alloc", ctypes.c_bool)]


class GgmlCplan(ctypes.Structure):
    _fields_ = [("work_size", ctypes.c_size_t), ("work_data", ctypes.c_void_p),
                ("n_threads", ctypes.c_int), ("threadpool", ctypes.c_void_p),
                ("abort_callback", ctypes.c_void_p), ("abort_callback_data", ctypes.c_void_p),
                ("use_ref", ctypes.c_bool)]


GGML_FEATURES = ("avx", "avx2", "fma", "f16c", "avx_vnni", "avx512", "avx512_vnni", "avx512_bf16")


def ggml_libdir(explicit: str | None) -> Path:
    """The folder holding libggml-base.so and libggml-cpu.so: --ggml-lib, else
    $QTSTUDIO_GGML_LIB, else the libraries llama-cpp-python ships."""
    given = explicit or os.environ.get("QTSTUDIO_GGML_LIB")
    if given:
        return Path(given)
    import llama_cpp  # the wheel builds ggml from source and ships its shared libraries

    return Path(llama_cpp.__file__).parent / "lib"


class Ggml:
    """ggml's CPU MUL_MAT: one context per shape, one graph per weight copy."""

    def __init__(self, libdir: Path) -> None:
        for name in ("libggml-base.so", "libggml-cpu.so"):
            if not (libdir / name).exists():
                raise OSError(f"{libdir / name} not found")
        self.libdir = libdir
        mode = ctypes.RTLD_GLOBAL
        self.base = ctypes.CDLL(str(libdir / "libggml-base.so"), mode=mode)
        self.cpu = ctypes.CDLL(str(libdir / "libggml-cpu.so"), mode=mode)
        vp, i64 = ctypes.c_void_p, ctypes.c_int64
        sig = {
            (self.base, "ggml_init"): (vp, [GgmlInitParams]),
            (self.base, "ggml_free"): (None, [vp]),
            (self.base, "ggml_new_tensor_2d"): (vp, [vp, ctypes.c_int, i64, i64]),
            (self.base, "ggml_mul_mat"): (vp, [vp, vp, vp]),
            (self.base, "ggml_new_graph"): (vp, [vp]),
            (self.base, "ggml_build_forward_expand"): (None, [vp, vp]),
            (self.base, "ggml_get_data"): (vp, [vp]),
            (self.base, "ggml_row_size"): (ctypes.c_size_t, [ctypes.c_int, i64]),
            (self.base, "ggml_tensor_overhead"): (ctypes.c_size_t, []),
            (self.base, "ggml_graph_overhead"): (ctypes.c_size_t, []),
            (self.cpu, "ggml_cpu_init"): (None, []),
            (self.cpu, "ggml_graph_plan"): (GgmlCplan, [vp, ctypes.c_int, vp]),
            (self.cpu, "ggml_graph_compute"): (ctypes.c_int, [vp, ctypes.POINTER(GgmlCplan)]),
        }
        for (lib, name), (res, args) in sig.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self.cpu.ggml_cpu_init()
        # what the CPU backend was compiled for (ggml_cpu_has_* report build flags)
        self.features = [f for f in GGML_FEATURES
                         if getattr(self.cpu, f"ggml_cpu_has_{f}", lambda: 0)()]

    def prepare(self, type_id: int, weights: list[np.ndarray], x: np.ndarray, m: int, k: int):
        """Build graphs y_i = mul_mat(W_i, x); returns run(i, threads) and a cleanup."""
        n = x.shape[0]
        b = self.base
        wbytes = b.ggml_row_size(type_id, k) * m
        if wbytes != weights[0].nbytes:
            raise ValueError("ggml and qtstudio disagree on the weight size")
        over = b.ggml_tensor_overhead()
        mem = (len(weights) * (wbytes + 4 * n * m + 3 * over + b.ggml_graph_overhead())
               + 4 * n * k + over + (1 << 20))
        ctx = b.ggml_init(GgmlInitParams(mem, None, False))
        if not ctx:
            raise MemoryError("ggml_init failed")
        xt = b.ggml_new_tensor_2d(ctx, 0, k, n)
        ctypes.memmove(b.ggml_get_data(xt), x.ctypes.data, x.nbytes)
        graphs = []
        for w in weights:
            wt = b.ggml_new_tensor_2d(ctx, type_id, k, m)
            ctypes.memmove(b.ggml_get_data(wt), w.ctypes.data, w.nbytes)
            out = b.ggml_mul_mat(ctx, wt, xt)
            g = b.ggml_new_graph(ctx)
            b.ggml_build_forward_expand(g, out)
            graphs.append((g, out))
        plans: dict[int, tuple[GgmlCplan, np.ndarray]] = {}

        def run(i: int, threads: int) -> None:
            g = graphs[i][0]
            if threads not in plans:
                plan = self.cpu.ggml_graph_plan(g, threads, None)
                work = np.empty(max(plan.work_size, 1), dtype=np.uint8)
                plan.work_data = work.ctypes.data
                plans[threads] = (plan, work)
            plan = plans[threads][0]
            if self.cpu.ggml_graph_compute(g, ctypes.byref(plan)) != 0:
                raise RuntimeError("ggml_graph_compute failed")

        def result(i: int) -> np.ndarray:
            ptr = b.ggml_get_data(graphs[i][1])
            return np.ctypeslib.as_array((ctypes.c_float * (n * m)).from_address(ptr)).reshape(
                n, m).copy()

        return run, result, lambda: b.ggml_free(ctx)


def load_ggml(explicit: str | None) -> tuple[Ggml | None, str]:
    try:
        return Ggml(ggml_libdir(explicit)), ""
    except (ImportError, OSError, AttributeError) as exc:
        return None, f"ggml peer unavailable ({exc})"


# ------------------------------------------------------------------------------------ torch


def torch_peers(m: int, k: int, n: int, rng: np.random.Generator):
    """name -> (call(i), weight bytes, copies) for the torch peers; {} without torch."""
    try:
        import torch
        import torch.nn.functional as F  # noqa: N812
    except ImportError:
        return {}
    torch.manual_seed(0)
    x = torch.from_numpy(rng.standard_normal((n, k)).astype(np.float32))
    xb = x.to(torch.bfloat16)

    def copies(nbytes: int) -> int:
        return max(2, -(-COLD_BYTES // nbytes))

    peers = {}
    w32 = [torch.randn(m, k) * 0.02 for _ in range(copies(m * k * 4))]
    peers["torch F.linear f32"] = (lambda i: F.linear(x, w32[i]), m * k * 4, len(w32))
    wb = [(torch.randn(m, k) * 0.02).to(torch.bfloat16) for _ in range(copies(m * k * 2))]
    peers["torch F.linear bf16"] = (lambda i: F.linear(xb, wb[i]), m * k * 2, len(wb))
    if hasattr(torch, "_weight_int8pack_mm"):
        w8 = [torch.randint(-127, 128, (m, k), dtype=torch.int8) for _ in range(copies(m * k))]
        s8 = torch.rand(m, dtype=torch.bfloat16) * 0.01
        peers["torch int8 weight-only (bf16 x)"] = (
            lambda i: torch._weight_int8pack_mm(xb, w8[i], s8), m * k, len(w8))
    if hasattr(torch, "_weight_int4pack_mm_for_cpu"):
        sz = torch.rand(k // 32, m, 2, dtype=torch.bfloat16) * 0.01
        nb4 = m * k // 2 + sz.numel() * 2
        w4 = [torch._convert_weight_to_int4pack_for_cpu(
            torch.randint(0, 16, (m, k), dtype=torch.int32), 2) for _ in range(copies(nb4))]
        peers["torch int4 weight-only g32 (bf16 x)"] = (
            lambda i: torch._weight_int4pack_mm_for_cpu(xb, w4[i], 32, sz), nb4, len(w4))
    return peers


def set_torch_threads(t: int) -> None:
    try:
        import torch
        torch.set_num_threads(t)
    except ImportError:
        pass


# ------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one smaller shape, fewer types")
    ap.add_argument("--types", default=None,
                    help="comma list of encodings (default Q4_0,Q8_0,Q4_K,Q6_K,Q5_K,Q4_1,Q5_0)")
    ap.add_argument("--gemv-types", default=None,
                    help="encodings timed at n=1 only (default Q5_1,IQ4_NL,IQ4_XS,MXFP4,Q2_K,"
                         "Q3_K,TQ1_0,TQ2_0,F16,BF16; none with --quick)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--n", default=None, help="comma list of activation rows (default 1,512)")
    ap.add_argument("--ggml-lib", default=None, metavar="DIR",
                    help="folder with libggml-base.so and libggml-cpu.so to compare against "
                         "(default $QTSTUDIO_GGML_LIB, else llama-cpp-python's)")
    ap.add_argument("--no-torch", action="store_true",
                    help="leave the torch peers out (a shorter run against ggml alone)")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = ap.parse_args(argv)

    types = (args.types or ("Q4_0,Q8_0,Q4_K,Q6_K" if args.quick
                            else "Q4_0,Q8_0,Q4_K,Q6_K,Q5_K,Q4_1,Q5_0")).split(",")
    gemv_types = [t for t in (args.gemv_types if args.gemv_types is not None else (
        "" if args.quick else "Q5_1,IQ4_NL,IQ4_XS,MXFP4,Q2_K,Q3_K,TQ1_0,TQ2_0,F16,BF16")
    ).split(",") if t]
    shapes = [(4096, 4096)] if args.quick else [(4096, 14336), (4096, 4096)]
    ns = [int(v) for v in args.n.split(",")] if args.n else ([1, 128] if args.quick else [1, 512])
    thread_list = [int(t) for t in args.threads.split(",")]
    min_time = 0.15 if args.quick else 0.3

    lines: list[str] = []

    def out(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    rng = np.random.default_rng(0)
    out(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"ISA level {kernels.active_isa().name.lower()}, features "
        f"{' '.join(f for f in kernels.cpu_features() if 'avx512' in f or f == 'avx2')}")
    bw_bytes = (256 << 20) if args.quick else (1 << 30)
    bw = {t: read_bandwidth(t, bw_bytes) for t in thread_list}
    out("read bandwidth (numpy sum or max, "
        f"{'256 MiB' if args.quick else '1 GiB'}, best of 4, at start): "
        + ", ".join(f"{t} thread{'s' if t > 1 else ''} {bw[t]:.1f} GB/s" for t in thread_list))
    gemv_rows: list[tuple[str, int, str, float]] = []  # shape, threads, encoding, GB/s
    ggml, why = load_ggml(args.ggml_lib)
    if why:
        out(why)
    else:
        out(f"ggml peer: {ggml.libdir}, CPU backend built for {' '.join(ggml.features)}; "
            f"load average {os.getloadavg()[0]:.1f}")
    out()
    out(f"Times are the best of several calls; ours and ggml's run in alternating blocks of "
        f"{BLOCK} back-to-back calls, so background load hits both and neither starts while "
        "the other's threads still spin. GB/s = weight bytes / time; GFLOPS = 2nmk / time; "
        "'x peer' = peer time / our time (>1: we are faster).")
    out()
    out("| m x k | n | thr | impl | ms | GB/s | GFLOPS | x ggml | x torch f32 | x torch bf16 |")
    out("|---|---|---|---|---|---|---|---|---|---|")

    for m, k in shapes:
        xs = {n: rng.standard_normal((n, k)).astype(np.float32) for n in ns}
        peer_t: dict[tuple[str, int, int], float] = {}
        for n in ns:
            flops = 2.0 * n * m * k
            peers = {} if args.no_torch else torch_peers(m, k, n, rng)
            for t in thread_list:
                set_torch_threads(t)
                for name, (call, nbytes, copies) in peers.items():
                    dt = timeit(call, copies, min_time, 5 if n == 1 else 2)
                    peer_t[(name, n, t)] = dt
                    out(f"| {m}x{k} | {n} | {t} | {name} | {dt * 1e3:.2f} | {nbytes / dt / 1e9:.1f}"
                        f" | {flops / dt / 1e9:.0f} | | | |")
            del peers
        for enc in types + gemv_types:
            wf = (rng.standard_normal((m, k)) * 0.02).astype(np.float32)
            w0 = qs.quantize(wf, enc)
            del wf
            copies = max(2, -(-COLD_BYTES // w0.nbytes))
            ws = [qs.QTensor(aligned_copy(w0.data), w0.shape, enc) for _ in range(copies)]
            for n in ns if enc in types else [min(ns)]:
                x = xs[n]
                flops = 2.0 * n * m * k
                min_calls = 5 if n == 1 else 2
                runner = None
                if ggml is not None:
                    run, result, free = ggml.prepare(w0.encoding.ggml_type,
                                                     [w.data for w in ws], x, m, k)
                    runner = (run, free)
                    # same answer as ggml (both use 8-bit activations): a wrong kernel shows here
                    run(0, thread_list[0])
                    ours = qs.qmatmul(x, ws[0])
                    ref = result(0)
                    rel = float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30))
                    if rel > 0.05:
                        out(f"WARNING: {enc} differs from ggml by {rel:.3g} (relative to max)")
                for t in thread_list:
                    calls = [lambda i, t=t, x=x, ws=ws: qs.qmatmul(x, ws[i], threads=t)]
                    if runner is not None:
                        calls.append(lambda i, t=t, r=runner[0]: r(i, t))
                    dts = timeit_alternating(calls, copies, min_time, min_calls)
                    dt = dts[0]
                    gbs = w0.nbytes / dt / 1e9
                    cells = []
                    if n == 1:
                        gemv_rows.append((f"{m}x{k}", t, enc, gbs))
                    if runner is not None:
                        gdt = dts[1]
                        out(f"| {m}x{k} | {n} | {t} | ggml {enc} | {gdt * 1e3:.2f} | "
                            f"{w0.nbytes / gdt / 1e9:.1f} | {flops / gdt / 1e9:.0f} | | | |")
                        cells.append(f"{gdt / dt:.2f}")
                    else:
                        cells.append("n/a")
                    for pname in ("torch F.linear f32", "torch F.linear bf16"):
                        pt = peer_t.get((pname, n, t))
                        cells.append(f"{pt / dt:.2f}" if pt else "n/a")
                    out(f"| {m}x{k} | {n} | {t} | **qtstudio {enc}** | {dt * 1e3:.2f} | "
                        f"{gbs:.1f} | {flops / dt / 1e9:.0f} | " + " | ".join(cells) + " |")
                if runner is not None:
                    runner[1]()
            del ws, w0
    # The machine is shared: take the best bandwidth seen, at the start and now.
    for t in thread_list:
        bw[t] = max(bw[t], read_bandwidth(t, bw_bytes))
    out()
    out("GEMV against the read bandwidth (best of the start and end measurements: "
        + ", ".join(f"{t} thread{'s' if t > 1 else ''} {bw[t]:.1f} GB/s" for t in thread_list)
        + "):")
    out()
    out("| m x k | thr | encoding | GB/s | % of read bandwidth |")
    out("|---|---|---|---|---|")
    for shape, t, enc, gbs in gemv_rows:
        out(f"| {shape} | {t} | {enc} | {gbs:.1f} | {gbs / bw[t] * 100:.0f}% |")
    if not args.no_write:
        write_results(lines, args.quick, sys.argv[1:] if argv is None else argv)
    return 0


def write_results(lines: list[str], quick: bool, argv: list[str]) -> None:
    """Replace this script's section for the active ISA level in RESULTS.md (other sections,
    the other levels' included, stay as they are)."""
    level = kernels.active_isa().name.lower()
    head = heading(level)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    isa = os.environ.get("QTSTUDIO_ISA")
    cmd = " ".join([*([f"QTSTUDIO_ISA={isa}"] if isa else []), "python",
                    "benchmarks/bench_qmatmul.py", *argv])
    body = [head, "", f"Run {stamp}{' (--quick)' if quick else ''}, `{cmd}`:", "", *lines, ""]
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    start = text.find(head)
    if start >= 0:
        nxt = text.find("\n## ", start + len(head))
        text = text[:start] + text[nxt + 1:] if nxt >= 0 else text[:start]
    RESULTS.write_text(text.rstrip("\n") + "\n\n" + "\n".join(body))


if __name__ == "__main__":
    sys.exit(main())
