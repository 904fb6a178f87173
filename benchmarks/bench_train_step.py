"""Training-step time of symmetric layers and models against dense: the gather path and the fold path, eager and
compiled, interleaved in one run.  Writes JSON, prints Markdown, and with ``--markdown`` writes the results page.

One step = forward + backward (with the input's gradient for single layers, as inside a network) + SGD with momentum
0.9 and weight decay 5e-4.  Three ways to run the same symmetric layer:

* **dense**: the plain layer (the baseline of every ratio);
* **gather**: ``weightsym.symmetrize`` alone: the dense weight is gathered from the free values every step;
* **fold**: ``weightsym.fast.fold_training(model, policy="always")``: the structured pipeline with the reduced
  weights (see ``docs/fast.md``); for whole models ``policy="auto"``, what a user gets.

Each is timed eager and under ``torch.compile`` (inductor); ratios compare like with like (compiled symmetric over
compiled dense).  Rounds are interleaved (dense, variant, dense, next variant, ...; ``weightsym.bench.measure``): a
variant's ratio in a round is its time over the mean of the dense runs around it, and tables show medians over rounds.

    python benchmarks/bench_train_step.py --markdown docs/results/train_step.md     # everything, ~30 min
    python benchmarks/bench_train_step.py --sections layers --repeats 9               # the layer goals only
    python benchmarks/bench_train_step.py --quick                                    # smoke-sized, seconds
    python benchmarks/bench_train_step.py --sections placement --modes compiled --batch 128 \
        --markdown docs/results/cifar10-accuracy/step-time.md --out docs/results/cifar10-accuracy/step-time.json
    python benchmarks/bench_train_step.py --sections policies --cases bisymmetric eighth --modes compiled \
        --batch 128 --markdown docs/results/fold-policies.md --out docs/results/fold-policies.json
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from torch import nn

import weightsym as ws
from weightsym import allocator
from weightsym.bench import measure, write_json
from weightsym.machine import machine
from weightsym.fast import fold_training
from weightsym.models import create_model

# (name, layer factory, input shape, channel, spatial, goal: minimum speed-up of the compiled fold path)
LAYER_CASES = [
    ("dihedral 3x3 conv C=128, 16x16, batch 32", lambda: nn.Conv2d(128, 128, 3, padding=1, bias=False),
     (32, 128, 16, 16), None, "dihedral", 2.0),
    ("block Linear n=2048, batch 256", lambda: nn.Linear(2048, 2048), (256, 2048), "block", None, 3.3),
    ("centrosymmetric Linear n=2048, batch 256", lambda: nn.Linear(2048, 2048), (256, 2048), "centrosymmetric",
     None, 1.7),
    ("bisymmetric Linear n=2048, batch 256", lambda: nn.Linear(2048, 2048), (256, 2048), "bisymmetric", None, 1.7),
    ("block+dihedral 3x3 conv C=128, 16x16, batch 32", lambda: nn.Conv2d(128, 128, 3, padding=1, bias=False),
     (32, 128, 16, 16), "block", "dihedral", 4.0),
]
QUICK_LAYER_CASES = [
    ("dihedral 3x3 conv C=16 (quick)", lambda: nn.Conv2d(16, 16, 3, padding=1, bias=False), (4, 16, 8, 8), None,
     "dihedral", None),
    ("block Linear n=64 (quick)", lambda: nn.Linear(64, 64), (8, 64), "block", None, None),
]
# (name, model, symmetrize options, goal)
MODEL_CASES = [  # symmetrize's default rule: every conv but the stem (and the classifier) stays dense, as in the paper
    ("WRN-16-4-bottleneck, block on every conv + dihedral on every 3x3 conv", "wrn-16-4-bottleneck",
     dict(channel="block", spatial="dihedral"), 1.5),
    ("WRN-16-4-bottleneck, dihedral on every 3x3 conv", "wrn-16-4-bottleneck", dict(spatial="dihedral"), 1.25),
]
# The models of the CIFAR-10 accuracy runs (docs/results/cifar10-accuracy.md): the paper's placement, the middle 3x3
# conv of every bottleneck; their epoch times come from different sessions (and CPUs), this section times them together
PLACEMENT_CASES = [(f"WRN-16-4-bottleneck, {label} at *conv2", "wrn-16-4-bottleneck",
                    dict(channel=channel, spatial=spatial, include=["*conv2"]), None)
                   for label, channel, spatial in [("triangular", "triangular", None),
                                                   ("bisymmetric", "bisymmetric", None), ("eighth", "eighth", None),
                                                   ("tri+spa", "triangular", "transpose"),
                                                   ("dihedral", None, "dihedral")]]
TYINGS = [("triangular", None), ("centrosymmetric", None), ("bisymmetric", None), ("block", None), ("eighth", None),
          ("repeat", None), (None, "transpose"), (None, "hflip"), (None, "vflip"), (None, "rot180"),
          (None, "dihedral"), ("triangular", "transpose")]


def make_step(model: nn.Module, x: torch.Tensor, target, compiled: bool):
    """One training step of ``model`` (compiled or eager) on ``x``; returns the step function."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    forward = torch.compile(model) if compiled else model

    def step():
        opt.zero_grad(set_to_none=True)
        x.grad = None
        out = forward(x)
        loss = nn.functional.cross_entropy(out, target) if target is not None else out.square().mean()
        loss.backward()
        opt.step()

    return step


def compare(dense: nn.Module, variants: dict[str, nn.Module], x, target, repeats: int, modes) -> dict:
    """Interleaved timing of every variant against ``dense``, per mode (eager / compiled)."""
    out = {}
    for compiled in modes:
        start = time.perf_counter()
        baseline = make_step(dense, x, target, compiled)
        steps = {name: make_step(model, x, target, compiled) for name, model in variants.items()}
        timing = measure({"dense": baseline, **steps}, repeats, baseline="dense", warmup=2)
        mode = "compiled" if compiled else "eager"
        out[mode] = {"dense_seconds": timing.median("dense"),
                     "variants": {k: {"seconds": timing.median(k), "ratio": timing.ratio(k),
                                      "ratios": timing.ratios(k)} for k in steps},
                     "wall_seconds": time.perf_counter() - start}
        torch._dynamo.reset()
    return out


def symmetric_variants(dense: nn.Module, options: dict, policy: str, compiled: bool = True) -> tuple[dict, dict]:
    gather = copy.deepcopy(dense)
    symmetric = ws.symmetrize(gather, **options).symmetric
    folded = copy.deepcopy(gather)
    report = fold_training(folded, policy=policy, compiled=compiled)
    return {"gather": gather, "fold": folded}, {"folded": report.folded, "report": str(report),
                                                "symmetric_layers": len(symmetric),
                                                "stored": ws.count_parameters(gather).stored,
                                                "dense_params": ws.count_parameters(dense).stored}


def run_layers(cases, repeats, modes) -> list[dict]:
    rows = []
    for name, factory, shape, channel, spatial, goal in cases:
        torch.manual_seed(0)
        dense = factory()
        x = torch.randn(shape, requires_grad=True)
        variants, info = symmetric_variants(dense, dict(channel=channel, spatial=spatial, include=["*"]), "always")
        print(f"\n== {name}\n{info['report']}", flush=True)
        info["reports"] = {"all": info.pop("report")}
        result = compare(dense, variants, x, None, repeats, modes)
        rows.append({"case": name, "goal": goal, **info, "timing": result})
        _print_row(rows[-1])
    return rows


def _model_and_batch(model_name: str, batch: int):
    """A dense CIFAR model (seed 0) with one random batch of images and labels to time it on."""
    torch.manual_seed(0)
    dense = create_model(model_name)
    x = torch.randn(batch, 3, 32, 32)
    target = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(0))
    return dense, x, target


def run_models(cases, repeats, modes, batch: int) -> list[dict]:
    rows = []
    for name, model_name, options, goal in cases:
        dense, x, target = _model_and_batch(model_name, batch)
        result, reports, folded = {}, {}, {}
        for compiled in modes:  # "auto" decides per mode
            variants, info = symmetric_variants(dense, options, "auto", compiled)
            print(f"\n== {name} ({'compiled' if compiled else 'eager'})\n{info['report']}", flush=True)
            result.update(compare(dense.train(), variants, x, target, repeats, [compiled]))
            reports["compiled" if compiled else "eager"] = info.pop("report")
            folded["compiled" if compiled else "eager"] = list(info["folded"])
        rows.append({"case": name, "goal": goal, **info, "reports": reports, "folded_by_mode": folded,
                     "timing": result})
        _print_row(rows[-1])
    return rows


def run_policies(cases, repeats, modes, batch: int) -> list[dict]:
    """The fold policies side by side on whole models: the gather path, ``policy="auto"`` (the cost model) and
    ``policy="measure"`` (each layer timed on this machine first), each against dense, interleaved."""
    rows = []
    for name, model_name, options, _ in cases:
        dense, x, target = _model_and_batch(model_name, batch)
        gather = copy.deepcopy(dense)
        symmetric = ws.symmetrize(gather, **options).symmetric
        for compiled in modes:
            mode = "compiled" if compiled else "eager"
            variants, folded, reports = {"gather": gather}, {}, {}
            for policy in ("auto", "measure"):
                model = copy.deepcopy(gather)
                start = time.perf_counter()
                report = fold_training(model, policy=policy, compiled=compiled, example_input=x)
                variants[policy] = model
                folded[policy], reports[policy] = report.folded, str(report)
                print(f"\n== {name} ({mode}, policy {policy}: {time.perf_counter() - start:.0f} s)\n{report}",
                      flush=True)
            measure_seconds = time.perf_counter() - start
            rows.append({"case": name, "mode": mode, "symmetric_layers": len(symmetric), "folded": folded,
                         "reports": reports, "measure_seconds": measure_seconds,
                         "timing": compare(dense.train(), variants, x, target, repeats, [compiled])})
            _print_row(rows[-1])
    return rows


def run_tyings(channels: int, batch: int, size: int, repeats: int, modes) -> list[dict]:
    """Every tying on a stack of two 3x3 convs (BN, ReLU), with ``fold_training(policy="auto")``: what a user gets."""
    torch.manual_seed(0)
    dense = nn.Sequential(*[m for _ in range(2) for m in (nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                                          nn.BatchNorm2d(channels), nn.ReLU())])
    x = torch.randn(batch, channels, size, size)
    rows = []
    for channel, spatial in TYINGS:
        name = "+".join(s for s in (channel, spatial) if s)
        result, paths = {}, {}
        for compiled in modes:  # "auto" decides per mode: folded where it pays, the gather path elsewhere
            variants, info = symmetric_variants(dense, dict(channel=channel, spatial=spatial, include=["*"]), "auto",
                                                compiled)
            mode = "compiled" if compiled else "eager"
            paths[mode] = "fold" if info["folded"] else "gather"
            result.update(compare(dense, {"auto": variants["fold"]}, x, None, repeats, [compiled]))
        rows.append({"case": f"{name}, C={channels}", "symmetry": name, "paths": paths, **info, "timing": result})
        _print_row(rows[-1])
    return rows


def run_lstm(hidden: int, repeats: int) -> list[dict]:
    """The bare 2-layer LSTM step (bptt 35, batch 20) with triangular gate blocks, against the fused nn.LSTM."""
    import bench_lstm

    rows = []
    dense = bench_lstm.build("dense", hidden, 2, False, 10_000)
    baseline = bench_lstm.step_fn(dense, hidden, 35, 20, False, 10_000)
    variants = {v: bench_lstm.build(v, hidden, 2, False, 10_000) for v in ("tri hh", "tri hh+ih")}
    steps = {v: bench_lstm.step_fn(m, hidden, 35, 20, False, 10_000) for v, m in variants.items()}
    timing = measure({"dense": baseline, **steps}, repeats, baseline="dense", warmup=2)
    base = timing.median("dense")
    for v in steps:
        rows.append({"case": f"2-layer LSTM {hidden}, {v}", "variant": v, "dense_seconds": base,
                     "seconds": timing.median(v), "ratio": timing.ratio(v), "ratios": timing.ratios(v),
                     "stored": ws.count_parameters(variants[v]).stored,
                     "dense_params": ws.count_parameters(dense).stored})
        print(f"{rows[-1]['case']}: {timing.ratio(v):.3f}x dense ({base * 1e3:.1f} ms)", flush=True)
    return rows


def _print_row(row: dict) -> None:
    for mode, t in row["timing"].items():
        cells = ", ".join(f"{k} {v['seconds'] * 1e3:.1f} ms = {v['ratio']:.3f}x" for k, v in t["variants"].items())
        print(f"{row['case']} [{mode}] dense {t['dense_seconds'] * 1e3:.1f} ms; {cells}", flush=True)


def speedup(ratio: float) -> str:
    return f"{1 / ratio:.2f}× faster" if ratio < 1 else f"{ratio:.2f}× slower"


def markdown(payload: dict, command: str) -> str:
    env = payload["machine"]
    lines = [
        "# Training-step time: dense, gather path, fold path",
        "",
        f"Command: `{command}`  ",
        f"Machine: {env['cpu_count']} CPU cores ({env['cpu']}, {env['platform']}), torch {env['torch']} with "
        f"{env['torch_threads']} threads; allocator: {env['allocator']}  ",
        f"Date: {env['date']}; {payload['args']['repeats']} interleaved rounds per row, medians.",
        "",
        "One step = forward + backward + SGD (momentum 0.9, weight decay 5e-4); single layers also back-propagate to "
        "their input, as inside a network.  *gather*: `weightsym.symmetrize` alone (the dense weight is gathered from "
        "the free values every step); *fold*: `weightsym.fast.fold_training` (the reduced products of "
        "`docs/fast.md`, in the forward and in both backward products).  Ratios are symmetric time over dense time "
        "in the same mode, interleaved in one run; *faster* = dense time ÷ symmetric time.",
        "",
    ]
    if payload.get("layers") or payload.get("models"):
        lines += ["## The goals: layers and whole models", "",
                  "| case | stored (dense) | mode | dense ms | gather | fold | goal (compiled fold) |",
                  "|---|---:|---|---:|---|---|---|"]
        for row in payload.get("layers", []) + payload.get("models", []):
            for mode, t in row["timing"].items():
                v = t["variants"]
                goal = ""
                if row.get("goal") and mode == "compiled":
                    met = 1 / v["fold"]["ratio"] >= row["goal"]
                    goal = f"≥ {row['goal']}×: {'**met**' if met else '**missed**'}"
                lines.append(f"| {row['case']} | {row['stored']:,} ({row['dense_params']:,}) | {mode} | "
                             f"{t['dense_seconds'] * 1e3:.1f} | {speedup(v['gather']['ratio'])} | "
                             f"{speedup(v['fold']['ratio'])} | {goal} |")
        lines.append("")
        for row in payload.get("models", []):
            for mode, report in row["reports"].items():
                lines += [f"Layers of *{row['case']}*, {mode} (`fold_training(policy=\"auto\")`):", "", report, ""]
    if payload.get("placement"):
        lines += ["## The CIFAR-10 accuracy runs' models (symmetric `*conv2`, `fold_training(policy=\"auto\")`)", "",
                  "The models of `docs/results/cifar10-accuracy.md`, timed against dense in one run (their epoch "
                  "times there come from different sessions and machines).  *fold* is what `weightsym train` uses: "
                  "`policy=\"auto\"` folds only the layers it expects to be faster, so *fold* equals *gather* where no "
                  "layer folds.", "",
                  "| case | stored (dense) | mode | dense ms | gather | fold (what training uses) | folded layers |",
                  "|---|---:|---|---:|---|---|---:|"]
        for row in payload["placement"]:
            for mode, t in row["timing"].items():
                v = t["variants"]
                lines.append(f"| {row['case']} | {row['stored']:,} ({row['dense_params']:,}) | {mode} | "
                             f"{t['dense_seconds'] * 1e3:.1f} | {speedup(v['gather']['ratio'])} | "
                             f"{speedup(v['fold']['ratio'])} | {len(row['folded_by_mode'][mode])} of {row['symmetric_layers']} |")
        lines.append("")
    if payload.get("policies"):
        lines += ["## Fold policies: the cost model (`auto`) against timing each layer first (`measure`)", "",
                  "`fold_training(policy=\"auto\")` folds the layers a cost model fitted on one CPU expects to be "
                  "faster; `policy=\"measure\"` times each foldable layer's training step on this machine, folded "
                  "and gathered, and folds where the fold is at least 5% faster (the time it took is the last "
                  "column).  Each model's step against dense, interleaved.", "",
                  "| case | mode | dense ms | gather | auto | folded (auto) | measure | folded (measure) | "
                  "measuring took |", "|---|---|---:|---|---|---:|---|---:|---:|"]
        for row in payload["policies"]:
            for mode, t in row["timing"].items():
                v, n = t["variants"], row["symmetric_layers"]
                lines.append(f"| {row['case']} | {mode} | {t['dense_seconds'] * 1e3:.1f} | "
                             f"{speedup(v['gather']['ratio'])} | {speedup(v['auto']['ratio'])} | "
                             f"{len(row['folded']['auto'])} of {n} | {speedup(v['measure']['ratio'])} | "
                             f"{len(row['folded']['measure'])} of {n} | {row['measure_seconds']:.0f} s |")
        lines.append("")
        for row in payload["policies"]:
            lines += [f"Layers of *{row['case']}*, {row['mode']}, `policy=\"measure\"`:", "",
                      row["reports"]["measure"], ""]
    if payload.get("tyings"):
        lines += ["## Every tying, as a user gets it (`fold_training(policy=\"auto\")`)", "",
                  "Two 3×3 convs with BatchNorm and ReLU, C → C, batch and size in the JSON; every conv symmetric. "
                  "The path column says whether the tying trains through its fold or on the gather path.", "",
                  "| symmetry | path | stored (dense) | mode | dense ms | symmetric ms | ratio |",
                  "|---|---|---:|---|---:|---:|---|"]
        for row in payload["tyings"]:
            for mode, t in row["timing"].items():
                v = t["variants"]["auto"]
                lines.append(f"| {row['case']} | {row['paths'][mode]} | {row['stored']:,} ({row['dense_params']:,}) | {mode} "
                             f"| {t['dense_seconds'] * 1e3:.1f} | {v['seconds'] * 1e3:.1f} | {speedup(v['ratio'])} |")
        lines.append("")
    if payload.get("lstm"):
        lines += ["## Symmetric LSTM (gather path into the fused `nn.LSTM`)", "",
                  "| case | stored (dense) | dense ms | symmetric ms | ratio |", "|---|---:|---:|---:|---|"]
        for row in payload["lstm"]:
            lines.append(f"| {row['case']} | {row['stored']:,} ({row['dense_params']:,}) | "
                         f"{row['dense_seconds'] * 1e3:.1f} | {row['seconds'] * 1e3:.1f} | {speedup(row['ratio'])} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", nargs="+", default=["layers", "models", "tyings", "lstm"],
                    choices=["layers", "models", "tyings", "lstm", "placement", "policies"],
                    help="what to time (default: all but placement, the CIFAR-10 accuracy runs' models, and "
                         "policies, the fold policies auto and measure on those models)")
    ap.add_argument("--cases", nargs="+", metavar="TEXT",
                    help="placement/policies: only the models whose name contains one of these (e.g. bisymmetric)")
    ap.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    ap.add_argument("--repeats", type=int, default=9, help="interleaved rounds (default 9)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--batch", type=int, default=64, help="batch of the whole-model rows (default 64)")
    ap.add_argument("--tying-channels", type=int, nargs="+", default=[128])
    ap.add_argument("--default-allocator", action="store_true", help="keep glibc's allocator defaults")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 2 rounds, eager only (smoke test)")
    ap.add_argument("--out", default="benchmarks/results/train_step.json", help="JSON output")
    ap.add_argument("--markdown", default=None, help="also write the results page here")
    args = ap.parse_args(argv)
    if not args.default_allocator:
        allocator.tune()
    torch.set_num_threads(args.threads)
    modes = [m == "compiled" for m in args.modes]
    if args.quick:
        args.repeats, modes = 2, [False]
    payload = {"machine": machine(), "args": vars(args)}
    if "layers" in args.sections:
        payload["layers"] = run_layers(QUICK_LAYER_CASES if args.quick else LAYER_CASES, args.repeats, modes)
    if "models" in args.sections and not args.quick:
        payload["models"] = run_models(MODEL_CASES, args.repeats, modes, args.batch)
    if "placement" in args.sections and not args.quick:
        cases = [c for c in PLACEMENT_CASES if not args.cases or any(k in c[0] for k in args.cases)]
        payload["placement"] = run_models(cases, args.repeats, modes, args.batch)
    if "policies" in args.sections and not args.quick:
        cases = [c for c in PLACEMENT_CASES if not args.cases or any(k in c[0] for k in args.cases)]
        payload["policies"] = run_policies(cases, args.repeats, modes, args.batch)
    if "tyings" in args.sections:
        for c in ([8] if args.quick else args.tying_channels):
            payload.setdefault("tyings", []).extend(
                run_tyings(c, 4 if args.quick else 64, 8 if args.quick else 32, args.repeats, modes))
    if "lstm" in args.sections and not args.quick:
        payload["lstm"] = run_lstm(650, max(args.repeats, 15))
    command = "python benchmarks/bench_train_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
    page = markdown(payload, command.strip())
    print(page)
    print(f"wrote {write_json(args.out, payload)}")
    if args.markdown:
        Path(args.markdown).write_text(page + "\n")
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
