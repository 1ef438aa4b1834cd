"""Hugging Face checkpoint -> what a GGUF file needs: hyperparameters, names, tokenizer.

Supported for llama.cpp: llama, mistral (stored as the llama architecture), qwen2 and bert.
Everything else is written as a plain tensor container (see ``container_metadata``).

The facts here follow llama.cpp's own converter: config.json fields map onto ``{arch}.*`` keys,
HF tensor names map onto GGUF names through the gguf package's name maps, the llama q/k rows
are reordered because HF and ggml pair the rotary dimensions differently, and the tokenizer
becomes the ``tokenizer.ggml.*`` keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf import GGUFValueType as VT  # noqa: N814
from gguf import TokenType

from qtstudio.calib.bpe_pretokenizer import detect_pre_tokenizer
from qtstudio.calib.tokenizer import read_json, token_content
from qtstudio.formats.atomic import ExportError

# config.json model_type -> GGUF architecture name, for the ones llama.cpp can run
RUNNABLE_ARCHS = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "bert": "bert"}

# HF tensors llama.cpp's converter drops: buffers, heads an embedding model does not use
_SKIP_SUFFIXES = ("rotary_emb.inv_freq", "embeddings.position_ids")
_SKIP_PREFIXES = ("pooler.", "bert.pooler.", "cls.", "lm_head_bias")


@dataclass
class KVItem:
    key: str
    value: Any
    vtype: VT
    sub_type: VT | None = None


@dataclass
class Conversion:
    """What the exporter needs to turn one HF checkpoint into a llama.cpp GGUF."""

    arch: str
    kv: list[KVItem]
    #: HF tensor name -> GGUF tensor name (None: the tensor is dropped)
    names: dict[str, str | None]
    #: GGUF tensor name -> transform applied to the float32 data before encoding
    transforms: dict[str, Callable[[np.ndarray], np.ndarray]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    #: things the user should know about the conversion (shown in the export report)
    warnings: list[str] = field(default_factory=list)


def runnable_arch(model_type: str | None) -> str | None:
    return RUNNABLE_ARCHS.get(model_type or "")


# --- hyperparameters ------------------------------------------------------------------------

def _need(config: dict, key: str, folder: Path) -> Any:
    v = config.get(key)
    if v is None:
        raise ExportError(f"{folder / 'config.json'}: missing {key!r}, needed for GGUF export")
    return v


def _rope_theta(config: dict) -> float | None:
    if "rope_theta" in config:
        return float(config["rope_theta"])
    # transformers 5 moved the rotary settings into one dict
    params = config.get("rope_parameters") or {}
    if isinstance(params, dict) and "rope_theta" in params:
        return float(params["rope_theta"])
    return None


def _rope_scaling(config: dict) -> dict | None:
    rs = config.get("rope_scaling")
    if not rs:
        params = config.get("rope_parameters")
        if isinstance(params, dict) and params.get("rope_type", "default") != "default":
            rs = params
    return rs if isinstance(rs, dict) else None


def hparams_kv(arch: str, config: dict, folder: Path) -> list[KVItem]:
    """``{arch}.*`` keys from config.json."""
    a = arch
    kv: list[KVItem] = []

    def u32(key: str, value: Any) -> None:
        kv.append(KVItem(f"{a}.{key}", int(value), VT.UINT32))

    def f32(key: str, value: Any) -> None:
        kv.append(KVItem(f"{a}.{key}", float(value), VT.FLOAT32))

    n_embd = int(_need(config, "hidden_size", folder))
    n_head = int(_need(config, "num_attention_heads", folder))
    u32("context_length", config.get("max_position_embeddings", 2048))
    u32("embedding_length", n_embd)
    u32("block_count", _need(config, "num_hidden_layers", folder))
    u32("feed_forward_length", _need(config, "intermediate_size", folder))
    u32("attention.head_count", n_head)
    if arch == "bert":
        f32("attention.layer_norm_epsilon", config.get("layer_norm_eps", 1e-12))
        kv.append(KVItem(f"{a}.attention.causal", False, VT.BOOL))
        kv.append(KVItem(f"{a}.pooling_type", int(_bert_pooling(folder)), VT.UINT32))
        kv.append(KVItem("tokenizer.ggml.token_type_count", int(config.get("type_vocab_size", 2)),
                         VT.UINT32))
        return kv
    n_head_kv = int(config.get("num_key_value_heads") or n_head)
    head_dim = int(config.get("head_dim") or n_embd // n_head)
    u32("attention.head_count_kv", n_head_kv)
    f32("attention.layer_norm_rms_epsilon", config.get("rms_norm_eps", 1e-6))
    u32("rope.dimension_count", head_dim)
    if head_dim != n_embd // n_head:
        u32("attention.key_length", head_dim)
        u32("attention.value_length", head_dim)
    theta = _rope_theta(config)
    if theta is not None:
        f32("rope.freq_base", theta)
    if "vocab_size" in config:
        u32("vocab_size", config["vocab_size"])
    scaling = _rope_scaling(config)
    if scaling:
        kind = scaling.get("rope_type") or scaling.get("type")
        if kind == "linear":
            kv.append(KVItem(f"{a}.rope.scaling.type", "linear", VT.STRING))
            f32("rope.scaling.factor", scaling["factor"])
        else:
            raise ExportError(f"{folder / 'config.json'}: rope scaling {kind!r} is not supported "
                              "by this exporter (linear only)")
    return kv


def _bert_pooling(folder: Path) -> gguf.PoolingType:
    """Sentence-transformers pooling when the folder says so; mean pooling otherwise."""
    cfg = folder / "1_Pooling" / "config.json"
    if cfg.is_file():
        try:
            doc = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ExportError(f"{cfg}: unreadable pooling config ({exc})") from None
        if doc.get("pooling_mode_cls_token"):
            return gguf.PoolingType.CLS
    return gguf.PoolingType.MEAN


# --- tensor names and the q/k reordering ----------------------------------------------------

def _reorder_rotary_rows(n_head: int) -> Callable[[np.ndarray], np.ndarray]:
    """HF stores each head's rotary pairs as two halves; ggml interleaves them."""

    def apply(w: np.ndarray) -> np.ndarray:
        rows = w.shape[0]
        if rows % (2 * n_head):
            raise ExportError(f"cannot reorder {rows} rows into {n_head} rotary heads")
        half = rows // n_head // 2
        rest = w.shape[1:]
        return np.ascontiguousarray(
            w.reshape(n_head, 2, half, *rest).swapaxes(1, 2).reshape(w.shape))

    return apply


def _strip_prefix(name: str) -> list[str]:
    out = [name]
    for prefix in ("model.", "bert.", "transformer."):
        if name.startswith(prefix):
            out.append(name[len(prefix):])
    return out


def map_tensor_names(arch: str, tensor_names: list[str], n_blocks: int, config: dict,
                     folder: Path) -> Conversion:
    march = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2,
             "bert": gguf.MODEL_ARCH.BERT}[arch]
    tmap = gguf.get_tensor_name_map(march, n_blocks)
    names: dict[str, str | None] = {}
    skipped: list[str] = []
    for hf in tensor_names:
        if hf.endswith(_SKIP_SUFFIXES) or hf.startswith(_SKIP_PREFIXES):
            # the name map knows some of these (rotary buffers), but llama.cpp computes them
            names[hf] = None
            skipped.append(hf)
            continue
        target = None
        for candidate in _strip_prefix(hf):
            target = tmap.get_name(candidate, try_suffixes=(".weight", ".bias"))
            if target:
                break
        if target is None:
            raise ExportError(f"{folder}: tensor {hf!r} has no GGUF name for architecture "
                              f"{arch}; llama.cpp would not know what to do with it")
        names[hf] = target
    seen: dict[str, str] = {}
    for hf, g in names.items():
        if g is None:
            continue
        if g in seen:
            raise ExportError(f"{folder}: tensors {seen[g]!r} and {hf!r} both map to {g!r}")
        seen[g] = hf
    transforms: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    if arch == "llama":
        n_head = int(_need(config, "num_attention_heads", folder))
        n_head_kv = int(config.get("num_key_value_heads") or n_head)
        for g in seen:
            if g.endswith(("attn_q.weight", "attn_q.bias")):
                transforms[g] = _reorder_rotary_rows(n_head)
            elif g.endswith(("attn_k.weight", "attn_k.bias")):
                transforms[g] = _reorder_rotary_rows(n_head_kv)
    return Conversion(arch=arch, kv=[], names=names, transforms=transforms, skipped=skipped)


# --- tokenizer ------------------------------------------------------------------------------

def _read_json(path: Path) -> dict[str, Any]:
    return read_json(path, lambda p, problem: ExportError(f"{p}: {problem}"))


def _vocab_list(vocab: dict[str, int], added: list[dict], n_vocab: int | None,
                path: Path) -> list[str | None]:
    ids = dict(vocab)
    for a in added:
        if isinstance(a.get("content"), str) and isinstance(a.get("id"), int):
            ids[a["content"]] = a["id"]
    size = max(ids.values(), default=-1) + 1
    if n_vocab is not None and n_vocab > size:
        size = n_vocab  # the embedding matrix may have padding rows
    if size > 10_000_000:
        raise ExportError(f"{path}: vocabulary of {size} entries is implausible")
    tokens: list[str | None] = [None] * size
    for text, i in ids.items():
        if not isinstance(i, int) or not 0 <= i < size:
            raise ExportError(f"{path}: token {text!r} has invalid id {i!r}")
        tokens[i] = text
    return tokens


def tokenizer_kv(folder: Path, arch: str, n_vocab: int | None,
                 warnings: list[str] | None = None) -> list[KVItem]:
    """``tokenizer.ggml.*`` keys from tokenizer.json (or tokenizer.model via sentencepiece).

    Messages the user must see (a pre-tokenizer llama.cpp does not know) go to ``warnings``.
    """
    tj = folder / "tokenizer.json"
    if tj.is_file():
        doc = _read_json(tj)
        model = doc.get("model") or {}
        kind = model.get("type")
        if kind is None and "vocab" in model and "merges" in model:
            kind = "BPE"
        added = [a for a in doc.get("added_tokens") or [] if isinstance(a, dict)]
        if kind == "WordPiece":
            items = _wordpiece(model, added, n_vocab, tj)
        elif kind == "BPE":
            items = _bpe(model, added, n_vocab, tj, doc.get("pre_tokenizer"), warnings)
        elif kind == "Unigram":
            items = _unigram(model, added, n_vocab, tj)
        else:
            raise ExportError(f"{tj}: tokenizer model type {kind!r} is not supported "
                              "(BPE, WordPiece and Unigram are)")
        items += _special_ids(folder, doc, added)
        return items
    spm = folder / "tokenizer.model"
    if spm.is_file():
        items = _sentencepiece(spm, n_vocab)
        pieces = next(i.value for i in items if i.key == "tokenizer.ggml.tokens")
        # special tokens named in tokenizer_config.json resolve against the pieces
        doc = {"model": {"vocab": {p: i for i, p in enumerate(pieces)}}}
        return items + _special_ids(folder, doc, [])
    raise ExportError(f"{folder}: no tokenizer.json or tokenizer.model; llama.cpp needs a "
                      "vocabulary in the file")


def _types_for(tokens: list[str | None], added: list[dict]) -> tuple[list[str], list[int]]:
    special = {a["content"] for a in added if a.get("special")}
    user = {a["content"] for a in added if not a.get("special")}
    texts: list[str] = []
    types: list[int] = []
    for i, t in enumerate(tokens):
        if t is None:
            texts.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif t in special:
            texts.append(t)
            types.append(TokenType.CONTROL)
        elif t in user:
            texts.append(t)
            types.append(TokenType.USER_DEFINED)
        else:
            texts.append(t)
            types.append(TokenType.NORMAL)
    return texts, types


def _bpe(model: dict, added: list[dict], n_vocab: int | None, path: Path,
         pre_tokenizer: Any = None, warnings: list[str] | None = None) -> list[KVItem]:
    tokens = _vocab_list(model.get("vocab") or {}, added, n_vocab, path)
    texts, types = _types_for(tokens, added)
    merges = []
    for m in model.get("merges") or []:
        if isinstance(m, str):
            merges.append(m)
        elif isinstance(m, list) and len(m) == 2:
            merges.append(f"{m[0]} {m[1]}")
        else:
            raise ExportError(f"{path}: unreadable merge entry {m!r}")
    if model.get("byte_fallback"):
        # SentencePiece-style BPE (Llama 2, Mistral): llama.cpp's "llama" tokenizer, which
        # ranks merges by score, so earlier (more frequent) pieces score higher.
        scores = []
        for i, t in enumerate(texts):
            if types[i] == TokenType.NORMAL and len(t) == 6 and t.startswith("<0x") \
                    and t.endswith(">"):
                types[i] = TokenType.BYTE
            scores.append(0.0 if types[i] != TokenType.NORMAL else -float(i))
        unk = model.get("unk_token")
        if unk in texts:
            types[texts.index(unk)] = TokenType.UNKNOWN
        return [KVItem("tokenizer.ggml.model", "llama", VT.STRING),
                KVItem("tokenizer.ggml.tokens", texts, VT.ARRAY, VT.STRING),
                KVItem("tokenizer.ggml.scores", np.asarray(scores, np.float32), VT.ARRAY,
                       VT.FLOAT32),
                KVItem("tokenizer.ggml.token_type", np.asarray(types, np.int32), VT.ARRAY,
                       VT.INT32)]
    # llama.cpp splits words with the regexes of a named pre-tokenizer; pick the one whose
    # regexes are the tokenizer.json split, so both tokenize text the same way
    pre = detect_pre_tokenizer(pre_tokenizer)
    if pre.warning and warnings is not None:
        warnings.append(f"{path}: {pre.warning}")
    return [KVItem("tokenizer.ggml.model", "gpt2", VT.STRING),
            KVItem("tokenizer.ggml.pre", pre.name, VT.STRING),
            KVItem("tokenizer.ggml.tokens", texts, VT.ARRAY, VT.STRING),
            KVItem("tokenizer.ggml.token_type", np.asarray(types, np.int32), VT.ARRAY, VT.INT32),
            KVItem("tokenizer.ggml.merges", merges, VT.ARRAY, VT.STRING)]


def _wordpiece(model: dict, added: list[dict], n_vocab: int | None,
               path: Path) -> list[KVItem]:
    tokens = _vocab_list(model.get("vocab") or {}, added, n_vocab, path)
    texts, types = _types_for(tokens, added)
    out = []
    for t, ty in zip(texts, types, strict=True):
        # llama.cpp's WordPiece marks word starts with a leading "▁" instead of marking
        # continuations with "##"
        if ty == TokenType.NORMAL:
            is_bracketed = t.startswith("[") and t.endswith("]")
            if t.startswith("##"):
                t = t[2:]
            elif not is_bracketed:
                t = "\u2581" + t
        out.append(t)
    return [KVItem("tokenizer.ggml.model", "bert", VT.STRING),
            KVItem("tokenizer.ggml.pre", "default", VT.STRING),
            KVItem("tokenizer.ggml.tokens", out, VT.ARRAY, VT.STRING),
            KVItem("tokenizer.ggml.token_type", np.asarray(types, np.int32), VT.ARRAY, VT.INT32)]


def _unigram(model: dict, added: list[dict], n_vocab: int | None, path: Path) -> list[KVItem]:
    vocab = model.get("vocab") or []
    ids = {}
    scores_by_text = {}
    for i, entry in enumerate(vocab):
        if not (isinstance(entry, list) and len(entry) == 2):
            raise ExportError(f"{path}: unreadable Unigram entry {entry!r}")
        ids[entry[0]] = i
        scores_by_text[entry[0]] = float(entry[1])
    tokens = _vocab_list(ids, added, n_vocab, path)
    texts, types = _types_for(tokens, added)
    unk_id = model.get("unk_id")
    if isinstance(unk_id, int) and 0 <= unk_id < len(types):
        types[unk_id] = TokenType.UNKNOWN
    for i, t in enumerate(texts):
        if types[i] == TokenType.NORMAL and len(t) == 6 and t.startswith("<0x") and \
                t.endswith(">"):
            types[i] = TokenType.BYTE
    scores = [scores_by_text.get(t, 0.0) for t in texts]
    return [KVItem("tokenizer.ggml.model", "llama", VT.STRING),
            KVItem("tokenizer.ggml.tokens", texts, VT.ARRAY, VT.STRING),
            KVItem("tokenizer.ggml.scores", np.asarray(scores, np.float32), VT.ARRAY, VT.FLOAT32),
            KVItem("tokenizer.ggml.token_type", np.asarray(types, np.int32), VT.ARRAY, VT.INT32)]


def _sentencepiece(path: Path, n_vocab: int | None) -> list[KVItem]:
    try:
        import sentencepiece  # type: ignore[import-not-found]
    except ImportError:
        raise ExportError(f"{path}: reading tokenizer.model needs the sentencepiece package "
                          "(pip install sentencepiece), or put a tokenizer.json beside it") \
            from None
    sp = sentencepiece.SentencePieceProcessor()
    if not sp.Load(str(path)):
        raise ExportError(f"{path}: sentencepiece could not read the model")
    size = max(sp.vocab_size(), n_vocab or 0)
    texts, scores, types = [], [], []
    for i in range(size):
        if i >= sp.vocab_size():
            texts.append(f"[PAD{i}]")
            scores.append(-1000.0)
            types.append(TokenType.UNUSED)
            continue
        texts.append(sp.IdToPiece(i))
        scores.append(float(sp.GetScore(i)))
        if sp.IsUnknown(i):
            types.append(TokenType.UNKNOWN)
        elif sp.IsControl(i):
            types.append(TokenType.CONTROL)
        elif sp.IsUnused(i):
            types.append(TokenType.UNUSED)
        elif sp.IsByte(i):
            types.append(TokenType.BYTE)
        else:
            types.append(TokenType.NORMAL)
    items = [KVItem("tokenizer.ggml.model", "llama", VT.STRING),
             KVItem("tokenizer.ggml.tokens", texts, VT.ARRAY, VT.STRING),
             KVItem("tokenizer.ggml.scores", np.asarray(scores, np.float32), VT.ARRAY,
                    VT.FLOAT32),
             KVItem("tokenizer.ggml.token_type", np.asarray(types, np.int32), VT.ARRAY,
                    VT.INT32)]
    # the model's own special ids; tokenizer_config.json, when present, may refine them
    for key, tid in (("bos", sp.bos_id()), ("eos", sp.eos_id()), ("unknown", sp.unk_id()),
                     ("padding", sp.pad_id())):
        if 0 <= tid < size:
            items.append(KVItem(f"tokenizer.ggml.{key}_token_id", int(tid), VT.UINT32))
    return items


_SPECIAL_KEYS = {
    "bos_token": "tokenizer.ggml.bos_token_id",
    "eos_token": "tokenizer.ggml.eos_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id",
    "sep_token": "tokenizer.ggml.seperator_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id",
    "mask_token": "tokenizer.ggml.mask_token_id",
}


def _special_ids(folder: Path, doc: dict, added: list[dict]) -> list[KVItem]:
    """Special token ids from tokenizer_config.json, resolved against the vocabulary."""
    cfg_path = folder / "tokenizer_config.json"
    cfg = _read_json(cfg_path) if cfg_path.is_file() else {}
    vocab = dict((doc.get("model") or {}).get("vocab") or {}) \
        if isinstance((doc.get("model") or {}).get("vocab"), dict) else {}
    for a in added:
        if isinstance(a.get("content"), str) and isinstance(a.get("id"), int):
            vocab[a["content"]] = a["id"]
    out: list[KVItem] = []
    ids: dict[str, int] = {}
    for field_name, key in _SPECIAL_KEYS.items():
        text = token_content(cfg.get(field_name))
        if text is not None and text in vocab:
            ids[field_name] = vocab[text]
            out.append(KVItem(key, int(vocab[text]), VT.UINT32))
    # BERT-style models start with [CLS]; llama.cpp takes it as the BOS token
    cls_text = token_content(cfg.get("cls_token"))
    if "bos_token" not in ids and cls_text in vocab:
        out.append(KVItem("tokenizer.ggml.bos_token_id", int(vocab[cls_text]), VT.UINT32))
    for flag, key in (("add_bos_token", "tokenizer.ggml.add_bos_token"),
                      ("add_eos_token", "tokenizer.ggml.add_eos_token")):
        if isinstance(cfg.get(flag), bool):
            out.append(KVItem(key, cfg[flag], VT.BOOL))
    template = cfg.get("chat_template")
    if isinstance(template, str):
        out.append(KVItem("tokenizer.chat_template", template, VT.STRING))
    return out


# --- the whole conversion -------------------------------------------------------------------

def hf_conversion(folder: Path, config: dict, tensor_names: list[str],
                  tensor_shapes: dict[str, tuple[int, ...]]) -> Conversion:
    """Everything for a llama.cpp-runnable GGUF from a HF folder; ExportError if impossible."""
    model_type = config.get("model_type")
    arch = runnable_arch(model_type)
    if arch is None:
        raise ExportError(f"{folder}: architecture {model_type!r} is not one llama.cpp export "
                          f"supports ({', '.join(sorted(RUNNABLE_ARCHS))})")
    n_blocks = int(_need(config, "num_hidden_layers", folder))
    conv = map_tensor_names(arch, tensor_names, n_blocks, config, folder)
    n_vocab = None
    for hf, g in conv.names.items():
        if g == "token_embd.weight":
            n_vocab = int(tensor_shapes[hf][0])
    kv = [KVItem("general.architecture", arch, VT.STRING),
          KVItem("general.name", folder.name or "model", VT.STRING)]
    kv += hparams_kv(arch, config, folder)
    if arch != "bert" and n_vocab is not None:
        kv = [k for k in kv if k.key != f"{arch}.vocab_size"]
        kv.append(KVItem(f"{arch}.vocab_size", n_vocab, VT.UINT32))
    kv += tokenizer_kv(folder, arch, n_vocab, conv.warnings)
    conv.kv = kv
    return conv
