"""Open a 7B-scale checkpoint: time and peak memory of reading the headers and building the tree.

Writes a synthetic sharded bf16 safetensors checkpoint with llama-7B tensor names and shapes
(291 tensors, about 13.5 GB) as sparse files (headers written, data left as holes, so it costs
no disk), then opens it in a fresh process and reports the wall time of ``open_model`` + tree +
totals + a Q4_K_M plan, and the process's peak resident memory. Targets: open < 1 s, < 300 MB.

    python benchmarks/bench_open.py [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VOCAB, HIDDEN, FFN, LAYERS = 32000, 4096, 11008, 32


def llama7b_shapes() -> list[tuple[str, tuple[int, ...]]]:
    out = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        out += [(p + "self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
                (p + "self_attn.k_proj.weight", (HIDDEN, HIDDEN)),
                (p + "self_attn.v_proj.weight", (HIDDEN, HIDDEN)),
                (p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
                (p + "mlp.gate_proj.weight", (FFN, HIDDEN)),
                (p + "mlp.up_proj.weight", (FFN, HIDDEN)),
                (p + "mlp.down_proj.weight", (HIDDEN, FFN)),
                (p + "input_layernorm.weight", (HIDDEN,)),
                (p + "post_attention_layernorm.weight", (HIDDEN,))]
    out += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    return out


def write_sparse_shard(path: Path, tensors: list[tuple[str, tuple[int, ...]]]) -> int:
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in tensors:
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset,
                                                                                 offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + offset)  # the data is a hole: no disk, no page cache
    return offset


def build(folder: Path) -> Path:
    shapes = llama7b_shapes()
    half = len(shapes) // 2
    shards = {"model-00001-of-00002.safetensors": shapes[:half],
              "model-00002-of-00002.safetensors": shapes[half:]}
    wmap, total = {}, 0
    for fname, part in shards.items():
        total += write_sparse_shard(folder / fname, part)
        wmap.update({name: fname for name, _ in part})
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": wmap}))
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "num_hidden_layers": LAYERS, "hidden_size": HIDDEN,
        "intermediate_size": FFN, "num_attention_heads": 32, "num_key_value_heads": 32,
        "vocab_size": VOCAB}))
    return index


def child(folder: str) -> None:
    t0 = time.perf_counter()
    import qtstudio  # noqa: F401
    from qtstudio.core.plan import resolve_plan
    from qtstudio.core.recipe import Recipe
    from qtstudio.formats import open_model
    t_import = time.perf_counter() - t0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t1 = time.perf_counter()
    model = open_model(folder)
    tree = model.tree
    totals = (model.total_params, model.total_bytes, tree.params)
    t_open = time.perf_counter() - t1
    t2 = time.perf_counter()
    plan = resolve_plan(model, Recipe(preset="Q4_K_M"))
    t_plan = time.perf_counter() - t2
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "tensors": len(model.tensors), "params": totals[0], "bytes": totals[1],
        "import_s": t_import, "open_s": t_open, "plan_s": t_plan,
        "plan_bytes": plan.total_bytes, "plan_bpw": plan.avg_bpw,
        "rss_after_import_mb": rss_before / 1024, "rss_peak_mb": rss_peak / 1024}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", help="where to write the checkpoint (default: a temp dir)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return 0
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        build(folder)
        size = sum(f.stat().st_size for f in folder.iterdir())
        disk = sum(f.stat().st_blocks * 512 for f in folder.iterdir())
        print(f"synthetic llama-7B bf16 checkpoint: {size / 1e9:.2f} GB apparent, "
              f"{disk / 1e6:.1f} MB on disk, written in {time.perf_counter() - t0:.2f} s")
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, __file__, "--child", str(folder)],
                                 capture_output=True, text=True, check=True,
                                 env=dict(os.environ))
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        best = min(runs, key=lambda r: r["open_s"])
        print(f"tensors: {best['tensors']}, parameters: {best['params']:,}, "
              f"bytes: {best['bytes']:,}")
        every = ", ".join(f"{r['open_s'] * 1000:.1f}" for r in runs)
        print(f"open (headers + tree + totals): best {best['open_s'] * 1000:.1f} ms, "
              f"all {every} ms")
        print(f"Q4_K_M plan of the whole model: {best['plan_s'] * 1000:.1f} ms "
              f"({best['plan_bytes'] / 1e9:.2f} GB, {best['plan_bpw']:.3f} bpw)")
        print(f"peak RSS: {max(r['rss_peak_mb'] for r in runs):.1f} MB "
              f"(after importing qtstudio: {best['rss_after_import_mb']:.1f} MB)")
        ok = best["open_s"] < 1.0 and max(r["rss_peak_mb"] for r in runs) < 300
        print("targets (< 1 s, < 300 MB):", "met" if ok else "MISSED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
