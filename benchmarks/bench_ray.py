"""In-process against a local Ray cluster on the same model: GGUF export and optimize
measurement, and the cost of one Ray task.

Builds a llama-shaped F16 Hugging Face folder (random weights; only speed is measured here),
starts a local cluster of ``--nodes`` `ray start` processes on 127.0.0.1 with one CPU each
(the head plus worker nodes), and times, on the same checkpoint:

1. Q4_K_M GGUF export: in-process with 1 codec thread and with all cores, then through the
   cluster (one task per row chunk, one CPU each). Outputs are compared byte for byte.
2. optimize's measurement (every tensor under six candidates): in-process, then one task per
   tensor on the cluster; the plans are compared.
3. The per-task overhead: ``--tasks`` tasks that do nothing, and the cluster time of each job
   minus its in-process one-thread time divided by the tasks it ran.

    python benchmarks/bench_ray.py [--hidden 1024] [--layers 4] [--nodes 2] [--tasks 200]

On a 2-core machine the cluster can at best match two in-process threads: the numbers say
what the fan-out costs, which is what matters once the nodes are separate machines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_export import llama_shapes


def write_model(folder: Path, hidden: int, ffn: int, layers: int) -> int:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tensors = {}
    for name, shape in llama_shapes(hidden, ffn, layers):
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            shape = (4096, hidden)  # a small vocabulary keeps the run short
        tensors[name] = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "model_type": "qtbench", "hidden_size": hidden, "intermediate_size": ffn,
        "num_hidden_layers": layers}))
    return sum(t.size for t in tensors.values())


def _noop(i: int) -> int:
    return i


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--ffn", type=int, default=2816)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--nodes", type=int, default=2, help="cluster nodes (head included)")
    ap.add_argument("--tasks", type=int, default=200, help="no-op tasks for the overhead")
    ap.add_argument("--chunk-mb", type=float, default=4.0, help="float32 MB per export task")
    args = ap.parse_args()

    from qtstudio.core.plan import resolve_plan
    from qtstudio.core.recipe import Recipe
    from qtstudio.export.gguf import export_gguf_job
    from qtstudio.formats import open_model
    from qtstudio.jobs import run_job
    from qtstudio.jobs.executor_localcluster import LocalCluster
    from qtstudio.jobs.executor_ray import RayExecutor
    from qtstudio.jobs.optimize import optimize_job

    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    params = write_model(work / "model", args.hidden, args.ffn, args.layers)
    chunk = int(args.chunk_mb * (1 << 20))
    print(f"model: {params / 1e6:.1f}M params F16 ({args.layers} layers, hidden {args.hidden}), "
          f"export tasks of {args.chunk_mb:g} MB float32 rows; {os.cpu_count()} cores")

    def timed(fn):
        t = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t

    results = {}
    with open_model(work / "model") as m:
        plan = resolve_plan(m, Recipe(preset="Q4_K_M"))
        for threads in (1, None):
            _, dt = timed(lambda t=threads: run_job(export_gguf_job(
                m, plan, work / f"local{t}.gguf", threads=t, chunk_bytes=chunk)))
            results[f"export in-process threads={threads or os.cpu_count()}"] = dt
        (opt_local, dt) = timed(lambda: run_job(optimize_job(m, target_bpw=4.5, threads=1)))
        results["optimize in-process threads=1"] = dt
        t0 = time.perf_counter()
        with LocalCluster(workers=args.nodes - 1, cpus_per_node=1) as cluster:
            start_s = time.perf_counter() - t0
            ex = RayExecutor(cluster.address)
            try:
                # warm the workers (interpreter, imports, the checkpoint opened) once
                run_job(export_gguf_job(m, plan, work / "warm.gguf", chunk_bytes=chunk,
                                        executor=ex))
                n_tasks = sum(len(range(0, e.params // e.shape[-1], max(
                    1, chunk // (4 * e.shape[-1])))) for e in plan.entries
                    if e.source_dtype != e.encoding)
                _, dt = timed(lambda: run_job(export_gguf_job(
                    m, plan, work / "ray.gguf", chunk_bytes=chunk, executor=ex)))
                results[f"export ray {args.nodes} nodes"] = dt
                (opt_ray, dt) = timed(lambda: run_job(optimize_job(m, target_bpw=4.5,
                                                                   executor=ex)))
                results[f"optimize ray {args.nodes} nodes"] = dt
                list(ex.ordered(_noop, [(i,) for i in range(20)]))  # warm
                t = time.perf_counter()
                list(ex.ordered(_noop, [(i,) for i in range(args.tasks)]))
                noop_ms = (time.perf_counter() - t) / args.tasks * 1e3
            finally:
                ex.close()
    same = (work / "local1.gguf").read_bytes() == (work / "ray.gguf").read_bytes()
    same_plan = opt_local.recipe().overrides == opt_ray.recipe().overrides
    print(f"local cluster start: {start_s:.1f} s ({args.nodes} nodes, 1 CPU each)")
    for k, v in results.items():
        print(f"{k:<36} {v:7.2f} s")
    e1 = results["export in-process threads=1"]
    er = results[f"export ray {args.nodes} nodes"]
    o1 = results["optimize in-process threads=1"]
    orr = results[f"optimize ray {args.nodes} nodes"]
    n_opt = len(opt_local.table.tensors)
    print(f"export speed-up vs 1 thread: {e1 / er:.2f}x; bytes identical: {same}")
    print(f"optimize speed-up vs 1 thread: {o1 / orr:.2f}x; plans identical: {same_plan}")
    print(f"no-op task round trip: {noop_ms:.2f} ms per task ({args.tasks} tasks, window "
          f"{2 * args.nodes})")
    ideal_e = e1 / args.nodes
    print(f"export overhead over the ideal 1/{args.nodes}: "
          f"{(er - ideal_e) / n_tasks * 1e3:.1f} ms per task ({n_tasks} tasks)")
    print(f"optimize overhead over the ideal 1/{args.nodes}: "
          f"{(orr - o1 / args.nodes) / n_opt * 1e3:.1f} ms per task ({n_opt} tasks)")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0 if same and same_plan else 1


if __name__ == "__main__":
    sys.exit(main())
