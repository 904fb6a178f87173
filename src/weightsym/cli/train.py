"""``weightsym train``: train an image classifier, optionally with symmetric weights; resumable, torchrun-ready."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from weightsym.cli import checks
from weightsym.cli.options import add_init_option, add_model_arg, add_symmetry_options
from weightsym.cli.parser import add_command

PLACEMENT = ("On bottleneck models (wrn-*-bottleneck, resnet-50/101/152) the paper symmetrizes only the middle 3x3 "
             "conv of each block: use --include '*conv2'.")


def add_parser(sub) -> None:
    from weightsym.train.config import FOLD_POLICIES as FOLD_CHOICES, TrainConfig
    from weightsym.train.recipes import TRAIN_RECIPES

    d = TrainConfig()
    p = add_command(
        sub, "train", "train an image classifier (optionally with symmetric weights); resumable; torchrun-ready",
        "Train a registry model on its dataset with symmetric weights applied from outside the model. Writes "
        "log.jsonl, checkpoint.safetensors, best.safetensors and summary.json to --out, which is locked while the "
        "run is alive. Ctrl-C or SIGTERM stops the run; --resume continues it from its last checkpoint, bit for "
        "bit. Multi-process: torchrun --nproc_per_node=N -m weightsym train ... (DistributedDataParallel, gloo on "
        "CPU, nccl on GPU; --batch-size is the global batch).\n\n" + PLACEMENT,
        ["weightsym train --model mnist1d-cnn --channel triangular --epochs 3 --lr 0.05 --out runs/mnist1d-tri",
         "weightsym train --resume --out runs/mnist1d-tri    # continue after Ctrl-C or SIGTERM",
         "weightsym train --model wrn-16-4-bottleneck --channel triangular --include '*conv2' --epochs 200 "
         "--out runs/wrn-tri",
         "weightsym train --model wrn-16-4-bottleneck --plan '*conv2=tri+spa' '*conv1=block' --out runs/wrn-mixed",
         "torchrun --standalone --nproc_per_node=2 -m weightsym train --model wrn-16-4 --spatial dihedral "
         "--out runs/wrn-d4",
         "weightsym train --model wrn-16-4-bottleneck --channel block --spatial dihedral --compile "
         "--out runs/wrn-bd4    # trains through the folds: fewer multiplies per step",
         "weightsym train --recipe paper --model wrn-16-4-bottleneck --channel triangular --include '*conv2' "
         "--epochs 30 --out runs/wrn-tri-paper    # the original code's recipe, milestones scaled to 30 epochs"],
        argument_default=argparse.SUPPRESS)  # left out: the config's default (or, with --resume, the checkpoint's)
    g = p.add_argument_group("model and data")
    g.add_argument("--model", type=checks.model_name("classification"),
                   help=f"registry name (`weightsym models` lists them), default {d.model}")
    add_model_arg(g, from_config=True)
    g.add_argument("--dataset", type=checks.dataset_name,
                   help="cifar10, cifar100, fashion-mnist, mnist1d, or an image folder: imagenet, imagenette, "
                        "imagefolder (--data-dir holding train/<class>/ and val/<class>/); default: the model's")
    g.add_argument("--data-dir", metavar="DIR", help="dataset root, default $WEIGHTSYM_DATA, else ~/.cache/weightsym")
    g.add_argument("--train-subset", type=checks.integer(1), metavar="N",
                   help="train on a fixed seeded class-balanced subset of N samples (default: all)")
    g.add_argument("--augment", choices=("default", "none", "crop-flip", "crop", "flip"),
                   help="training augmentation, default: the dataset's (CIFAR: pad-4 crop + flip)")
    g.add_argument("--image-size", type=checks.integer(1),
                   help=f"image folders only: crop size, default {d.image_size}")
    g.add_argument("--expand-input", type=checks.integer(1), metavar="K",
                   help="weightsym.transforms.ExpandInput factor applied to every batch, default 1 (off)")
    g.add_argument("--expand-fill", type=checks.number(),
                   help="ExpandInput fill in normalised units, default 0 (the dataset mean)")
    add_init_option(add_symmetry_options(p, from_config=True), from_config=True)
    g = p.add_argument_group("recipe")
    g.add_argument("--recipe", choices=sorted(TRAIN_RECIPES),
                   help="a named preset of the options below and the model's init, e.g. paper: "
                        + TRAIN_RECIPES["paper"].summary + "; options given explicitly win; the run header says "
                        "what it set (default: none, each option's own default)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", choices=("sgd", "adamw"), help=f"default {d.optimizer}")
    g.add_argument("--lr", type=checks.number(0, low_open=True), help=f"peak learning rate, default {d.lr}")
    g.add_argument("--momentum", type=checks.number(0, 1, high_open=True), help=f"SGD momentum, default {d.momentum}")
    g.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD; default off)")
    g.add_argument("--weight-decay", type=checks.number(0), help=f"default {d.weight_decay}")
    g.add_argument("--betas", type=checks.float_list(0, 1, length=2),
                   help=f"AdamW betas, default {','.join(map(str, d.betas))}")
    g.add_argument("--schedule", choices=("step", "cosine", "constant"), help=f"default {d.schedule}")
    g.add_argument("--milestones", type=checks.float_list(0),
                   help="step schedule: epochs (>= 1) or fractions of --epochs (< 1); default 0.3,0.6,0.8 "
                        "(the paper's 60,120,160 of 200)")
    g.add_argument("--gamma", type=checks.number(0, low_open=True),
                   help=f"step schedule: lr factor at each milestone, default {d.gamma}")
    g.add_argument("--momentum-reset-at-milestones", action="store_true",
                   help="step schedule: clear the optimizer state (momentum) when a milestone epoch starts, as the "
                        "paper's code does by building a new SGD there (default off)")
    g.add_argument("--epochs", type=checks.integer(1), help=f"default {d.epochs}")
    g.add_argument("--batch-size", type=checks.integer(1),
                   help=f"global batch size (split over torchrun processes), default {d.batch_size}")
    g.add_argument("--label-smoothing", type=checks.number(0, 1, high_open=True), help="default 0")
    g.add_argument("--seed", type=checks.integer(0), help=f"default {d.seed}")
    g.add_argument("--no-deterministic", dest="deterministic", action="store_false",
                   help="allow non-deterministic kernels (default: deterministic; exact resume needs it on GPU)")
    g = p.add_argument_group("run control (may change when resuming)")
    g.add_argument("--out", metavar="DIR", help=f"output folder, default {d.out}")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint.safetensors (its training options are used, "
                        "and its --compile/--fold/--threads/--workers unless given again; default off: a new run, "
                        "refused if --out already holds one)")
    g.add_argument("--max-steps", type=checks.integer(1), help="stop after this many optimizer steps in total, "
                                                               "schedule unchanged (default: run every epoch)")
    g.add_argument("--checkpoint-every", type=checks.integer(1), metavar="STEPS",
                   help="also write checkpoint.safetensors every STEPS steps (default: at the end of each epoch)")
    g.add_argument("--device", type=checks.device, help="auto, cpu, cuda or cuda:N; default auto (cuda if visible)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar (default: shown)")
    g.add_argument("--eval-batch-size", type=checks.integer(1), help=f"default {d.eval_batch_size}")
    g.add_argument("--threads", type=checks.integer(1), help="torch threads per process (default: torch's choice)")
    g.add_argument("--workers", type=checks.integer(0),
                   help="image folders: loading processes per training process (default min(4, CPUs); 0 = none)")
    g.add_argument("--compile", action="store_true",
                   help="run the training forward through torch.compile (default off; checkpoints and evaluation "
                        "use the eager model; a tiny model takes 10-30 s to compile on a CPU)")
    g.add_argument("--fold", choices=FOLD_CHOICES,
                   help="symmetric layers whose structure saves multiplies train through their folds: auto (where "
                        "a cost model says the saving outweighs the folds' memory passes; fitted on one CPU, with "
                        "rules that differ with --compile), measure (where a timed training step of each layer on "
                        "this machine says so: seconds per layer, a minute or so for a WRN with --compile; the "
                        "choice is kept on --resume), always, never (the dense-weight gather); default auto; the log "
                        "names the folded layers")
    p.set_defaults(func=run)


# Run-control options a resumed run keeps from its checkpoint unless given again: how it computed, not where it writes.
KEPT_ON_RESUME = ("compile", "fold", "threads", "workers", "eval_batch_size", "checkpoint_every")


def config_from_args(args: argparse.Namespace):
    """A :class:`~weightsym.train.config.TrainConfig` from the options given (others keep their defaults).

    With ``--resume`` the training options come from the checkpoint; giving one that differs is an error.
    """
    from weightsym.train.config import RUN_CONTROL, TrainConfig

    from weightsym.cli.options import check_plan

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    if "model_args" in given:
        given["model_args"] = dict(given["model_args"])
    if "plan" in given:
        given["plan"] = check_plan(args, given)
    if given.get("recipe") and not given.get("resume"):  # the recipe's values under the options given explicitly
        from weightsym.train.recipes import TRAIN_RECIPES, resolve

        given = {k: v for k, v in given.items() if k != "recipe"}
        try:
            given = resolve(TRAIN_RECIPES, args.recipe, given, model=given.get("model", TrainConfig.model))
        except ValueError as exc:
            raise checks.UsageError(f"--recipe {args.recipe}: {exc}") from None
    config = TrainConfig(**given)
    if config.resume:
        from weightsym.train.loop import CHECKPOINT, checkpoint_info, resume_config

        path = Path(config.out) / CHECKPOINT
        if not path.exists():
            raise checks.UsageError(f"--resume: no checkpoint at {path}; start the run without --resume first, "
                                    "or name the folder of an existing run with --out")
        checks.checkpoint(str(path), "--resume", ("classifier",))
        saved = resume_config(config)
        stored = checkpoint_info(path)["state"]["config"]
        kept = {k: stored[k] for k in KEPT_ON_RESUME if k not in given and k in stored}
        if kept:  # how the run computed (compiled, folded, threads, ...) carries over unless given again
            config = dataclasses.replace(config, **kept)
        changed = [f"--{k.replace('_', '-')} {given[k]!r} (checkpoint: {getattr(saved, k)!r})"
                   for k in given if k not in RUN_CONTROL and getattr(config, k) != getattr(saved, k)]
        if changed:
            raise checks.UsageError(f"--resume continues the same run, but {', '.join(changed)} differ; "
                                    "use a new --out to change them")
    return config


def check(args) -> None:
    """Everything that can be checked before the run starts (the library checks the rest before loading data)."""
    checks.existing_folder(getattr(args, "data_dir", None), "--data-dir",
                           "point it at the folder holding the datasets, or leave it out to use $WEIGHTSYM_DATA")
    checks.output_folder(getattr(args, "out", "runs/train"))
    if getattr(args, "nesterov", False) and getattr(args, "momentum", 0.9) == 0:
        raise checks.UsageError("--nesterov needs --momentum > 0, e.g. --momentum 0.9")
    if getattr(args, "momentum_reset_at_milestones", False) and getattr(args, "schedule", "step") != "step":
        raise checks.UsageError("--momentum-reset-at-milestones resets at the step schedule's milestones; use "
                                "--schedule step or leave it out")
    if getattr(args, "nesterov", False) and getattr(args, "optimizer", "sgd") != "sgd":
        raise checks.UsageError("--nesterov is an SGD option; leave it out with --optimizer adamw")


def run(args) -> int:
    check(args)
    config = config_from_args(args)
    from weightsym.train.loop import train

    train(config)
    return 0
