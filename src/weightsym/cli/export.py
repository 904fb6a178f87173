"""``weightsym export``: a plain dense state dict or an ONNX file from a checkpoint or weight file."""

from __future__ import annotations

from weightsym.cli import checks
from weightsym.cli.parser import add_command


def add_parser(sub) -> None:
    p = add_command(
        sub, "export", "write a plain dense state dict or an ONNX file from a checkpoint or weight file",
        "Export a symmetric model. --format dense writes a plain PyTorch state dict (safetensors) that loads into "
        "the never-symmetrized architecture and gives the same outputs; --format onnx writes the optimized model "
        "(weightsym.fast.optimize; needs the onnx and onnxscript packages: pip install 'weightsym[onnx]'), which "
        "takes any batch size unless --fixed-batch. --out must not be CHECKPOINT itself, and the file appears whole or "
        "not at all (a full disk is a one-line error). The "
        "file is validated first (header, metadata, checksum, finite values) and rebuilt with weightsym.load_model: "
        "the architecture from the file (or --model for an old weight file that does not record it), the symmetry "
        "of every layer from its layer metadata.",
        ["weightsym export runs/mnist1d/checkpoint.safetensors --out mnist1d-dense.safetensors",
         "weightsym export runs/mnist1d/best.safetensors --format onnx --batch 8 --out mnist1d.onnx",
         "weightsym export weights.safetensors --out dense.safetensors",
         "weightsym export old-weights.safetensors --model mnist1d-cnn --out dense.safetensors"])
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a `weightsym train` checkpoint or a weight file written by weightsym.save")
    p.add_argument("--format", choices=("dense", "onnx"), default="dense",
                   help="dense: plain state dict (.safetensors); onnx: the optimized model (.onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="output file (required)")
    p.add_argument("--model", type=checks.model_name("classification"),
                   help="registry model name, for a weight file that does not record its architecture (default: "
                        "the file's)")
    p.add_argument("--batch", type=checks.integer(1), default=1,
                   help="batch size of the ONNX example input (the exported file takes any batch size unless "
                        "--fixed-batch)")
    p.add_argument("--fixed-batch", action="store_true",
                   help="ONNX: fix the batch dimension to --batch (default off: dimension 0 is dynamic)")
    p.set_defaults(func=run)


def run(args) -> int:
    checks.output_file(args.out)
    checks.not_overwritten({"CHECKPOINT": args.checkpoint}, [args.out])
    from weightsym.fast.export import export_dense, export_onnx, onnx_available

    if args.format == "onnx" and not onnx_available():
        raise checks.UsageError("--format onnx needs the optional packages onnx and onnxscript: "
                                "pip install 'weightsym[onnx]' (or use --format dense)")
    model_file = checks.checkpoint(args.checkpoint, "CHECKPOINT", ("classifier", "weights"))
    if model_file.role == "weights" and model_file.architecture is None and not args.model:
        raise checks.UsageError(f"CHECKPOINT {args.checkpoint} is a weight file that does not record its "
                                "architecture; pass --model NAME (`weightsym models` lists them)")
    from weightsym.files import load_model

    model, description = load_model(model_file, args.model)
    name = description.architecture["name"]
    if args.format == "dense":
        out = export_dense(model, args.out, metadata={"model": name})
    else:
        import torch

        out = export_onnx(model, args.out, torch.randn(args.batch, *description.input_shape),
                          dynamic_batch=not args.fixed_batch)
    print(f"wrote {out} ({out.stat().st_size:,} bytes, {args.format}, model {name})")
    return 0
