"""Which llama.cpp pre-tokenizer (``tokenizer.ggml.pre``) a byte-level BPE tokenizer.json needs.

llama.cpp splits text into words with a fixed set of regexes per named pre-tokenizer before it
applies the BPE merges; the Hugging Face tokenizer splits with whatever its ``pre_tokenizer``
says. If the two disagree, digit runs, contractions and whitespace come out as different
tokens. llama.cpp's own converter recognises a tokenizer by hashing the ids of a check text,
which only knows the exact released vocabularies; here the pre_tokenizer's structure (its Split
patterns, the ByteLevel regex and Digits settings, in order) is compared with the patterns each
llama.cpp name stands for, so a retrained or resized vocabulary is recognised too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The patterns below are those the tokenizer.json files of the model families carry; llama.cpp
# (src/llama-vocab.cpp) applies an equivalent regex list for each name.
_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"

#: the regex of the ByteLevel pre-tokenizer with use_regex=true (GPT-2's)
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

LLAMA3_PATTERN = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Qwen2 differs from Llama 3 only in taking digits one at a time
QWEN2_PATTERN = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

_UPPER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]"
_LOWER = r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"

# Mistral's Tekken: case-aware words, single digits, no contraction rule
_WORD_LEAD = r"[^\r\n\p{L}\p{N}]?"
TEKKEN_PATTERN = (f"{_WORD_LEAD}{_UPPER}*{_LOWER}+|{_WORD_LEAD}{_UPPER}+{_LOWER}*"
                  r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# GPT-4o / Llama 4: Tekken's words with optional contraction suffixes and digit runs of 3
GPT4O_PATTERN = (f"{_WORD_LEAD}{_UPPER}*{_LOWER}+{_CONTRACTIONS}?"
                 f"|{_WORD_LEAD}{_UPPER}+{_LOWER}*{_CONTRACTIONS}?"
                 r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

_CJK_CODER = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"

_DEEPSEEK_V3_WORDS = ('[!"#$%&' r"'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+"
                      r"|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*"
                      r"|\s*[\r\n]+|\s+(?!\S)|\s+")

#: tokenizer.ggml.pre name -> the split steps, in order, that tokenizer.json holds for it
#: (a Digits step is written as the regex it amounts to)
KNOWN_PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    "gpt-2": (GPT2_PATTERN,),
    "llama-bpe": (LLAMA3_PATTERN,),
    "qwen2": (QWEN2_PATTERN,),
    "tekken": (TEKKEN_PATTERN,),
    "gpt-4o": (GPT4O_PATTERN,),
    # StarCoder-style: every digit alone, then GPT-2's split
    "starcoder": (r"\p{N}", GPT2_PATTERN),
    "deepseek-coder": (r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK_CODER, r"\p{N}"),
    "deepseek-v3": (r"\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
                    _DEEPSEEK_V3_WORDS),
}

# Spellings that mean the same regex: llama.cpp's regex engine has no inline (?i:...) group,
# so some files and llama.cpp itself spell the contractions out case by case.
_EQUIVALENT_SPELLINGS = (
    (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])", _CONTRACTIONS),
    (r"\p{N}{1}", r"\p{N}"),
    (r"\d{1,3}", r"\p{N}{1,3}"),
)


def canonical_pattern(pattern: str) -> str:
    """The pattern with trivial spelling differences removed, for comparison only."""
    # a JSON file may carry real control characters where another carries their escapes
    out = pattern.replace("\r", r"\r").replace("\n", r"\n").replace("\t", r"\t")
    for spelled, canon in _EQUIVALENT_SPELLINGS:
        out = out.replace(spelled, canon)
    return out


@dataclass(frozen=True)
class PreTokenizerChoice:
    """What to write as ``tokenizer.ggml.pre`` and, when it is a fallback, why."""

    name: str
    warning: str | None = None


@dataclass
class _Steps:
    patterns: list[str]
    byte_level: bool = False
    #: what makes the split unlike any llama.cpp one
    problems: list[str] = field(default_factory=list)
    #: what llama.cpp will do differently even with the matching name
    notes: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.problems.append(text)


def _collect(pt: Any, steps: _Steps) -> None:
    if pt is None:
        return
    if not isinstance(pt, dict):
        steps.problem(f"unreadable pre_tokenizer entry {pt!r}")
        return
    kind = pt.get("type")
    if kind == "Sequence":
        for sub in pt.get("pretokenizers") or []:
            _collect(sub, steps)
    elif kind == "Split":
        pattern = pt.get("pattern") or {}
        if isinstance(pattern, dict) and isinstance(pattern.get("Regex"), str):
            steps.patterns.append(canonical_pattern(pattern["Regex"]))
        elif isinstance(pattern, dict) and isinstance(pattern.get("String"), str):
            steps.patterns.append("literal:" + pattern["String"])
        else:
            steps.problem(f"Split without a readable pattern ({pattern!r})")
        # llama.cpp keeps every piece of text as its own word and never drops or merges text
        if pt.get("behavior", "Isolated") != "Isolated" or pt.get("invert"):
            steps.problem(f"Split behaviour {pt.get('behavior')!r}"
                          f"{' inverted' if pt.get('invert') else ''} (llama.cpp isolates)")
    elif kind == "ByteLevel":
        steps.byte_level = True
        if pt.get("use_regex", True):
            steps.patterns.append(canonical_pattern(GPT2_PATTERN))
        if pt.get("add_prefix_space"):
            steps.notes.append("ByteLevel add_prefix_space (llama.cpp adds no leading space to BPE "
                          "input)")
    elif kind == "Digits":
        steps.patterns.append(r"\p{N}" if pt.get("individual_digits") else r"\p{N}+")
    else:
        steps.patterns.append(f"type:{kind}")


_CANONICAL_TABLE = {name: tuple(canonical_pattern(p) for p in pats)
                    for name, pats in KNOWN_PRE_TOKENIZERS.items()}


def detect_pre_tokenizer(pre_tokenizer: Any) -> PreTokenizerChoice:
    """The llama.cpp pre-tokenizer name for a tokenizer.json ``pre_tokenizer`` entry.

    Falls back to ``"default"`` with a warning when the split is not one llama.cpp knows.
    """
    steps = _Steps(patterns=[])
    _collect(pre_tokenizer, steps)
    found = tuple(steps.patterns)
    name = next((n for n, pats in _CANONICAL_TABLE.items() if pats == found), None)
    if name is not None and steps.byte_level and not steps.problems:
        if steps.notes:
            return PreTokenizerChoice(name, f"tokenizer.ggml.pre set to {name!r}, but llama.cpp "
                                            f"will differ: {'; '.join(steps.notes)}")
        return PreTokenizerChoice(name)
    if not steps.byte_level:
        why = "it is not byte-level BPE"
    elif steps.problems:
        why = "; ".join(steps.problems)
    else:
        shown = " then ".join(p if len(p) <= 60 else p[:57] + "..." for p in found) or "none"
        why = f"its split ({shown}) matches none of {', '.join(KNOWN_PRE_TOKENIZERS)}"
    return PreTokenizerChoice(
        "default", f"tokenizer.ggml.pre set to 'default': {why}; llama.cpp may split digits, "
                   "contractions and whitespace differently from the Hugging Face tokenizer")
