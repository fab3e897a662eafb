"""How much an explanation costs on top of a plain forward pass.

For ``vit_base_patch16_224`` and ``resnet50`` (random init, batch 8, 224x224) this times:

- the plain forward (``torch.no_grad``), the reference for every ratio;
- prediction + all ViT maps (``attention`` + ``rollout``) from vitaudit's one pass;
- prediction + Grad-CAM from vitaudit's one pass (backward stops at the target layer);
- prediction + every map at once (ViT: attention + rollout + Grad-CAM);
- the seed notebook's approach: for the ViT, its custom unfused block forward that stores
  every layer's full attention; for the ResNet, a prediction forward and then a separate
  pytorch-grad-cam call with its own forward and a full backward;
- pytorch-grad-cam's default use alone (its own forward + backward).

Goals: prediction + attention + rollout <= 1.05x plain; prediction + Grad-CAM <= 1.3x plain.
Run: ``python benchmarks/bench_explain.py [--device cuda] [--repeat 9] [--json out.json]``.

``--models NAME,NAME,...`` times any models instead (one per family for the coverage table in
``docs/models.md``): per model the plain forward, prediction + attention + rollout where the
family has them, and prediction + Grad-CAM, at the model's own input size.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
import types

import torch
from torch import nn

from vitaudit.engine import forward
from vitaudit.explainers import Needs, get_method
from vitaudit.layers import target_layer
from vitaudit.models import load_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCK = time.perf_counter  # --clock process: this process's CPU time (for a machine shared with others)


def time_all(fns: dict, device: torch.device, repeat: int) -> dict[str, float]:
    """Median time of each function, in seconds (wall time, or CPU time with ``--clock process``).

    The functions run round-robin (one of each per round, after a warm-up round), so a slow
    spell of the machine hits them all alike instead of whichever ran then.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            _sync(device)
            t0 = CLOCK()
            fn()
            _sync(device)
            times[name].append(CLOCK() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def vitaudit_maps(model, x, methods: list[str]):
    """Prediction and the requested maps from one vitaudit pass (no cache: always computed)."""
    needs = Needs(cls_rows=model.family == "vit")
    explainers = [(get_method(m), get_method(m).options({})) for m in methods]
    for ex, opts in explainers:
        needs.merge(ex.needs(model, opts))
    ctx = forward(model, x, needs)
    probs = torch.softmax(ctx.logits.float(), dim=-1)
    targets = probs.argmax(dim=1)
    return probs, [ex.maps(ctx, targets, opts) for ex, opts in explainers]


def seed_block_forward(self, x):
    """The seed notebook's replacement block forward (unfused, stores full attention; note it
    also moved norm1 after the residual, changing the network: timed here, never used)."""
    B, N, C = x.shape
    qkv = self.attn.qkv(x).reshape(B, N, 3, self.attn.num_heads, C // self.attn.num_heads)
    qkv = qkv.permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn_weights = ((q @ k.transpose(-2, -1)) * self.attn.scale).softmax(dim=-1)
    self.attn_weights = attn_weights
    attn_output = self.attn.proj((attn_weights @ v).transpose(1, 2).reshape(B, N, C))
    x = x + attn_output
    x = x + self.mlp(self.norm2(x))
    return self.norm1(x)


def seed_vit(module: nn.Module) -> nn.Module:
    seeded = copy.deepcopy(module)
    for blk in seeded.blocks:
        blk.forward = types.MethodType(seed_block_forward, blk)
    return seeded


def bench_vit(device: torch.device, batch: int, repeat: int) -> dict:
    model = load_model("vit_base_patch16_224", seed=0, device=device)
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    module = model.module
    seeded = seed_vit(module)

    def plain():
        with torch.no_grad():
            return torch.softmax(module(x), dim=-1)

    def seed():
        with torch.no_grad():
            out = torch.softmax(seeded(x), dim=-1)
        maps = [blk.attn_weights.mean(dim=1)[:, 0, 1:] for blk in seeded.blocks]
        return out, maps

    rows = time_all({
        "plain forward": plain,
        "prediction + attention + rollout": lambda: vitaudit_maps(model, x, ["attention", "rollout"]),
        "prediction + gradcam": lambda: vitaudit_maps(model, x, ["gradcam"]),
        "prediction + attention + rollout + gradcam": lambda: vitaudit_maps(model, x, ["attention", "rollout", "gradcam"]),
        "seed: custom unfused block forward (all attention)": seed,
    }, device, repeat)
    return {"model": model.name, "target_layer": target_layer(model).path, "seconds": rows}


def bench_resnet(device: torch.device, batch: int, repeat: int) -> dict:
    from pytorch_grad_cam import GradCAM

    model = load_model("resnet50", seed=0, device=device)
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    module = model.module
    ref = copy.deepcopy(module)
    layer = target_layer(model).path

    def plain():
        with torch.no_grad():
            return torch.softmax(module(x), dim=-1)

    def pgc_default():
        with GradCAM(ref, [ref.get_submodule(layer)]) as cam:
            return cam(x, None)

    def seed():
        with torch.no_grad():
            probs = torch.softmax(ref(x), dim=-1)  # the seed's prediction pass
        return probs, pgc_default()  # then a separate Grad-CAM call with its own forward

    rows = time_all({
        "plain forward": plain,
        "prediction + gradcam": lambda: vitaudit_maps(model, x, ["gradcam"]),
        "prediction + gradcam + gradcam++ + layercam": lambda: vitaudit_maps(model, x, ["gradcam", "gradcam++", "layercam"]),
        "pytorch-grad-cam default (own forward + backward)": pgc_default,
        "seed: prediction forward, then pytorch-grad-cam": seed,
    }, device, repeat)
    return {"model": model.name, "target_layer": layer, "seconds": rows}


def bench_model(spec: str, device: torch.device, batch: int, repeat: int) -> dict:
    """Plain forward against vitaudit's passes for one model of any family."""
    model = load_model(spec, seed=0, device=device, num_classes=1000)
    h, w = model.preprocessing.input_hw
    x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    module = model.module

    def plain():
        with torch.no_grad():
            return torch.softmax(module(x), dim=-1)

    fns = {"plain forward": plain}
    if model.anatomy.reads_attention and model.anatomy.class_token:
        fns["prediction + attention + rollout"] = lambda: vitaudit_maps(model, x, ["attention", "rollout"])
    fns["prediction + gradcam"] = lambda: vitaudit_maps(model, x, ["gradcam"])
    return {"model": spec, "family": model.family, "kind": model.kind, "input": f"{h}x{w}",
            "target_layer": target_layer(model).path, "seconds": time_all(fns, device, repeat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--models", help="comma-separated model specs to time instead of the two defaults")
    parser.add_argument("--clock", choices=("wall", "process"), default="wall",
                        help="process: CPU time of this process, steadier where other jobs share the CPU")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    global CLOCK
    if args.clock == "process":
        CLOCK = time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    size = "each model's input size" if args.models else "224x224"
    print(f"device: {device} ({where}); torch {torch.__version__}; batch {args.batch}; {size}; median of {args.repeat}; {args.clock} clock")
    goals = {"prediction + attention + rollout": 1.05, "prediction + gradcam": 1.1}  # issue 19: Grad-CAM at <= 1.1x a plain forward, ViT and CNN alike
    results = []
    benches = ([lambda d, b, r, m=m: bench_model(m, d, b, r) for m in args.models.split(",")] if args.models
               else [bench_vit, bench_resnet])
    for bench in benches:
        res = bench(device, args.batch, args.repeat)
        base = res["seconds"]["plain forward"]
        about = f"{res['kind']}; " if "kind" in res else ""
        print(f"\n{res['model']} ({about}CAM layer {res['target_layer']})")
        for name, sec in res["seconds"].items():
            ratio = sec / base
            goal = goals.get(name)
            verdict = "" if goal is None else ("  goal <= %.2fx: %s" % (goal, "met" if ratio <= goal else "NOT met"))
            print(f"  {name:<52} {sec * 1000:9.1f} ms  {ratio:5.2f}x{verdict}")
        res["ratios"] = {k: v / base for k, v in res["seconds"].items()}
        results.append(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "where": where, "batch": args.batch, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
