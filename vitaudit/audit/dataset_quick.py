"""The plain cases of the commonest dataset metrics, for a whole batch at once on the model's device.

For every image of a batch and every expectation of the pass that asks for mass in a region, the
pointing game (no tolerance), IoU of the top share or Pearson agreement, :func:`batch_values`
makes the working maps (:func:`vitaudit.device_metrics.working_maps`) and the region masks on the
device of the map's model, computes the metric for all images together and brings the numbers to
the host in one copy. What the plain case does not cover (unseen pixels, no signal, a constant
map, an empty region, options) comes back as NaN and goes to the full measurement
(:mod:`vitaudit.audit.evaluate`), which says what is wrong; tests hold the two to the same values.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from vitaudit.batching import ItemFailure

if TYPE_CHECKING:
    import torch

    from vitaudit.datasets.base import Sample
    from vitaudit.spec import Expectation, MapRef

#: Metrics measured here (the commonest ones on datasets).
QUICK = ("mass_in", "pointing_game", "iou_top", "agreement")


def quick_case(exp: "Expectation") -> bool:
    """Whether ``exp`` is a plain case this module measures (else the full measurement does)."""
    if exp.metric not in QUICK:
        return False
    if exp.metric == "agreement":
        return len(exp.maps) == 2 and exp.option("by", "pearson") == "pearson"
    if exp.region is None:
        return False
    if exp.metric == "pointing_game":
        return not exp.option("within", 0.0)
    if exp.metric == "iou_top":
        top = exp.option("top")
        return isinstance(top, (int, float)) and not isinstance(top, bool) and 0 < float(top) <= 100
    return True


def batch_values(plan: Any, samples: Sequence["Sample"], entries: dict[str, list[Any]],
                 max_side: int | None) -> dict[str, np.ndarray]:
    """Per expectation id, one value per image of the batch (NaN: measure it in full); ``plan``
    is the pass's :class:`~vitaudit.audit.dataset_pass.Plan`.

    ``entries``: per model key, the engine's entries of the batch (an ``ItemFailure`` for an
    image that did not fit). Images are grouped by working geometry (a dataset of one image
    size is one group); each group costs one small host-to-device copy of its raw maps and
    masks, and the whole batch one device-to-host copy of the values."""
    from vitaudit import device_metrics as dm

    exps = [e for e in plan.active if quick_case(e)]
    if not exps or not samples:
        return {}
    n = len(samples)
    groups: dict[tuple, list[int]] = {}
    for j in range(n):
        if any(isinstance(entries[k][j], ItemFailure) for k in entries):
            continue
        geometries = {entries[k][j].geometry for k in entries}
        groups.setdefault(tuple(sorted(geometries, key=repr)), []).append(j)
    device = next(iter(plan.models.values())).device
    with dm.small_ops(device):
        return _values(plan, exps, samples, entries, groups, max_side, device)


def _values(plan: Any, exps: list["Expectation"], samples: Sequence["Sample"], entries: dict[str, list[Any]],
            groups: dict[tuple, list[int]], max_side: int | None, device: "torch.device") -> dict[str, np.ndarray]:
    import torch

    out = torch.full((len(exps), len(samples)), float("nan"), dtype=torch.float64, device=device)
    for idx in groups.values():
        maps = _Maps(plan, entries, idx, max_side)
        masks: dict[tuple[str, "torch.device"], "torch.Tensor"] = {}
        rows = torch.tensor(idx, device=device)
        for i, exp in enumerate(exps):
            values = _measure(exp, maps, masks, [samples[j] for j in idx])
            if values is not None:
                out[i].index_copy_(0, rows, values.to(device))
    host = out.cpu().numpy()  # the batch's one device-to-host copy
    return {exp.id: host[i] for i, exp in enumerate(exps)}


class _Maps:
    """The working maps of one group of images, made on first use per map reference."""

    def __init__(self, plan: Any, entries: dict[str, list[Any]], idx: list[int], max_side: int | None):
        self.plan, self.entries, self.idx, self.max_side = plan, entries, idx, max_side
        self._made: dict[tuple, "torch.Tensor"] = {}
        self.size: tuple[int, int] | None = None
        self.image_hw: tuple[int, int] | None = None

    def get(self, ref: "MapRef") -> "torch.Tensor":
        import torch

        from vitaudit import device_metrics as dm
        from vitaudit.engine import explanation_of, raw_of

        key = (ref.model, ref)
        if key not in self._made:
            model = self.plan.models[ref.model]
            req = self.plan.by_ref[key]
            first = explanation_of(model, self.entries[ref.model][self.idx[0]], req)
            first.max_side = self.max_side
            raws = np.stack([raw_of(self.entries[ref.model][j], req) for j in self.idx])
            raw = torch.from_numpy(raws).to(model.device, non_blocking=True)
            self.size, self.image_hw = tuple(first.working_size), tuple(first.geometry.image_hw)
            self._made[key] = dm.working_maps(raw, first.geometry, self.size)
        return self._made[key]


def _measure(exp: "Expectation", maps: _Maps, masks: dict, samples: list["Sample"]) -> "torch.Tensor | None":
    from vitaudit import device_metrics as dm

    if exp.metric == "agreement":
        a, b = (maps.get(ref) for ref in exp.maps)
        return dm.pearson(a, b.to(a.device)) if a.shape == b.shape else None
    hm = maps.get(exp.maps[0])
    name = exp.region.region.name
    if any(name not in s.regions for s in samples):  # the pass skips those images; rare: measure in full
        return None
    key = (name, hm.device)
    if key not in masks:
        masks[key] = _masks(name, samples, maps.image_hw, maps.size, hm.device)
    mask = masks[key]
    if mask is None:
        return None
    if exp.region.negate:
        mask = ~mask
    if exp.metric == "mass_in":
        return dm.mass_in(hm, mask)
    if exp.metric == "pointing_game":
        return dm.pointing_game(hm, mask)
    return dm.iou_top(hm, mask, float(exp.option("top")))


def _masks(name: str, samples: list["Sample"], image_hw, size, device) -> "torch.Tensor | None":
    """The images' own masks of region ``name`` at the working size, on ``device`` (None when one
    cannot be drawn: the full measurement says why)."""
    import torch

    from vitaudit import device_metrics as dm
    from vitaudit.regions import RegionError

    try:
        host = np.stack([s.regions[name].mask(image_hw) for s in samples])
    except RegionError:
        return None
    return dm.resize_masks(torch.from_numpy(host).to(device, non_blocking=True), size)
