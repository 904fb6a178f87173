"""``weightsym lm``: train a word-level LSTM/GRU or transformer language model, dense or symmetric."""

from __future__ import annotations

import argparse
import json

from weightsym.cli import checks
from weightsym.cli.parser import add_command

# options that are not LMConfig fields (always in the namespace)
NOT_CONFIG = ("resume", "no_progress", "json", "func", "command")


def add_parser(sub) -> None:
    from weightsym.lm.config import FOLD_POLICIES, MODEL_DEFAULTS, LMConfig
    from weightsym.symmetry.layout import INIT_RULES
    from weightsym.train.recipes import LM_RECIPES

    d = LMConfig()
    rnn, tf = MODEL_DEFAULTS["lstm"], MODEL_DEFAULTS["transformer"]
    p = add_command(
        sub, "lm", "train a word-level LSTM/GRU or transformer language model (PTB, WikiText-2), dense or symmetric",
        "Truncated-BPTT training of an LSTM/GRU language model (the pytorch/examples recipe: SGD, lr annealed when "
        "validation loss stalls) with optional symmetric gate blocks, or of a small causal transformer (--model "
        "transformer: pre-LN blocks of nn.MultiheadAttention, context = --bptt, AdamW) with optional symmetric "
        "q/k/v/out projections (--qkv) and feed-forward layers (--include). Writes log.jsonl, last.safetensors (for "
        "--resume), best.safetensors and summary.json to --out, which is locked while the run is alive. The corpus "
        "is read from DATA/text/<corpus>/ (`weightsym download ptb` fetches it). --recipe paper (2x650) or "
        "paper-1500 sets the original code's LSTM options; options given explicitly win.",
        ["weightsym lm --corpus ptb --channel average --hh-gates 1111 --emb 256 --hidden 256 --tie --epochs 6 "
         "--out runs/ptb-avg-hh",
         "weightsym lm --corpus ptb --hidden 128 --emb 128 --epochs 1 --max-train-tokens 100000 --out runs/ptb-quick",
         "weightsym lm --model transformer --emb 128 --hidden 128 --layers 4 --bptt 64 --channel triangular --qkv 110 "
         "--out runs/ptb-tf-qk",
         "weightsym lm --model transformer --emb 128 --hidden 128 --layers 4 --bptt 64 --channel block --include "
         "'*.attn' '*.attn.out_proj' '*.ff.*' --out runs/ptb-tf-block",
         "weightsym lm --recipe paper --channel average --hh-gates 1111 --out runs/ptb-paper-avg   # 2x650, 50 epochs",
         "weightsym lm --resume --out runs/ptb-avg-hh --epochs 8     # continue, two more epochs"],
        argument_default=argparse.SUPPRESS)  # left out: the recipe's value, else LMConfig's default
    p.add_argument("--recipe", choices=sorted(LM_RECIPES),
                   help="a named preset of the options: " + "; ".join(f"{r.name}: {r.summary}"
                                                                       for r in LM_RECIPES.values())
                        + "; options given explicitly win (default: none)")
    p.add_argument("--corpus", choices=["ptb", "wikitext-2"], help=f"training corpus, default {d.corpus}")
    p.add_argument("--data-dir", metavar="DIR",
                   help="data root holding text/<corpus>/ (default $WEIGHTSYM_DATA, else ~/.cache/weightsym)")
    p.add_argument("--model", dest="rnn_type", choices=["lstm", "gru", "transformer"],
                   help=f"recurrent cell, or a decoder-only causal transformer (default {d.rnn_type})")
    p.add_argument("--channel", type=checks.symmetry("channel", allow_none=True),
                   help="symmetry of the gate blocks (transformer: of the attention projections, and of the layers "
                        "--include names): average (the paper's), triangular, eigen, lowrank[:r], block, "
                        "bisymmetric, centrosymmetric, eighth, repeat:c (default: none, a dense model)")
    p.add_argument("--plan", nargs="+", metavar="GLOB=SYM",
                   help="per-layer symmetries instead of --channel: module globs of the model (encoder, rnn, "
                        "decoder; transformer: blocks.N.attn, blocks.N.attn.out_proj, blocks.N.ff.up/down), e.g. "
                        "--plan rnn=average, or one FILE of GLOB=SYM lines (default: none)")
    p.add_argument("--include", nargs="+", metavar="GLOB",
                   help="the layers --channel goes on (module globs), e.g. '*.attn' '*.ff.*' (default: rnn; "
                        "transformer: '*.attn' '*.attn.out_proj', every attention layer and its output projection)")
    p.add_argument("--qkv", type=checks.qkv_mask, metavar="MASK",
                   help="transformer: which of the query, key, value blocks of each attention in_proj_weight take "
                        "the symmetry, order q k v, e.g. 110 (default 111)")
    p.add_argument("--qk-init", choices=("default", "symmetric"),
                   help="transformer: symmetric starts every attention head with W_k = W_q, so W_q^T W_k starts "
                        "symmetric (Saponati et al. 2025); nothing is tied (default: default)")
    p.add_argument("--heads", type=checks.integer(1),
                   help=f"transformer: attention heads (must divide --hidden; default {d.heads})")
    p.add_argument("--hh-gates", type=checks.gate_mask, metavar="MASK",
                   help="gate blocks of weight_hh that are symmetric (LSTM i f g o, GRU r z n); default all: 1111 "
                        "for an LSTM, 111 for a GRU")
    p.add_argument("--ih-gates", type=checks.gate_mask, metavar="MASK",
                   help="gate blocks of weight_ih that are symmetric (needs --emb == --hidden); default none")
    p.add_argument("--init", choices=list(INIT_RULES),
                   help="how symmetric gate blocks start: variance (each entry keeps the dense init's variance, as "
                        "the paper's code) or project (orbit means: smaller weights; runs before this option); "
                        f"default {d.init}")
    p.add_argument("--emb", type=checks.integer(1), help=f"embedding size, default {d.emb}")
    p.add_argument("--hidden", type=checks.integer(1),
                   help=f"hidden units per layer (transformer: its width, equal to --emb), default {d.hidden}")
    p.add_argument("--layers", type=checks.integer(1), help=f"recurrent layers / transformer blocks, default {d.layers}")
    p.add_argument("--dropout", type=checks.number(0, 1, high_open=True),
                   help=f"dropout rate (default {rnn['dropout']}; transformer {tf['dropout']})")
    p.add_argument("--tie", action=argparse.BooleanOptionalAction,
                   help="tie decoder and embedding weights (needs --emb == --hidden; default untied; transformer: "
                        "tied, --no-tie unties)")
    p.add_argument("--epochs", type=checks.integer(1),
                   help=f"epochs (with --resume: the new total), default {d.epochs}")
    p.add_argument("--bptt", type=checks.integer(1),
                   help=f"truncated-BPTT window in tokens (transformer: its context), default {d.bptt}")
    p.add_argument("--batch-size", type=checks.integer(1), help=f"training batch size, default {d.batch_size}")
    p.add_argument("--eval-batch-size", type=checks.integer(1),
                   help=f"validation/test batch size, default {d.eval_batch_size}")
    p.add_argument("--optimizer", choices=("sgd", "adamw"),
                   help=f"optimizer (default {rnn['optimizer']}; transformer {tf['optimizer']})")
    p.add_argument("--lr", type=checks.number(0, low_open=True),
                   help=f"learning rate (default {rnn['lr']:g} with sgd, {tf['lr']:g} with adamw)")
    p.add_argument("--anneal", type=checks.number(1),
                   help=f"divide lr by this when validation loss does not improve, default {d.anneal:g}")
    p.add_argument("--clip", type=checks.number(0),
                   help=f"gradient-norm clip, 0 = off (default {rnn['clip']:g}; transformer {tf['clip']:g})")
    p.add_argument("--seed", type=checks.integer(0), help=f"seed of weights and dropout, default {d.seed}")
    p.add_argument("--max-train-tokens", type=checks.integer(2), metavar="N",
                   help="train on the first N tokens only, for quick runs (default: the whole training set)")
    p.add_argument("--max-eval-tokens", type=checks.integer(2), metavar="N",
                   help="evaluate on the first N valid/test tokens only (default: the full sets)")
    p.add_argument("--threads", type=checks.integer(1), help="torch threads (default: torch's choice)")
    p.add_argument("--out", metavar="DIR", help=f"run folder, default {d.out}")
    p.add_argument("--resume", action="store_true", default=False,
                   help="continue the run in --out from last.safetensors (its options are used; --epochs, to train "
                        "longer, and --compile/--fold/--threads/--data-dir may be given again; default off)")
    p.add_argument("--compile", action="store_true",
                   help="run the training forward through torch.compile (default off; evaluation and checkpoints "
                        "use the eager model)")
    p.add_argument("--fold", choices=FOLD_POLICIES,
                   help="symmetric Linear/Conv layers train through their folds where the cost model says it pays "
                        "(auto), where a timed training step of each layer on this machine says so (measure; "
                        "seconds per layer, kept on resume), always or never; recurrent layers always expand into "
                        f"the fused kernel (default {d.fold})")
    p.add_argument("--no-progress", action="store_true", default=False, help="no progress bar (default: shown)")
    p.add_argument("--json", action="store_true", default=False,
                   help="print the final summary as JSON instead of a table")
    p.set_defaults(func=run)


def resolve_options(args) -> None:
    """Fill every option left out: the recipe's value if ``--recipe`` names one, else ``LMConfig``'s default
    (``--hh-gates``/``--qkv`` left out stay None: all gates / projections; options whose default depends on the
    model, such as ``--lr``, stay None and ``LMConfig`` picks the model's own)."""
    from dataclasses import asdict

    from weightsym.lm.config import MODEL_DEFAULTS, LMConfig
    from weightsym.train.recipes import LM_RECIPES, resolve

    per_model = dict.fromkeys(MODEL_DEFAULTS[LMConfig().rnn_type])  # None: LMConfig takes the model's own default
    defaults = {**asdict(LMConfig()), "hh_gates": None, "qkv": None, **per_model}
    given = {k: v for k, v in vars(args).items() if k in defaults}
    args.given = set(given)  # what the command line set (--resume keeps the run's epochs unless --epochs is given)
    values = {**defaults, **resolve(LM_RECIPES, given.pop("recipe", None), given)}
    for key, value in values.items():
        setattr(args, key, value)


def check(args):
    """Everything about the options that can be known before the corpus is read; with ``--resume`` returns the run's
    ``last.safetensors``, read once and validated (a :class:`~weightsym.files.ModelFile`), else None."""
    from pathlib import Path

    if getattr(args, "recipe", None) and args.rnn_type == "transformer":
        raise checks.UsageError(f"--recipe {args.recipe} is the paper's LSTM recipe; leave it out with --model "
                                "transformer (its defaults: AdamW, lr 1e-3)")
    if args.rnn_type == "transformer":
        wrong = [f"--{k.replace('_', '-')}" for k in ("hh_gates", "ih_gates") if getattr(args, k)]
        if wrong:
            raise checks.UsageError(f"{', '.join(wrong)}: a transformer has no gates; --qkv chooses its attention "
                                    "projections (e.g. --qkv 110)")
        if args.emb != args.hidden:
            raise checks.UsageError(f"--emb {args.emb} --hidden {args.hidden}: a transformer's embedding is its "
                                    "residual stream; give them the same value (its width)")
        if args.hidden % args.heads:
            raise checks.UsageError(f"--heads {args.heads} must divide the width --hidden {args.hidden}")
    elif args.qkv is not None:
        raise checks.UsageError(f"--qkv: only a transformer has attention projections; use --hh-gates/--ih-gates "
                                f"for an {args.rnn_type.upper()} (or --model transformer)")
    gates = 4 if args.rnn_type == "lstm" else 3
    for option in ("hh_gates", "ih_gates") if args.rnn_type != "transformer" else ():
        mask = getattr(args, option)
        if mask is not None and len(mask) != gates:
            raise checks.UsageError(f"--{option.replace('_', '-')} {mask}: a{'n LSTM' if gates == 4 else ' GRU'} has "
                                    f"{gates} gates ({'i f g o' if gates == 4 else 'r z n'}), e.g. {'1' * gates}")
    if args.tie and args.emb != args.hidden and args.rnn_type != "transformer":
        raise checks.UsageError(f"--tie needs --emb == --hidden (got {args.emb} and {args.hidden})")
    if args.ih_gates and "1" in args.ih_gates and args.emb != args.hidden:
        raise checks.UsageError(f"--ih-gates {args.ih_gates} needs --emb == --hidden (layer 0 maps {args.emb} -> "
                                f"{args.hidden}); use equal sizes or leave --ih-gates out")
    if args.plan and (args.channel is not None or args.include):
        raise checks.UsageError("--plan chooses each layer's symmetry; leave --channel and --include out (the gate "
                                "masks still apply)")
    args.plan = checks.plan(args.plan)
    if args.channel is None and not args.plan and (args.ih_gates or args.hh_gates or args.qkv or args.include):
        raise checks.UsageError("--hh-gates/--ih-gates/--qkv/--include choose where --channel goes; give --channel "
                                "too, e.g. --channel average")
    checks.existing_folder(args.data_dir, "--data-dir", "point it at the folder holding text/<corpus>/")
    checks.output_folder(args.out)
    last = Path(args.out) / "last.safetensors"
    if args.resume:
        if not last.exists():
            raise checks.UsageError(f"--resume: no {last}; start the run without --resume first, or name the folder "
                                    "of an existing run with --out")
        return checks.checkpoint(str(last), "--resume", ("language-model",))
    else:
        if last.exists():
            raise checks.UsageError(f"--out {args.out} already holds a run (last.safetensors); pass --resume to "
                                    "continue it or choose another --out")
        from weightsym.data.text import corpus_dir

        corpus_dir(args.corpus, args.data_dir)  # the corpus files are there (names the download command if not)


def run(args) -> int:
    resolve_options(args)
    checkpoint = check(args)
    from dataclasses import fields

    from weightsym.lm.config import RESUME, LMConfig
    from weightsym.lm.train import fit

    gates = 3 if args.rnn_type == "gru" else 4
    values = {f.name: getattr(args, f.name) for f in fields(LMConfig)}
    values["hh_gates"] = args.hh_gates or "1" * gates
    values["qkv"] = args.qkv or "111"
    config = LMConfig(**values)
    if args.resume:  # the one resume rule: the run's options, its length and how it computed unless given again
        from weightsym.train.resume import ResumeConflict

        try:
            config = RESUME.resume(checkpoint, config, given=args.given)
        except ResumeConflict as exc:
            raise checks.UsageError(str(exc)) from None
    quiet = (lambda *a, **k: None) if args.json else print
    summary = fit(config, resume=args.resume, progress=not args.no_progress, log=quiet, checkpoint=checkpoint)
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
    return 0
