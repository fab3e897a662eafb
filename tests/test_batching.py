"""Out-of-memory backoff: batches retried in halves down to one item, the working size kept.

The error is injected on the CPU: the per-batch work raises ``torch.OutOfMemoryError`` (what
CUDA raises) when a batch is larger than a pretend device can hold.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vitaudit.engine as engine
import vitaudit.batching as batching
from vitaudit.batching import BatchSizes, is_out_of_memory, run_in_batches
from vitaudit.cache import ExplanationCache
from vitaudit.engine import BatchFailed, explain_batch

OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.11 GiB total capacity)"


def fits(limit, calls, huge=()):
    """Work that doubles numbers, holding at most ``limit`` per batch; ``huge`` items never fit."""

    def work(batch):
        calls.append(list(batch))
        if len(batch) > limit or any(x in huge for x in batch):
            raise torch.OutOfMemoryError(OOM)
        return [2 * x for x in batch]

    return work


def test_a_batch_that_does_not_fit_is_retried_in_halves_and_the_size_kept():
    calls: list[list[int]] = []
    sizes = BatchSizes()
    run = run_in_batches(list(range(11)), fits(3, calls), 8, key="m", sizes=sizes)
    assert run.results == [2 * x for x in range(11)] and run.failures == []
    assert calls == [list(range(8)), [0, 1, 2, 3], [0, 1], [2, 3], [4, 5], [6, 7],
                     [8, 9], [10]]  # the tail starts at the size that worked
    assert run.batch_size == 2 and sizes.get("m") == 2
    calls.clear()  # a later call with the same key starts at the kept size, and never grows back
    run_in_batches([1, 2, 3, 4, 5], fits(3, calls), 8, key="m", sizes=sizes)
    assert calls == [[1, 2], [3, 4], [5]]


def test_items_that_do_not_fit_alone_fail_with_the_cause_and_the_sizes_tried():
    calls: list[list[int]] = []
    run = run_in_batches(list(range(6)), fits(8, calls, huge={2}), 4, sizes=BatchSizes())
    assert run.results == [0, 2, None, 6, 8, 10]
    assert calls == [[0, 1, 2, 3], [0, 1], [2, 3], [2], [3], [4], [5]]  # then at the size that worked
    [failure] = run.failures
    assert failure.index == 2 and isinstance(failure.error, torch.OutOfMemoryError)
    assert failure.error.__traceback__ is None  # the failed batch's frames (tensors) are not kept
    assert failure.tried == (4, 2, 1)
    assert failure.message == f"out of memory even for a batch of 1 (batch sizes tried: 4, 2, 1): OutOfMemoryError: {OOM}"


def test_other_errors_propagate_and_are_not_retried():
    calls = []

    def work(batch):
        calls.append(batch)
        raise ValueError("a bug, not memory")

    with pytest.raises(ValueError, match="a bug"):
        run_in_batches([1, 2, 3, 4], work, 4, sizes=BatchSizes())
    assert len(calls) == 1
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


@pytest.fixture
def small_device(monkeypatch):
    """engine.forward on a pretend device holding ``state["limit"]`` images; wider images never fit."""
    state = {"limit": 2, "sizes": []}
    original = engine.forward

    def forward(model, x, needs):
        state["sizes"].append(int(x.shape[0]))
        if x.shape[0] > state["limit"] or (state["huge"] is not None and state["huge"](x)):
            raise torch.OutOfMemoryError(OOM)
        return original(model, x, needs)

    state["huge"] = None
    monkeypatch.setattr(engine, "forward", forward)
    monkeypatch.setattr(batching, "BATCH_SIZES", BatchSizes())  # sizes kept by earlier tests do not count
    return state


def test_engine_backs_off_and_gives_the_same_maps(small_cnn, noise_images, small_device):
    methods = ["gradcam", "eigencam"]
    small_device["limit"] = 10**6
    reference = explain_batch(small_cnn, noise_images, methods, batch_size=8, cache=ExplanationCache())
    small_device.update(limit=2, sizes=[])
    out = explain_batch(small_cnn, noise_images, methods, batch_size=8, cache=ExplanationCache())
    assert small_device["sizes"] == [5, 2, 2, 1]  # 5 -> halves of 2 and 3 -> the 3 at the kept size 2
    for ref, got in zip(reference, out):
        for m in methods:
            np.testing.assert_allclose(got[m].raw, ref[m].raw, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(got[m].probs.argmax(), ref[m].probs.argmax())


def test_engine_reports_the_image_that_does_not_fit_and_keeps_the_others(small_cnn, noise_images, small_device):
    # any batch holding image 4 does not fit (pretend it is enormous): 5 -> [0, 1] [2, 3] [4]
    marker = engine._preprocessing(small_cnn, None)(engine.load_image(noise_images[4]))[0]
    small_device.update(limit=8, huge=lambda x: any(torch.equal(row, marker) for row in x))
    cache = ExplanationCache()
    with pytest.raises(BatchFailed) as info:
        explain_batch(small_cnn, noise_images, ["gradcam"], batch_size=8, cache=cache)
    assert str(info.value) == (f"out of memory even for a batch of 1 (batch sizes tried: 5, 1): "
                               f"OutOfMemoryError: {OOM} [image <array (80, 64, 3) uint8>]")
    small_device["huge"] = None
    small_device["sizes"].clear()
    explain_batch(small_cnn, noise_images[:4], ["gradcam"], cache=cache)
    assert small_device["sizes"] == []  # the images that fit were explained and cached
