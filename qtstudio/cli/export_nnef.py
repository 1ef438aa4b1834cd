"""``qtstudio-cli export MODEL --format nnef``: the command-line side of the NNEF export.

The ``export`` subcommand (qtstudio/cli/export.py) parses the shared options and hands NNEF
requests here; the export itself is qtstudio.export.nnef.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qtstudio.export.nnef.job import ExportReport, export_nnef_job
from qtstudio.export.nnef.q4_0 import CALIBRATIONS

from .errors import CliError


def _resolve(args: argparse.Namespace, source):
    from qtstudio.core.plan import resolve_plan
    from qtstudio.formats import open_model

    from .recipe_args import build_recipe

    with open_model(source.checkpoint) as model:
        recipe = build_recipe(args, model)
        return resolve_plan(model, recipe, target_format="nnef")


def _summary(report: ExportReport) -> list[str]:
    d = report.to_dict()
    enc = ", ".join(f"{k} x{v}" for k, v in sorted(d["encodings"].items()))
    lines = [f"wrote {report.path}: {d['n_weights']} weights ({enc}), {d['n_constants']} "
             f"constants, {d['n_operations']} operations, {report.total_bytes} bytes"]
    for t in report.fallbacks:
        lines.append(f"fallback: {t.name}: {t.fallback_from} -> {t.encoding} ({t.reason})")
    gain = report.q4_0_gain()
    if gain:
        lines.append(f"Q4_0 {report.calibration}: weight MSE {gain['mse']:.4g} vs min-max "
                     f"{gain['mse_minmax']:.4g} (gain {100 * gain['gain']:.2f}%)")
    v = report.verification
    if v:
        lines.append(f"tract check: {'ok' if v['ok'] else 'FAILED'} on the example and "
                     f"{v.get('fresh_inputs', 0)} fresh inputs (worst error "
                     f"{v.get('worst_rel_max', 0.0):.2g} of the output scale, limit "
                     f"{v['tolerance']:g})")
        for i, o in enumerate(v["outputs"]):
            same, flt = o["vs_torch_same_weights"], o["vs_float_model"]
            lines.append(
                f"tract output {i} {tuple(o['shape'])}: vs torch on the same weights max abs "
                f"{same['max_abs']:.3g} ({same['rel_max']:.2g} of scale {same['scale']:.3g}, "
                f"{'ok' if o['within_tolerance'] else 'FAILED'}); vs float model max abs "
                f"{flt['max_abs']:.3g}, cosine {flt['cosine']:.6f}"
                + (f", argmax agreement {flt['argmax_agreement']:.3f}"
                   if "argmax_agreement" in flt else ""))
    return lines


def export_nnef_cli(args: argparse.Namespace) -> int:
    from qtstudio.export.nnef.sources import DEFAULT_SEQ_LEN, NoGraphError, source_for
    from qtstudio.export.nnef.verify import verify_export

    from .job_runner import run_cli_job

    if not (args.preset or args.recipe or getattr(args, "rule", None)):
        raise CliError("export needs --preset NAME, --recipe FILE or --rule REGEX=TYPE")
    if getattr(args, "imatrix", None):
        raise CliError("--imatrix is for GGUF export; NNEF Q4_0 uses --calibration minmax|mse")
    calibration = getattr(args, "calibration", None) or "minmax"
    if calibration not in CALIBRATIONS:
        raise CliError(f"--calibration must be one of {', '.join(CALIBRATIONS)}")
    seq_len = getattr(args, "seq_len", None) or DEFAULT_SEQ_LEN
    if seq_len < 1:
        raise CliError("--seq-len must be at least 1")
    made: dict = {}

    def job(cancel):
        # Building a Hugging Face graph (importing transformers, constructing the module) takes
        # seconds before the export's own first step: show it as the job's first stage.
        import time

        from qtstudio.jobs import Progress

        t0 = time.monotonic()
        yield Progress("load", f"building the graph of {Path(str(args.model)).name}", 0, 1, 0,
                       0, 0.0, "rebuilding the model's graph")
        try:
            made["source"] = source = source_for(args.model, seq_len=seq_len)
        except NoGraphError as exc:
            raise CliError(str(exc)) from None
        cancel.check()
        plan = _resolve(args, source)
        made["plan"] = plan
        yield Progress("load", f"graph of {source.description}", 1, 1, 0, 0,
                       time.monotonic() - t0)
        return (yield from export_nnef_job(
            source.module, plan, source.example_inputs, Path(args.output),
            calibration=calibration, cancel=cancel, threads=getattr(args, "threads", None),
            name_map=source.names, keep_decoded=bool(getattr(args, "verify", False))))

    report = run_cli_job(job, quiet=bool(getattr(args, "quiet", False)),
                         on_stop="nothing was written")
    source, plan = made["source"], made["plan"]
    for e in plan.fallbacks:
        print(f"note: {e.name}: {e.fallback_from} -> {e.encoding} ({e.reason})", file=sys.stderr)
    if getattr(args, "verify", False):
        report.verification = verify_export(report.path, source.module, source.example_inputs,
                                            report.decoded)
    for line in _summary(report):
        print(line)
    report_path = getattr(args, "report", None)
    if report_path:
        Path(report_path).write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    if report.verification is not None and not report.verification["ok"]:
        return 1
    return 0
