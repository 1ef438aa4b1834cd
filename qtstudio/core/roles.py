"""What each tensor is for: role, block index, and whether llama-quantize would quantize it.

The quantizable test follows llama-quantize's rules (names ending in "weight", two or more real
dimensions, no norms, no expert router, no position or token-type embeddings, and the small
special tensors it leaves alone). It is applied to the GGUF name when the architecture is known,
because that is the name llama-quantize sees, and to the checkpoint's own name otherwise.
"""

from __future__ import annotations

import re

ROLES = ("linear", "embedding", "norm", "bias", "conv", "other")

# Substrings that make a GGUF-named weight stay unquantized in llama-quantize.
_GGUF_KEEP_FLOAT = (
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
    "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
    "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight",
    "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight",
    "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight",
    "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
    ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd",
    ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
)  # fmt: skip
_GGUF_KEEP_FLOAT_EXACT = ("position_embd.weight", "token_types.weight")

# The same ideas spelled the way Hugging Face / PyTorch checkpoints name things, for models
# whose architecture the gguf name maps do not know.
_HF_KEEP_FLOAT = re.compile(
    r"(norm|(^|\.)ln(_?\w*)?\.|position_embeddings|token_type_embeddings|(^|\.)wpe\.|"
    r"pos_embed|rel_pos|(^|\.)router\.|block_sparse_moe\.gate\.|mlp\.gate\.weight$)",
    re.IGNORECASE,
)
_NORM = re.compile(r"(norm|(^|\.)ln(_\w+|\d+)?\.(weight|bias)$|(^|\.)ln_f\.)", re.IGNORECASE)
_EMBED = re.compile(r"(embed|(^|\.)wte\.|(^|\.)wpe\.|token_types|tok_embeddings)", re.IGNORECASE)
_BLOCK = re.compile(r"(?:^|\.)([0-9]+)(?:\.|$)")
#: block numbers at or above this are not layer numbers but damage: no model has that many
#: layers, and a count sized from such a number would make every per-layer table huge
MAX_BLOCKS = 65536

FLOAT_DTYPES = frozenset({"F32", "F16", "BF16", "F64"})


def effective_rank(shape: tuple[int, ...]) -> int:
    """Dimensions that count for ggml: leading size-1 axes (ggml's trailing ones) are dropped."""
    dims = list(shape)
    while len(dims) > 1 and dims[0] == 1:
        dims.pop(0)
    return len(dims)


def block_index(name: str) -> int | None:
    """The repeated-block (layer) number: the first purely numeric segment of the dotted name.

    None when there is none, or when it is too large to be a layer number (checked on the
    digits, before any conversion, so a thousand-digit segment costs nothing).
    """
    m = _BLOCK.search(name)
    if m is None:
        return None
    digits = m.group(1).lstrip("0") or "0"
    if len(digits) > len(str(MAX_BLOCKS)):
        return None
    b = int(digits)
    return b if b < MAX_BLOCKS else None


def role_of(name: str, shape: tuple[int, ...], gguf_name: str | None = None) -> str:
    probe = gguf_name or name
    rank = effective_rank(shape)
    if probe.endswith("bias") or name.endswith(".bias"):
        return "norm" if _NORM.search(name) or "_norm" in probe else "bias"
    if _NORM.search(name) or "_norm." in probe or probe.endswith("_norm"):
        return "norm"
    if _EMBED.search(probe) or (gguf_name and "embd" in gguf_name):
        return "embedding"
    if rank >= 3 and ("conv" in name.lower() or rank == 4):
        return "conv"
    if rank >= 2:
        return "linear"
    return "other"


def is_quantizable(name: str, shape: tuple[int, ...], dtype: str,
                   gguf_name: str | None = None) -> bool:
    """llama-quantize's test: would this tensor be quantized in a mixture?"""
    if effective_rank(shape) < 2:
        return False
    if dtype in {"I8", "I16", "I32", "I64", "U8", "BOOL"}:
        return False
    if gguf_name is not None:
        if not gguf_name.endswith("weight"):
            return False
        if gguf_name in _GGUF_KEEP_FLOAT_EXACT:
            return False
        return not any(s in gguf_name for s in _GGUF_KEEP_FLOAT)
    if not name.endswith("weight"):
        return False
    return not _HF_KEEP_FLOAT.search(name)
