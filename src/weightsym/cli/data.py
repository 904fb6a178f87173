"""The data commands: ``weightsym download``."""

from __future__ import annotations

import argparse

from weightsym.cli import checks
from weightsym.cli.parser import add_command
from weightsym.suggest import did_you_mean


def downloadable(text: str) -> str:
    from weightsym.data.download import RESOURCES, _ALIASES

    key = _ALIASES.get(text.lower(), text.lower())
    if key not in RESOURCES:
        raise argparse.ArgumentTypeError(f"unknown dataset {text!r}{did_you_mean(key, {**{k: k for k in RESOURCES}, **_ALIASES})}; downloadable: {', '.join(RESOURCES)} "
                                         "(MNIST-1D needs no download: it is generated offline)")
    return key


def add_parser(sub) -> None:
    p = add_command(
        sub, "download", "download a dataset (ptb, wikitext-2, cifar10, cifar100, fashion-mnist) with sha256 checks",
        "Download a dataset into the data folder (--data-dir, else $WEIGHTSYM_DATA, else ~/.cache/weightsym), "
        "checking every file's sha256; files already present and correct are not fetched again. Text corpora go to "
        "DATA/text/<name>/, image datasets to DATA/<name>/.",
        ["weightsym download ptb --data-dir ~/data          # -> ~/data/text/ptb/",
         "weightsym download cifar10 --variant python"])
    p.add_argument("name", type=downloadable, metavar="NAME",
                   help="ptb, wikitext-2, cifar10, cifar100 or fashion-mnist")
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="data root (default $WEIGHTSYM_DATA, else ~/.cache/weightsym; created if missing)")
    p.add_argument("--variant", choices=("binary", "python"), default=None,
                   help="CIFAR only: which archive, binary or python (default: binary)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.variant and not args.name.startswith("cifar"):
        raise checks.UsageError(f"--variant is for cifar10/cifar100; leave it out for {args.name}")
    if args.data_dir:
        checks.output_folder(args.data_dir, "--data-dir")
    from weightsym.data.download import download_dataset

    root = download_dataset(args.name, args.data_dir, variant=args.variant)
    print(f"{args.name}: ready under {root}")
    return 0
