"""Where an epoch of the fast recipe spends its time on this CPU: data pipeline, augmentation, forward, backward,
optimizer, lookahead, and, inside the compute, convolutions against elementwise ops (torch.profiler).

Builds the run exactly as ``weightsym train --recipe airbench`` does (model, whitening, bf16/fp32 autocast,
channels-last, loader with alternating flip + translate, optimizer, lookahead), times ``--steps`` training steps phase
by phase with a wall clock (the first ``--warmup`` steps are run but not counted: oneDNN builds its kernels there),
then profiles ``--profile-steps`` more with torch.profiler and groups the operators.  Run it alone on the machine.

    python benchmarks/profile_fast_epoch.py --model airbench-64-128-128 --json docs/results/fast-recipe/profile.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict

import torch

from weightsym.machine import machine
from weightsym.train import TrainConfig
from weightsym.train.recipes import TRAIN_RECIPES, resolve

# operator name fragments -> group (first match wins; names are aten:: / mkldnn ops as the profiler reports them)
GROUPS = (
    ("convolution", ("conv", "mkldnn_convolution")),
    ("matrix products", ("addmm", "aten::mm", "linear", "matmul", "bmm")),
    ("batch norm", ("batch_norm",)),
    ("max-pool", ("max_pool",)),
    ("GELU", ("gelu",)),
    ("optimizer (SGD)", ("_foreach", "sgd")),
    ("lookahead (lerp/copy)", ("lerp",)),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("gather / index / copy / layout", ("gather", "index", "copy_", "contiguous", "clone", "to_dense", "reorder",
                                        "_to_copy", "empty_like")),
)


def group_of(name: str) -> str:
    lower = name.lower()
    for group, parts in GROUPS:
        if any(p in lower for p in parts):
            return group
    return "other elementwise"


def build(model: str, precision: str, seed: int = 0):
    from weightsym.data.loader import normalize
    from weightsym.train import build_model
    from weightsym.train.data import make_train_loader
    from weightsym.train.distributed import DistContext
    from weightsym.train.lookahead import Lookahead
    from weightsym.train.optim import make_optimizer, make_scheduler
    from weightsym.train.precision import resolve_precision

    config = TrainConfig(**resolve(TRAIN_RECIPES, "airbench", {"model": model, "precision": precision,
                                                               "seed": seed, "progress": False}))
    torch.manual_seed(seed)
    net, _, data = build_model(config)
    ctx = DistContext()
    loader = make_train_loader(config, data, ctx)
    net.initialize_from_data(normalize(loader.x[:5000], loader.mean, loader.std))
    net.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config, net)
    steps = len(loader)
    scheduler = make_scheduler(config, optimizer, steps)
    lookahead = Lookahead(net, config.total_steps(steps))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    return config, net, loader, optimizer, scheduler, lookahead, criterion, resolve_precision(precision, ctx.device)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="airbench-64-128-128")
    ap.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--profile-steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compare-compile", action="store_true",
                    help="also time the same step with the model under torch.compile (after its compilation)")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from weightsym.train.precision import autocast, to_channels_last

    config, net, loader, optimizer, scheduler, lookahead, criterion, precision = build(args.model, args.precision)
    device = torch.device("cpu")
    phases = defaultdict(list)
    forward = net
    batches = iter(loader)
    step = 0

    def one_step(record: bool):
        nonlocal step, batches, forward
        t0 = time.perf_counter()
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(loader)
            xb, yb = next(batches)
        xb = to_channels_last(xb)
        t1 = time.perf_counter()
        with autocast(precision, device):
            logits = forward(xb)
        loss = criterion(logits.float(), yb)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        scheduler.step()
        t4 = time.perf_counter()
        step += 1
        lookahead.after_step(net, step)
        t5 = time.perf_counter()
        if record:
            for name, seconds in (("data + augmentation (loader)", t1 - t0), ("forward + loss", t2 - t1),
                                  ("backward", t3 - t2), ("optimizer + schedule", t4 - t3), ("lookahead", t5 - t4)):
                phases[name].append(seconds)

    for _ in range(args.warmup):
        one_step(False)
    for _ in range(args.steps):
        one_step(True)
    # the loader alone, split into its parts: index + augment (uint8 gather) and normalise
    augment_times, normalize_times = [], []
    from weightsym.data.loader import _seeded, normalize

    order = loader.epoch_indices(0)
    for b in range(min(args.steps, len(loader))):
        index = order[b * loader.batch_size:(b + 1) * loader.batch_size]
        t0 = time.perf_counter()
        xb = loader.x[index]
        xb = loader.augment(xb, _seeded(0, 0, b), flip_mask=loader._base_flip[index])
        t1 = time.perf_counter()
        normalize(xb, loader.mean, loader.std)
        t2 = time.perf_counter()
        augment_times.append(t1 - t0)
        normalize_times.append(t2 - t1)
    ops = defaultdict(float)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(args.profile_steps):
            one_step(False)
    for event in prof.key_averages():
        ops[group_of(event.key)] += event.self_cpu_time_total / 1e6 / args.profile_steps
    compiled = None
    if args.compare_compile:  # the same steps through torch.compile (dynamic=False, as --compile trains)
        forward = torch.compile(net, dynamic=False)
        tic = time.perf_counter()
        one_step(False)
        one_step(False)
        compile_seconds = time.perf_counter() - tic
        times = []
        for _ in range(args.steps // 2):
            tic = time.perf_counter()
            one_step(False)
            times.append(time.perf_counter() - tic)
        forward = net
        compiled = {"first_two_steps_seconds": compile_seconds, "step_seconds": statistics.median(times)}
    step_median = {k: statistics.median(v) for k, v in phases.items()}
    total = sum(step_median.values())
    steps_per_epoch = len(loader)
    print(f"{args.model}, {precision}, channels-last, batch {config.batch_size}, {args.threads} threads; "
          f"medians over {args.steps} steps after {args.warmup} warm-up steps")
    print("| phase | s / step (median) | share | s / epoch (x{}) |".format(steps_per_epoch))
    print("|---|---:|---:|---:|")
    for name, value in step_median.items():
        print(f"| {name} | {value:.3f} | {100 * value / total:.0f}% | {value * steps_per_epoch:.1f} |")
    print(f"| **one step** | {total:.3f} | 100% | {total * steps_per_epoch:.1f} |")
    print(f"\nloader parts (median per batch): index + augment (uint8 gather) {statistics.median(augment_times):.4f} s,"
          f" normalise to float {statistics.median(normalize_times):.4f} s")
    op_total = sum(ops.values())
    print(f"\noperators (torch.profiler, self CPU time per step, {args.profile_steps} steps):")
    print("| operator group | s / step | share |")
    print("|---|---:|---:|")
    for name, value in sorted(ops.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {value:.3f} | {100 * value / op_total:.0f}% |")
    if compiled:
        print(f"\ntorch.compile: {compiled['step_seconds']:.3f} s / step (median of {args.steps // 2}) against "
              f"{total:.3f} eager; the first two compiled steps took {compiled['first_two_steps_seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"model": args.model, "precision": precision, "threads": args.threads, "batch": config.batch_size,
                       "steps_per_epoch": steps_per_epoch, "phases_seconds_per_step": step_median,
                       "loader_parts": {"index_augment": statistics.median(augment_times),
                                        "normalize": statistics.median(normalize_times)},
                       "operator_groups_seconds_per_step": dict(ops), "compiled": compiled, "machine": machine(),
                       "command": "python benchmarks/profile_fast_epoch.py " + " ".join(argv or sys.argv[1:])},
                      handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
