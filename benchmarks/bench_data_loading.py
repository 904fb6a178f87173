"""Is data loading the bottleneck? CIFAR training-loader throughput vs one training step of a model, on CPU.

Measures, interleaved (``weightsym.bench.measure``: loader batch, training step on the latest batch, the order
reversed every other round), the time to produce one augmented, normalised batch with
:class:`weightsym.data.TensorLoader` (reflect-pad-4 crop + flip, whole batch at once) and the time of one SGD step
(forward, backward, update) of ``--model`` at ``--batch-size``; then ``--loader-batches`` batches back to back (the
median of each).  Prints a Markdown table and writes JSON to ``--out``.  Uses the local CIFAR-10 (``$WEIGHTSYM_DATA``
or ``--data-dir``); falls back to random uint8 images of the same shape when it is absent (reported as ``"data":
"synthetic"``).

    python benchmarks/bench_data_loading.py --steps 10
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from weightsym.bench import measure, write_json
from weightsym.machine import machine
from weightsym.data import TensorLoader, dataset_info, get_dataset
from weightsym.models import create_model


def load_images(data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    try:
        x, y = get_dataset("cifar10", "train", data_dir)
        return x, y, "cifar10"
    except FileNotFoundError as error:
        print(f"note: {error}; using synthetic images of the same shape")
        generator = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=generator)
        return x, torch.arange(50_000) % 10, "synthetic"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wrn-16-4-bottleneck")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="measured (loader batch, train step) pairs")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--loader-batches", type=int, default=100, help="extra loader-only batches for throughput")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "data_loading.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    x, y, source = load_images(args.data_dir)
    load_seconds = time.perf_counter() - start
    info = dataset_info("cifar10")
    loader = TensorLoader(x, y, args.batch_size, shuffle=True, augment="crop-flip", seed=0, drop_last=True,
                          mean=info["mean"], std=info["std"])
    torch.manual_seed(0)
    model = create_model(args.model).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

    batches, batch = iter(loader), {}

    def load():
        batch["x"], batch["y"] = next(batches)

    def step():
        loss = nn.functional.cross_entropy(model(batch["x"]), batch["y"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    timing = measure({"loader": load, "step": step}, args.steps, warmup=args.warmup)
    loader.set_epoch(1)
    batches = iter(loader)
    back_to_back = measure({"loader": load}, args.loader_batches, warmup=0)
    loader_only = back_to_back.median("loader")

    loader_ms, step_ms = 1e3 * timing.median("loader"), 1e3 * timing.median("step")
    rows = [
        ("loader batch (interleaved)", loader_ms, args.batch_size / loader_ms * 1e3),
        ("loader batch (back to back)", 1e3 * loader_only, args.batch_size / loader_only),
        (f"train step {args.model}", step_ms, args.batch_size / step_ms * 1e3),
    ]
    print(f"\nCIFAR-10 loader vs training step, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"data: {source} (loaded in {load_seconds:.1f} s)\n")
    print("| stage | median ms / batch | images / s |")
    print("|---|---:|---:|")
    for name, ms, rate in rows:
        print(f"| {name} | {ms:.2f} | {rate:,.0f} |")
    print(f"\nLoading takes {100 * loader_ms / (loader_ms + step_ms):.1f}% of a step's wall time "
          f"(loader is {step_ms / loader_ms:.0f}x faster than the step).")

    result = {
        "benchmark": "data_loading", "data": source, "model": args.model, "batch_size": args.batch_size,
        "steps": args.steps, "warmup": args.warmup, "threads": torch.get_num_threads(), "machine": machine(),
        "dataset_load_seconds": load_seconds,
        "loader_ms_median": loader_ms, "loader_ms_back_to_back": 1e3 * loader_only, "step_ms_median": step_ms,
        "loader_images_per_s": args.batch_size / loader_only, "step_images_per_s": args.batch_size / step_ms * 1e3,
        "loader_ms": [1e3 * t for t in timing.wall["loader"]], "step_ms": [1e3 * t for t in timing.wall["step"]],
    }
    print(f"wrote {write_json(args.out, result)}")
    return result


if __name__ == "__main__":
    main()
