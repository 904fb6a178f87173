"""``weightsym train``, ``weightsym eval`` and ``weightsym describe``: argument parsing only; the work is in the library
(:func:`weightsym.train.train`, :func:`weightsym.train.evaluate_checkpoint`, :func:`weightsym.train.describe_model`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from weightsym.train.config import RUN_CONTROL, TrainConfig
from weightsym.train.describe import PLACEMENT_NOTE

_DEFAULTS = TrainConfig()


def _csv_floats(text: str) -> list[float]:
    return [float(v) for v in text.replace(" ", "").split(",") if v]


def _model_arg(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--model-arg {text!r}: use KEY=VALUE, e.g. width=16")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _add_symmetry_arguments(p: argparse.ArgumentParser, suppress: bool) -> None:
    d = argparse.SUPPRESS if suppress else None
    g = p.add_argument_group("symmetry (applied from outside the model, see weightsym.symmetrize)")
    g.add_argument("--channel", default=d, help="channel symmetry, e.g. triangular, bisymmetric, block, average")
    g.add_argument("--spatial", default=d, help="spatial symmetry, e.g. transpose, hflip, rot180, dihedral")
    g.add_argument("--include", action="append", default=d, metavar="GLOB",
                   help="only layers whose name matches (repeatable), e.g. '*conv2' (the paper's bottleneck placement)")
    g.add_argument("--exclude", action="append", default=d, metavar="GLOB", help="skip matching layers (repeatable)")
    g.add_argument("--strict", action="store_true", default=argparse.SUPPRESS if suppress else False,
                   help="fail instead of leaving a layer the symmetry cannot act on dense")
    g.add_argument("--hh-gates", default=argparse.SUPPRESS if suppress else "1111", metavar="MASK",
                   help="recurrent layers: gates of weight_hh to symmetrize (LSTM order i f g o), default 1111")
    g.add_argument("--ih-gates", default=d, metavar="MASK",
                   help="recurrent layers: gates of weight_ih (needs input size == hidden size)")


def setup_train(sub) -> None:
    S = argparse.SUPPRESS  # options left out are not in the namespace: the config's defaults (or the checkpoint's)
    p = sub.add_parser(
        "train", help="train an image classifier (optionally with symmetric weights); torchrun-ready",
        formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=S,
        description="Train a registry model on its dataset with symmetric weights. Writes log.jsonl, "
                    "checkpoint.safetensors, best.safetensors and summary.json to --out.\n\n"
                    "Multi-process: torchrun --nproc_per_node=N -m weightsym train ... (DistributedDataParallel, "
                    "gloo on CPU, nccl on GPU; --batch-size is the global batch).\n\n" + PLACEMENT_NOTE,
        epilog="example: weightsym train --model wrn-16-4-bottleneck --channel triangular --include '*conv2' "
               "--epochs 200 --out runs/wrn-tri")
    g = p.add_argument_group("model and data")
    g.add_argument("--model", help=f"registry name (weightsym.models.list_models()), default {_DEFAULTS.model}")
    g.add_argument("--model-arg", action="append", type=_model_arg, dest="model_args", metavar="KEY=VALUE",
                   help="constructor option for the model (repeatable), e.g. width=16, dropout=0.3")
    g.add_argument("--dataset", help="dataset name (default: the model's), e.g. cifar10, cifar100, fashion-mnist, "
                                     "mnist1d, or an image folder: imagenet, imagenette, imagefolder (with --data-dir "
                                     "holding train/<class>/ and val/<class>/)")
    g.add_argument("--data-dir", help="dataset root (default $WEIGHTSYM_DATA, else the user cache)")
    g.add_argument("--train-subset", type=int, metavar="N", help="fixed seeded class-balanced subset of N samples")
    g.add_argument("--augment", help="training augmentation: default (the dataset's), none, crop-flip, crop, flip")
    g.add_argument("--image-size", type=int,
                   help="image folders (--dataset imagenet/imagenette/imagefolder): crop size, default 224")
    g.add_argument("--expand-input", type=int, metavar="K",
                   help="weightsym.transforms.ExpandInput factor applied to every batch (1 = off)")
    g.add_argument("--expand-fill", type=float, help="ExpandInput fill, in normalised units (default 0 = the mean)")
    _add_symmetry_arguments(p, suppress=True)
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", choices=["sgd", "adamw"], help="default sgd")
    g.add_argument("--lr", type=float, help=f"peak learning rate, default {_DEFAULTS.lr}")
    g.add_argument("--momentum", type=float, help=f"SGD momentum, default {_DEFAULTS.momentum}")
    g.add_argument("--nesterov", action="store_true", help="Nesterov momentum")
    g.add_argument("--weight-decay", type=float, help=f"default {_DEFAULTS.weight_decay}")
    g.add_argument("--betas", type=_csv_floats, help="AdamW betas, e.g. 0.9,0.999")
    g.add_argument("--schedule", choices=["step", "cosine", "constant"], help="default step")
    g.add_argument("--milestones", type=_csv_floats,
                   help="step schedule: epochs (>= 1) or fractions of --epochs (< 1); default 0.3,0.6,0.8 "
                        "(the paper's 60,120,160 of 200)")
    g.add_argument("--gamma", type=float, help=f"step schedule factor, default {_DEFAULTS.gamma}")
    g.add_argument("--epochs", type=int, help=f"default {_DEFAULTS.epochs}")
    g.add_argument("--batch-size", type=int, help=f"global batch size, default {_DEFAULTS.batch_size}")
    g.add_argument("--label-smoothing", type=float, help="default 0")
    g.add_argument("--seed", type=int, help="default 0")
    g.add_argument("--no-deterministic", dest="deterministic", action="store_false",
                   help="allow non-deterministic kernels (exact resume is then not guaranteed on GPU)")
    g = p.add_argument_group("run control (may change when resuming)")
    g.add_argument("--out", metavar="DIR", help=f"output folder, default {_DEFAULTS.out}")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint.safetensors (options come from the checkpoint)")
    g.add_argument("--max-steps", type=int, help="stop after this many optimizer steps in total (for tests)")
    g.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                   help="also write checkpoint.safetensors every STEPS steps (exact resume mid-epoch)")
    g.add_argument("--device", help="auto (default: cuda if available), cpu, cuda, cuda:N")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    g.add_argument("--eval-batch-size", type=int, help=f"default {_DEFAULTS.eval_batch_size}")
    g.add_argument("--threads", type=int, help="torch threads per process (default: torch's choice)")
    g.add_argument("--workers", type=int, help="image-folder loading processes per training process "
                                               "(default min(4, CPUs); 0 = load in the training process)")
    p.set_defaults(func=run_train)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A :class:`TrainConfig` from the options given on the command line (others keep their defaults).

    With ``--resume`` the training options come from the checkpoint; giving one that differs is an error.
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    if "model_args" in given:
        given["model_args"] = dict(given["model_args"])
    config = TrainConfig(**given)
    if config.resume:
        from weightsym.train.loop import resume_config

        saved = resume_config(config)
        changed = [f"--{k.replace('_', '-')} {given[k]!r} (checkpoint: {getattr(saved, k)!r})"
                   for k in given if k not in RUN_CONTROL and getattr(config, k) != getattr(saved, k)]
        if changed:
            raise ValueError(f"--resume continues the same run, but {', '.join(changed)} differ; "
                             "use a new --out to change them")
    return config


def run_train(args) -> int:
    from weightsym.train.loop import train

    train(config_from_args(args))
    return 0


def setup_eval(sub) -> None:
    p = sub.add_parser("eval", help="test accuracy of a training checkpoint (model and symmetry rebuilt from it)",
                       description="Rebuild the model from the config stored in CHECKPOINT (its symmetry included), "
                                   "load the weights and report the test accuracy on its dataset.")
    p.add_argument("checkpoint", help="checkpoint.safetensors or best.safetensors written by weightsym train")
    p.add_argument("--data-dir", default=None, help="dataset root (default: the run's, else $WEIGHTSYM_DATA)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_eval)


def run_eval(args) -> int:
    from weightsym.train.loop import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, args.data_dir, args.device, args.batch_size)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        p = result["params"]
        print(f"{result['model']} on {result['dataset']} (step {result['step']}): test accuracy "
              f"{100 * result['accuracy']:.2f}% ({result['samples']:,} samples), loss {result['loss']:.4f}; "
              f"stored parameters {p['stored']:,} of dense-equivalent {p['dense']:,}")
    return 0


def setup_describe(sub) -> None:
    p = sub.add_parser(
        "describe", help="per-layer symmetry table and parameter totals of a model, without training",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build a registry model, apply the symmetry options and print which layers they touch "
                    "(the symmetrize report) and the totals: dense-equivalent, stored and free parameters and "
                    "the % saved.\n\n" + PLACEMENT_NOTE,
        epilog="examples:\n  weightsym describe --model wrn-16-4-bottleneck --channel triangular --include '*conv2'\n"
               "  weightsym describe --model resnet-50 --channel triangular --include '*conv2'\n"
               "  weightsym describe --model lstm-lm --channel average --hh-gates 1111 (if registered)")
    p.add_argument("--model", required=True, help="registry name (see weightsym.models.list_models())")
    p.add_argument("--model-arg", action="append", type=_model_arg, dest="model_args", default=None,
                   metavar="KEY=VALUE", help="constructor option for the model (repeatable)")
    _add_symmetry_arguments(p, suppress=False)
    p.add_argument("--json", action="store_true", help="print the totals as JSON after the table")
    p.set_defaults(func=run_describe)


def run_describe(args) -> int:
    from weightsym.train.describe import describe_model

    text, counts = describe_model(args.model, channel=args.channel, spatial=args.spatial, include=args.include,
                                  exclude=args.exclude, strict=args.strict, hh_gates=args.hh_gates,
                                  ih_gates=args.ih_gates, model_args=dict(args.model_args or []))
    print(text)
    if args.json:
        print(json.dumps(counts.to_dict()))
    return 0
