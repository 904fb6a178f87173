"""Train the fast CIFAR-10 network with its recipe, dense and triangular, from Python (what `weightsym train
--recipe airbench` does), and compare them.

    python examples/fast_recipe.py                 # two full runs: about 15 minutes on 2 CPU cores with bf16
    python examples/fast_recipe.py --smoke         # 4,000 images, one epoch each: under a minute

Needs CIFAR-10 (`weightsym download cifar10`, or $WEIGHTSYM_DATA pointing at a folder holding it).
"""

import argparse
import tempfile

from weightsym.train import TrainConfig, train
from weightsym.train.recipes import TRAIN_RECIPES, resolve

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true", help="a tiny run (4,000 images, 1 epoch, batch 256)")
parser.add_argument("--model", default="airbench-64-128-128")
args = parser.parse_args()

with tempfile.TemporaryDirectory() as folder:
    results = {}
    for name, symmetry in (("dense", {}), ("triangular", {"channel": "triangular"})):
        options = {"model": args.model, "out": f"{folder}/{name}", "progress": not args.smoke, **symmetry}
        if args.smoke:
            options.update(train_subset=4000, epochs=1, batch_size=256)
        config = TrainConfig(**resolve(TRAIN_RECIPES, "airbench", options))  # the recipe under our options
        results[name] = train(config)
    for name, summary in results.items():
        print(f"{name:>10}: {summary['params']['stored']:>9,} stored parameters, test accuracy "
              f"{100 * summary['test_accuracy_tta']:.2f}% with TTA, {summary['total_seconds']:.0f} s")
