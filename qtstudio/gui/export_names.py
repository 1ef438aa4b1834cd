"""Export defaults: where the file goes and what it is called.

Never inside the model's own folder (that may be site-packages, the package's resources, or a
read-only download cache): a user folder, the last one exported to when there is one. The name
says the model and the mix: the preset only when the plan is that preset, the optimizer's target
for an optimized mix, "custom" and its bits per weight otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def model_name(doc: Any) -> str:
    """A Hugging Face folder's name, a file's stem, "demo" for the shipped model."""
    from qtstudio.core.demo import demo_model_path

    src = Path(doc.model.path)
    try:
        if src.resolve() == Path(demo_model_path()).resolve():
            return "demo"
    except OSError:
        pass
    folder = src if src.is_dir() else src.parent
    if src.is_dir() or ((folder / "config.json").is_file() and src.name.startswith(
            ("model", "pytorch_model"))):
        return folder.name or "model"
    stem = src.name
    for ext in (".safetensors.index.json", ".bin.index.json", ".safetensors", ".gguf", ".bin",
                ".pth", ".pt"):
        stem = stem.removesuffix(ext)
    return stem or "model"


def mix_name(doc: Any) -> str:
    """Q4_K_M for a pure preset; optimized-4.25bpw; else custom-5.12bpw (or Q4_K_M-custom)."""
    recipe, plan = doc.recipe, doc.plan
    opt = doc.optimize_summary
    if opt is not None and opt.applied_to(recipe):
        return f"optimized-{opt.target_bpw:.2f}bpw"
    custom = any(e.origin == "override" or e.origin.startswith("rule") for e in plan.entries)
    if recipe.preset and not custom:
        return recipe.preset
    if recipe.preset:
        return f"{recipe.preset}-custom"
    return f"custom-{plan.avg_bpw:.2f}bpw"


def safe_file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.") or "model"


def default_folder(settings: Any = None) -> Path:
    """The last export folder, else Documents/qtstudio (or ~/qtstudio without Documents)."""
    if settings is not None:
        last = settings.value("export/lastDir")
        if last and Path(str(last)).is_dir():
            return Path(str(last))
    from PySide6.QtCore import QStandardPaths

    docs = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    base = Path(docs) if docs and Path(docs).is_dir() else Path.home()
    return base / "qtstudio"


def default_export_path(doc: Any, suffix: str = ".gguf", settings: Any = None) -> Path:
    name = safe_file_name(f"{model_name(doc)}-{mix_name(doc)}")
    return default_folder(settings) / (name + suffix)
