"""``weightsym describe``: which layers a symmetry choice touches and what it saves, without training."""

from __future__ import annotations

import json

from weightsym.cli import checks
from weightsym.cli.options import add_model_arg, add_symmetry_options
from weightsym.cli.parser import add_command


def add_parser(sub) -> None:
    from weightsym.fast.training import POLICIES as FOLD_POLICIES
    from weightsym.train.describe import PLACEMENT_NOTE

    p = add_command(
        sub, "describe", "per-layer symmetry table and parameter totals of a model, without training",
        "Build a registry model, apply the symmetry options and print which layers they touch (the symmetrize "
        "report: layer, tensor, shape, symmetry, dense and stored values, why a layer stayed dense) and the "
        "whole-model totals: dense-equivalent, stored and free parameters and the % saved. Given a model FILE "
        "instead (weight file or checkpoint), print the same for the model it holds, read and validated by "
        "weightsym.load_model.\n\n" + PLACEMENT_NOTE,
        ["weightsym describe --model wrn-16-4-bottleneck --channel triangular --include '*conv2'",
         "weightsym describe --model resnet-50 --channel triangular --include '*conv2' --json",
         "weightsym describe --model lstm-lm --channel average --hh-gates 1111",
         "weightsym describe --model transformer-lm --channel triangular --qkv 110 --include '*.attn'",
         "weightsym describe --model wrn-16-4-bottleneck --plan '*conv2=tri+spa' '*conv1=block'",
         "weightsym describe --model mnist1d-cnn        # the dense weight layers",
         "weightsym describe --model wrn-16-4-bottleneck --channel triangular --include '*conv2' --match-dense",
         "weightsym describe --model wrn-16-4-bottleneck --channel bisymmetric --include '*conv2' --fold measure "
         "--compile   # which layers train faster folded on this machine",
         "weightsym describe runs/wrn-tri/checkpoint.safetensors --json"])
    p.add_argument("file", nargs="?", metavar="FILE",
                   help="a weight file or training checkpoint to describe instead of --model (default: none)")
    p.add_argument("--model", type=checks.model_name(),
                   help="registry name (`weightsym models` lists them); needed unless FILE is given (default: none)")
    add_model_arg(p, from_config=False)
    add_symmetry_options(p, from_config=False)
    p.add_argument("--match-dense", action="store_true",
                   help="also find the dense model of the same family whose stored parameters match this model's "
                        "(a narrower WRN: fractional --model-arg width), the fair baseline for a symmetric model; "
                        "prints both counts, the gap and the train command (default off)")
    p.add_argument("--qkv", type=checks.qkv_mask, default="111", metavar="MASK",
                   help="attention layers: which of the query, key, value blocks of in_proj_weight take the channel "
                        "symmetry, order q k v (default 111)")
    p.add_argument("--fold", choices=FOLD_POLICIES,
                   help="also show which symmetric layers would train through their folds, and why: auto (the cost "
                        "model), measure (time each layer's training step here, gathered and folded, on a random "
                        "batch of the model's input shape; seconds per layer), always, never (default: not shown)")
    p.add_argument("--compile", action="store_true",
                   help="with --fold: decide as `weightsym train --compile` would (compiled rules; measure compiles "
                        "each layer, about 5-10 s each on a CPU) (default off)")
    p.add_argument("--batch-size", type=checks.integer(1),
                   help="with --fold measure: the batch to time on (default the training default: 128, or 20 "
                        "sequences for language models)")
    p.add_argument("--json", action="store_true", help="also print the totals as one JSON line after the table")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.file is not None:
        given = [f"--{k.replace('_', '-')}" for k in ("model", "channel", "spatial", "plan", "include", "exclude",
                                                      "ih_gates", "fold") if getattr(args, k, None)]
        if given:
            raise checks.UsageError(f"{', '.join(given)}: a FILE is described as it is stored; leave them out, or "
                                    "leave FILE out to describe --model NAME with them")
        model_file = checks.checkpoint(args.file, "FILE", ("classifier", "language-model", "checkpoint", "weights"))
        from weightsym.train.describe import describe_file

        text, counts, description = describe_file(model_file)
        print(text)
        match = None
        if args.match_dense:
            arch = description.architecture
            match = _match(arch["name"], counts.stored, {k: v for k, v in arch["args"].items() if k != "num_classes"})
            print(match)
        if args.json:
            print(json.dumps(_totals(counts, match)))
        return 0
    if not args.model:
        raise checks.UsageError("--model NAME (a registry model) or a model FILE is required; `weightsym models` "
                                "lists the names")
    from weightsym.cli.options import check_plan
    from weightsym.train.describe import describe_model

    if args.match_dense:
        _check_knob(args.model)

    plan = check_plan(args, vars(args))
    if args.fold and not (args.channel or args.spatial or plan):
        raise checks.UsageError("--fold: no symmetry requested, so nothing can fold; add --channel/--spatial or --plan")
    if (args.compile or args.batch_size) and not args.fold:
        raise checks.UsageError(f"{'--compile' if args.compile else '--batch-size'} only matters with --fold "
                                "(auto, measure, always or never)")
    text, counts = describe_model(args.model, channel=args.channel, spatial=args.spatial, plan=plan,
                                  include=args.include,
                                  exclude=args.exclude, strict=args.strict, hh_gates=args.hh_gates,
                                  ih_gates=args.ih_gates, qkv=args.qkv, model_args=dict(args.model_args or []),
                                  fold=args.fold, compiled=args.compile, batch_size=args.batch_size)
    print(text)
    match = _match(args.model, counts.stored, dict(args.model_args or [])) if args.match_dense else None
    if match is not None:
        print(match)
    if args.json:
        print(json.dumps(_totals(counts, match)))
    return 0


def _check_knob(name: str) -> None:
    from weightsym.train.dense_match import width_knob

    try:
        width_knob(name)
    except ValueError as exc:
        raise checks.UsageError(f"--match-dense: {exc}") from None


def _match(name: str, stored: int, model_args: dict):
    from weightsym.train.dense_match import match_dense

    _check_knob(name)
    return match_dense(name, stored, model_args)  # the match replaces the width, keeps the other options


def _totals(counts, match) -> dict:
    totals = counts.to_dict()
    if match is not None:
        totals["match_dense"] = {"model": match.model, "model_args": match.model_args, "stored": match.stored,
                                 "gap": match.gap}
    return totals
