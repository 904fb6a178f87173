"""``weightsym compress``: turn a trained dense model into a symmetric one under a parameter budget."""

from __future__ import annotations

from pathlib import Path

from weightsym.cli import checks
from weightsym.cli.parser import add_command

# the model files `weightsym compress` writes under --out (the fine-tune's run folder included)
WRITES = ("projected.safetensors", "compressed.safetensors", "finetune/checkpoint.safetensors",
          "finetune/best.safetensors")


def add_parser(sub) -> None:
    p = add_command(
        sub, "compress", "compress a trained model with weight symmetry: per-layer residuals, a plan under a "
                         "budget, projection, short fine-tune, report",
        "Read a trained checkpoint (`weightsym train` classifier or `weightsym lm` language model). For every layer "
        "and every symmetry of the catalog (channel, spatial, and channel+spatial products) measure the relative "
        "projection residual ||W - P(W)|| / ||W|| (0 = the layer already is symmetric) and the parameters it would "
        "save. Choose a plan: --budget F takes, greedily, the (layer, symmetry) upgrades that remove the least weight "
        "energy (residual squared) per saved parameter until the model stores at most F of its dense-equivalent "
        "parameters (then trims the last step so the budget is not overshot needlessly; docs/compress.md); or give "
        "the plan by hand with --plan, exactly as `weightsym train --plan`. The model is projected onto the plan "
        "(the nearest symmetric weights), optionally fine-tuned for --steps optimizer steps (classifiers: the "
        "training loop of `weightsym train`, optionally distilling from the dense model with --distill; language "
        "models: truncated BPTT windows), and written to OUT/compressed.safetensors, a checkpoint `weightsym eval`, "
        "`describe`, `analyze`, `export` and `lm-sample` read. OUT/report.md, report.json and compress.png hold the "
        "candidates, the plan, and accuracy (perplexity) against stored parameters before and after projection and "
        "after fine-tuning; OUT/plan.json trains the same symmetric model from scratch: "
        "`weightsym train --plan OUT/plan.json`.\n\n"
        "By default the stem and the classifier (first and last weight layers) stay dense, as in the paper; "
        "--all-layers lets them in.",
        ["weightsym train --model mnist1d-cnn --epochs 2 --out runs/m1d && "
         "weightsym compress runs/m1d/best.safetensors --budget 0.5 --steps 100 --out runs/m1d-half",
         "weightsym compress runs/wrn/best.safetensors --budget 0.6 --dry-run --out runs/wrn-plan   # table + plan",
         "weightsym compress runs/wrn/best.safetensors --budget 0.4 --steps 391 --distill 4 --compile "
         "--out runs/wrn-0.4",
         "weightsym compress runs/wrn/best.safetensors --plan '*conv2=tri+spa' --steps 200 --out runs/wrn-tri-spa",
         "weightsym compress runs/lm/best.safetensors --budget 0.8 --steps 200 --out runs/lm-0.8"])
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="best.safetensors / checkpoint.safetensors of `weightsym train`, or best.safetensors / "
                        "last.safetensors of `weightsym lm`")
    g = p.add_argument_group("plan (exactly one of --budget and --plan)")
    g.add_argument("--budget", type=checks.number(0, 1, low_open=True), metavar="F", default=None,
                   help="target stored-parameter fraction of the dense model, in (0, 1], e.g. 0.6 (default: none)")
    g.add_argument("--plan", nargs="+", default=None, metavar="GLOB=SYM",
                   help="per-layer symmetries by hand, as `weightsym train --plan`: module globs, the first that "
                        "matches names the layer's symmetry, e.g. --plan '*conv2=tri+spa' '*conv1=block'; or one "
                        "FILE (JSON object or GLOB=SYM lines) (default: none)")
    g.add_argument("--symmetries", nargs="+", type=checks.any_symmetry, default=None, metavar="SYM",
                   help="candidates the budget plan may use, e.g. triangular block dihedral tri+spa (default: all, the "
                        "whole catalog and every channel+spatial product)")
    g.add_argument("--exclude", action="append", default=None, metavar="GLOB",
                   help="layers that stay as they are (repeatable; default: none)")
    g.add_argument("--all-layers", action="store_true",
                   help="let the stem and the classifier be compressed too (default: they stay dense)")
    g.add_argument("--hh-gates", type=checks.gate_mask, default=None, metavar="MASK",
                   help="recurrent layers: gates of weight_hh a channel symmetry ties (LSTM i f g o; default: the "
                        "run's, else 1111)")
    g.add_argument("--ih-gates", type=checks.gate_mask, default=None, metavar="MASK",
                   help="recurrent layers: gates of weight_ih (needs input size == hidden size; default: the run's, "
                        "else none)")
    g.add_argument("--qkv", type=checks.qkv_mask, default=None, metavar="MASK",
                   help="transformer language models: which of the query, key and value projections of each "
                        "attention layer a symmetry ties, order q k v (e.g. 110; default: the run's, else 111)")
    g.add_argument("--dry-run", action="store_true",
                   help="stop after the table and the plan (writes only report.md / report.json; default: off)")
    g = p.add_argument_group("fine-tuning")
    g.add_argument("--steps", type=checks.integer(0), default=0, metavar="N",
                   help="optimizer steps after projecting (0 = project only)")
    g.add_argument("--lr", type=checks.number(0, low_open=True), default=None,
                   help="fine-tuning learning rate (default: the run's lr / 10 for classifiers, / 4 for language "
                        "models; classifiers anneal it with a cosine over the fine-tune)")
    g.add_argument("--distill", type=checks.number(0, low_open=True), default=None, metavar="T",
                   help="distil from the dense model at temperature T (per image, or per token for language "
                        "models): loss = (1 - A) CE + A T^2 KL(teacher || student) (default: off)")
    g.add_argument("--distill-weight", type=checks.number(0, 1), default=0.5, metavar="A",
                   help="weight A of the distillation term")
    g = p.add_argument_group("run control")
    g.add_argument("--out", metavar="DIR", default="runs/compress", help="output folder")
    g.add_argument("--data-dir", metavar="DIR", default=None,
                   help="dataset root (default: the run's, else $WEIGHTSYM_DATA, else ~/.cache/weightsym)")
    g.add_argument("--threads", type=checks.integer(1), default=None, help="torch threads (default: torch's)")
    g.add_argument("--compile", action="store_true", help="fine-tune through torch.compile (default: eager)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar while fine-tuning")
    p.set_defaults(func=run)


def run(args) -> int:
    if (args.budget is None) == (args.plan is None):
        raise checks.UsageError("give exactly one of --budget F (e.g. 0.6) and --plan GLOB=SYM ...")
    if args.plan is not None and args.symmetries:
        raise checks.UsageError("--symmetries chooses the candidates of a --budget plan; leave it out with --plan")
    plan = checks.plan(args.plan) if args.plan is not None else None
    checks.existing_folder(args.data_dir, "--data-dir", "leave it out to use the run's data folder")
    checks.output_folder(args.out)
    out = Path(args.out)  # what the command writes: a source inside --out must not be one of them
    checks.not_overwritten({"CHECKPOINT": args.checkpoint}, [out / name for name in WRITES])
    model_file = checks.checkpoint(args.checkpoint, "CHECKPOINT", ("classifier", "language-model"))
    if args.qkv is not None and model_file.role == "classifier":
        raise checks.UsageError(f"--qkv: {args.checkpoint} is a classifier with no attention layers; --qkv is for "
                                "transformer language models (weightsym lm --model transformer)")
    from weightsym.compress import compress

    compress(model_file, args.out, budget=args.budget, plan=plan, steps=args.steps, lr=args.lr,
             distill=None if args.distill is None else (args.distill, args.distill_weight),
             symmetries=None if not args.symmetries or "all" in args.symmetries else args.symmetries,
             exclude=args.exclude, keep_edges=not args.all_layers,
             hh_gates=args.hh_gates, ih_gates=args.ih_gates, qkv=args.qkv, data_dir=args.data_dir,
             threads=args.threads, compile=args.compile, progress=args.progress, dry_run=args.dry_run)
    return 0
