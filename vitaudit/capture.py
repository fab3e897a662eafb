"""Forward hooks that read a model's own internals without changing what it computes.

- :class:`AttentionCapture` rebuilds each block's attention from the block's *own* q and k
  (hooked at ``attn.q_norm`` / ``attn.k_norm``, which every timm ``Attention`` calls), so it
  works with timm's fused attention on (``F.scaled_dot_product_attention`` never materialises
  the matrix) and never flips the global fused-attention switch. It keeps only what maps
  need: the CLS row of every layer and head, and the per-layer attention-rollout factors
  (head-fused, B x N x N) until the maps are read.
- :class:`LayerCapture` turns a layer's output into a leaf that requires grad, so a later
  ``torch.autograd.grad`` with respect to it alone stops there and computes no weight grads.
  The layers before it run without autograd bookkeeping.

The seed notebook replaced each block's ``forward`` (moving ``norm1`` after the residual): its
maps came from a different network. Hooks here only observe; tests check logits bitwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class RolloutConfig:
    """Attention rollout options (Abnar & Zuidema 2020)."""

    head_fusion: str = "mean"  # mean | max | min over heads
    discard_ratio: float = 0.0  # share of the lowest fused attentions dropped per layer


def fuse_heads(attn: torch.Tensor, how: str) -> torch.Tensor:
    """(..., heads, N, N) -> (..., N, N)."""
    if how == "mean":
        return attn.mean(dim=-3)
    if how == "max":
        return attn.amax(dim=-3)
    if how == "min":
        return attn.amin(dim=-3)
    raise ValueError(f"head_fusion must be mean, max or min, not {how!r}")


def rollout_factor(fused: torch.Tensor, config: RolloutConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's rollout factor D^-1 (F + I), kept as (F, row sums of F + I).

    F is the head-fused attention with the lowest ``discard_ratio`` share dropped, I the
    identity for the residual connection, D the row sums that renormalise the rows. Keeping
    F and the sums (instead of the renormalised matrix) saves two passes over N x N per layer;
    :meth:`AttentionRecord.rollout_row` applies the factor to a row vector directly.
    """
    if config.discard_ratio > 0:
        shape = fused.shape
        flat = fused.reshape(-1, shape[-1] * shape[-1]).clone()
        k = int(flat.shape[-1] * config.discard_ratio)
        if k > 0:
            idx = flat.topk(k, dim=-1, largest=False).indices
            # As in the reference implementation (jacobgil/vit-explain): never drop CLS->CLS.
            keep = idx == 0
            vals = torch.gather(flat, 1, idx)
            flat.scatter_(1, idx, torch.where(keep, vals, torch.zeros_like(vals)))
        fused = flat.reshape(shape)
    return fused, fused.sum(dim=-1) + 1.0


@dataclass
class AttentionRecord:
    """What one forward left behind (per batch)."""

    cls_rows: list[torch.Tensor] = field(default_factory=list)  # per layer: (B, heads, N) float32
    # per layer: the fused attention F (B, N, N) and the row sums of F + I (B, N)
    steps: dict[RolloutConfig, list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)

    def rollout_row(self, config: RolloutConfig, token: int = 0) -> torch.Tensor:
        """Row ``token`` of the rollout A_L ... A_1 with A_l = D_l^-1 (F_l + I), as (B, N).

        Computed from the last layer backwards as a row vector times each factor
        (v A = (v / d) F + v / d), which costs N^2 per layer instead of the N^3 of
        multiplying the full matrices.
        """
        steps = self.steps[config]
        row = torch.zeros_like(steps[-1][1])
        row[:, token] = 1.0
        for fused, sums in reversed(steps):
            w = row / sums
            row = torch.bmm(w.unsqueeze(1), fused).squeeze(1) + w
        return row


def attention_blocks(model: nn.Module) -> list[nn.Module]:
    """The attention modules of a timm VisionTransformer, checked for the parts the hooks use."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise TypeError("attention methods need a timm VisionTransformer (no .blocks)")
    out = []
    for i, blk in enumerate(blocks):
        attn = getattr(blk, "attn", None)
        if attn is None or not all(hasattr(attn, a) for a in ("q_norm", "k_norm", "num_heads", "scale")):
            raise TypeError(f"block {i} has no timm Attention with q_norm/k_norm; attention methods cannot read it")
        out.append(attn)
    return out


class AttentionCapture:
    """Context manager: hooks on every block that record CLS attention rows and rollouts."""

    #: Bytes of attention matrices computed at once when rollouts need whole matrices.
    CHUNK_BYTES = 2 * 2**20

    def __init__(self, model: nn.Module, rollouts: tuple[RolloutConfig, ...] = (), cls_token: int = 0):
        self.attns = attention_blocks(model)
        self.rollout_configs = tuple(dict.fromkeys(rollouts))
        self.cls_token = cls_token
        self.record = AttentionRecord()
        self._handles: list[Any] = []
        self._q: dict[int, torch.Tensor] = {}
        self._mask: dict[int, Any] = {}

    def __enter__(self) -> "AttentionCapture":
        for i, attn in enumerate(self.attns):
            self._handles.append(attn.register_forward_pre_hook(self._pre_hook(i), with_kwargs=True))
            self._handles.append(attn.q_norm.register_forward_hook(self._q_hook(i)))
            self._handles.append(attn.k_norm.register_forward_hook(self._k_hook(i)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._q.clear()
        self._mask.clear()

    def _pre_hook(self, i: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            self._mask[i] = (kwargs.get("attn_mask"), bool(kwargs.get("is_causal", False)))

        return hook

    def _q_hook(self, i: int):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            self._q[i] = out.detach()

        return hook

    def _k_hook(self, i: int):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            with torch.no_grad():
                self._layer(i, self._q.pop(i), out.detach())

        return hook

    def _layer(self, i: int, q: torch.Tensor, k: torch.Tensor) -> None:
        attn_mod = self.attns[i]
        q = q.float()
        k = k.float()
        scale = float(attn_mod.scale)
        bias = self._bias(i, q.shape[-2], q)
        if not self.rollout_configs:
            # Only the class token's row: O(N) per head instead of O(N^2).
            logits = (q[:, :, self.cls_token : self.cls_token + 1] * scale) @ k.transpose(-2, -1)
            if bias is not None:
                logits = logits + bias[..., self.cls_token : self.cls_token + 1, :]
            self.record.cls_rows.append(logits.softmax(dim=-1)[:, :, 0])
            return
        # In chunks of images whose (heads, N, N) matrices fit in cache together: one image at a
        # time for ViT-B (over twice as fast on a CPU as one batched pass), many at once for
        # small models, where per-image calls would cost more than the arithmetic.
        b_all, heads, n = q.shape[0], q.shape[1], q.shape[-2]
        chunk = max(1, self.CHUNK_BYTES // max(1, heads * n * n * 4))
        rows = []
        factors: dict[RolloutConfig, list[tuple[torch.Tensor, torch.Tensor]]] = {cfg: [] for cfg in self.rollout_configs}
        for b in range(0, b_all, chunk):
            logits = torch.matmul(q[b : b + chunk], k[b : b + chunk].transpose(-2, -1)).mul_(scale)
            if bias is not None:
                logits = logits + (bias[b : b + chunk] if bias.dim() == 4 and bias.shape[0] == b_all else bias)
            attn = logits.softmax(dim=-1)  # (chunk, heads, N, N)
            rows.append(attn[:, :, self.cls_token])
            for cfg in self.rollout_configs:
                factors[cfg].append(rollout_factor(fuse_heads(attn, cfg.head_fusion), cfg))
        self.record.cls_rows.append(torch.cat(rows))
        for cfg, per_chunk in factors.items():
            fused, sums = zip(*per_chunk)
            self.record.steps.setdefault(cfg, []).append((torch.cat(fused), torch.cat(sums)))

    def _bias(self, i: int, n: int, like: torch.Tensor) -> torch.Tensor | None:
        mask, causal = self._mask.get(i, (None, False))
        if mask is None and not causal:
            return None
        from timm.layers.attention import resolve_self_attn_mask

        bias = resolve_self_attn_mask(n, like, mask, causal)
        return None if bias is None else bias.float()


class LayerCapture:
    """Context manager: the output of ``module`` becomes a grad-requiring leaf (see module doc).

    Use inside ``torch.no_grad()``: the hook switches autograd on from this layer onwards,
    and leaving the ``no_grad`` block restores the caller's mode. The leaf keeps the layer's
    own shape (ViT tokens stay tokens; :class:`ForwardContext` reshapes them to maps).
    """

    def __init__(self, module: nn.Module, name: str = ""):
        self.module = module
        self.name = name
        self.leaf: torch.Tensor | None = None
        self._handle: Any = None

    def __enter__(self) -> "LayerCapture":
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: nn.Module, args: tuple, out: Any) -> torch.Tensor:
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"layer {self.name or type(module).__name__} returns {type(out).__name__}, not a tensor; choose another target layer")
        if self.leaf is not None:
            raise RuntimeError(f"layer {self.name} runs twice in one forward; choose a layer that runs once")
        leaf = out.detach().requires_grad_(True)
        self.leaf = leaf
        torch.set_grad_enabled(True)
        # A clone, so in-place operations downstream never touch the leaf.
        return leaf.clone()
