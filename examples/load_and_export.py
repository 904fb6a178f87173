"""Load a weightsym file, check what it holds, and export it as plain PyTorch weights and as ONNX.

    python examples/load_and_export.py                  # makes a small file first, then exports it
    python examples/load_and_export.py MODEL.safetensors OUT_FOLDER
"""

import sys
import tempfile
from pathlib import Path

import torch

import weightsym as ws
from weightsym.fast import export_dense, export_onnx
from weightsym.models import create_model

folder = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp())
if len(sys.argv) > 1:
    path = Path(sys.argv[1])
else:  # a symmetric registry model, saved: any file written by weightsym.save or a training checkpoint works
    model = create_model("airbench-16-32-32")
    ws.symmetrize(model, spatial="dihedral")
    path = folder / "airbench-dihedral.safetensors"
    ws.save(model, path)

model, description = ws.load_model(path)  # validated (header, metadata, sizes, checksum) before a tensor is built
print(description)
print(ws.count_parameters(model))
model.eval()
x = torch.randn(2, 3, 32, 32)
dense_path = export_dense(model, folder / "dense.safetensors")  # plain weights: load into the unsymmetrized model
print(f"dense weights: {dense_path} ({dense_path.stat().st_size:,} bytes)")
try:
    onnx_path = export_onnx(model, folder / "model.onnx", x)
    print(f"ONNX: {onnx_path} ({onnx_path.stat().st_size:,} bytes)")
except ImportError as error:  # the optional packages: pip install 'weightsym[onnx]'
    print(f"ONNX export skipped: {error}")
