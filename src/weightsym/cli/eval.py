"""``weightsym eval``: test accuracy of a ``weightsym train`` checkpoint."""

from __future__ import annotations

import json

from weightsym.cli import checks
from weightsym.cli.parser import add_command


def add_parser(sub) -> None:
    p = add_command(
        sub, "eval", "test accuracy of a training checkpoint (model and symmetry rebuilt from it)",
        "Rebuild the model from CHECKPOINT (architecture and the symmetry of every layer from the file, which is "
        "validated first: header, metadata, checksum, finite values), load the weights, and report loss and accuracy "
        "on the test split of the dataset it was trained on, with the stored and dense-equivalent parameter counts.",
        ["weightsym train --model mnist1d-cnn --epochs 1 --out runs/mnist1d && "
         "weightsym eval runs/mnist1d/checkpoint.safetensors",
         "weightsym eval runs/wrn-tri/best.safetensors --json"])
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="checkpoint.safetensors or best.safetensors written by `weightsym train`")
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="dataset root (default: the run's, else $WEIGHTSYM_DATA, else ~/.cache/weightsym)")
    p.add_argument("--device", type=checks.device, default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=checks.integer(1), default=500, help="test batch size")
    p.add_argument("--json", action="store_true", help="print the result as JSON (default: one line of text)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar over the test batches (default: shown on a terminal)")
    p.set_defaults(func=run)


def run(args) -> int:
    checks.existing_folder(args.data_dir, "--data-dir", "leave it out to use the run's data folder")
    model_file = checks.checkpoint(args.checkpoint, "CHECKPOINT", ("classifier",))
    from weightsym.train.classification import evaluate_checkpoint

    result = evaluate_checkpoint(model_file, args.data_dir, args.device, args.batch_size,
                                 progress=args.progress)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        p = result["params"]
        print(f"{result['model']} on {result['dataset']} (step {result['step']}): test accuracy "
              f"{100 * result['accuracy']:.2f}% ({result['samples']:,} samples), loss {result['loss']:.4f}; "
              f"stored parameters {p['stored']:,} of dense-equivalent {p['dense']:,}")
    return 0
