"""Grad-CAM's capture records autograd only from its target layer on.

The layers before the target run without a graph (no saved tensors, no parameter reachable by a
backward), for CNNs and ViTs; the caller's grad mode, hooks and ``requires_grad`` flags come back
as they were even when the forward raises, and another thread using the same model meanwhile
keeps its gradients (the capture switches grad mode for its own thread only).
"""
from __future__ import annotations

import threading

import pytest
import torch

from vitaudit.engine import forward
from vitaudit.explainers import Needs
from vitaudit.layers import target_layer


def _graph_parameters(root: torch.Tensor) -> tuple[set[int], int]:
    """Ids of the tensors a backward from ``root`` would accumulate into, and the node count."""
    seen, params, stack = set(), set(), [root.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        var = getattr(node, "variable", None)  # AccumulateGrad: a leaf that requires grad
        if var is not None:
            params.add(id(var))
        stack.extend(fn for fn, _ in node.next_functions)
    return params, len(seen)


def _order(module: torch.nn.Module, target: str):
    """Hooks that note, per module, whether its forward began after the target's ended, and the
    prefix's outputs (the modules that ended before the target did)."""
    state = {"target_done": False}
    started_after: dict[str, bool] = {}
    prefix_outputs: list[tuple[str, torch.Tensor]] = []
    handles = []
    for name, sub in module.named_modules():
        def pre(m, args, name=name):
            started_after.setdefault(name, state["target_done"])

        def post(m, args, out, name=name):
            if name == target:
                state["target_done"] = True
            elif not state["target_done"] and isinstance(out, torch.Tensor):
                prefix_outputs.append((name, out))

        handles += [sub.register_forward_pre_hook(pre), sub.register_forward_hook(post)]
    return started_after, prefix_outputs, handles


@pytest.mark.parametrize("name", ["small_cnn", "tiny_vit", "reg_vit"])
def test_no_graph_before_the_target_layer(name, request):
    model = request.getfixturevalue(name)
    module = model.module
    path = target_layer(model).path
    x = torch.randn(2, 3, *model.preprocessing.input_hw, generator=torch.Generator().manual_seed(0))
    started_after, prefix_outputs, handles = _order(module, path)
    try:
        ctx = forward(model, x, Needs(layers={path}))
    finally:
        for h in handles:
            h.remove()
    assert prefix_outputs, "the target layer should have modules before it"
    recorded = [n for n, out in prefix_outputs if out.requires_grad or out.grad_fn is not None]
    assert not recorded, f"outputs before {path} carry a graph: {recorded[:5]}"

    params, nodes = _graph_parameters(ctx.graph_logits)
    suffix = {id(p) for n, sub in module.named_modules() if started_after.get(n) for p in sub.parameters(recurse=False)}
    named = {id(p): n for n, p in module.named_parameters()}
    leaf = ctx.layers[path].leaf
    assert params - set(named) == {id(leaf)}, "the only other leaf in the graph is the target's output"
    before = sorted(named[p] for p in (params & set(named)) - suffix)
    assert not before, f"parameters before {path} are in the graph: {before[:5]}"
    assert params & set(named), "the graph from the target layer on reaches the head's parameters"
    assert nodes > 0
    # The backward the maps use stops at the leaf: the gradient is there, no weight gets one.
    grads = ctx.gradients(path, ctx.logits.argmax(dim=1))
    assert grads.abs().sum() > 0
    assert all(p.grad is None for p in module.parameters())


def _state(module: torch.nn.Module):
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())
    return torch.is_grad_enabled(), hooks, [p.requires_grad for p in module.parameters()]


@pytest.mark.parametrize("name", ["small_cnn", "tiny_vit"])
def test_state_restored_when_the_forward_raises(name, request):
    model = request.getfixturevalue(name)
    module = model.module
    path = target_layer(model).path
    before = _state(module)
    head = module.get_classifier() if hasattr(module, "get_classifier") else module.fc

    def boom(m, args):
        raise RuntimeError("boom after the target layer")

    handle = head.register_forward_pre_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            forward(model, torch.zeros(1, 3, *model.preprocessing.input_hw), Needs(layers={path}))
    finally:
        handle.remove()
    assert _state(module) == before


def test_another_thread_keeps_grad_mode_and_flags_during_a_capture(small_cnn):
    """While the capture's prefix runs gradient-free, another thread still has grad mode on and
    every parameter still requires grad (the capture changes its own thread's mode, no flags)."""
    model = small_cnn
    module = model.module
    path = target_layer(model).path
    first = next(module.parameters())
    seen: dict[str, object] = {}

    def other_thread():
        seen["grad_enabled"] = torch.is_grad_enabled()
        seen["requires_grad"] = all(p.requires_grad for p in module.parameters())
        seen["grad"] = torch.autograd.grad((first * 2).sum(), [first])[0]

    def during_prefix(m, args):
        if "here" not in seen:
            seen["here"] = torch.is_grad_enabled()
            t = threading.Thread(target=other_thread)
            t.start()
            t.join()

    handle = module.get_submodule(path).register_forward_pre_hook(during_prefix)
    try:
        ctx = forward(model, torch.zeros(1, 3, *model.preprocessing.input_hw), Needs(layers={path}))
    finally:
        handle.remove()
    assert seen["here"] is False, "the layers before the target run without autograd"
    assert seen["grad_enabled"] is True and seen["requires_grad"] is True
    assert torch.equal(seen["grad"], torch.full_like(first, 2.0))
    assert ctx.graph_logits is not None
