"""The llama / mistral / qwen2 forward pass in torch, one block at a time.

Grouped-query attention with rotary embeddings (Hugging Face's half-split layout; a GGUF llama
file's interleaved q/k rows are put back first), RMSNorm, SwiGLU MLP, the q/k/v biases of qwen2,
tied embeddings, Llama 3 / linear rope scaling and Mistral's sliding window. Everything runs in
float32; window batches bound the activation memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CalibrationError
from .weights import Overrides, TensorAccess, WeightFn, round_activations

if TYPE_CHECKING:
    import torch

    from qtstudio.core.model import Model

#: observer(tensor GGUF name, input activations [tokens, in_features]) for every matmul
Observer = Callable[[str, "torch.Tensor"], None]

DECODER_ARCHS = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}
LINEARS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


@dataclass(frozen=True)
class DecoderSpec:
    family: str
    n_layers: int
    hidden: int
    n_head: int
    n_kv: int
    head_dim: int
    eps: float
    rope_theta: float
    rope_scaling: dict[str, Any] | None
    sliding_window: int | None
    #: the file is a GGUF llama: q/k rows interleaved for ggml's rotary embedding
    gguf_rotary_rows: bool

    @classmethod
    def from_model(cls, model: Model) -> DecoderSpec:
        arch = DECODER_ARCHS.get(model.architecture or "")
        if arch is None:
            raise CalibrationError(model.path, f"architecture {model.architecture!r} is not one "
                                               "the evaluator runs (llama, mistral, qwen2, "
                                               "bert, the demo MLP)")
        if model.n_expert:
            raise CalibrationError(model.path, "mixture-of-experts models are not evaluated yet")
        if model.format == "gguf":
            meta, a = model.metadata, model.architecture

            def g(key: str, default: Any = None) -> Any:
                v = meta.get(f"{a}.{key}", default)
                if v is None:
                    raise CalibrationError(model.path, f"GGUF metadata has no {a}.{key}")
                return v

            hidden = int(g("embedding_length"))
            n_head = int(model.n_head or g("attention.head_count"))
            head_dim = int(meta.get(f"{a}.attention.key_length") or hidden // n_head)
            scaling = None
            stype = meta.get(f"{a}.rope.scaling.type")
            if stype == "linear":
                scaling = {"rope_type": "linear",
                           "factor": float(meta.get(f"{a}.rope.scaling.factor", 1.0))}
            elif stype not in (None, "none"):
                raise CalibrationError(model.path, f"rope scaling {stype!r} is not supported")
            return cls(arch, int(model.n_blocks or g("block_count")), hidden, n_head,
                       int(model.n_head_kv or n_head), head_dim,
                       float(g("attention.layer_norm_rms_epsilon")),
                       float(meta.get(f"{a}.rope.freq_base", 10000.0)), scaling,
                       None, a == "llama")
        c = model.config

        def need(key: str) -> Any:
            if c.get(key) is None:
                raise CalibrationError(model.path, f"config.json has no {key}")
            return c[key]

        hidden = int(need("hidden_size"))
        n_head = int(need("num_attention_heads"))
        scaling = c.get("rope_scaling")
        if isinstance(scaling, dict):
            kind = scaling.get("rope_type", scaling.get("type"))
            if kind in (None, "default"):
                scaling = None
            elif kind not in ("linear", "llama3"):
                raise CalibrationError(model.path, f"rope scaling {kind!r} is not supported")
        else:
            scaling = None
        theta = c.get("rope_theta")
        if theta is None and isinstance(c.get("rope_parameters"), dict):
            theta = c["rope_parameters"].get("rope_theta")
        sw = c.get("sliding_window") if c.get("use_sliding_window", True) else None
        return cls(arch, int(need("num_hidden_layers")), hidden, n_head,
                   int(c.get("num_key_value_heads") or n_head),
                   int(c.get("head_dim") or hidden // n_head),
                   float(c.get("rms_norm_eps", 1e-6)), float(theta or 10000.0), scaling,
                   int(sw) if isinstance(sw, int) else None, False)


def _unpermute(n_head: int) -> Callable[[np.ndarray], np.ndarray]:
    """Undo the exporter's q/k row interleave (ggml's rotary pairs -> HF's two halves)."""

    def apply(w: np.ndarray) -> np.ndarray:
        half = w.shape[0] // n_head // 2
        rest = w.shape[1:]
        return np.ascontiguousarray(
            w.reshape(n_head, half, 2, *rest).swapaxes(1, 2).reshape(w.shape))

    return apply


def _rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    import torch

    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


class DecoderEngine:
    """A causal language model evaluated block-major (see the package docstring)."""

    kind = "decoder"

    def __init__(self, model: Model, *, weight_fn: WeightFn | None = None,
                 observer: Observer | None = None, batch_tokens: int = 4096,
                 activation_rounding: dict[str, str] | None = None) -> None:
        self.model = model
        #: GGUF name -> how llama.cpp rounds that matmul's input (weights.activation_rounding);
        #: empty: float32 activations (the weights alone decide the error)
        self.activation_rounding = dict(activation_rounding or {})
        self.spec = DecoderSpec.from_model(model)
        s = self.spec
        transforms = {}
        if s.gguf_rotary_rows:
            for i in range(s.n_layers):
                for kind, heads in (("attn_q", s.n_head), ("attn_k", s.n_kv)):
                    transforms[f"blk.{i}.{kind}.weight"] = _unpermute(heads)
                    transforms[f"blk.{i}.{kind}.bias"] = _unpermute(heads)
        self.access = TensorAccess(model, weight_fn, transforms)
        self.observer = observer
        self.batch_tokens = max(1, int(batch_tokens))
        self._rope_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if not self.access.has("token_embd.weight"):
            raise CalibrationError(model.path, "no token embedding tensor (token_embd.weight / "
                                               "model.embed_tokens.weight)")

    @property
    def n_blocks(self) -> int:
        return self.spec.n_layers

    @property
    def vocab_size(self) -> int:
        return int(self.access.info("token_embd.weight").shape[0])

    # --- tensor names ---------------------------------------------------------------------
    def block_tensor_names(self, i: int) -> list[str]:
        """GGUF names of block i's tensors that the model holds."""
        prefix = f"blk.{i}."
        return sorted(n for n in self.access.by_gguf if n.startswith(prefix))

    def linear_names(self, i: int) -> list[str]:
        return [f"blk.{i}.{k}.weight" for k in LINEARS]

    @property
    def head_name(self) -> str:
        return "output.weight" if self.access.has("output.weight") else "token_embd.weight"

    # --- the pass -------------------------------------------------------------------------
    def embed(self, tokens: np.ndarray, overrides: Overrides | None = None) -> torch.Tensor:
        """[windows, ctx] token ids -> [windows, ctx, hidden] activations."""
        import torch

        ids = torch.from_numpy(np.asarray(tokens, dtype=np.int64))
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise CalibrationError(self.model.path, f"token id {int(ids.max())} is outside the "
                                                    f"model's vocabulary of {self.vocab_size}")
        table = self.access.tensor("token_embd.weight", overrides)
        out = table[ids]
        del table
        return out

    def load_block(self, i: int, overrides: Overrides | None = None) -> dict[str, torch.Tensor]:
        """Block i's weights (weight function and overrides applied), keyed by GGUF name."""
        if not 0 <= i < self.n_blocks:
            raise IndexError(f"block {i} of {self.n_blocks}")
        return {n: self.access.tensor(n, overrides) for n in self.block_tensor_names(i)}

    def run_block(self, i: int, h: torch.Tensor, *, weights: dict[str, torch.Tensor] | None = None,
                  overrides: Overrides | None = None,
                  observer: Observer | None = None) -> torch.Tensor:
        """Block i on activations h [windows, ctx, hidden]; returns new activations.

        ``weights`` (from :meth:`load_block`) saves reloading when a block runs several times;
        ``overrides`` then replace single tensors of it (stored layout, GGUF names).
        """
        import torch

        if weights is None:
            weights = self.load_block(i, overrides)
        else:
            weights = self.access.block_weights(weights, overrides)
        obs = observer if observer is not None else self.observer
        w_count, t_count = h.shape[0], h.shape[1]
        step = max(1, self.batch_tokens // max(1, t_count))
        out = torch.empty_like(h)
        with torch.no_grad():
            for b0 in range(0, w_count, step):
                out[b0:b0 + step] = self._block(i, h[b0:b0 + step], weights, obs)
        return out

    def _linear(self, name: str, x: torch.Tensor, weights: dict[str, torch.Tensor],
                obs: Observer | None) -> torch.Tensor:
        import torch

        if obs is not None:
            obs(name, x.reshape(-1, x.shape[-1]))
        kind = self.activation_rounding.get(name)
        if kind is not None:
            x = round_activations(x, kind)
        bias = weights.get(name[: -len("weight")] + "bias")
        return torch.nn.functional.linear(x, weights[name], bias)

    def _block(self, i: int, x: torch.Tensor, w: dict[str, torch.Tensor],
               obs: Observer | None) -> torch.Tensor:
        import torch
        import torch.nn.functional as F  # noqa: N812

        s = self.spec
        p = f"blk.{i}."
        b, t, _ = x.shape
        a = _rms_norm(x, w[p + "attn_norm.weight"], s.eps)
        q = self._linear(p + "attn_q.weight", a, w, obs)
        k = self._linear(p + "attn_k.weight", a, w, obs)
        v = self._linear(p + "attn_v.weight", a, w, obs)
        q = q.view(b, t, s.n_head, s.head_dim).transpose(1, 2)
        k = k.view(b, t, s.n_kv, s.head_dim).transpose(1, 2)
        v = v.view(b, t, s.n_kv, s.head_dim).transpose(1, 2)
        cos, sin = self._rope(t)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if s.n_kv != s.n_head:
            k = k.repeat_interleave(s.n_head // s.n_kv, dim=1)
            v = v.repeat_interleave(s.n_head // s.n_kv, dim=1)
        if s.sliding_window is not None and t > s.sliding_window:
            pos = torch.arange(t)
            mask = (pos[None, :] <= pos[:, None]) & (pos[:, None] - pos[None, :] <
                                                     s.sliding_window)
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        att = att.transpose(1, 2).reshape(b, t, s.n_head * s.head_dim)
        x = x + self._linear(p + "attn_output.weight", att, w, obs)
        m = _rms_norm(x, w[p + "ffn_norm.weight"], s.eps)
        gate = self._linear(p + "ffn_gate.weight", m, w, obs)
        up = self._linear(p + "ffn_up.weight", m, w, obs)
        return x + self._linear(p + "ffn_down.weight", F.silu(gate) * up, w, obs)

    def _rope(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        if t in self._rope_cache:
            return self._rope_cache[t]
        s = self.spec
        inv = 1.0 / (s.rope_theta ** (torch.arange(0, s.head_dim, 2, dtype=torch.float64)
                                      / s.head_dim))
        if self.access.has("rope_freqs.weight"):  # GGUF Llama 3: per-frequency divisors
            inv = inv / self.access.tensor("rope_freqs.weight").to(torch.float64)
        elif s.rope_scaling is not None and s.rope_scaling.get(
                "rope_type", s.rope_scaling.get("type")) == "llama3":
            inv = _llama3_inv_freq(inv, s.rope_scaling)
        pos = torch.arange(t, dtype=torch.float64)
        if s.rope_scaling is not None and s.rope_scaling.get(
                "rope_type", s.rope_scaling.get("type")) == "linear":
            pos = pos / float(s.rope_scaling.get("factor", 1.0))
        ang = torch.outer(pos, inv)
        ang = torch.cat([ang, ang], dim=-1)
        out = (ang.cos().to(torch.float32), ang.sin().to(torch.float32))
        self._rope_cache[t] = out
        return out

    def load_head(self, overrides: Overrides | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(output norm weight, output matrix [vocab, hidden])."""
        return (self.access.tensor("output_norm.weight", overrides),
                self.access.tensor(self.head_name, overrides))

    def logits(self, h: torch.Tensor, head: tuple[torch.Tensor, torch.Tensor],
               observer: Observer | None = None) -> torch.Tensor:
        """Final norm and output matrix on activations [n, hidden] -> logits [n, vocab]."""
        import torch

        norm, out = head
        with torch.no_grad():
            x = _rms_norm(h, norm, self.spec.eps)
            if observer is not None:
                observer(self.head_name if self.head_name == "output.weight" else
                         "output.weight", x.reshape(-1, x.shape[-1]))
            kind = self.activation_rounding.get(self.head_name)
            if kind is not None:
                x = round_activations(x, kind)
            return x @ out.T


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    import torch

    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def _llama3_inv_freq(inv: torch.Tensor, cfg: dict[str, Any]) -> torch.Tensor:
    """Llama 3.1's frequency-dependent rope scaling (long wavelengths divided by ``factor``)."""
    import torch

    factor = float(cfg.get("factor", 8.0))
    low = float(cfg.get("low_freq_factor", 1.0))
    high = float(cfg.get("high_freq_factor", 4.0))
    old = float(cfg.get("original_max_position_embeddings", 8192))
    wavelen = 2 * math.pi / inv
    low_wl, high_wl = old / low, old / high
    smooth = (old / wavelen - low) / (high - low)
    mid = (1 - smooth) * inv / factor + smooth * inv
    return torch.where(wavelen > low_wl, inv / factor, torch.where(wavelen < high_wl, inv, mid))
