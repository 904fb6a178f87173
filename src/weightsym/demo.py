"""``weightsym demo``: a dense CNN and its symmetric twin trained side by side on MNIST-1D (offline, ~1 minute).

The twin is the same architecture with ``triangular`` channel symmetry and ``hflip`` spatial symmetry on every
layer but the stem and the classifier.  Both start from the same seed, see the same batches, and the table at the end
shows stored parameters and test accuracy side by side.  The accuracies are deterministic for a given number of torch
threads (the same on every run with the same ``threads``; a different thread count changes the order of float sums
and with it the last digits); the training seconds are wall time and vary with the machine's load.

:func:`demo_markdown` turns the result into the Markdown table the README shows, with the command, thread count,
machine and date beside it (``weightsym demo --markdown``).
"""

from __future__ import annotations

import textwrap
import time

import torch
from torch import nn
from tqdm.auto import tqdm

import weightsym as ws
from weightsym.data.mnist1d import load_mnist1d
from weightsym.models.small import MNIST1DCNN
from weightsym.nn.symmetrize import format_table
from weightsym.train.step import CrossEntropyStep, train_steps


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
        batches = ((x_train[idx], y_train[idx]) for idx in order.split(batch_size))
        for step in train_steps(CrossEntropyStep(), batches, opt, model, sched):  # the training engine's step
            pass
        bar.set_postfix(loss=f"{step.loss:.3f}")
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    counts = ws.count_parameters(model)
    return {"stored": counts.stored, "dense": counts.dense, "accuracy": accuracy,
            "seconds": time.perf_counter() - start}


def run_demo(epochs: int = 40, width: int = 64, seed: int = 0, channel: str | None = "triangular",
             spatial: str | None = "hflip", batch_size: int = 128, log=print) -> dict:
    """Train the dense model and its symmetric twin; print (via ``log``) the report and the table; return
    ``{"dense": {...}, "symmetric": {...}, "settings": {...}}`` (stored/dense counts, accuracy, seconds).

    Everything is checked before any training: the symmetries must apply to the twin's square convs.
    """
    if epochs < 1 or width < 1 or batch_size < 1:
        raise ValueError(f"epochs={epochs}, width={width}, batch_size={batch_size}: each must be >= 1")
    models = {}
    for label in ("dense", "symmetric"):
        torch.manual_seed(seed)
        models[label] = MNIST1DCNN(width=width, num_square=3, norm=True)
    report = ws.symmetrize(models["symmetric"], channel=channel, spatial=spatial, strict=True)
    data = load_mnist1d(seed=42, num_samples=5000)
    log(f"MNIST-1D: {len(data[0])} training and {len(data[2])} test signals of length 40 (generated offline)")
    log(str(report))
    results = {label: train_and_test(model, data, epochs, batch_size, seed, f"{label:>9}")
               for label, model in models.items()}
    results["settings"] = {"epochs": epochs, "width": width, "seed": seed, "channel": channel, "spatial": spatial,
                           "batch_size": batch_size, "threads": torch.get_num_threads()}
    d, s = results["dense"], results["symmetric"]
    log("")
    log(format_table(["model", "stored params", "dense-equivalent", "test accuracy", "train s"], _rows(results)))
    log(f"\nThe symmetric twin stores {100 * (1 - s['stored'] / d['stored']):.1f}% fewer parameters; "
        f"accuracy difference {100 * (s['accuracy'] - d['accuracy']):+.1f} points.")
    return results


def _rows(results: dict) -> list[list[str]]:
    settings = results["settings"]
    twin = "+".join(x for x in (settings["channel"], settings["spatial"]) if x)
    return [[k, f"{r['stored']:,}", f"{r['dense']:,}", f"{100 * r['accuracy']:.1f}%", f"{r['seconds']:.1f}"]
            for k, r in (("dense", results["dense"]), (f"symmetric ({twin})", results["symmetric"]))]


def demo_markdown(results: dict, command: str = "weightsym demo --markdown") -> str:
    """The demo's table as Markdown, followed by one line: command, torch threads, machine, date, total time."""
    from weightsym.machine import machine

    m = machine()
    seconds = results["dense"]["seconds"] + results["symmetric"]["seconds"]
    table = format_table(["model", "stored params", "dense-equivalent", "test accuracy", "train s"], _rows(results))
    threads = results["settings"]["threads"]
    caption = (f"*Made by `{command}` with {threads} torch thread{'s' if threads != 1 else ''} on {m['cpu']} "
               f"({m['cpu_count']} cores), {m['date'][:10]}, {seconds:.0f} s of training. The accuracies are the same "
               "on every run with the same thread count; train s is wall time and varies with the machine's load.*")
    return f"{table}\n\n{textwrap.fill(caption, 116, break_long_words=False, break_on_hyphens=False)}"
