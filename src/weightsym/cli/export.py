"""``weightsym export``: a plain dense state dict or an ONNX file from a checkpoint or weight file."""

from __future__ import annotations

from weightsym.cli import checks
from weightsym.cli.parser import add_command


def add_parser(sub) -> None:
    p = add_command(
        sub, "export", "write a plain dense state dict or an ONNX file from a checkpoint or weight file",
        "Export a symmetric model. --format dense writes a plain PyTorch state dict (safetensors) that loads into "
        "the never-symmetrized architecture and gives the same outputs; --format onnx writes the optimized model "
        "(weightsym.fast.optimize; needs the onnx and onnxscript packages: pip install 'weightsym[onnx]'). The "
        "architecture comes from the checkpoint's config, or from --model for a weight file.",
        ["weightsym export runs/mnist1d/checkpoint.safetensors --out mnist1d-dense.safetensors",
         "weightsym export runs/mnist1d/best.safetensors --format onnx --batch 8 --out mnist1d.onnx",
         "weightsym export weights.safetensors --model mnist1d-cnn --out dense.safetensors"])
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a `weightsym train` checkpoint or a weight file written by weightsym.save")
    p.add_argument("--format", choices=("dense", "onnx"), default="dense",
                   help="dense: plain state dict (.safetensors); onnx: the optimized model (.onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="output file (required)")
    p.add_argument("--model", type=checks.model_name("classification"),
                   help="registry model name, needed for a weight file (default: the checkpoint's config)")
    p.add_argument("--channel", type=checks.symmetry("channel"),
                   help="channel symmetry, only for a file without layer metadata (default: the file's)")
    p.add_argument("--spatial", type=checks.symmetry("spatial"),
                   help="spatial symmetry, only for a file without layer metadata (default: the file's)")
    p.add_argument("--batch", type=checks.integer(1), default=1, help="batch size of the ONNX example input")
    p.set_defaults(func=run)


def run(args) -> int:
    kind = checks.checkpoint(args.checkpoint, "CHECKPOINT", ("classifier", "weights"))
    if kind == "weights" and not args.model:
        raise checks.UsageError(f"CHECKPOINT {args.checkpoint} is a weight file without the architecture; pass "
                                "--model NAME (`weightsym models` lists them)")
    checks.output_file(args.out)
    from weightsym.fast.export import export_dense, export_onnx, load_symmetric_model, onnx_available

    if args.format == "onnx" and not onnx_available():
        raise checks.UsageError("--format onnx needs the optional packages onnx and onnxscript: "
                                "pip install 'weightsym[onnx]' (or use --format dense)")
    model, info = load_symmetric_model(args.checkpoint, args.model, args.channel, args.spatial)
    if args.format == "dense":
        out = export_dense(model, args.out, metadata={"model": info["model"]})
    else:
        import torch

        out = export_onnx(model, args.out, torch.randn(args.batch, *info["input_shape"]))
    print(f"wrote {out} ({out.stat().st_size:,} bytes, {args.format}, model {info['model']})")
    return 0
