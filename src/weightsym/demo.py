"""``weightsym demo``: a dense CNN and its symmetric twin trained side by side on MNIST-1D (offline, ~1 minute).

The twin is the same architecture with ``triangular`` channel symmetry and ``hflip`` spatial symmetry on every
layer but the stem and the classifier.  Both start from the same seed, see the same batches, and the table at the end
shows stored parameters and test accuracy side by side.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from tqdm.auto import tqdm

import weightsym as ws
from weightsym.data.mnist1d import load_mnist1d
from weightsym.models.small import MNIST1DCNN
from weightsym.nn.symmetrize import format_table


def train_and_test(model: nn.Module, data, epochs: int, batch_size: int, seed: int, desc: str) -> dict:
    x_train, y_train, x_test, y_test = data
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * ((len(x_train) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc=desc, unit="epoch", leave=True)
    for _ in bar:
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    counts = ws.count_parameters(model)
    return {"stored": counts.stored, "dense": counts.dense, "accuracy": accuracy,
            "seconds": time.perf_counter() - start}


def run_demo(epochs: int = 40, width: int = 64, seed: int = 0, channel: str = "triangular",
             spatial: str = "hflip", batch_size: int = 128) -> dict:
    data = load_mnist1d(seed=42, num_samples=5000)
    print(f"MNIST-1D: {len(data[0])} training and {len(data[2])} test signals of length 40 (generated offline)")
    results = {}
    for label in ("dense", "symmetric"):
        torch.manual_seed(seed)
        model = MNIST1DCNN(width=width, num_square=3, norm=True)
        if label == "symmetric":
            report = ws.symmetrize(model, channel=channel, spatial=spatial)
            print(report)
        results[label] = train_and_test(model, data, epochs, batch_size, seed, f"{label:>9}")
    d, s = results["dense"], results["symmetric"]
    rows = [[k, f"{r['stored']:,}", f"{r['dense']:,}", f"{100 * r['accuracy']:.1f}%", f"{r['seconds']:.1f}"]
            for k, r in (("dense", d), (f"symmetric ({channel}+{spatial})", s))]
    print()
    print(format_table(["model", "stored params", "dense-equivalent", "test accuracy", "train s"], rows))
    print(f"\nThe symmetric twin stores {100 * (1 - s['stored'] / d['stored']):.1f}% fewer parameters; "
          f"accuracy difference {100 * (s['accuracy'] - d['accuracy']):+.1f} points.")
    return results


def _run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads) if args.threads else None
    run_demo(epochs=args.epochs, width=args.width, seed=args.seed, channel=args.channel, spatial=args.spatial)
    return 0


def setup_cli(sub) -> None:
    p = sub.add_parser("demo", help="train a dense CNN and its symmetric twin on MNIST-1D (about a minute)",
                       description=__doc__.splitlines()[0].replace("``", "`"))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channel", default="triangular", help="channel symmetry of the twin (default triangular)")
    p.add_argument("--spatial", default="hflip", help="spatial symmetry of the twin (default hflip)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.set_defaults(func=_run)
