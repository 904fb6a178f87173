"""``weightsym analyze``: the symmetry report of a checkpoint's conv kernels, with flip/shift consistency."""

from __future__ import annotations

from weightsym.cli import checks
from weightsym.cli.parser import add_command


def add_parser(sub) -> None:
    p = add_command(
        sub, "analyze", "symmetry report of a checkpoint: mean-kernel D4 scores, figures, flip/shift consistency",
        "Write report.md, analysis.json, kernels.png and score_depth.png about the symmetry of a checkpoint's conv "
        "kernels. A `weightsym train` checkpoint is rebuilt as its model (symmetric or not) and also measured for "
        "flip and shift consistency (and accuracy) on the test split of its dataset or of --data. A weight file "
        "(weightsym.save), dense export or plain safetensors state dict is analysed as tensors (kernel symmetry "
        "only). A model without 2-D conv layers larger than 1x1 (an MLP, a 1-D CNN) gets a report that says so.",
        ["weightsym train --model fmnist-cnn --epochs 1 --train-subset 2000 --out runs/fmnist && "
         "weightsym analyze runs/fmnist/checkpoint.safetensors --max-batches 2 --out runs/fmnist/analysis",
         "weightsym analyze weights.safetensors --out analysis/"])
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a `weightsym train` checkpoint (checkpoint.safetensors / best.safetensors), a weightsym "
                        "weight file or a plain .safetensors state dict")
    p.add_argument("--data", metavar="NAME", type=checks.dataset_name,
                   help="test set for flip/shift consistency (default: the dataset the checkpoint was trained on)")
    p.add_argument("--data-dir", metavar="DIR", help="where the datasets live (default: $WEIGHTSYM_DATA)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: CHECKPOINT_analysis next to the file)")
    p.add_argument("--max-batches", type=checks.integer(1), metavar="N",
                   help="measure consistency on the first N test batches of 500 (default: the whole test set)")
    p.add_argument("--max-shift", type=checks.integer(0), default=4, metavar="S",
                   help="shift consistency: offsets in [-S, S] per axis")
    p.add_argument("--title", help="report title (default: 'analysis of FILE')")
    p.set_defaults(func=run)


def run(args) -> int:
    checks.existing_file(args.checkpoint, "CHECKPOINT")
    checks.existing_folder(args.data_dir, "--data-dir", "leave it out to use $WEIGHTSYM_DATA")
    if args.out is not None:  # --out '' is refused, not the default folder
        checks.output_folder(args.out)
    # read once, validated (a pickle is refused with a conversion hint, never loaded)
    model_file = checks.checkpoint(args.checkpoint, "CHECKPOINT",
                                   ("classifier", "weights", "dense", "safetensors", "checkpoint"))
    if model_file.role == "classifier" and args.data:
        from weightsym.data.datasets import canonical_name

        canonical_name(args.data)  # image folders are not test sets for consistency
    from weightsym.analysis.report import analyze_file

    analyze_file(model_file, args.out, data=args.data, data_dir=args.data_dir, max_batches=args.max_batches,
                 max_shift=args.max_shift, title=args.title)
    return 0
