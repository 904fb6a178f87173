"""Export: a plain dense state dict (safetensors) or an ONNX file of the optimized model.

* :func:`export_dense` writes ``unsymmetrize(copy(model)).state_dict()``: it loads with ``load_state_dict`` into the
  never-symmetrized architecture and gives the same outputs (read it back with :func:`load_dense`).
* :func:`export_onnx` writes the :func:`~weightsym.fast.optimize` d model (structured kernels included) with
  ``torch.onnx.export``, with a dynamic batch dimension by default (one file serves every batch size).  The
  exporter needs the optional packages ``onnx`` and ``onnxscript`` (``pip install onnx onnxscript``, or
  ``pip install 'weightsym[onnx]'``, which also brings ``onnxruntime`` to run the file).

Both read and write model files only through :mod:`weightsym.files` (a dense export is validated and
checksummed like every weightsym file) and write atomically (:mod:`weightsym.atomic`: whole or not at all; a full
disk is one :class:`~weightsym.atomic.WriteError` line); to export a file, load it with :func:`weightsym.load_model`
first (what the ``weightsym export`` command does).

>>> import torch, tempfile, os, weightsym as ws
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
>>> _ = ws.symmetrize(net, channel="block")
>>> path = os.path.join(tempfile.mkdtemp(), "dense.safetensors")
>>> _ = export_dense(net, path)
>>> plain = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
>>> _ = load_dense(path, plain)
>>> x = torch.randn(3, 4)
>>> torch.equal(plain(x), net(x))
True
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import torch
from torch import nn

DENSE_FORMAT = "weightsym-dense/2"


def _check_not_optimized(model: nn.Module, what: str) -> None:
    from weightsym.fast.structured import StructuredLayer

    for name, module in model.named_modules():
        if isinstance(module, StructuredLayer):
            raise ValueError(f"{what}: layer `{name}` is an optimized (structured) kernel; export the symmetric model "
                             "(before weightsym.fast.optimize) instead")


def dense_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the unsymmetrized copy of ``model`` (contiguous CPU copies; ``model`` is untouched)."""
    from weightsym.fast.materialize import plain_copy

    _check_not_optimized(model, "export_dense")
    plain = plain_copy(model)
    return {k: v.detach().contiguous().cpu().clone() for k, v in plain.state_dict().items()}


def export_dense(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write the dense (plain PyTorch) state dict of a symmetric model to a safetensors file; returns the path.

    Format ``weightsym-dense/2``: the plain state dict, ``user`` metadata, the registry ``architecture`` of the model
    (when it has one) and a checksum (``docs/file-format.md``); any safetensors reader loads it as a state dict."""
    from weightsym.files import architecture_of, write_model_file

    tensors = dense_state_dict(model)
    return write_model_file(path, "dense", tensors, {"architecture": architecture_of(model), "user": metadata or {}})


def load_dense(path: str | os.PathLike, model: nn.Module, strict: bool = True):
    """Load a file written by :func:`export_dense` (validated: header, checksum, finite values) into a plain model;
    returns the ``load_state_dict`` result.  A tensor whose shape or dtype differs from the model's is a
    ``ValueError`` naming it."""
    from weightsym.files import ModelFileError, read_model_file

    mf = read_model_file(path)
    if mf.kind not in ("dense", "safetensors"):
        raise ModelFileError(mf.path, f"is a {mf.role} file, not a dense export; load it with weightsym.load_model")
    expected = model.state_dict()
    for key, tensor in mf.tensors.items():
        if key in expected and (expected[key].dtype != tensor.dtype or expected[key].shape != tensor.shape):
            raise ModelFileError(mf.path, f"tensor `{key}` is {tensor.dtype} {tuple(tensor.shape)} but the model's "
                                          f"is {expected[key].dtype} {tuple(expected[key].shape)}")
    return model.load_state_dict(mf.tensors, strict=strict)


def onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def export_onnx(model: nn.Module, path: str | os.PathLike, example_input, optimize_first: bool = True,
                dynamic_batch: bool = True) -> Path:
    """Write an ONNX file of ``model`` (optimized first with :func:`weightsym.fast.optimize` if it is symmetric).

    ``dynamic_batch`` (default): dimension 0 of every input is the batch and may have any size in the file (an
    example batch of 1 is traced as 2, since the exporter fixes a dimension of size 1); ``False`` fixes every
    dimension to the example's.  The weights are stored inside the file (one self-contained file) unless they exceed
    ONNX's 2 GB protobuf limit, in which case they go to ``<path>.data`` beside it.  The file is written whole or not
    at all (:func:`weightsym.atomic.atomic_output`): a failed export (a full disk is a
    :class:`weightsym.atomic.WriteError`) leaves nothing behind.  Raises ``ImportError`` naming ``pip install onnx
    onnxscript`` when the exporter's packages are missing.
    """
    if not onnx_available():
        raise ImportError("ONNX export needs the optional packages onnx and onnxscript: "
                          "pip install onnx onnxscript (or pip install 'weightsym[onnx]')")
    from weightsym.atomic import atomic_output
    from weightsym.fast.optimize import CompiledModel, optimize
    from weightsym.nn import symmetric_layers
    from weightsym.nn.layers import KINDS, layer_kind

    if isinstance(model, CompiledModel):
        model = model.model
    for qualified, module, _ in symmetric_layers(model):
        kind = layer_kind(module)
        if kind is not None and not kind.onnx:  # the table of layer kinds says the exporter does not cover it
            shape = tuple(getattr(module, qualified.rsplit(".", 1)[-1]).shape)
            covered = ", ".join(k.name for k in KINDS if k.onnx)
            raise ValueError(f"export_onnx: {kind.name} `{qualified}` {shape} cannot be exported to ONNX; layers that "
                             f"can: {covered} (or use export_dense)")
    if optimize_first and symmetric_layers(model):
        model = optimize(model, example_input=example_input)
    model = model.eval()
    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    kwargs = {}
    if dynamic_batch:
        # the exporter specializes a dimension of size 1 to a constant: trace a batch of two copies instead
        args = tuple(torch.cat([a, a]) if isinstance(a, torch.Tensor) and a.dim() and a.shape[0] == 1 else a
                     for a in args)
        kwargs["dynamic_shapes"] = tuple({0: torch.export.Dim("batch")} if isinstance(a, torch.Tensor) and a.dim()
                                         else None for a in args)
    size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    external = size >= 2**31 - 2**26
    with atomic_output(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
        try:
            torch.onnx.export(model, args, str(tmp), dynamo=True, external_data=external, **kwargs)
        except Exception as exc:
            if not dynamic_batch or isinstance(exc, OSError):
                raise
            try:  # is the dynamic batch what fails?  (the file of this try is discarded either way)
                torch.onnx.export(model, args, str(tmp), dynamo=True, external_data=external)
            except Exception:
                raise exc  # fails either way: the exporter's own error
            first = " ".join(str(exc).split())[:300]
            raise ValueError(f"export_onnx: the model exports with a fixed batch size but not with a dynamic one "
                             f"(dimension 0 of every input): {type(exc).__name__}: {first}; use dynamic_batch=False "
                             "(weightsym export --fixed-batch)") from exc
    return Path(path)
