"""Training-step time of every symmetry against the dense model, interleaved in one run.

Model: a stack of square 3x3 convs with BatchNorm/ReLU (C -> C, no stem/classifier symmetry questions: every conv is
symmetrized via ``include``), batch 64 of 32x32 inputs, one step = forward + backward + SGD (momentum, weight decay).
Every symmetric model starts from the same dense initialisation.  Prints a Markdown table, writes JSON.

    python benchmarks/bench_train_step.py --out benchmarks/results/train_step.json
    python benchmarks/bench_train_step.py --quick          # a smoke-sized run
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_ratios, machine, write_json  # noqa: E402

import weightsym as ws  # noqa: E402
from weightsym.nn.symmetrize import format_table  # noqa: E402

SYMMETRIES = [("triangular", None), ("centrosymmetric", None), ("bisymmetric", None), ("block", None),
              ("eighth", None), ("repeat", None), ("average", None), ("eigen", None), ("lowrank", None),
              (None, "transpose"), (None, "hflip"), (None, "vflip"), (None, "rot180"), (None, "dihedral"),
              ("triangular", "transpose")]


def stack(channels: int, depth: int) -> nn.Sequential:
    layers = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
    return nn.Sequential(*layers)


def make_step(model, x):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        opt.step()

    return step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats (smoke test)")
    ap.add_argument("--out", default="benchmarks/results/train_step.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.channels, args.batch, args.size, args.repeats = [16], 8, 16, 2
    results = {"machine": machine(), "settings": vars(args), "rows": []}
    print(f"machine: {results['machine']}")
    for c in args.channels:
        torch.manual_seed(0)
        dense = stack(c, args.depth)
        x = torch.randn(args.batch, c, args.size, args.size)
        candidates, stored = {}, {}
        for channel, spatial in SYMMETRIES:
            model = copy.deepcopy(dense)
            ws.symmetrize(model, channel=channel, spatial=spatial, include=["*"])
            name = "+".join(s for s in (channel, spatial) if s)
            candidates[name] = make_step(model, x)
            stored[name] = ws.count_parameters(model).stored
        timing = interleaved_ratios(make_step(dense, x), candidates, repeats=args.repeats)
        base = timing.pop("_baseline")["seconds_median"]
        dense_params = ws.count_parameters(dense).stored
        for name, t in timing.items():
            results["rows"].append({"channels": c, "symmetry": name, "ratio": t["ratio_median"],
                                    "seconds": t["seconds_median"], "dense_seconds": base,
                                    "stored": stored[name], "dense_params": dense_params,
                                    "within_goal": t["ratio_median"] <= 1.10})
    rows = [[r["channels"], r["symmetry"], f"{r['stored']:,}", f"{1000 * r['dense_seconds']:.0f}",
             f"{1000 * r['seconds']:.0f}", f"{r['ratio']:.3f}", "yes" if r["within_goal"] else "NO"]
            for r in results["rows"]]
    print(format_table(["C", "symmetry", "stored", "dense ms", "sym ms", "ratio (median)", "<= 1.10"], rows))
    path = write_json(args.out, results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
