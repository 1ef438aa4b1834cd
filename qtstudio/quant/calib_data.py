"""Calibration windows for GPTQ: a UTF-8 text file cut into token windows of the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qtstudio.core.model import Model

MAX_TEXT_BYTES = 256 * 1024 * 1024


class CalibrationDataError(ValueError):
    """The calibration file cannot be used; the message names it."""


def _folder(model: Model) -> Path:
    return model.path if model.path.is_dir() else model.path.parent


def tokenize_file(model: Model, path: str | Path) -> list[int]:
    p = Path(path)
    if not p.is_file():
        raise CalibrationDataError(f"{p}: no such calibration file")
    if p.stat().st_size > MAX_TEXT_BYTES:
        raise CalibrationDataError(f"{p}: {p.stat().st_size} bytes is more calibration text "
                                   f"than the {MAX_TEXT_BYTES} bytes read")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CalibrationDataError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise CalibrationDataError(f"{p}: the calibration file is empty")
    tok_path = _folder(model) / "tokenizer.json"
    if not tok_path.is_file():
        raise CalibrationDataError(f"{model.path}: no tokenizer.json beside the checkpoint to "
                                   f"cut {p} into tokens")
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(tok_path))
    except Exception as exc:  # tokenizers raises its own exception type
        raise CalibrationDataError(f"{tok_path}: cannot load the tokenizer ({exc})") from None
    ids = tok.encode(text, add_special_tokens=False).ids
    return [int(i) for i in ids]


def _bos(model: Model) -> int | None:
    cfg_path = _folder(model) / "tokenizer_config.json"
    add = None
    if cfg_path.is_file():
        try:
            add = json.loads(cfg_path.read_text(encoding="utf-8")).get("add_bos_token")
        except (OSError, ValueError):
            add = None
    bos = (model.config or {}).get("bos_token_id")
    if add is None:
        add = (model.config or {}).get("model_type") in ("llama", "mistral")
    return int(bos) if add and isinstance(bos, int) else None


def calibration_windows(model: Model, path: str | Path, *, ctx: int = 512,
                        windows: int = 64) -> np.ndarray:
    """int64 [n, ctx] non-overlapping windows (BOS first when the model expects it); at most
    ``windows`` of them, at least one, ``ctx`` capped by the model's position limit."""
    if ctx < 2 or windows < 1:
        raise CalibrationDataError("calibration windows need ctx >= 2 and a count >= 1")
    limit = (model.config or {}).get("max_position_embeddings")
    if isinstance(limit, int) and limit > 0:
        ctx = min(ctx, limit)
    ids = tokenize_file(model, path)
    bos = _bos(model)
    body = ctx - (1 if bos is not None else 0)
    n = min(windows, len(ids) // body)
    if n < 1:
        raise CalibrationDataError(f"{path}: {len(ids)} tokens, fewer than one calibration "
                                   f"window of {body}")
    out = np.asarray(ids[:n * body], np.int64).reshape(n, body)
    if bos is not None:
        out = np.concatenate([np.full((n, 1), bos, np.int64), out], axis=1)
    return out
