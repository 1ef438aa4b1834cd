"""Torch modules to export: the embedded demo, Hugging Face folders, or any module.

NNEF stores the computation, not only the weights, so a checkpoint can be exported only when
something can rebuild its graph: the demo's own builder, or transformers from config.json (built
offline, then filled with the checkpoint's tensors).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DEFAULT_SEQ_LEN = 8


class NoGraphError(ValueError):
    """The checkpoint has weights but nothing here can build its computation graph."""


@dataclass
class ExportSource:
    module: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    #: module parameter name -> checkpoint tensor name (for plans resolved on the checkpoint)
    names: dict[str, str] = field(default_factory=dict)
    description: str = ""
    checkpoint: Path | None = None


def demo_source() -> ExportSource:
    from qtstudio.core import demo
    from qtstudio.jobs.demo_eval import build_module

    module = build_module()
    cfg = demo.demo_config()
    linears = [i for i, m in enumerate(module) if isinstance(m, torch.nn.Linear)]
    names = {}
    for idx, prefix in zip(linears, cfg["tensor_prefixes"], strict=True):
        for kind in ("weight", "bias"):
            names[f"{idx}.{kind}"] = f"{prefix}.{kind}"
    x, _ = demo.load_test_set()
    return ExportSource(module, (torch.from_numpy(x[:4].copy()),), names,
                        "demo digits MLP", demo.demo_model_path())


class _CausalLMLogits(torch.nn.Module):
    def __init__(self, hf: torch.nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=input_ids, use_cache=False).logits


class _EncoderHidden(torch.nn.Module):
    def __init__(self, hf: torch.nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.hf(input_ids=input_ids)
        return out[0] if isinstance(out, tuple) else next(iter(out.values()))


def _checkpoint_folder(path: Path) -> Path:
    if path.is_dir():
        folder = path
    elif path.is_file():
        if path.suffix.lower() == ".gguf":
            raise NoGraphError(
                f"{path}: a GGUF file holds weights and metadata but no computation graph, which "
                "NNEF needs; export from the Hugging Face folder (config.json + weights) instead")
        folder = path.parent
    else:
        raise FileNotFoundError(f"{path}: no such file or folder")
    if not (folder / "config.json").is_file():
        raise NoGraphError(
            f"{path}: NNEF export needs the model's computation graph, and there is no "
            f"config.json in {folder} to build it from (weights alone describe no graph); "
            "put the checkpoint in a Hugging Face folder with its config.json, or export a torch "
            "module with qtstudio.export_nnef()")
    return folder


def hf_source(path: str | Path, *, seq_len: int = DEFAULT_SEQ_LEN, seed: int = 0,
              ) -> ExportSource:
    """Build a transformers model from config.json (offline) with the checkpoint's weights."""
    import transformers

    from qtstudio.formats import open_model

    folder = _checkpoint_folder(Path(path))
    try:
        cfg_doc = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NoGraphError(f"{folder / 'config.json'}: unreadable ({exc})") from None
    model_type = cfg_doc.get("model_type")
    if not model_type:
        raise NoGraphError(f"{folder / 'config.json'}: no model_type, so transformers cannot "
                           "build the graph NNEF needs")
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise NoGraphError(f"{folder}: transformers cannot build model_type {model_type!r} "
                           f"offline ({str(exc).splitlines()[0]})") from None
    archs = [a for a in (cfg_doc.get("architectures") or []) if hasattr(transformers, a)]
    try:
        if archs:
            hf = getattr(transformers, archs[0])(config)
        else:
            hf = transformers.AutoModel.from_config(config)
    except Exception as exc:
        raise NoGraphError(f"{folder}: transformers could not build {model_type!r} "
                           f"({str(exc).splitlines()[0]})") from None
    hf = hf.float().eval()
    causal = archs[0].endswith("ForCausalLM") if archs else False
    wrapper = _CausalLMLogits(hf) if causal else _EncoderHidden(hf)

    names: dict[str, str] = {}
    with open_model(folder) as ck:
        available = {t.name for t in ck.tensors}
        by_suffix: dict[str, list[str]] = {}
        for n in available:
            parts = n.split(".")
            for i in range(len(parts)):
                by_suffix.setdefault(".".join(parts[i:]), []).append(n)
        params = dict(hf.named_parameters())
        buffers = {k: v for k, v in hf.named_buffers()
                   if k.rsplit(".", 1)[-1] not in _non_persistent(hf, k)}
        missing = []
        for name, tensor in {**params, **buffers}.items():
            src = _match(name, available, by_suffix)
            if src is None:
                if name in params:
                    missing.append(name)
                continue
            arr = ck.load(src)
            if tuple(arr.shape) != tuple(tensor.shape):
                raise ValueError(f"{folder}: tensor {src} has shape {tuple(arr.shape)}, the "
                                 f"{model_type} graph expects {tuple(tensor.shape)} for {name}")
            with torch.no_grad():
                tensor.copy_(torch.from_numpy(np.ascontiguousarray(arr)))
            names[f"hf.{name}"] = src
    tied = _tied_names(hf)
    missing = [m for m in missing if m not in tied]
    if missing:
        shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise ValueError(f"{folder}: the checkpoint lacks {len(missing)} weights the "
                         f"{model_type} graph needs: {shown}")
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    if vocab <= 0:
        raise NoGraphError(f"{folder}: config.json has no vocab_size for the token input")
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (1, seq_len), generator=gen, dtype=torch.int64)
    return ExportSource(wrapper, (ids,), names, f"{model_type} ({type(hf).__name__})", folder)


def _non_persistent(model: torch.nn.Module, qualified: str) -> set[str]:
    owner = model
    for part in qualified.split(".")[:-1]:
        owner = getattr(owner, part)
    return set(getattr(owner, "_non_persistent_buffers_set", set()))


def _match(name: str, available: set[str], by_suffix: dict[str, list[str]]) -> str | None:
    if name in available:
        return name
    hits = by_suffix.get(name, [])
    if len(hits) == 1:  # checkpoint carries a prefix (bert.encoder... for encoder...)
        return hits[0]
    parts = name.split(".")
    for i in range(1, len(parts)):  # module carries a prefix the checkpoint lacks
        cand = ".".join(parts[i:])
        if cand in available:
            return cand
    return None


def _tied_names(model: torch.nn.Module) -> set[str]:
    """Parameter names that share storage with an earlier parameter (tied embeddings)."""
    seen: dict[int, str] = {}
    tied: set[str] = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            tied.add(name)
        else:
            seen[id(p)] = name
    return tied


def _is_demo(model: str | Path) -> bool:
    if str(model) == "demo":
        return True
    from qtstudio.core import demo

    try:
        shipped = demo.demo_model_path().resolve()
    except FileNotFoundError:
        return False
    p = Path(model).resolve()
    return p == shipped or p == shipped.parent


def source_for(model: str | Path, *, seq_len: int = DEFAULT_SEQ_LEN) -> ExportSource:
    """``demo`` (or the shipped demo checkpoint's path) or a checkpoint path; token models take
    ``seq_len`` tokens."""
    if _is_demo(model):
        return demo_source()
    return hf_source(model, seq_len=seq_len)
