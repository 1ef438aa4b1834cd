"""Checkpoint tensor names -> GGUF tensor names, through the `gguf` package's name maps."""

from __future__ import annotations

import re

import gguf

# Hugging Face `model_type` values whose GGUF architecture has a different name.
_HF_ALIASES = {
    "mistral": "llama",
    "mixtral": "llama",
    "gpt_neox": "gptneox",
    "qwen2_moe": "qwen2moe",
    "qwen3_moe": "qwen3moe",
    "phimoe": "phimoe",
    "gpt_bigcode": "starcoder",
    "cohere": "command-r",
    "stablelm_epoch": "stablelm",
    "persimmon": "persimmon",
    "falcon": "falcon",
    "RefinedWeb": "falcon",
    "RefinedWebModel": "falcon",
    "internlm2": "internlm2",
    "gemma3_text": "gemma3",
    "modernbert": "modern-bert",
    "olmo2": "olmo2",
}

_BY_NAME = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}


def gguf_arch(architecture: str | None) -> gguf.MODEL_ARCH | None:
    """The gguf MODEL_ARCH for a config.json model_type or a GGUF general.architecture."""
    if not architecture:
        return None
    key = _HF_ALIASES.get(architecture, architecture)
    return _BY_NAME.get(key) or _BY_NAME.get(key.replace("_", "-")) or _BY_NAME.get(
        key.replace("_", ""))


#: blocks the gguf package's map is built for; it costs ~1 ms per block, so deeper blocks are
#: named through block 0 (the same answer for every text architecture, checked in the tests)
MAP_BLOCKS = 64
_BLOCK = re.compile(r"(?:^|\.)([0-9]+)(?:\.|$)")


def _replace_block(name: str, new: str) -> tuple[str, str | None]:
    """``name`` with its first numeric segment replaced by ``new``, and that segment."""
    m = _BLOCK.search(name)
    if m is None:
        return name, None
    return name[:m.start(1)] + new + name[m.end(1):], m.group(1)


class GGUFNamer:
    """Maps one model's tensor names; None where the map has no entry.

    The cost does not grow with the block count, so a header or a name that claims billions
    of layers cannot stall opening the model.
    """

    def __init__(self, architecture: str | None, n_blocks: int | None) -> None:
        self.arch = gguf_arch(architecture)
        size = min(max(n_blocks or 0, 1), MAP_BLOCKS)
        self._map = gguf.get_tensor_name_map(self.arch, size) if self.arch is not None else None

    @property
    def known(self) -> bool:
        return self._map is not None

    def __call__(self, name: str) -> str | None:
        if self._map is None:
            return None
        suffixes = (".weight", ".bias")
        probe, block = _replace_block(name, "0")
        if block is None or (len(block) <= 2 and int(block) < MAP_BLOCKS):
            return self._map.get_name(name, try_suffixes=suffixes)
        # A deep block: name it as block 0, then put its number back.
        got = self._map.get_name(probe, try_suffixes=suffixes)
        if got is None:
            return None
        named, zero = _replace_block(got, block)
        if zero is None:
            return got  # a name shared by every block (e.g. rope_freqs)
        return named if zero == "0" else None
