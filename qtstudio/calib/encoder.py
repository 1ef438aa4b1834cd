"""The bert-family encoder forward pass in torch, one block at a time; sentence embeddings.

Post-norm blocks (attention, add, LayerNorm; GELU MLP, add, LayerNorm), learned positions,
token type 0, padding masked out of attention. A sentence embedding is the mean of its final
token states over the real (unpadded) tokens, as sentence-transformers' mean pooling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .decoder import Observer
from .errors import CalibrationError
from .weights import Overrides, TensorAccess, WeightFn

if TYPE_CHECKING:
    import torch

    from qtstudio.core.model import Model

ENCODER_ARCHS = ("bert",)


@dataclass(frozen=True)
class EncoderSpec:
    n_layers: int
    hidden: int
    n_head: int
    eps: float
    max_positions: int

    @classmethod
    def from_model(cls, model: Model) -> EncoderSpec:
        if model.format == "gguf":
            meta = model.metadata

            def g(key: str):
                v = meta.get(f"bert.{key}")
                if v is None:
                    raise CalibrationError(model.path, f"GGUF metadata has no bert.{key}")
                return v

            return cls(int(g("block_count")), int(g("embedding_length")),
                       int(g("attention.head_count")), float(g("attention.layer_norm_epsilon")),
                       int(g("context_length")))
        c = model.config
        for key in ("num_hidden_layers", "hidden_size", "num_attention_heads"):
            if c.get(key) is None:
                raise CalibrationError(model.path, f"config.json has no {key}")
        return cls(int(c["num_hidden_layers"]), int(c["hidden_size"]),
                   int(c["num_attention_heads"]), float(c.get("layer_norm_eps", 1e-12)),
                   int(c.get("max_position_embeddings", 512)))


@dataclass
class EncoderInputs:
    """Padded token ids [sentences, length] and the mask of real tokens (bool)."""

    ids: np.ndarray
    mask: np.ndarray


def pad_sentences(token_lists: list[list[int]], cls_id: int | None, sep_id: int | None,
                  max_len: int) -> EncoderInputs:
    rows = []
    for ids in token_lists:
        body = ids[: max_len - (cls_id is not None) - (sep_id is not None)]
        rows.append(([cls_id] if cls_id is not None else []) + body
                    + ([sep_id] if sep_id is not None else []))
    t = max(len(r) for r in rows)
    ids = np.zeros((len(rows), t), dtype=np.int64)
    mask = np.zeros((len(rows), t), dtype=bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = True
    return EncoderInputs(ids, mask)


class EncoderEngine:
    kind = "encoder"

    def __init__(self, model: Model, *, weight_fn: WeightFn | None = None,
                 observer: Observer | None = None, batch_tokens: int = 4096) -> None:
        self.model = model
        self.spec = EncoderSpec.from_model(model)
        self.access = TensorAccess(model, weight_fn)
        self.observer = observer
        self.batch_tokens = max(1, int(batch_tokens))
        self._mask: torch.Tensor | None = None

    @property
    def n_blocks(self) -> int:
        return self.spec.n_layers

    def block_tensor_names(self, i: int) -> list[str]:
        prefix = f"blk.{i}."
        return sorted(n for n in self.access.by_gguf if n.startswith(prefix))

    def embed(self, inputs: EncoderInputs, overrides: Overrides | None = None) -> torch.Tensor:
        import torch

        ids = torch.from_numpy(inputs.ids)
        t = ids.shape[1]
        if t > self.spec.max_positions:
            raise CalibrationError(self.model.path, f"sentences of {t} tokens exceed the "
                                                    f"model's {self.spec.max_positions} positions")
        a = self.access
        x = a.tensor("token_embd.weight", overrides)[ids]
        x = x + a.tensor("position_embd.weight", overrides)[:t][None]
        types = a.optional("token_types.weight", overrides)
        if types is not None:
            x = x + types[0]
        self._mask = torch.from_numpy(inputs.mask)
        return torch.nn.functional.layer_norm(
            x, (x.shape[-1],), a.tensor("token_embd_norm.weight", overrides),
            a.optional("token_embd_norm.bias", overrides), self.spec.eps)

    def load_block(self, i: int, overrides: Overrides | None = None) -> dict[str, torch.Tensor]:
        return {n: self.access.tensor(n, overrides) for n in self.block_tensor_names(i)}

    def run_block(self, i: int, h: torch.Tensor, *, weights: dict[str, torch.Tensor] | None = None,
                  overrides: Overrides | None = None, observer: Observer | None = None,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
        """Block i on [sentences, length, hidden]; ``mask`` defaults to the last embed's."""
        import torch

        if weights is None:
            weights = self.load_block(i, overrides)
        else:
            weights = self.access.block_weights(weights, overrides)
        mask = mask if mask is not None else self._mask
        if mask is None:
            mask = torch.ones(h.shape[:2], dtype=torch.bool)
        obs = observer if observer is not None else self.observer
        step = max(1, self.batch_tokens // max(1, h.shape[1]))
        out = torch.empty_like(h)
        with torch.no_grad():
            for b0 in range(0, h.shape[0], step):
                out[b0:b0 + step] = self._block(i, h[b0:b0 + step], mask[b0:b0 + step],
                                                weights, obs)
        return out

    def _block(self, i: int, x: torch.Tensor, mask: torch.Tensor,
               w: dict[str, torch.Tensor], obs: Observer | None) -> torch.Tensor:
        import torch.nn.functional as F  # noqa: N812

        s = self.spec
        p = f"blk.{i}."

        def lin(name: str, v):
            if obs is not None:  # real tokens only: padding is not data
                obs(p + name + ".weight", v[mask])
            return F.linear(v, w[p + name + ".weight"], w.get(p + name + ".bias"))

        def norm(name: str, v):
            return F.layer_norm(v, (v.shape[-1],), w[p + name + ".weight"],
                                w.get(p + name + ".bias"), s.eps)

        b, t, d = x.shape
        hd = d // s.n_head
        q = lin("attn_q", x).view(b, t, s.n_head, hd).transpose(1, 2)
        k = lin("attn_k", x).view(b, t, s.n_head, hd).transpose(1, 2)
        v = lin("attn_v", x).view(b, t, s.n_head, hd).transpose(1, 2)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        att = att.transpose(1, 2).reshape(b, t, d)
        x = norm("attn_output_norm", x + lin("attn_output", att))
        up = F.gelu(lin("ffn_up", x))
        return norm("layer_output_norm", x + lin("ffn_down", up))

    def pool(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over real tokens: [sentences, hidden]."""
        mask = mask if mask is not None else self._mask
        m = mask.to(h.dtype)[..., None]
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)
