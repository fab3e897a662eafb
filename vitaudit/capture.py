"""Forward hooks that read a model's own internals without changing what it computes.

- :class:`AttentionCapture` reads each attention module's softmax as the module itself
  computes it: inside the module a ``TorchFunctionMode`` sees the q, k and mask handed to
  ``F.scaled_dot_product_attention`` (after q/k norms, rotary embeddings, relative position
  biases), or the output of the module's own ``softmax`` on its unfused path. So it works with
  fused attention on (the kernel never materialises the matrix), for every family whose
  attention ends in a softmax, and never flips a fused-attention switch. It keeps only what
  maps need: the CLS row of every layer and head, and the per-layer attention-rollout factors
  (head-fused, B x N x N) until the maps are read.
- :class:`LayerCapture` turns a layer's output into a leaf that requires grad, so a later
  ``torch.autograd.grad`` with respect to it alone stops there and computes no weight grads.
  The layers before it run without autograd bookkeeping.
- :class:`ClassRowGradient` narrows that graph further for a ViT whose head reads only the class
  token: the last block's attention projection and MLP record autograd for the class row alone.

The seed notebook replaced each block's ``forward`` (moving ``norm1`` after the residual): its
maps came from a different network. Hooks here only observe; tests check logits bitwise against
the bare model run in the same autograd mode (torch may pick other kernels with autograd on).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode


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


_SOFTMAX = (torch.softmax, torch.Tensor.softmax, F.softmax)


class _Probe(TorchFunctionMode):
    """Sees every torch call inside one attention module; hands the attention ones to the capture.

    Each call runs unchanged (the module's own arguments, its own kernel): the probe only
    reads ``F.scaled_dot_product_attention``'s q, k, mask and scale, or a softmax's output.
    """

    def __init__(self, owner: "AttentionCapture"):
        super().__init__()
        self.owner = owner

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is F.scaled_dot_product_attention:
            self.owner._from_sdpa(*args, **kwargs)
        elif func in _SOFTMAX and isinstance(out, torch.Tensor) and out.dim() == 4:
            self.owner._from_probs(out)
        return out


def _sdpa_bias(q: torch.Tensor, k: torch.Tensor, attn_mask: Any = None, is_causal: bool = False) -> torch.Tensor | None:
    """The additive bias ``F.scaled_dot_product_attention`` applies for these arguments (float32)."""
    bias = None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:  # True: may attend
            bias = torch.zeros(attn_mask.shape, device=q.device).masked_fill_(~attn_mask, float("-inf"))
        else:
            bias = attn_mask.float()
    if is_causal:
        n, m = q.shape[-2], k.shape[-2]
        causal = torch.ones(n, m, dtype=torch.bool, device=q.device).tril(diagonal=m - n)
        c = torch.zeros(n, m, device=q.device).masked_fill_(~causal, float("-inf"))
        bias = c if bias is None else bias + c
    return bias


class AttentionCapture:
    """Context manager: records the class token's attention row (and rollout factors) of each
    attention module named in ``paths``, in the order they run.

    Inside each of those modules a :class:`torch.overrides.TorchFunctionMode` watches the torch
    calls: a fused ``F.scaled_dot_product_attention`` hands over the q and k it was given
    (after any q/k norm and rotary embedding) and its mask (relative position bias, ALiBi-like
    biases, causal), from which the softmax is recomputed exactly as the kernel defines it; an
    unfused module's own ``softmax`` output is read as it is. Either way the module runs its
    usual code on its usual path, so the logits are bitwise the plain model's (in the same autograd
    mode). ``class_attention``:
    the modules' only query is the class token (CaiT), not a full self-attention.
    """

    #: Bytes of attention matrices computed at once when rollouts need whole matrices.
    CHUNK_BYTES = 2 * 2**20

    def __init__(self, model: nn.Module, rollouts: tuple[RolloutConfig, ...] = (), cls_token: int = 0,
                 paths: tuple[str, ...] | None = None, class_attention: bool = False):
        if paths is None:
            paths = tuple(f"blocks.{i}.attn" for i in range(len(getattr(model, "blocks", ()))))
        if not paths:
            raise TypeError("this model has no attention modules to read")
        self.paths = paths
        self.attns = [model.get_submodule(p) for p in paths]
        self.rollout_configs = tuple(dict.fromkeys(rollouts))
        self.cls_token = cls_token
        self.class_attention = class_attention
        self.record = AttentionRecord()
        self._handles: list[Any] = []
        self._probe = _Probe(self)
        self._active: int | None = None
        self._seen = False

    def __enter__(self) -> "AttentionCapture":
        for i, attn in enumerate(self.attns):
            self._handles.append(attn.register_forward_pre_hook(self._pre_hook(i)))
            self._handles.append(attn.register_forward_hook(self._post_hook(i)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._leave()

    def _leave(self) -> None:
        if self._active is not None:
            self._active = None
            self._probe.__exit__(None, None, None)

    def _pre_hook(self, i: int):
        def hook(module: nn.Module, args: tuple) -> None:
            self._leave()
            self._seen = False
            self._active = i
            self._probe.__enter__()

        return hook

    def _post_hook(self, i: int):
        def hook(module: nn.Module, args: tuple, out: Any) -> None:
            self._leave()
            if not self._seen:
                raise RuntimeError(f"attention module {self.paths[i]} ran without a softmax attention vitaudit can read")

        return hook

    def _claim(self) -> bool:
        """True for the first attention computation of the running module (one per module call)."""
        if self._active is None or self._seen:
            return False
        self._seen = True
        return True

    def _from_sdpa(self, q: torch.Tensor, k: torch.Tensor, v: Any = None, attn_mask: Any = None,
                   dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None, **_: Any) -> None:
        if not self._claim():
            return
        with torch.no_grad():
            q = q.detach().float()
            k = k.detach().float()
            if k.shape[-3] != q.shape[-3]:  # grouped-query attention: each k head serves several q heads
                k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
            s = float(scale) if scale is not None else q.shape[-1] ** -0.5
            bias = _sdpa_bias(q, k, attn_mask, is_causal)
            self._layer(q, k, s, bias)

    def _from_probs(self, probs: torch.Tensor) -> None:
        if not self._claim():
            return
        with torch.no_grad():
            self._layer_probs(probs.detach().float())

    def _query(self) -> int:
        return 0 if self.class_attention else self.cls_token

    def _layer(self, q: torch.Tensor, k: torch.Tensor, scale: float, bias: torch.Tensor | None) -> None:
        c = self._query()
        if not self.rollout_configs or self.class_attention:
            # Only the class token's row: O(N) per head instead of O(N^2).
            logits = (q[:, :, c : c + 1] * scale) @ k.transpose(-2, -1)
            if bias is not None:
                logits = logits + bias[..., c : c + 1, :] if bias.shape[-2] > 1 else logits + bias
            self._layer_probs(logits.softmax(dim=-1), row_only=True)
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
                if bias.dim() == 4 and bias.shape[0] > 1:
                    bias_b = bias[b : b + chunk]
                else:
                    bias_b = bias
                logits = logits + bias_b
            attn = logits.softmax(dim=-1)  # (chunk, heads, N, N)
            rows.append(attn[:, :, c])
            for cfg in self.rollout_configs:
                factors[cfg].append(rollout_factor(fuse_heads(attn, cfg.head_fusion), cfg))
        self._keep(torch.cat(rows), factors)

    def _layer_probs(self, probs: torch.Tensor, row_only: bool = False) -> None:
        """Keep the class row of (B, heads, Nq, N) probabilities, and their rollout factors."""
        c = 0 if row_only else self._query()
        rows = probs[:, :, c]
        factors: dict[RolloutConfig, list[tuple[torch.Tensor, torch.Tensor]]] = {cfg: [] for cfg in self.rollout_configs}
        for cfg in self.rollout_configs:
            for b in range(probs.shape[0]):
                if self.class_attention:
                    f, sums = class_rollout_factor(fuse_heads(probs[b, :, c : c + 1], cfg.head_fusion)[0], cfg)
                else:
                    f, sums = rollout_factor(fuse_heads(probs[b], cfg.head_fusion), cfg)
                factors[cfg].append((f.unsqueeze(0), sums.unsqueeze(0)))
        self._keep(rows, factors)

    def _keep(self, rows: torch.Tensor, factors: dict[RolloutConfig, list[tuple[torch.Tensor, torch.Tensor]]]) -> None:
        """``factors``: per rollout, (fused, sums) pairs with a leading batch dimension, in image order."""
        self.record.cls_rows.append(rows)
        for cfg, parts in factors.items():
            fused, sums = zip(*parts)
            self.record.steps.setdefault(cfg, []).append((torch.cat(fused), torch.cat(sums)))


def class_rollout_factor(row: torch.Tensor, config: RolloutConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Rollout factor of a class-attention layer (CaiT): only the class token (row 0) attends.

    The other tokens pass through unchanged (identity rows), so F holds the fused class row
    alone; ``discard_ratio`` drops that share of the row's lowest entries (never CLS->CLS).
    """
    n = row.shape[-1]
    row = row.clone()
    k = int(n * config.discard_ratio)
    if k > 0:
        idx = row.topk(k, largest=False).indices
        idx = idx[idx != 0]
        row[idx] = 0.0
    fused = torch.zeros(n, n, dtype=row.dtype, device=row.device)
    fused[0] = row
    return fused, fused.sum(dim=-1) + 1.0


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


class _ValueOf(torch.autograd.Function):
    """``value`` as it is, with its gradient handed to ``surrogate`` (its first rows only).

    The forward is the module's own output, bitwise; the backward routes the incoming gradient's
    first ``surrogate.shape[1]`` token rows to the surrogate (the same module recomputed on those
    rows alone) and drops the rest, which are exactly zero where :class:`ClassRowGradient` applies.
    """

    @staticmethod
    def forward(ctx: Any, value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
        ctx.rows = surrogate.shape[1]
        return value.view_as(value)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, grad[:, : ctx.rows]


class ClassRowGradient:
    """Context manager: per-token modules after a ViT's last token mixing record autograd for
    the class token's row alone.

    When the head reads only the class token (``global_pool='token'``), the gradient of a logit
    with respect to every other row of the last block's attention projection and MLP outputs is
    exactly zero, yet a plain backward still multiplies those zero rows through both (two thirds
    of a block). Here each of those ``modules`` runs on all rows without autograd, as the model
    does, and is then re-run with autograd on the class row (its own ``forward``, one row), whose
    graph carries the gradient. The logits are the module outputs untouched; gradients at the
    Grad-CAM layer are the full backward's up to float rounding. Use only inside the grad-enabled
    part of :func:`vitaudit.engine.forward` (after a :class:`LayerCapture`).
    """

    def __init__(self, model: nn.Module, paths: tuple[str, ...]):
        self.modules = [model.get_submodule(p) for p in paths]
        self._handles: list[Any] = []
        self._recording: list[bool] = []

    def __enter__(self) -> "ClassRowGradient":
        for m in self.modules:
            self._handles.append(m.register_forward_pre_hook(self._pre))
            self._handles.append(m.register_forward_hook(self._post))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _pre(self, module: nn.Module, args: tuple) -> None:
        self._recording.append(torch.is_grad_enabled())
        torch.set_grad_enabled(False)

    def _post(self, module: nn.Module, args: tuple, out: Any) -> Any:
        recording = self._recording.pop()
        torch.set_grad_enabled(recording)
        if not recording or not isinstance(out, torch.Tensor) or out.dim() != 3:
            return None
        surrogate = module.forward(args[0][:, :1])
        return _ValueOf.apply(out, surrogate)
