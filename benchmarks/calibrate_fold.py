"""Measure where training through a fold pays, and fit the memory-cost constants of weightsym.fast.training.

For a grid of layers (Linear and 3x3/1x1 convs with channel, spatial and composed symmetries, several widths, a stride),
one training step (forward, backward with the input's gradient, SGD) of the folded layer is timed against the dense
layer, interleaved, eager and compiled.  The cost model of :func:`weightsym.fast.training.estimated_speedup` says

    fold time / dense time = f + (MEMORY_COST[spatial] · spatial traffic + MEMORY_COST[channel] · channel traffic) / macs

so the two constants per mode are a least-squares fit of the measured ratios minus ``f``.  Prints the table, the fitted
constants next to the ones in use, and writes JSON.

    python benchmarks/calibrate_fold.py --threads 2 --repeats 9 --out benchmarks/results/calibrate_fold.json
"""

from __future__ import annotations

import argparse
import copy
import sys

import numpy as np
import torch
from torch import nn

import weightsym as ws
from weightsym import allocator
from weightsym.bench import measure, write_json
from weightsym.machine import machine
from weightsym.fast import training

GRID = [  # (name, layer factory, input shape, channel, spatial)
    *[(f"dihedral 3x3 C={c} {s}x{s}", (lambda c=c: nn.Conv2d(c, c, 3, padding=1, bias=False)), (b, c, s, s), None,
       "dihedral") for c, s, b in [(32, 16, 64), (64, 8, 64), (128, 16, 32), (256, 8, 32)]],
    *[(f"block+dihedral 3x3 C={c} {s}x{s}", (lambda c=c: nn.Conv2d(c, c, 3, padding=1, bias=False)), (b, c, s, s),
       "block", "dihedral") for c, s, b in [(32, 16, 64), (64, 8, 64), (128, 16, 32)]],
    ("block+dihedral 3x3 C=64 stride 2", lambda: nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False),
     (64, 64, 16, 16), "block", "dihedral"),
    *[(f"block 1x1 {i}->{o} {s}x{s}", (lambda i=i, o=o: nn.Conv2d(i, o, 1, bias=False)), (64, i, s, s), "block", None)
      for i, o, s in [(64, 256, 8), (128, 256, 8), (256, 64, 8), (64, 16, 32)]],
    *[(f"block Linear {n}", (lambda n=n: nn.Linear(n, n)), (256, n), "block", None) for n in (256, 1024, 2048)],
    ("centrosymmetric Linear 2048", lambda: nn.Linear(2048, 2048), (256, 2048), "centrosymmetric", None),
    ("rot180 3x3 C=128", lambda: nn.Conv2d(128, 128, 3, padding=1, bias=False), (32, 128, 16, 16), None, "rot180"),
]


def traffic_terms(kernel) -> tuple[float, float, float]:
    """(spatial, channel, macs) per output element, as in ``estimated_speedup``; recovered by evaluating the model
    with unit costs."""
    saved = dict(training.MEMORY_COST[True])
    try:
        training.MEMORY_COST[True] = {"spatial": 1.0, "channel": 0.0}
        spatial = 1 / training.estimated_speedup(kernel, True) - kernel.multiply_fraction
        training.MEMORY_COST[True] = {"spatial": 0.0, "channel": 1.0}
        channel = 1 / training.estimated_speedup(kernel, True) - kernel.multiply_fraction
    finally:
        training.MEMORY_COST[True] = saved
    return spatial, channel, kernel.multiply_fraction


def step_fn(module, x, compiled):
    opt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
    forward = torch.compile(module) if compiled else module

    def step():
        opt.zero_grad(set_to_none=True)
        x.grad = None
        forward(x).square().mean().backward()
        opt.step()

    return step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--modes", nargs="+", default=["compiled", "eager"], choices=["compiled", "eager"])
    ap.add_argument("--out", default="benchmarks/results/calibrate_fold.json")
    args = ap.parse_args(argv)
    allocator.tune()
    torch.set_num_threads(args.threads)
    rows = []
    for name, factory, shape, channel, spatial in GRID:
        torch.manual_seed(0)
        dense = factory()
        folded = copy.deepcopy(dense)
        ws.nn.attach(folded, "weight", ws.symmetry.combine(channel, spatial))
        report = training.fold_training(nn.ModuleDict({"layer": folded}), policy="always")
        kernel = folded._modules[training.KERNEL]
        x = torch.randn(shape, requires_grad=True)
        row = {"case": name, "fraction": kernel.multiply_fraction, "folded": report.folded}
        row["spatial"], row["channel"], _ = traffic_terms(kernel)
        for mode in args.modes:
            compiled = mode == "compiled"
            timing = measure({"dense": step_fn(dense, x, compiled), "fold": step_fn(folded, x, compiled)},
                             args.repeats, baseline="dense", warmup=2)
            row[mode] = timing.ratio("fold")
            row[f"{mode}_model"] = 1 / training.estimated_speedup(kernel, compiled)
            torch._dynamo.reset()
        rows.append(row)
        print(name, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items() if k != "case"},
              flush=True)
    fits = {}
    for mode in args.modes:
        a = np.array([[r["spatial"], r["channel"]] for r in rows])
        b = np.array([r[mode] - r["fraction"] for r in rows])
        (k_spatial, k_channel), *_ = np.linalg.lstsq(a, b, rcond=None)
        fits[mode] = {"spatial": float(k_spatial), "channel": float(k_channel),
                      "in_use": training.MEMORY_COST[mode == "compiled"]}
        print(f"{mode}: fitted MEMORY_COST spatial {k_spatial:.1f}, channel {k_channel:.1f}; in use "
              f"{training.MEMORY_COST[mode == 'compiled']}")
    print(f"wrote {write_json(args.out, {'machine': machine(), 'args': vars(args), 'rows': rows, 'fits': fits})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
