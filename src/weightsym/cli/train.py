"""``weightsym train``: train an image classifier, optionally with symmetric weights; resumable, torchrun-ready."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from weightsym.cli import checks
from weightsym.cli.options import add_init_option, add_model_arg, add_symmetry_options
from weightsym.cli.parser import add_command

def add_parser(sub) -> None:
    from weightsym.train.config import DATA_SOURCES, FOLD_POLICIES as FOLD_CHOICES, PRECISIONS, SCHEDULES, TrainConfig
    from weightsym.train.describe import PLACEMENT_NOTE
    from weightsym.train.recipes import TRAIN_RECIPES

    d = TrainConfig()
    p = add_command(
        sub, "train", "train an image classifier (optionally with symmetric weights); resumable; torchrun-ready",
        "Train a registry model on its dataset with symmetric weights applied from outside the model. Writes "
        "log.jsonl, checkpoint.safetensors, best.safetensors and summary.json to --out, which is locked while the "
        "run is alive. Ctrl-C or SIGTERM stops the run; --resume continues it from its last checkpoint, bit for "
        "bit. Multi-process: torchrun --nproc_per_node=N -m weightsym train ... (DistributedDataParallel, gloo on "
        "CPU, nccl on GPU; --batch-size is the global batch).\n\n" + PLACEMENT_NOTE,
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
         "--epochs 30 --out runs/wrn-tri-paper    # the original code's recipe, milestones scaled to 30 epochs",
         "weightsym train --recipe airbench --model airbench-64-128-128 --out runs/air93    # ~93% in 11 epochs",
         "weightsym train --recipe airbench --model airbench-64-128-128 --channel triangular --out runs/air93-tri",
         "weightsym train --recipe airbench --model airbench-64-128-128 --without tta,lookahead --out runs/ablate"],
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
    g.add_argument("--augment", type=checks.augment, metavar="SPEC",
                   help="training augmentation: default (the dataset's; CIFAR: pad-4 crop + flip), none, crop-flip, "
                        "crop, flip, or '+'-joined parts flip (random mirror), altflip (alternating mirror), "
                        "translate:P (reflect-pad P, random crop), e.g. altflip+translate:2")
    g.add_argument("--data-source", choices=DATA_SOURCES,
                   help="which copy of CIFAR: auto (the first found: official binary, python, lossless PNG, then the "
                        "lossy JPEG), or one of them (jpeg: the old q75 copy, for comparisons); default auto")
    g.add_argument("--drop-last", action="store_true",
                   help="drop each epoch's last incomplete batch (default off)")
    g.add_argument("--image-size", type=checks.integer(1),
                   help=f"image folders only: crop size, default {d.image_size}")
    g.add_argument("--expand-input", type=checks.integer(1), metavar="K",
                   help="weightsym.analysis.ExpandInput factor applied to every batch, default 1 (off)")
    g.add_argument("--expand-fill", type=checks.number(),
                   help="ExpandInput fill in normalised units, default 0 (the dataset mean)")
    add_init_option(add_symmetry_options(p, from_config=True), from_config=True)
    g = p.add_argument_group("recipe")
    g.add_argument("--recipe", choices=sorted(TRAIN_RECIPES),
                   help="a named preset of the options below and the model's init: "
                        + "; ".join(f"{r.name}: {r.summary}" for r in TRAIN_RECIPES.values()).replace("%", "%%")
                        + "; options given explicitly win; the run header says what it set (default: none, each "
                          "option's own default)")
    g.add_argument("--without", type=lambda text: [t.strip() for t in text.split(",") if t.strip()],
                   metavar="T1,T2", help="turn off techniques of the recipe by name (airbench: "
                   + ", ".join(TRAIN_RECIPES["airbench"].techniques) + "); default: none")
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", choices=("sgd", "adamw"), help=f"default {d.optimizer}")
    g.add_argument("--lr", type=checks.number(0, low_open=True), help=f"peak learning rate, default {d.lr}")
    g.add_argument("--momentum", type=checks.number(0, 1, high_open=True), help=f"SGD momentum, default {d.momentum}")
    g.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD; default off)")
    g.add_argument("--weight-decay", type=checks.number(0), help=f"default {d.weight_decay}")
    g.add_argument("--betas", type=checks.float_list(0, 1, length=2),
                   help=f"AdamW betas, default {','.join(map(str, d.betas))}")
    g.add_argument("--schedule", choices=SCHEDULES,
                   help=f"learning-rate schedule; warmup-linear: --lr-start -> 1 over --warmup of the steps, then "
                        f"linearly to --lr-end; default {d.schedule}")
    g.add_argument("--warmup", type=checks.number(0, 1, high_open=True),
                   help=f"warmup-linear: fraction of the steps that warm up, default {d.warmup}")
    g.add_argument("--lr-start", type=checks.number(0), help=f"warmup-linear: factor at step 0, default {d.lr_start}")
    g.add_argument("--lr-end", type=checks.number(0), help=f"warmup-linear: factor at the end, default {d.lr_end}")
    g.add_argument("--decoupled", action="store_true",
                   help="--lr and --weight-decay are per 1,024 examples, decoupled from the batch size and "
                        "momentum (SGD; the airbench recipe's convention; default off: PyTorch's own)")
    g.add_argument("--bn-bias-lr-scale", type=checks.number(0, low_open=True),
                   help=f"learning-rate multiplier of BatchNorm biases, default {d.bn_bias_lr_scale:g}")
    g.add_argument("--lookahead", action=argparse.BooleanOptionalAction,
                   help="every 5 steps the weights jump to an EMA of themselves, which they take at the end "
                        "(default off)")
    g.add_argument("--tta", type=int, choices=(0, 1, 2),
                   help="test-time augmentation of the final evaluation: 0 none, 1 mirror, 2 mirror + translate "
                        "(the summary also keeps the plain accuracy); default 0")
    g.add_argument("--freeze-after", type=checks.freeze, action="append", metavar="PARAM=EPOCHS",
                   help="a parameter trains for EPOCHS epochs, then is frozen (repeatable), e.g. whiten.bias=3; "
                        "default: none")
    g.add_argument("--precision", choices=PRECISIONS,
                   help="fp32, bf16 (autocast: convolutions and matrix products in bfloat16, weights and optimizer "
                        "in float32) or auto (bf16 where the CPU/GPU runs it natively); default "
                        f"{d.precision}")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="model and batches in channels-last memory format (faster convolutions on CPU); default off")
    g.add_argument("--milestones", type=checks.float_list(0),
                   help="step schedule: epochs (>= 1) or fractions of --epochs (< 1); default 0.3,0.6,0.8 "
                        "(the paper's 60,120,160 of 200)")
    g.add_argument("--gamma", type=checks.number(0, low_open=True),
                   help=f"step schedule: lr factor at each milestone, default {d.gamma}")
    g.add_argument("--momentum-reset-at-milestones", action="store_true",
                   help="step schedule: clear the optimizer state (momentum) when a milestone epoch starts, as the "
                        "paper's code does by building a new SGD there (default off)")
    g.add_argument("--epochs", type=checks.epochs,
                   help=f"epochs; a fraction ends the last one early (9.9: 90%% of the 10th), default {d.epochs}")
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
    g.add_argument("--snapshots", action="store_true",
                   help="also keep the weights at the start and after every epoch (OUT/snapshots/epoch-000.safetensors "
                        "... , weight files `weightsym analyze` reads: how kernel symmetry emerges; default off)")
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


def config_from_args(args: argparse.Namespace):
    """A :class:`~weightsym.train.config.TrainConfig` from the options given (others keep their defaults); see
    :func:`options_from_args`."""
    return options_from_args(args)[0]


def options_from_args(args: argparse.Namespace):
    """``(config, checkpoint, given)``: the :class:`~weightsym.train.config.TrainConfig` of the options given (others
    keep their defaults), with ``--resume`` the run's checkpoint, read once and validated (a
    :class:`~weightsym.files.ModelFile`; else None), and the names of the options typed (not those a recipe set),
    which :mod:`weightsym.train.applicability` judges.

    With ``--resume`` the options come from that checkpoint by the one resume rule,
    :data:`weightsym.train.config.RESUME` (training options from the checkpoint, giving one that differs is an error;
    run control from the command line, ``--compile``/``--fold``/``--threads``/... kept unless given again).
    """
    from weightsym.cli.options import check_plan
    from weightsym.train.config import RESUME, TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    if "model_args" in given:
        given["model_args"] = dict(given["model_args"])
    if "plan" in given:
        given["plan"] = check_plan(args, given)
    if "freeze_after" in given:
        given["freeze_after"] = dict(given["freeze_after"])
    typed = set(given)  # what the user typed: judged by weightsym.train.applicability (a recipe's own values are not)
    techniques = getattr(args, "without", None)
    if techniques:
        if not given.get("recipe"):
            raise checks.UsageError("--without turns off techniques of a recipe; give --recipe too, e.g. --recipe "
                                    "airbench --without tta")
        from weightsym.train.recipes import TRAIN_RECIPES, without

        try:
            given = without(TRAIN_RECIPES, given["recipe"], techniques, given)
        except ValueError as exc:
            raise checks.UsageError(f"--without: {exc}") from None
    if given.get("recipe") and not given.get("resume"):  # the recipe's values under the options given explicitly
        from weightsym.train.recipes import TRAIN_RECIPES, resolve

        given = {k: v for k, v in given.items() if k != "recipe"}
        try:
            given = resolve(TRAIN_RECIPES, args.recipe, given, model=given.get("model", TrainConfig.model))
        except ValueError as exc:
            raise checks.UsageError(f"--recipe {args.recipe}: {exc}") from None
    config, checkpoint = TrainConfig(**given), None
    if config.resume:
        checkpoint = resume_checkpoint(config.out)
        from weightsym.train.resume import ResumeConflict

        try:
            config = RESUME.resume(checkpoint, config, given=set(given))
        except ResumeConflict as exc:
            raise checks.UsageError(str(exc)) from None
    return config, checkpoint, typed


def resume_checkpoint(out: str):
    """The checkpoint ``--resume`` continues from, read once and validated (a :class:`~weightsym.files.ModelFile`)."""
    from weightsym.train.classification import CHECKPOINT

    path = Path(out) / CHECKPOINT
    if not path.exists():
        raise checks.UsageError(f"--resume: no checkpoint at {path}; start the run without --resume first, "
                                "or name the folder of an existing run with --out")
    return checks.checkpoint(str(path), "--resume", ("classifier",))


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
    config, checkpoint, given = options_from_args(args)
    from weightsym.train.classification import train

    train(config, checkpoint, given)  # the checkpoint read once: the config above and the weights come from it
    return 0
