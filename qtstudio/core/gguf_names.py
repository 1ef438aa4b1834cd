"""Checkpoint tensor names -> GGUF tensor names, through the `gguf` package's name maps."""

from __future__ import annotations

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


class GGUFNamer:
    """Maps one model's tensor names; None where the map has no entry."""

    def __init__(self, architecture: str | None, n_blocks: int | None) -> None:
        self.arch = gguf_arch(architecture)
        self._map = (gguf.get_tensor_name_map(self.arch, max(n_blocks or 0, 1))
                     if self.arch is not None else None)

    @property
    def known(self) -> bool:
        return self._map is not None

    def __call__(self, name: str) -> str | None:
        if self._map is None:
            return None
        return self._map.get_name(name, try_suffixes=(".weight", ".bias"))
