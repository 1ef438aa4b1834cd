"""A block-by-block torch forward of Hugging Face llama-family checkpoints, for GPTQ.

GPTQ quantizes block i on the inputs block i really sees once blocks < i are quantized, so the
forward runs one decoder block at a time over every calibration window: only that block's
weights are in memory (read from the memory-mapped checkpoint by name), and the hidden states of
the calibration set are the only thing carried from block to block. Covers the llama layout
(llama, mistral, qwen2 with its q/k/v biases): RMSNorm, rotary embedding in the checkpoint's
(Hugging Face) q/k row order, grouped-query attention with a causal mask, SwiGLU MLP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from qtstudio.core.model import Model

SUPPORTED = ("llama", "mistral", "qwen2")
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
#: linears whose inputs are computed one group after another (the earlier group quantized)
SEQUENTIAL_GROUPS = (("q_proj", "k_proj", "v_proj"), ("o_proj",), ("gate_proj", "up_proj"),
                     ("down_proj",))


class BlockModelError(ValueError):
    """The checkpoint is not one this forward runs."""


def linear_name(block: int, short: str) -> str:
    part = "self_attn" if short in ATTN else "mlp"
    return f"model.layers.{block}.{part}.{short}.weight"


@dataclass(frozen=True)
class LlamaShape:
    hidden: int
    n_layers: int
    n_head: int
    n_kv: int
    head_dim: int
    eps: float
    theta: float
    tied: bool

    @classmethod
    def of(cls, model: Model) -> LlamaShape:
        cfg = model.config or {}
        arch = cfg.get("model_type")
        if arch not in SUPPORTED:
            raise BlockModelError(
                f"{model.path}: GPTQ calibration runs llama, mistral and qwen2 checkpoints "
                f"(Hugging Face folders); this one is {arch or 'of unknown architecture'}")
        scaling = cfg.get("rope_scaling")
        if scaling and (scaling.get("rope_type") or scaling.get("type")) not in (None, "default"):
            raise BlockModelError(f"{model.path}: rope scaling {scaling!r} is not supported")
        hidden = int(cfg["hidden_size"])
        n_head = int(cfg["num_attention_heads"])
        return cls(hidden=hidden, n_layers=int(cfg["num_hidden_layers"]), n_head=n_head,
                   n_kv=int(cfg.get("num_key_value_heads") or n_head),
                   head_dim=int(cfg.get("head_dim") or hidden // n_head),
                   eps=float(cfg.get("rms_norm_eps", 1e-6)),
                   theta=float(cfg.get("rope_theta", 10000.0)),
                   tied="lm_head.weight" not in model)


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


#: called with (short linear name, its input rows [tokens, in]) for every linear the block runs
Observer = Callable[[str, torch.Tensor], None]


class LlamaBlocks:
    """Embedding, one decoder block at a time, and the head, over [windows, ctx] token ids."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.shape = LlamaShape.of(model)
        if "model.embed_tokens.weight" not in model:
            raise BlockModelError(f"{model.path}: no model.embed_tokens.weight")

    def _w(self, name: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.model.load(name), np.float32))

    def embed(self, tokens: np.ndarray) -> torch.Tensor:
        emb = self._w("model.embed_tokens.weight")
        ids = torch.as_tensor(np.asarray(tokens, np.int64))
        if int(ids.max()) >= emb.shape[0] or int(ids.min()) < 0:
            raise BlockModelError("calibration token ids fall outside the embedding table")
        return emb[ids]

    def load_block(self, i: int) -> dict[str, torch.Tensor]:
        p = f"model.layers.{i}."
        out = {"input_layernorm": self._w(p + "input_layernorm.weight"),
               "post_attention_layernorm": self._w(p + "post_attention_layernorm.weight")}
        for short in ATTN + MLP:
            out[short] = self._w(linear_name(i, short))
            bias = linear_name(i, short)[:-len("weight")] + "bias"
            if bias in self.model:
                out[short + ".bias"] = self._w(bias)
        return out

    def _rope(self, ctx: int) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.shape.head_dim
        inv = 1.0 / (self.shape.theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        ang = torch.outer(torch.arange(ctx, dtype=torch.float32), inv)
        ang = torch.cat((ang, ang), dim=-1)
        return ang.cos(), ang.sin()

    def run_block(self, weights: Mapping[str, torch.Tensor], h: torch.Tensor,
                  observer: Observer | None = None) -> torch.Tensor:
        """One decoder block over hidden states [windows, ctx, hidden]."""
        s = self.shape
        nw, ctx, _ = h.shape
        cos, sin = self._rope(ctx)
        mask = torch.full((ctx, ctx), float("-inf")).triu(1)

        def lin(short: str, x: torch.Tensor) -> torch.Tensor:
            if observer is not None:
                observer(short, x.reshape(-1, x.shape[-1]))
            y = x @ weights[short].T
            b = weights.get(short + ".bias")
            return y + b if b is not None else y

        out = torch.empty_like(h)
        for w0 in range(nw):  # one window at a time keeps the attention scores small
            x = h[w0]
            a = _rms(x, weights["input_layernorm"], s.eps)
            q = lin("q_proj", a).view(ctx, s.n_head, s.head_dim).transpose(0, 1)
            k = lin("k_proj", a).view(ctx, s.n_kv, s.head_dim).transpose(0, 1)
            v = lin("v_proj", a).view(ctx, s.n_kv, s.head_dim).transpose(0, 1)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            rep = s.n_head // s.n_kv
            k = k.repeat_interleave(rep, dim=0)
            v = v.repeat_interleave(rep, dim=0)
            att = torch.softmax(q @ k.transpose(1, 2) / s.head_dim ** 0.5 + mask, dim=-1)
            o = (att @ v).transpose(0, 1).reshape(ctx, s.n_head * s.head_dim)
            x = x + lin("o_proj", o)
            m = _rms(x, weights["post_attention_layernorm"], s.eps)
            g = lin("gate_proj", m)
            x = x + lin("down_proj", torch.nn.functional.silu(g) * lin("up_proj", m))
            out[w0] = x
        return out

    def head_input(self, h: torch.Tensor) -> torch.Tensor:
        return _rms(h, self._w("model.norm.weight"), self.shape.eps)

    @property
    def head_name(self) -> str:
        return "model.embed_tokens.weight" if self.shape.tied else "lm_head.weight"

    def logits(self, h: torch.Tensor, head: torch.Tensor | None = None) -> torch.Tensor:
        w = head if head is not None else self._w(self.head_name)
        return self.head_input(h) @ w.T
