"""GPTQ from the window: whether the open model can take it, and the jobs the export dialog runs.

Qt-free (the jobs run in the window's worker process). They do what ``qtstudio-cli export
--method gptq`` and ``export --format hf-gptq`` do: cut the calibration text into token windows
with the model's tokenizer, then call qtstudio.jobs.gptq / qtstudio.export.hf_gptq.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtstudio.core.model import Model
from qtstudio.core.plan import Plan
from qtstudio.jobs import CancelToken, Progress


@dataclass(frozen=True)
class GPTQSettings:
    """The dialog's GPTQ fields; the defaults are the CLI's."""

    data: str
    ctx: int = 512
    windows: int = 64
    damp: float = 0.01
    block_size: int = 128
    desc_act: bool = False

    def options(self):
        from qtstudio.quant.gptq import GPTQOptions

        opt = GPTQOptions(damp_percent=self.damp, block_size=self.block_size,
                          desc_act=self.desc_act)
        opt.validate()
        return opt

    def tokens(self, model: Model):
        from qtstudio.jobs.gptq import gptq_tokens

        return gptq_tokens(model, self.data, ctx=self.ctx, windows=self.windows)


def gptq_problem(model: Model) -> str | None:
    """Why GPTQ cannot run on ``model`` (calibration's decoder engine must run it), or None.
    Reads the config only, no weights."""
    from qtstudio.jobs.gptq import check_gptq_model

    try:
        check_gptq_model(model)
    except Exception as exc:  # the runner's own message names the file and what is missing
        return str(exc) or type(exc).__name__
    return None


def gptq_gguf_job(model: Model, plan: Plan, out_path: str | Path, settings: GPTQSettings, *,
                  metadata: Mapping[str, str] | None = None,
                  cancel: CancelToken | None = None) -> Generator[Progress, None, Any]:
    """A GGUF of the plan with GPTQ's bytes for the block linears (``export --method gptq``)."""
    from qtstudio.export.gguf_gptq import gptq_export_job

    options = settings.options()
    yield Progress("tokenize", "", 0, 1, 0, 0, 0.0, f"reading {settings.data}")
    tokens = settings.tokens(model)
    return (yield from gptq_export_job(model, plan, out_path, tokens, options=options,
                                       metadata=metadata, cancel=cancel))


def hf_gptq_job(model: Model, out_dir: str | Path, settings: GPTQSettings, *, bits: int = 4,
                group_size: int = 128, sym: bool = True,
                cancel: CancelToken | None = None) -> Generator[Progress, None, Any]:
    """A Hugging Face GPTQ checkpoint folder (``export --format hf-gptq``)."""
    from qtstudio.export.hf_gptq import export_hf_gptq_job
    from qtstudio.quant.int_grid import IntGridConfig

    options = settings.options()
    grid = IntGridConfig(bits=bits, group_size=group_size, sym=sym)
    yield Progress("tokenize", "", 0, 1, 0, 0, 0.0, f"reading {settings.data}")
    tokens = settings.tokens(model)
    return (yield from export_hf_gptq_job(model, tokens, out_dir, grid=grid, options=options,
                                          cancel=cancel))


def gptq_quantize_file_job(model: Model, plan: Plan, settings: GPTQSettings, *,
                           cancel: CancelToken | None = None) -> Generator[Progress, None, Any]:
    """Run ▸ Quantize with GPTQ: the quantize report of ``quantize --method gptq``."""
    from qtstudio.jobs.gptq import gptq_quantize_job

    options = settings.options()
    yield Progress("tokenize", "", 0, 1, 0, 0, 0.0, f"reading {settings.data}")
    tokens = settings.tokens(model)
    return (yield from gptq_quantize_job(model, plan, tokens, options=options, cancel=cancel))
