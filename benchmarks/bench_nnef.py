"""NNEF export benchmark: export time, size, tract run time and accuracy per encoding.

Run: python benchmarks/bench_nnef.py [--quick]. Exports the demo MLP (scored on its held-out
digits test set, run by tract) and tiny random llama / bert folders (built here, no downloads),
then prints a markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _time_tract(path: Path, feeds, repeat: int) -> tuple[float, float]:
    import tract

    t0 = time.perf_counter()
    runnable = tract.nnef().load(str(path)).into_runnable()
    load = time.perf_counter() - t0
    runnable.run(feeds)
    t0 = time.perf_counter()
    for _ in range(repeat):
        runnable.run(feeds)
    return load, (time.perf_counter() - t0) / repeat


def _demo_accuracy(path: Path, batch: int) -> float:
    import tract

    from qtstudio.core.demo import load_test_set

    x, y = load_test_set()
    runnable = tract.nnef().load(str(path)).into_runnable()
    n = (len(x) // batch) * batch
    hits = 0
    for i in range(0, n, batch):
        out = runnable.run([x[i:i + batch]])[0].to_numpy()
        hits += int((out.argmax(1) == y[i:i + batch]).sum())
    return hits / n


def bench_source(name: str, src, plans, out_dir: Path, repeat: int, rows: list[dict]) -> None:
    import torch

    from qtstudio.export.nnef import export_nnef

    feeds = [x.numpy() for x in src.example_inputs]
    with torch.no_grad():
        src.module(*src.example_inputs)
        t0 = time.perf_counter()
        for _ in range(repeat):
            src.module(*src.example_inputs)
        torch_s = (time.perf_counter() - t0) / repeat
    for label, plan, calibration in plans:
        path = out_dir / f"{name}_{label}.nnef.tgz"
        t0 = time.perf_counter()
        r = export_nnef(src.module, plan, src.example_inputs, path, calibration=calibration,
                        verify=True, name_map=src.names)
        export_s = time.perf_counter() - t0
        load_s, run_s = _time_tract(path, feeds, repeat)
        o = r.verification["outputs"][0]
        row = {
            "model": name, "plan": label, "export_s": export_s, "bytes": _size(path),
            "tract_load_s": load_s, "tract_run_ms": run_s * 1e3, "torch_run_ms": torch_s * 1e3,
            "same_rel": o["vs_torch_same_weights"]["rel_max"], "ok": r.verification["ok"],
            "float_cos": o["vs_float_model"]["cosine"],
            "float_rel": o["vs_float_model"]["rel_max"],
            "argmax": o["vs_float_model"].get("argmax_agreement"),
            "gain": (r.q4_0_gain() or {}).get("gain"), "fallbacks": len(r.fallbacks),
        }
        if name == "demo":
            row["accuracy"] = _demo_accuracy(path, src.example_inputs[0].shape[0])
        rows.append(row)
        print(row, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="demo only")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()

    import torch

    from qtstudio.export.nnef.sources import demo_source, hf_source

    torch.set_num_threads(1)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        demo = demo_source()
        weights = [v for v in demo.names.values() if v.endswith("weight")]
        demo_plans = [
            ("F32", None, "minmax"),
            ("F16", {w: "F16" for w in weights}, "minmax"),
            ("INT8_PT_SYM", {w: "INT8_PT_SYM" for w in weights}, "minmax"),
            ("INT8_PC_SYM", {w: "INT8_PC_SYM" for w in weights}, "minmax"),
            ("Q4_0 min-max", {w: "Q4_0" for w in weights}, "minmax"),
            ("Q4_0 mse", {w: "Q4_0" for w in weights}, "mse"),
        ]
        from qtstudio.core.demo import load_test_set

        x, _ = load_test_set()
        demo.example_inputs = (torch.from_numpy(x[:32].copy()),)
        bench_source("demo", demo, demo_plans, tmp_path, args.repeat, rows)
        if not args.quick:
            from tests.helpers.tiny_models import build_tiny_bert, build_tiny_llama

            for name, builder in (("llama", build_tiny_llama), ("bert", build_tiny_bert)):
                folder = builder(tmp_path / name, hidden=256, layers=4, intermediate=704)
                src = hf_source(folder, seq_len=32)
                mats = [v for v in src.names.values()
                        if v.endswith("weight") and len(src.module.get_parameter(
                            next(k for k, c in src.names.items() if c == v)).shape) == 2]
                plans = [("F32", None, "minmax"), ("F16", {w: "F16" for w in mats}, "minmax"),
                         ("INT8_PC_SYM", {w: "INT8_PC_SYM" for w in mats}, "minmax"),
                         ("Q4_0 min-max", {w: "Q4_0" for w in mats}, "minmax"),
                         ("Q4_0 mse", {w: "Q4_0" for w in mats}, "mse")]
                bench_source(name, src, plans, tmp_path, max(3, args.repeat // 4), rows)

    print("| model | weights | export s | size | tract run ms | torch run ms | vs torch same "
          "weights (rel max) | vs float: cosine | rel max | argmax agree | Q4_0 MSE gain "
          "| demo accuracy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gain = f"{100 * r['gain']:.2f}%" if r["gain"] is not None else ""
        acc = f"{100 * r['accuracy']:.2f}%" if "accuracy" in r else ""
        agree = f"{r['argmax']:.3f}" if r["argmax"] is not None else ""
        print(f"| {r['model']} | {r['plan']} | {r['export_s']:.2f} | {r['bytes'] / 1024:.1f} KiB "
              f"| {r['tract_run_ms']:.3f} | {r['torch_run_ms']:.3f} | {r['same_rel']:.1e}"
              f"{'' if r['ok'] else ' FAIL'} | {r['float_cos']:.6f} | {r['float_rel']:.4f} "
              f"| {agree} | {gain} | {acc} |")


if __name__ == "__main__":
    main()
