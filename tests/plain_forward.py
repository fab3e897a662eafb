"""The plain model's logits, computed in the same autograd mode as the audit's forward.

The audit's forward (:func:`vitaudit.engine.forward`) runs under ``torch.no_grad()`` and, when a
gradient method needs it, switches autograd on at the output of the Grad-CAM layer. torch may
pick a different kernel for an op when autograd is on (timm's BEiT attention with its relative
position bias is one: its logits differ in the last bits between a ``no_grad`` forward and a
forward with autograd on, on some CPUs and not on others), so a bitwise check has to compare
like with like. The reference here is the bare module with no capture at all: nothing but
``torch.set_grad_enabled(True)`` at that layer's output (the hook returns None, so the output
is passed on untouched), and off again inside the modules where the audit's forward records the
class row alone (``Anatomy.class_row_paths``, see :class:`vitaudit.capture.ClassRowGradient`).

Against a forward entirely under ``no_grad`` the audit's logits agree within float32 rounding
(:func:`assert_within_rounding`), which is what README "The model's own explanation" states.
"""
from __future__ import annotations

import torch

#: Relative tolerance for logits computed with other kernels (autograd on vs off): float32
#: rounding through a few dozen layers, well below any difference a capture bug would make.
RTOL = 1e-5


def plain_logits(module: torch.nn.Module, x: torch.Tensor, grad_from: str | None = None,
                 grad_off_in: tuple[str, ...] = ()) -> torch.Tensor:
    """Logits of ``module`` on ``x`` under ``no_grad``; with ``grad_from`` (a module path),
    autograd is on from that module's output onwards, as in the audit's forward, except inside
    the modules ``grad_off_in``."""
    handles = []

    def grad_on(*_args) -> None:
        torch.set_grad_enabled(True)

    def grad_off(*_args) -> None:
        torch.set_grad_enabled(False)

    if grad_from is not None:
        handles.append(module.get_submodule(grad_from).register_forward_hook(grad_on))
        for path in grad_off_in:
            handles.append(module.get_submodule(path).register_forward_pre_hook(grad_off))
            handles.append(module.get_submodule(path).register_forward_hook(grad_on))
    try:
        with torch.no_grad():
            out = module(x)
    finally:
        for handle in handles:
            handle.remove()
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.detach()


def assert_within_rounding(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float32 rounding, scaled to the logits' magnitude (random-init logits are tiny)."""
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=RTOL * scale)
