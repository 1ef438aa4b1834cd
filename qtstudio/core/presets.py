"""llama-quantize's mixtures (file types), re-derived so plans match its choices tensor by tensor.

The choice per tensor follows llama_tensor_get_type in llama.cpp's src/llama-quant.cpp: a default
type per file type, then adjustments by tensor category (attn_v, ffn_down, attn_output, output,
token_embd, fused qkv), layer position (use_more_bits), grouped-query attention, expert count and
architecture. The counters that give a tensor its layer position advance only for tensors that
reach the mixture logic, exactly as they do there (tensors taken by a manual rule skip it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from .roles import block_index

if TYPE_CHECKING:
    from .model import Model, TensorInfo


@dataclass(frozen=True)
class Preset:
    name: str
    #: LLAMA_FTYPE value written to general.file_type
    ftype: int
    #: the type most quantizable tensors get
    default: str
    description: str

    @property
    def quantized(self) -> bool:
        return self.default not in ("F32", "F16", "BF16")


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("Q4_0", 2, "Q4_0", "4.5 bpw legacy, output Q6_K"),
    Preset("Q4_1", 3, "Q4_1", "5.0 bpw legacy, output Q6_K"),
    Preset("Q5_0", 8, "Q5_0", "5.5 bpw legacy, output Q6_K"),
    Preset("Q5_1", 9, "Q5_1", "6.0 bpw legacy, output Q6_K"),
    Preset("Q8_0", 7, "Q8_0", "8.5 bpw, nearly lossless"),
    Preset("Q2_K", 10, "Q2_K", "smallest k-quant mix: Q2_K with Q3_K/Q4_K attn_v, ffn_down"),
    Preset("Q3_K_S", 11, "Q3_K", "Q3_K throughout"),
    Preset("Q3_K_M", 12, "Q3_K", "Q3_K; Q4_K/Q5_K for attn_v, ffn_down, attn_output"),
    Preset("Q3_K_L", 13, "Q3_K", "Q3_K; Q5_K for attn_v, ffn_down, attn_output"),
    Preset("Q4_K_S", 14, "Q4_K", "Q4_K; Q5_K for the first attn_v and ffn_down"),
    Preset("Q4_K_M", 15, "Q4_K", "Q4_K; Q6_K for half of attn_v and ffn_down"),
    Preset("Q5_K_S", 16, "Q5_K", "Q5_K throughout"),
    Preset("Q5_K_M", 17, "Q5_K", "Q5_K; Q6_K for half of attn_v and ffn_down"),
    Preset("Q6_K", 18, "Q6_K", "Q6_K throughout"),
    Preset("F16", 1, "F16", "half precision"),
    Preset("BF16", 32, "BF16", "bfloat16"),
    Preset("F32", 0, "F32", "no quantization"),
)}

# Smallest compatible type when a tensor's rows do not split into the asked-for blocks.
SHAPE_FALLBACK = {
    "Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0",
    "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
    "IQ4_XS": "IQ4_NL", "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "IQ2_XXS": "IQ4_NL",
    "IQ2_XS": "IQ4_NL", "IQ2_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL",
}


class Category(Enum):
    TOKEN_EMBD = "token_embd"
    ATTN_Q = "attn_q"
    ATTN_K = "attn_k"
    ATTN_V = "attn_v"
    ATTN_QKV = "attn_qkv"
    ATTN_KV_B = "attn_kv_b"
    ATTN_OUTPUT = "attn_output"
    FFN_UP = "ffn_up"
    FFN_GATE = "ffn_gate"
    FFN_DOWN = "ffn_down"
    OUTPUT = "output"
    OTHER = "other"


# Checkpoint-name spellings for models whose GGUF names are unknown.
_HF_CATEGORY = (
    (("lm_head.weight",), Category.OUTPUT),
    (("embed_tokens.", "wte.", "word_embeddings.", "tok_embeddings."), Category.TOKEN_EMBD),
    (("qkv_proj.", "c_attn.", "query_key_value.", "Wqkv."), Category.ATTN_QKV),
    (("kv_b_proj.",), Category.ATTN_KV_B),
    (("v_proj.", ".value.", "attention.wv."), Category.ATTN_V),
    (("k_proj.", ".key.", "attention.wk."), Category.ATTN_K),
    (("q_proj.", ".query.", "attention.wq."), Category.ATTN_Q),
    (("o_proj.", "out_proj.", "attention.wo.", "attn.c_proj.", "attention.dense."),
     Category.ATTN_OUTPUT),
    (("up_proj", "w3.", "c_fc.", "fc1."), Category.FFN_UP),
    (("gate_proj", "w1."), Category.FFN_GATE),
    (("down_proj", "w2.", "mlp.c_proj.", "fc2."), Category.FFN_DOWN),
)


def category_of(info: TensorInfo) -> Category:
    g = info.gguf_name
    if g is not None:
        if g in ("output.weight",):
            return Category.OUTPUT
        if g in ("token_embd.weight", "per_layer_token_embd.weight"):
            return Category.TOKEN_EMBD
        for key, cat in (("attn_qkv.weight", Category.ATTN_QKV),
                         ("attn_kv_b.weight", Category.ATTN_KV_B),
                         ("attn_v.weight", Category.ATTN_V), ("attn_k.weight", Category.ATTN_K),
                         ("attn_q.weight", Category.ATTN_Q),
                         ("attn_output.weight", Category.ATTN_OUTPUT),
                         ("ffn_up", Category.FFN_UP), ("ffn_gate", Category.FFN_GATE),
                         ("ffn_down", Category.FFN_DOWN)):
            if key in g:
                return cat
        return Category.OTHER
    for keys, cat in _HF_CATEGORY:
        if any(k in info.name for k in keys):
            # Layer roles only mean something inside repeated blocks (a plain MLP's "fc2" is
            # not a transformer's ffn_down).
            if info.block_index is None and cat not in (Category.OUTPUT, Category.TOKEN_EMBD):
                return Category.OTHER
            return cat
    return Category.OTHER


def _is_attn_v(cat: Category) -> bool:
    return cat in (Category.ATTN_V, Category.ATTN_QKV, Category.ATTN_KV_B)


def use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's layer pattern for the extra-bits tensors (C integer arithmetic)."""
    d = i - n // 8
    c_mod = d - 3 * int(d / 3)  # C's % truncates toward zero
    return i < n // 8 or i >= 7 * n // 8 or c_mod == 2


def _block_size(name: str) -> int:
    from .encodings import get_encoding
    return get_encoding(name).elements_per_block


def _llama_order_key(info: TensorInfo) -> tuple[int, str]:
    """llama.cpp walks tensors sorted by layer number, then by name."""
    if info.gguf_name is not None:
        name = info.gguf_name
        b = block_index(name) if name.startswith("blk.") else None
    else:
        # No GGUF name: the checkpoint's block number stands in for llama.cpp's "blk.N".
        name, b = info.name, info.block_index
    return (-1 if b is None else b, name)


class Mixture:
    """State for one pass of the preset logic over a model (the counters llama.cpp keeps)."""

    def __init__(self, model: Model, preset: Preset, *, has_imatrix: bool = False) -> None:
        self.model = model
        self.preset = preset
        self.has_imatrix = has_imatrix
        self.arch = (model.architecture or "").lower()
        cats = [category_of(t) for t in model.tensors]
        self.n_attention_wv = sum(1 for c in cats if _is_attn_v(c))
        self.has_tied_embeddings = Category.OUTPUT not in cats
        n_layer = model.n_blocks or 0
        self.n_ffn_down = self.n_ffn_gate = self.n_ffn_up = n_layer
        self.i_attention_wv = self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0
        n_head, n_head_kv = model.n_head, model.n_head_kv
        self.n_gqa = n_head // n_head_kv if n_head and n_head_kv else 1
        self.n_expert = max(1, model.n_expert)
        self.n_expert_raw = model.n_expert
        # llama.cpp calls an 80-block llama-family model a 70B and treats its attn_v specially.
        self.is_70b = n_layer == 80 and self.arch in ("llama", "mistral", "qwen2")

    @staticmethod
    def order(model: Model) -> list[TensorInfo]:
        return sorted(model.tensors, key=_llama_order_key)

    def _layer(self, counter: int, n: int, info: TensorInfo) -> tuple[int, int]:
        if self.n_expert > 1:
            b = info.block_index
            if b is None or not 0 <= b < n:
                raise ValueError(f"cannot tell the layer of expert tensor {info.name}")
            return b, n
        return counter, n

    def choose(self, info: TensorInfo, new: str, *, output_type: str | None = None) -> str:
        """The mixture's type for a quantizable tensor whose starting type is ``new``."""
        ft = self.preset.name
        falcon = self.arch == "falcon"
        cat = category_of(info)
        if cat == Category.OUTPUT or (self.has_tied_embeddings and cat == Category.TOKEN_EMBD):
            if output_type is not None:
                return output_type
            nx = info.shape[-1]
            if falcon or nx % _block_size(new):
                return "Q8_0"
            return "Q6_K" if new != "Q8_0" else new
        if cat == Category.TOKEN_EMBD:
            return new
        if _is_attn_v(cat):
            i, n = self.i_attention_wv, self.n_attention_wv
            if ft == "Q2_K":
                new = "Q4_K" if self.n_gqa >= 4 else "Q3_K"
            elif ft == "Q3_K_M":
                new = "Q5_K" if i < 2 else "Q4_K"
            elif ft == "Q3_K_L":
                new = "Q5_K"
            elif ft in ("Q4_K_M", "Q5_K_M") and use_more_bits(i, n):
                new = "Q6_K"
            elif ft == "Q4_K_S" and i < 4:
                new = "Q5_K"
            if self.is_70b and new in ("Q3_K", "Q4_K"):
                new = "Q5_K"
            if self.n_expert_raw == 8:
                new = "Q8_0"
            self.i_attention_wv += 1
            return new
        if cat == Category.ATTN_K:
            return "Q8_0" if self.n_expert_raw == 8 else new
        if cat == Category.FFN_DOWN:
            i, n = self._layer(self.i_ffn_down, self.n_ffn_down, info)
            if ft == "Q2_K":
                new = "Q3_K"
            elif ft == "Q3_K_M":
                new = ("Q5_K" if i < n // 16
                       else "Q4_K" if not falcon or use_more_bits(i, n) else "Q3_K")
            elif ft == "Q3_K_L":
                new = "Q4_K" if falcon else "Q5_K"
            elif ft == "Q4_K_M":
                if falcon:
                    new = ("Q6_K" if i < n // 16
                           else "Q5_K" if use_more_bits(i, n) else "Q4_K")
                elif use_more_bits(i, n):
                    new = "Q6_K"
            elif ft == "Q5_K_M" and use_more_bits(i, n):
                new = "Q6_K"
            elif ft == "Q4_K_S" and not falcon and i < n // 8:
                new = "Q5_K"
            elif ft in ("Q4_0", "Q5_0") and self.has_imatrix and i < n // 8:
                new = "Q4_1" if ft == "Q4_0" else "Q5_1"
            self.i_ffn_down += 1
            return new
        if cat == Category.ATTN_OUTPUT:
            if not falcon:
                if self.n_expert_raw == 8:
                    if ft in ("Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M"):
                        new = "Q5_K"
                elif ft == "Q2_K":
                    new = "Q3_K"
                elif ft == "Q3_K_M":
                    new = "Q4_K"
                elif ft == "Q3_K_L":
                    new = "Q5_K"
            elif ft == "Q3_K_L":
                new = "Q4_K"
            return new
        if cat == Category.ATTN_QKV:
            if ft in ("Q3_K_M", "Q3_K_L"):
                return "Q4_K"
            if ft == "Q4_K_M":
                return "Q5_K"
            if ft == "Q5_K_M":
                return "Q6_K"
            return new
        if cat == Category.FFN_GATE:
            self.i_ffn_gate += 1
        elif cat == Category.FFN_UP:
            self.i_ffn_up += 1
        return new


def shape_fallback(encoding: str, shape: tuple[int, ...]) -> tuple[str, str | None]:
    """(type that fits, reason or None) — llama-quantize's fallback, then F16 as a last resort."""
    from .encodings import get_encoding
    enc = get_encoding(encoding)
    if enc.accepts_shape(shape):
        return enc.name, None
    ncols = shape[-1] if shape else 0
    alt = SHAPE_FALLBACK.get(enc.name)
    why = f"row length {ncols} is not a multiple of {enc.name}'s block of {enc.elements_per_block}"
    if alt is not None:
        try:
            alt_enc = get_encoding(alt)
        except ValueError:
            alt_enc = None
        if alt_enc is not None and alt_enc.accepts_shape(shape):
            return alt_enc.name, why
    return "F16", why
