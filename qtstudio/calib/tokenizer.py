"""The checkpoint's own tokenizer, so calibration tokens are the ones the model was trained on.

Hugging Face folders: ``tokenizer.json`` through the ``tokenizers`` package (or a SentencePiece
``tokenizer.model`` when that is all there is). GGUF files: the ``tokenizer.ggml.*`` metadata,
rebuilt as a ``tokenizers`` tokenizer: byte-level BPE (``gpt2``, with the split regexes of its
``tokenizer.ggml.pre`` name, as llama.cpp applies them), SentencePiece BPE (``llama``: merges
ranked by the merged piece's score, byte fallback) and WordPiece (``bert``). Text is encoded
without special tokens; the BOS token is the caller's business (see ``windows``), as it is in
llama.cpp's ``llama_tokenize(..., add_special=False)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtstudio.core.regular_files import ErrorFactory, json_object

from .errors import CalibrationError


@dataclass
class ModelTokenizer:
    """Text -> token ids, plus the special tokens calibration windows need."""

    encode_fn: Any
    source: Path
    bos_id: int | None = None
    eos_id: int | None = None
    #: whether the model expects BOS at the start of every context (llama.cpp's add_bos)
    add_bos: bool = False
    cls_id: int | None = None
    sep_id: int | None = None
    vocab_size: int | None = None

    def encode(self, text: str) -> list[int]:
        return list(self.encode_fn(text))


def model_folder(model) -> Path:
    return model.path if model.path.is_dir() else model.path.parent


def read_json(path: Path, error: ErrorFactory = CalibrationError) -> dict[str, Any]:
    """A tokenizer or config JSON file of a model folder, as an object."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(path, f"cannot read: {exc.strerror or exc}") from None
    return json_object(data, path, "the file", error)


def token_content(tok: Any) -> str | None:
    """The text of a special token as tokenizer_config.json spells it (a string, or an
    AddedToken object with "content")."""
    if isinstance(tok, str):
        return tok
    if isinstance(tok, dict) and isinstance(tok.get("content"), str):
        return tok["content"]
    return None


def load_tokenizer(model) -> ModelTokenizer:
    """The tokenizer of an opened model; a one-line CalibrationError when it has none."""
    if model.format == "gguf":
        return _from_gguf(model)
    return _from_folder(model_folder(model), model)


def _from_folder(folder: Path, model) -> ModelTokenizer:
    cfg_path = folder / "tokenizer_config.json"
    cfg = read_json(cfg_path) if cfg_path.is_file() else {}
    tj = folder / "tokenizer.json"
    if tj.is_file():
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(tj))
        except Exception as exc:  # the Rust side raises its own exception type
            raise CalibrationError(tj, f"not a tokenizer the tokenizers package reads "
                                       f"({str(exc).splitlines()[0] if str(exc) else exc})"
                                   ) from None

        def ids(name: str) -> int | None:
            text = token_content(cfg.get(name))
            return None if text is None else tok.token_to_id(text)

        out = ModelTokenizer(lambda s: tok.encode(s, add_special_tokens=False).ids, tj,
                             bos_id=ids("bos_token"), eos_id=ids("eos_token"),
                             cls_id=ids("cls_token") or tok.token_to_id("[CLS]"),
                             sep_id=ids("sep_token") or tok.token_to_id("[SEP]"),
                             vocab_size=tok.get_vocab_size())
        out.add_bos = bool(cfg.get("add_bos_token", False)) and out.bos_id is not None
        return out
    spm_path = folder / "tokenizer.model"
    if spm_path.is_file():
        try:
            import sentencepiece as spm
        except ImportError:
            raise CalibrationError(spm_path, "reading tokenizer.model needs the sentencepiece "
                                             "package (pip install sentencepiece)") from None
        try:
            proc = spm.SentencePieceProcessor(model_file=str(spm_path))
        except Exception as exc:
            raise CalibrationError(spm_path, f"not a SentencePiece model ({exc})") from None
        bos = proc.bos_id()
        return ModelTokenizer(lambda s: proc.encode(s), spm_path,
                              bos_id=bos if bos >= 0 else None,
                              eos_id=proc.eos_id() if proc.eos_id() >= 0 else None,
                              add_bos=bool(cfg.get("add_bos_token", True)) and bos >= 0,
                              vocab_size=proc.get_piece_size())
    raise CalibrationError(model.path, "the model has no tokenizer (no tokenizer.json or "
                                       "tokenizer.model beside it), so text cannot be turned "
                                       "into its tokens")


# --- GGUF metadata ---------------------------------------------------------------------------

def _from_gguf(model) -> ModelTokenizer:
    meta = model.metadata
    kind = meta.get("tokenizer.ggml.model")
    tokens = meta.get("tokenizer.ggml.tokens")
    if not isinstance(kind, str) or not isinstance(tokens, list) or not tokens:
        raise CalibrationError(model.path, "the GGUF file has no tokenizer (no "
                                           "tokenizer.ggml.model / tokenizer.ggml.tokens)")

    def special(key: str) -> int | None:
        v = meta.get(f"tokenizer.ggml.{key}_token_id")
        return int(v) if isinstance(v, int) and 0 <= v < len(tokens) else None

    if kind == "gpt2":
        tok = _gguf_bpe(model, tokens, meta)
        default_bos = False
    elif kind == "llama":
        tok = _gguf_spm(model, tokens, meta)
        default_bos = True
    elif kind == "bert":
        tok = _gguf_wordpiece(tokens)
        default_bos = False
    else:
        raise CalibrationError(model.path, f"GGUF tokenizer model {kind!r} is not supported "
                                           "(gpt2, llama and bert are)")
    # Control tokens are not matched in the text, as llama_tokenize(parse_special=False).
    add_bos = meta.get("tokenizer.ggml.add_bos_token")
    bos = special("bos")
    out = ModelTokenizer(lambda s: tok.encode(s, add_special_tokens=False).ids, model.path,
                         bos_id=bos, eos_id=special("eos"), vocab_size=len(tokens),
                         cls_id=special("cls") if special("cls") is not None else bos,
                         sep_id=special("seperator") if special("seperator") is not None
                         else special("sep") if special("sep") is not None else special("eos"))
    out.add_bos = (bool(add_bos) if isinstance(add_bos, bool) else default_bos) and bos is not None
    return out


def _gguf_bpe(model, tokens: list[str], meta: dict):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    from .bpe_pretokenizer import KNOWN_PRE_TOKENIZERS

    pre = meta.get("tokenizer.ggml.pre", "default")
    patterns = KNOWN_PRE_TOKENIZERS.get(pre if isinstance(pre, str) else "")
    if patterns is None:
        raise CalibrationError(model.path, f"GGUF pre-tokenizer {pre!r} is not one this tool "
                                           f"can reproduce ({', '.join(KNOWN_PRE_TOKENIZERS)})")
    merges_raw = meta.get("tokenizer.ggml.merges") or []
    merges = []
    for m in merges_raw:
        a, sep, b = str(m).partition(" ")
        if sep:
            merges.append((a, b))
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=pre == "llama-bpe"))
    steps = [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False) for p in patterns]
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    return tok


def _gguf_spm(model, tokens: list[str], meta: dict):
    from tokenizers import Tokenizer, decoders, models, normalizers

    scores = meta.get("tokenizer.ggml.scores")
    if scores is None or len(scores) != len(tokens):
        raise CalibrationError(model.path, "SentencePiece GGUF tokenizer without one score per "
                                           "token (tokenizer.ggml.scores)")
    scores = [float(s) for s in scores]
    vocab = {t: i for i, t in enumerate(tokens)}
    # SentencePiece BPE merges the pair whose result scores highest; as ranked merges that is
    # every (left, right) split of a piece, ordered by the piece's score.
    ranked = []
    for piece, pid in vocab.items():
        for k in range(1, len(piece)):
            a, b = piece[:k], piece[k:]
            if a in vocab and b in vocab:
                ranked.append((-scores[pid], vocab[a], vocab[b], a, b))
    ranked.sort()
    merges = [(a, b) for _, _, _, a, b in ranked]
    unk = next((t for t in tokens if t == "<unk>"), None)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, fuse_unk=True,
                               unk_token=unk))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                           normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    return tok


def _gguf_wordpiece(tokens: list[str]):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    # llama.cpp's WordPiece vocabulary marks word starts with "▁"; tokenizers marks
    # continuations with "##": convert back.
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        if t.startswith("\u2581"):
            key = t[1:]
        elif t.startswith("[") and t.endswith("]"):
            key = t
        else:
            key = "##" + t
        vocab.setdefault(key, i)
    unk = "[UNK]" if "[UNK]" in vocab else next(iter(vocab))
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token=unk))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tok

