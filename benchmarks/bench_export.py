"""GGUF export: peak memory while streaming a large checkpoint, and Q4_K_M throughput against
llama.cpp's own quantizer.

1. Writes a synthetic llama-shaped Hugging Face folder (config.json, tokenizer.json and one
   F16 safetensors file of about ``--size`` GB, random weights), streaming it tensor by tensor.
2. Exports it to a Q4_K_M GGUF in a fresh process and prints that process's peak RSS against
   the budget of 3 x the largest tensor + 500 MB.
3. Exports it once more as an F16 GGUF, then quantizes that same F16 GGUF to Q4_K_M with our
   exporter and with ``llama_cpp.llama_model_quantize`` (same thread count, one process each,
   one after the other) and prints both in MB/s of F16 input.

    python benchmarks/bench_export.py [--size GB] [--threads N] [--dir DIR] [--keep]

The default size (0.5 GB) runs in a minute or two on 2 cores; ``--size 6`` is the full run.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VOCAB = 32000


def dims_for(size_gb: float) -> tuple[int, int, int]:
    """(hidden, ffn, layers) of a llama whose F16 weights take about ``size_gb`` GB."""
    hidden, ffn = (4096, 11008) if size_gb >= 2 else (2048, 5632)
    per_layer = (4 * hidden * hidden + 3 * hidden * ffn + 2 * hidden) * 2
    fixed = (2 * VOCAB * hidden + hidden) * 2
    layers = max(1, round((size_gb * 1e9 - fixed) / per_layer))
    return hidden, ffn, layers


def llama_shapes(hidden: int, ffn: int, layers: int) -> list[tuple[str, tuple[int, ...]]]:
    out = [("model.embed_tokens.weight", (VOCAB, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", (hidden,)),
                (p + "self_attn.q_proj.weight", (hidden, hidden)),
                (p + "self_attn.k_proj.weight", (hidden, hidden)),
                (p + "self_attn.v_proj.weight", (hidden, hidden)),
                (p + "self_attn.o_proj.weight", (hidden, hidden)),
                (p + "post_attention_layernorm.weight", (hidden,)),
                (p + "mlp.gate_proj.weight", (ffn, hidden)),
                (p + "mlp.up_proj.weight", (ffn, hidden)),
                (p + "mlp.down_proj.weight", (hidden, ffn))]
    out += [("model.norm.weight", (hidden,)), ("lm_head.weight", (VOCAB, hidden))]
    return out


def write_checkpoint(folder: Path, size_gb: float) -> tuple[int, int]:
    """Stream random F16 weights into model.safetensors; returns (bytes, largest tensor)."""
    hidden, ffn, layers = dims_for(size_gb)
    shapes = llama_shapes(hidden, ffn, layers)
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes:
        n = 2 * int(np.prod(shape))
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for _, shape in shapes:
            if len(shape) == 1:
                f.write(np.ones(shape, np.float16).tobytes())
                continue
            rows_per = max(1, (16 << 20) // shape[1])
            for r0 in range(0, shape[0], rows_per):
                r = min(rows_per, shape[0] - r0)
                block = rng.standard_normal((r, shape[1]), dtype=np.float32) * 0.02
                f.write(block.astype(np.float16).tobytes())
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"],
              "hidden_size": hidden, "intermediate_size": ffn, "num_hidden_layers": layers,
              "num_attention_heads": hidden // 128, "num_key_value_heads": hidden // 128,
              "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "vocab_size": VOCAB, "tie_word_embeddings": False, "torch_dtype": "float16"}
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    # a vocabulary of the right size; the benchmark never runs the model
    vocab = {f"<{i}>": i for i in range(VOCAB)}
    tok = {"version": "1.0", "added_tokens": [], "model": {"type": "BPE", "vocab": vocab,
                                                           "merges": []}}
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    largest = max(2 * int(np.prod(s)) for _, s in shapes)
    return offset, largest


def current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def peak_rss_mb() -> float:
    """This process's high-water RSS. VmHWM starts afresh at exec; ru_maxrss would carry the
    RSS the parent had when it forked the child."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_export(src: str, out: str, preset: str, threads: int) -> None:
    from qtstudio.core.plan import resolve_plan
    from qtstudio.core.recipe import Recipe
    from qtstudio.export.gguf import export_gguf
    from qtstudio.formats import open_model

    base = current_rss_mb()
    t0 = time.perf_counter()
    with open_model(src) as m:
        plan = resolve_plan(m, Recipe(preset=preset))
        rep = export_gguf(m, plan, out, threads=threads)
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "source_bytes": rep.source_bytes,
                      "written": rep.bytes_written, "peak_rss_mb": peak_rss_mb(),
                      "rss_before_mb": base}))


def child_llama(src: str, out: str, threads: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = threads
    fd = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)  # llama.cpp prints a line per tensor
    try:
        t0 = time.perf_counter()
        rc = llama_cpp.llama_model_quantize(src.encode(), out.encode(), ctypes.byref(params))
        dt = time.perf_counter() - t0
    finally:
        os.dup2(fd, 2)
    print(json.dumps({"seconds": dt, "rc": rc, "peak_rss_mb": peak_rss_mb()}))


def run_child(*args: str) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                         text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=float, default=0.5, help="checkpoint size in GB (default 0.5)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--dir", help="work folder (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "export":
            child_export(rest[0], rest[1], rest[2], int(rest[3]))
        else:
            child_llama(rest[0], rest[1], int(rest[2]))
        return

    work = Path(args.dir or tempfile.mkdtemp(prefix="qt-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    hf = work / "hf"
    try:
        t0 = time.perf_counter()
        nbytes, largest = write_checkpoint(hf, args.size)
        print(f"checkpoint: {nbytes / 1e9:.2f} GB F16 safetensors, largest tensor "
              f"{largest / 1e6:.0f} MB, written in {time.perf_counter() - t0:.0f} s")
        t = args.threads
        budget = 3 * largest / 2**20 + 500
        r = run_child("export", str(hf), str(work / "hf-q4km.gguf"), "Q4_K_M", str(t))
        print(f"HF -> Q4_K_M GGUF: {r['seconds']:.1f} s, "
              f"{r['source_bytes'] / 1e6 / r['seconds']:.1f} MB/s, peak RSS "
              f"{r['peak_rss_mb']:.0f} MB (budget 3 x largest + 500 = {budget:.0f} MB; "
              f"RSS before the export started: {r['rss_before_mb']:.0f} MB)")
        f16 = work / "f16.gguf"
        r = run_child("export", str(hf), str(f16), "F16", str(t))
        print(f"HF -> F16 GGUF: {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB")
        (work / "hf-q4km.gguf").unlink()
        shutil.rmtree(hf)
        ours = run_child("export", str(f16), str(work / "ours-q4km.gguf"), "Q4_K_M", str(t))
        theirs = run_child("llama", str(f16), str(work / "llama-q4km.gguf"), str(t))
        mb = f16.stat().st_size / 1e6
        a, b = mb / ours["seconds"], mb / theirs["seconds"]
        same = (work / "ours-q4km.gguf").stat().st_size == (work / "llama-q4km.gguf").stat(
        ).st_size
        print(f"F16 GGUF ({mb:.0f} MB) -> Q4_K_M, {t} threads: qtstudio {ours['seconds']:.1f} s "
              f"= {a:.1f} MB/s (peak RSS {ours['peak_rss_mb']:.0f} MB); llama_model_quantize "
              f"{theirs['seconds']:.1f} s = {b:.1f} MB/s; ratio {a / b:.2f}x; "
              f"output sizes equal: {same}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
