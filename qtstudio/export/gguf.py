"""The GGUF export job: a Model and its Plan become one .gguf file, one tensor at a time.

Three kinds of output, chosen from the source:

- ``gguf``: the source is a GGUF file. Every metadata key (with its exact stored type) and the
  tensor order are kept; ``general.file_type`` and ``general.quantization_version`` are set as
  llama-quantize sets them. Tensors whose type does not change are copied byte for byte.
- ``llama.cpp``: a Hugging Face folder of an architecture llama.cpp runs (llama, mistral, qwen2,
  bert). Hyperparameters, GGUF tensor names, the llama q/k row order and the tokenizer come
  from :mod:`qtstudio.export.hf_to_gguf`.
- ``container``: anything else. A valid GGUF holding the tensors under their own names, with
  the original architecture recorded; llama.cpp cannot run it and the report says so.

Memory: each tensor is converted and encoded in row chunks and written as it goes, and the
pages of the memory-mapped source are released after each tensor, so peak memory follows the
chunk size and the largest tensor, not the model.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType

from qtstudio.core.encodings import Encoding, get_encoding
from qtstudio.core.model import Model
from qtstudio.core.plan import Plan, PlanEntry
from qtstudio.core.presets import PRESETS
from qtstudio.core.qtensor import QTensor
from qtstudio.formats.atomic import ExportError, atomic_output, check_target
from qtstudio.formats.floats import PLAIN_DTYPES, plain_to_f32
from qtstudio.formats.gguf_writer import GGUFStreamWriter, GGUFWriteError
from qtstudio.formats.imatrix import ImportanceMatrix
from qtstudio.formats.mapped_pages import release_pages
from qtstudio.jobs import CancelToken, Progress
from qtstudio.jobs.executor import Executor, executor_for
from qtstudio.jobs.worker_source import Stamp, open_source, rows_cache, source_stamp

from . import hf_to_gguf

QUANTIZATION_VERSION = 2
#: float32 bytes converted and encoded at once; bounds memory and keeps cancel responsive
CHUNK_BYTES = 32 * 1024 * 1024
_FLOAT_TYPES = {"F32", "F16", "BF16"}
# llama-quantize drops these from its output: they describe the input's shards
_SPLIT_KEYS = ("split.no", "split.count", "split.tensors.count")

# LLAMA_FTYPE of a file whose most common quantized type is this one (llama.cpp's own guess)
_FTYPE_BY_TYPE = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10,
    "Q3_K": 12, "Q4_K": 15, "Q5_K": 17, "Q6_K": 18, "IQ4_NL": 25, "IQ4_XS": 30, "BF16": 32,
    "TQ1_0": 36, "TQ2_0": 37, "MXFP4": 38,
}


@dataclass
class ExportReport:
    path: Path
    kind: str  # "gguf" | "llama.cpp" | "container"
    runnable: bool
    file_type: int
    architecture: str | None
    tensors: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bytes_written: int = 0
    source_bytes: int = 0
    elapsed: float = 0.0

    @property
    def throughput_mb_s(self) -> float:
        return self.source_bytes / 1e6 / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind, "runnable": self.runnable,
                "file_type": self.file_type, "architecture": self.architecture,
                "tensors": self.tensors, "skipped": self.skipped, "warnings": self.warnings,
                "bytes_written": self.bytes_written, "source_bytes": self.source_bytes,
                "elapsed": round(self.elapsed, 3)}


@dataclass
class _Item:
    """One tensor to write: where it comes from and what it becomes."""

    entry: PlanEntry
    out_name: str
    encoding: Encoding
    shape: tuple[int, ...]
    transform: Callable[[np.ndarray], np.ndarray] | None = None


def file_type_for(plan: Plan, encodings: list[str]) -> int:
    """general.file_type: the preset's when the plan is that preset's mix, else (rules,
    per-tensor overrides or an optimized mix changed it) the most common type."""
    custom = any(e.origin == "override" or e.origin.startswith("rule") for e in plan.entries)
    if plan.preset and plan.preset in PRESETS and not custom:
        return PRESETS[plan.preset].ftype
    counts = Counter(e for e in encodings if e != "F32")
    if not counts:
        return 0
    top = counts.most_common(1)[0][0]
    return _FTYPE_BY_TYPE.get(top, 1024)  # 1024: llama.cpp's "guessed"


def export_kind(model: Model) -> str:
    if model.format == "gguf":
        return "gguf"
    if hf_to_gguf.runnable_arch(model.config.get("model_type")) is not None:
        return "llama.cpp"
    return "container"


def _source_files(model: Model) -> list[Path]:
    files = [model.path]
    folder = model.path if model.path.is_dir() else model.path.parent
    if model.format != "gguf":
        files += sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    return files


def _gguf_kv_bytes(path: Path) -> list[tuple[str, bytes]]:
    """Every metadata pair of a GGUF file as (key, exact stored bytes of type and value)."""
    try:
        reader = GGUFReader(path)
    except Exception as exc:  # the file passed core's checks; this is defensive
        raise ExportError(f"{path}: cannot read the metadata again ({exc})") from None
    out = []
    for key, fld in reader.fields.items():
        if key.startswith("GGUF."):  # the reader's own header pseudo-fields
            continue
        out.append((key, b"".join(bytes(p.tobytes()) for p in fld.parts[2:])))
    return out


def _resolve_encoding(entry: PlanEntry) -> Encoding:
    enc = get_encoding(entry.encoding)
    if enc.ggml_type is None or "gguf" not in enc.export_formats:
        raise ExportError(f"tensor {entry.name}: encoding {enc.name} cannot be stored in GGUF; "
                          "resolve the plan with target_format='gguf'")
    return enc


def _build_items(model: Model, plan: Plan, kind: str, allow_requantize: bool,
                 report: ExportReport) -> tuple[list[_Item], hf_to_gguf.Conversion | None]:
    conv = None
    if kind == "llama.cpp":
        folder = model.path if model.path.is_dir() else model.path.parent
        conv = hf_to_gguf.hf_conversion(folder, model.config, [t.name for t in model.tensors],
                                        {t.name: t.shape for t in model.tensors})
    items: list[_Item] = []
    for entry in plan.entries:
        enc = _resolve_encoding(entry)
        if conv is not None:
            out = conv.names.get(entry.name)
            if out is None:
                continue
            transform = conv.transforms.get(out)
        else:
            out, transform = entry.name, None
        if kind != "container" and len(entry.shape) == 1 and enc.name in ("F16", "BF16"):
            # ggml's CPU kernels multiply and add F32 activations only with F32 norms and
            # biases; a half-precision vector aborts llama.cpp at the first token
            report.warnings.append(f"{entry.name}: kept as F32 (llama.cpp needs F32 for 1-D "
                                   f"tensors; the plan asked for {enc.name})")
            enc = get_encoding("F32")
        src = entry.source_dtype
        if kind == "gguf" and src not in _FLOAT_TYPES and src != enc.name:
            if not allow_requantize:
                raise ExportError(
                    f"tensor {entry.name} is already {src}; re-encoding it as {enc.name} "
                    "compounds the quantization error. Pass --allow-requantize to do it anyway")
            report.warnings.append(f"{entry.name}: requantized from {src} to {enc.name}")
        items.append(_Item(entry, out, enc, tuple(entry.shape), transform))
    if conv is not None:
        report.skipped = list(conv.skipped)
        report.warnings.extend(conv.warnings)
    return items, conv


def _add_common_kv(w: GGUFStreamWriter, file_type: int,
                   imatrix: ImportanceMatrix | None) -> None:
    # llama-quantize and llama.cpp's converter write the version whatever the types are
    w.add_kv("general.quantization_version", QUANTIZATION_VERSION, GGUFValueType.UINT32)
    w.add_kv("general.file_type", file_type, GGUFValueType.UINT32)
    if imatrix is not None:
        # the keys llama-quantize's tool writes (as overrides: strings cut to 127 bytes,
        # integers stored as u32)
        if imatrix.path is not None:
            w.add_kv("quantize.imatrix.file", _cut(str(imatrix.path)), GGUFValueType.STRING)
        if imatrix.datasets:
            w.add_kv("quantize.imatrix.dataset", _cut(imatrix.datasets[0]),
                     GGUFValueType.STRING)
        w.add_kv("quantize.imatrix.entries_count", len(imatrix), GGUFValueType.UINT32)
        if imatrix.chunk_count > 0:
            w.add_kv("quantize.imatrix.chunks_count", int(imatrix.chunk_count),
                     GGUFValueType.UINT32)


def _cut(text: str, limit: int = 127) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")

def _float_rows(model: Model, item: _Item) -> tuple[np.ndarray | None, np.ndarray | None,
                                                   Callable[[int, int], np.ndarray]]:
    """(raw view to release at the end, raw rows to release chunk by chunk or None,
    function giving float32 rows [r0, r1))."""
    e = item.entry
    n = item.shape[-1]
    if item.transform is None and e.source_dtype in _FLOAT_TYPES and \
            e.source_dtype in PLAIN_DTYPES:
        raw = model.load_raw(e.name)
        if isinstance(raw, np.ndarray) and raw.dtype == PLAIN_DTYPES[e.source_dtype]:
            rows = raw.reshape(-1, n)
            return raw, rows, lambda r0, r1: plain_to_f32(rows[r0:r1], e.source_dtype)
    x = model.load(e.name)
    if item.transform is not None:
        x = item.transform(x)
    x2 = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, n)
    raw = None
    if model.format in ("gguf", "safetensors"):
        raw = model.load_raw(e.name)
    return raw, None, lambda r0, r1: x2[r0:r1]


def export_gguf_job(model: Model, plan: Plan, out_path: str | Path, *,
                    imatrix: ImportanceMatrix | Mapping[str, np.ndarray] | None = None,
                    threads: int | None = None,
                    cancel: CancelToken | None = None, allow_requantize: bool = False,
                    chunk_bytes: int = CHUNK_BYTES, executor: Executor | str | None = None,
                    precomputed: Mapping[str, QTensor] | None = None,
                    metadata: Mapping[str, str] | None = None,
                    ) -> Generator[Progress, None, ExportReport]:
    """Write ``model`` encoded by ``plan`` to ``out_path``; yields Progress, returns a report.
    ``metadata``: string keys (general.name, general.author, general.license ...) written in
    place of, or next to, the ones the conversion or the source file brings.

    ``precomputed`` maps checkpoint tensor names to bytes already encoded in the planned type
    (GPTQ's); they are written as they are (rows reordered when the conversion reorders them).

    The file appears only when everything succeeded; cancelling (the token, Ctrl-C, closing the
    generator) or any error leaves neither the output nor a temporary file. With ``executor``
    (an Executor or a Ray address) the row chunks are encoded as tasks there and written here
    in order: the same bytes. Precomputed tensors are written here, so ``precomputed`` runs the
    whole export in-process.
    """
    cancel = cancel or CancelToken()
    check_target(out_path, _source_files(model))  # a bad path fails before any connection
    ex, owned = (None, False) if precomputed else executor_for(executor, threads=threads)
    try:
        return (yield from _export(model, plan, out_path, imatrix, threads, cancel,
                                   allow_requantize, chunk_bytes, ex, precomputed, metadata))
    finally:
        if owned and ex is not None:
            ex.close()


def _export(model: Model, plan: Plan, out_path: str | Path,
            imatrix: ImportanceMatrix | Mapping[str, np.ndarray] | None, threads: int | None,
            cancel: CancelToken, allow_requantize: bool, chunk_bytes: int,
            ex: Executor | None, precomputed: Mapping[str, QTensor] | None,
            metadata: Mapping[str, str] | None) -> Generator[Progress, None, ExportReport]:
    start = time.perf_counter()
    if imatrix is not None and not isinstance(imatrix, ImportanceMatrix):
        # a plain {gguf name: weights} mapping, as the quantize job takes
        imatrix = ImportanceMatrix({str(k): np.asarray(v, np.float32).reshape(-1)
                                    for k, v in dict(imatrix).items()})
    out = check_target(out_path, _source_files(model))
    kind = export_kind(model)
    arch = model.architecture
    report = ExportReport(path=out, kind=kind, runnable=kind != "container", file_type=0,
                          architecture=arch)
    if kind == "container":
        report.warnings.append(
            f"llama.cpp cannot run this file: architecture {arch or 'unknown'!r} from a "
            f"{model.format} checkpoint is stored as a plain GGUF tensor container")
    items, conv = _build_items(model, plan, kind, allow_requantize, report)
    names = [i.encoding.name for i in items]
    report.file_type = file_type_for(plan, names)
    bytes_total = sum(model.tensor(i.entry.name).nbytes for i in items)
    report.source_bytes = bytes_total
    # tolerant of a closed generator: everything below runs inside the atomic block
    with atomic_output(out, inputs=_source_files(model)) as f:
        w = GGUFStreamWriter(f, max_name_bytes=None if kind == "container" else 63)
        try:
            _declare(w, model, kind, conv, items, report, imatrix, dict(metadata or {}))
            w.write_header()
        except GGUFWriteError as exc:
            raise ExportError(f"cannot export {model.path}: {exc}") from None
        if ex is not None:
            yield from _write_on(ex, w, model, items, imatrix, cancel, chunk_bytes, bytes_total,
                                 start, report)
        done = 0
        for index, item in enumerate(items if ex is None else ()):
            cancel.check()
            e = item.entry
            info = model.tensor(e.name)
            yield Progress("export", e.name, index, len(items), done, bytes_total,
                           time.perf_counter() - start, f"{item.out_name} -> {item.encoding.name}")
            if precomputed is not None and e.name in precomputed:
                _write_precomputed(w, item, precomputed[e.name], cancel, chunk_bytes)
            else:
                yield from _write_tensor(w, model, item, imatrix, threads, cancel, chunk_bytes,
                                         index, len(items), done, bytes_total, start)
            report.tensors.append({"name": e.name, "gguf_name": item.out_name,
                                   "encoding": item.encoding.name, "shape": list(item.shape),
                                   "nbytes": w.tensors[index].nbytes})
            done += info.nbytes
        w.finish()
        report.bytes_written = f.tell()
    report.elapsed = time.perf_counter() - start
    yield Progress("done", "", len(items), len(items), bytes_total, bytes_total, report.elapsed,
                   f"wrote {out}")
    return report


def _declare(w: GGUFStreamWriter, model: Model, kind: str, conv: hf_to_gguf.Conversion | None,
             items: list[_Item], report: ExportReport, imatrix: ImportanceMatrix | None,
             metadata: dict[str, str]) -> None:
    for key in metadata:
        if key in ("general.architecture", "general.file_type", "general.alignment") or \
                key.startswith("tokenizer."):
            raise ExportError(f"metadata key {key} is written by the exporter itself")
    if kind == "gguf":
        for key, raw in _gguf_kv_bytes(model.path):
            if key not in _SPLIT_KEYS and key not in metadata:
                w.add_kv_raw(key, raw)
    elif kind == "llama.cpp":
        assert conv is not None
        for kv in conv.kv:
            if kv.key not in metadata:
                w.add_kv(kv.key, kv.value, kv.vtype, kv.sub_type)
    else:
        w.add_kv("general.architecture", "qtstudio-container", GGUFValueType.STRING)
        own = {"general.type": "qtstudio-container",
               "qtstudio.original_architecture": model.architecture or "unknown",
               "qtstudio.source_format": model.format}
        if model.config:
            import json

            own["qtstudio.config_json"] = json.dumps(model.config, sort_keys=True)
        for key, value in own.items():
            if key not in metadata:
                w.add_kv(key, value, GGUFValueType.STRING)
    for key, value in metadata.items():
        w.add_kv(key, str(value), GGUFValueType.STRING)
    _add_common_kv(w, report.file_type, imatrix)
    for item in items:
        w.add_tensor_info(item.out_name, item.shape,
                          GGMLQuantizationType(item.encoding.ggml_type))


def _write_tensor(w: GGUFStreamWriter, model: Model, item: _Item,
                  imatrix: ImportanceMatrix | None, threads: int | None, cancel: CancelToken,
                  chunk_bytes: int, index: int, total: int, done: int, bytes_total: int,
                  start: float) -> Generator[Progress, None, None]:
    e = item.entry
    w.begin_tensor(item.out_name)
    if _is_copy(item):
        # same type in and out: the stored bytes go through untouched, as llama-quantize does
        raw = model.load_raw(e.name)
        flat = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
        step = max(1, chunk_bytes)
        for b0 in range(0, flat.size, step):
            cancel.check()
            w.write_piece(flat[b0:b0 + step])
            release_pages(flat[b0:b0 + step])  # mapped pages already written: let them go
        w.end_tensor()
        release_pages(raw)
        return
    n = item.shape[-1]
    rows_total = _rows_total(item)
    weights = _item_weights(imatrix, item)
    raw, raw_rows, rows_of = _float_rows(model, item)
    info_bytes = model.tensor(e.name).nbytes
    for r0, r1, m in _spans(item, chunk_bytes):
        cancel.check()
        w_m = None if weights is None else weights[m * n:(m + 1) * n]
        w.write_piece(_encode_span(rows_of(r0, r1), item, w_m, threads, r0))
        if raw_rows is not None:
            release_pages(raw_rows[r0:r1])  # done with these mapped rows
        if rows_total > r1 - r0:
            yield Progress("export", e.name, index, total, done + info_bytes * r1 // rows_total,
                           bytes_total, time.perf_counter() - start, f"rows {r1}/{rows_total}")
    w.end_tensor()
    release_pages(raw)


def _is_copy(item: _Item) -> bool:
    """Same type in and out: the stored bytes go through untouched."""
    return item.entry.source_dtype == item.encoding.name and item.transform is None


def _write_on(ex: Executor, w: GGUFStreamWriter, model: Model, items: list[_Item],
              imatrix: ImportanceMatrix | None, cancel: CancelToken, chunk_bytes: int,
              bytes_total: int, start: float, report: ExportReport,
              ) -> Generator[Progress, None, None]:
    """The tensor data through ``ex``: every row chunk to encode is a task that reads its rows
    from the checkpoint itself; the pieces come back in order and are written here. Tensors
    copied byte for byte are copied here, between pieces."""
    path = str(Path(model.path).resolve())
    stamp = source_stamp(path)
    threads = ex.task_threads
    tasks: list[tuple] = []
    labels: list[str] = []
    task_bytes: list[int] = []
    per_item: list[int] = []
    for item in items:
        if _is_copy(item):
            per_item.append(0)
            continue
        e, n = item.entry, item.shape[-1]
        weights = _item_weights(imatrix, item)
        rows_total = _rows_total(item)
        info_bytes = model.tensor(e.name).nbytes
        spans = _spans(item, chunk_bytes)
        for r0, r1, m in spans:
            w_m = None if weights is None else np.ascontiguousarray(weights[m * n:(m + 1) * n])
            tasks.append((path, stamp, e, item.out_name, item.encoding.name, item.shape,
                          item.transform, r0, r1, w_m, threads))
            labels.append(f"{e.name} rows {r0}-{r1}")
            task_bytes.append(info_bytes * (r1 - r0) // rows_total)
        per_item.append(len(spans))
    copied = 0
    stream = ex.ordered(export_span, tasks, cancel, labels)
    try:
        for index, item in enumerate(items):
            cancel.check()
            e = item.entry
            yield Progress("export", e.name, index, len(items), copied, bytes_total,
                           time.perf_counter() - start,
                           f"{item.out_name} -> {item.encoding.name}")
            if per_item[index] == 0:
                yield from _write_tensor(w, model, item, imatrix, None, cancel, chunk_bytes,
                                         index, len(items), copied, bytes_total, start)
                copied += model.tensor(e.name).nbytes
            else:
                w.begin_tensor(item.out_name)
                written = 0
                while written < per_item[index]:
                    ev = next(stream)
                    if ev.index is not None:
                        w.write_piece(ev.result)
                        written += 1
                    yield Progress("export", e.name, index, len(items),
                                   copied + sum(task_bytes[:ev.finished]), bytes_total,
                                   time.perf_counter() - start,
                                   f"{ev.finished}/{ev.total} tasks done on {ex.name}")
                w.end_tensor()
            report.tensors.append({"name": e.name, "gguf_name": item.out_name,
                                   "encoding": item.encoding.name, "shape": list(item.shape),
                                   "nbytes": w.tensors[index].nbytes})
    finally:
        stream.close()


def export_span(path: str, stamp: Stamp, entry: Any, out_name: str, enc_name: str,
                shape: tuple[int, ...], transform: Any, r0: int, r1: int,
                weights: np.ndarray | None, threads: int | None) -> np.ndarray:
    """Rows [r0, r1) of one tensor, encoded as the GGUF export writes them."""
    model = open_source(path, stamp)
    item = _Item(entry, out_name, get_encoding(enc_name), tuple(shape), transform)
    if transform is not None:
        # the whole tensor is reordered before its rows are taken: keep it for the next spans
        key = (path, entry.name)
        rows = rows_cache.get(key)
        if rows is None:
            rows_cache.clear()
            _, _, rows_of = _float_rows(model, item)
            rows = rows_of(0, int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1
                           else 1)
            rows_cache[key] = rows
        return _encode_span(rows[r0:r1], item, weights, threads, r0)
    raw, raw_rows, rows_of = _float_rows(model, item)
    piece = _encode_span(rows_of(r0, r1), item, weights, threads, r0)
    if raw_rows is not None:
        release_pages(raw_rows[r0:r1])
    elif raw is not None:
        release_pages(raw)
    return np.ascontiguousarray(piece).view(np.uint8).reshape(-1)


def _rows_total(item: _Item) -> int:
    return int(np.prod(item.shape[:-1], dtype=np.int64)) if len(item.shape) > 1 else 1


def _item_weights(imatrix: ImportanceMatrix | None, item: _Item) -> np.ndarray | None:
    """The tensor's importance weights end to end (one vector per matrix of a 3-D tensor)."""
    if imatrix is None or not item.encoding.uses_imatrix:
        return None
    n = item.shape[-1]
    n_mat = item.shape[0] if len(item.shape) == 3 else 1
    weights = imatrix.weights_for(item.out_name, n * n_mat)
    if weights is None:
        weights = imatrix.weights_for(item.entry.name, n * n_mat)
    return weights


def _spans(item: _Item, chunk_bytes: int) -> list[tuple[int, int, int]]:
    """(first row, end row, matrix) of each chunk written; chunks never straddle two matrices
    of a 3-D tensor (stacked experts), so each takes its own matrix's weights."""
    n = item.shape[-1]
    rows_total = _rows_total(item)
    n_mat = item.shape[0] if len(item.shape) == 3 else 1
    rows_per_mat = rows_total // n_mat
    step = max(1, chunk_bytes // max(1, n * 4))
    return [(r0, min(r0 + step, (m + 1) * rows_per_mat), m) for m in range(n_mat)
            for r0 in range(m * rows_per_mat, (m + 1) * rows_per_mat, step)]


def _encode_span(rows: np.ndarray, item: _Item, w_m: np.ndarray | None, threads: int | None,
                 r0: int) -> np.ndarray:
    """Float rows of a tensor (starting at row ``r0``) as the bytes its encoding stores."""
    enc = item.encoding
    x = np.ascontiguousarray(rows, dtype=np.float32)
    if enc.name == "F32":
        return x.astype("<f4", copy=False)
    if enc.name in _FLOAT_TYPES:  # half precision holds NaN and Inf as they are
        return enc.quantize_rows(x, threads=threads)
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ExportError(f"tensor {item.entry.name}: non-finite value at row {r0 + r}, column "
                          f"{c}; it cannot be encoded as {enc.name}")
    return enc.quantize_rows(x, imatrix=w_m, threads=threads)


def _row_order(item: _Item, rows: int, n: int) -> np.ndarray | None:
    """The conversion's transform as a row permutation (None: rows stay in place), found by
    running it on row numbers; encoded rows can only be moved whole."""
    if item.transform is None:
        return None
    probe = np.repeat(np.arange(rows, dtype=np.float32)[:, None], n, axis=1)
    moved = np.asarray(item.transform(probe.reshape(item.entry.shape)), np.float32)
    moved = moved.reshape(rows, n)
    order = moved[:, 0].astype(np.int64)
    if not (moved == moved[:, :1]).all() or sorted(order.tolist()) != list(range(rows)):
        raise ExportError(f"tensor {item.entry.name}: the conversion changes values, not just "
                          "the row order; precomputed bytes cannot follow it")
    return None if (order == np.arange(rows)).all() else order


def _write_precomputed(w: GGUFStreamWriter, item: _Item, qt: QTensor, cancel: CancelToken,
                       chunk_bytes: int) -> None:
    e = item.entry
    if qt.encoding.name != item.encoding.name or tuple(qt.shape) != tuple(e.shape):
        raise ExportError(f"tensor {e.name}: precomputed {qt.encoding.name} {tuple(qt.shape)} "
                          f"does not match the plan's {item.encoding.name} {tuple(e.shape)}")
    data = qt.data
    order = _row_order(item, data.shape[0], int(e.shape[-1]))
    w.begin_tensor(item.out_name)
    step = max(1, chunk_bytes // max(1, data.shape[1]))
    for r0 in range(0, data.shape[0], step):
        cancel.check()
        rows = np.arange(r0, min(r0 + step, data.shape[0]))
        w.write_piece(np.ascontiguousarray(data[rows if order is None else order[rows]]))
    w.end_tensor()


def export_gguf(model: Model, plan: Plan, out_path: str | Path, **kwargs: Any) -> ExportReport:
    """Run :func:`export_gguf_job` to the end without progress reporting."""
    job = export_gguf_job(model, plan, out_path, **kwargs)
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)
