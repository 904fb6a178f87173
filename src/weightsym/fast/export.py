"""Export: a plain dense state dict (safetensors) or an ONNX file of the optimized model.

* :func:`export_dense` writes ``unsymmetrize(copy(model)).state_dict()``: it loads with ``load_state_dict`` into the
  never-symmetrized architecture and gives the same outputs (read it back with :func:`load_dense`).
* :func:`export_onnx` writes the :func:`~weightsym.fast.optimize` d model (structured kernels included) with
  ``torch.onnx.export``.  The exporter needs the optional packages ``onnx`` and ``onnxscript``
  (``pip install onnx onnxscript`` or ``pip install 'weightsym[onnx]'``).
* :func:`load_symmetric_model` rebuilds a symmetric model from a training checkpoint (``weightsym.train``) or a
  weight file (``weightsym.save``): the architecture comes from the checkpoint's config or from ``model_name``, the
  symmetry of every layer from the file's layer metadata.  The ``weightsym export`` command is built on it.

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
import json
import os
from pathlib import Path

import torch
from torch import nn

DENSE_FORMAT = "weightsym-dense/1"


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
    """Write the dense (plain PyTorch) state dict of a symmetric model to a safetensors file; returns the path."""
    from weightsym.nn.io import atomic_save_tensors

    tensors = dense_state_dict(model)
    atomic_save_tensors(tensors, path, {"format": DENSE_FORMAT, "user": json.dumps(metadata or {})})
    return Path(path)


def load_dense(path: str | os.PathLike, model: nn.Module, strict: bool = True):
    """Load a file written by :func:`export_dense` into a plain model (``load_state_dict`` result)."""
    from safetensors.torch import load_file

    if not Path(path).exists():
        raise FileNotFoundError(f"dense weight file {str(path)!r} does not exist")
    return model.load_state_dict(load_file(str(path)), strict=strict)


def onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def export_onnx(model: nn.Module, path: str | os.PathLike, example_input, optimize_first: bool = True,
                dynamic_batch: bool = False) -> Path:
    """Write an ONNX file of ``model`` (optimized first with :func:`weightsym.fast.optimize` if it is symmetric).

    The weights are stored inside the file (one self-contained file) unless they exceed ONNX's 2 GB protobuf limit,
    in which case they go to ``<path>.data`` beside it.  Raises ``ImportError`` naming ``pip install onnx
    onnxscript`` when the exporter's packages are missing.
    """
    if not onnx_available():
        raise ImportError("ONNX export needs the optional packages onnx and onnxscript: "
                          "pip install onnx onnxscript (or pip install 'weightsym[onnx]')")
    from weightsym.fast.optimize import CompiledModel, optimize
    from weightsym.nn import symmetric_layers

    if isinstance(model, CompiledModel):
        model = model.model
    if optimize_first and symmetric_layers(model):
        model = optimize(model, example_input=example_input)
    model = model.eval()
    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    kwargs = {}
    if dynamic_batch:
        kwargs["dynamic_shapes"] = tuple({0: torch.export.Dim("batch")} for _ in args)
    size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    with torch.no_grad():
        torch.onnx.export(model, args, str(path), dynamo=True, external_data=size >= 2**31 - 2**26, **kwargs)
    return Path(path)


# -- rebuilding a symmetric model from a file ---------------------------------------------------------------------
def attach_from_metadata(model: nn.Module, layers: dict[str, dict]) -> nn.Module:
    """Make ``model`` symmetric as described by weight-file layer metadata ``{"a.b.weight": {"symmetry", ...}}``."""
    import functools

    from weightsym.nn import attach
    from weightsym.nn.symmetrize import _load_dense_hook
    from weightsym.symmetry import get_symmetry

    for qualified, info in layers.items():
        owner, _, tensor = qualified.rpartition(".")
        try:
            module = model.get_submodule(owner)
        except AttributeError:
            raise ValueError(f"the file describes layer `{qualified}` but the model has no module `{owner}`; "
                             "pass the model the file was trained with (--model)") from None
        mask = info.get("block_mask")
        attach(module, tensor, get_symmetry(info["symmetry"]), int(info.get("row_blocks", 1)),
               None if mask is None else tuple(c == "1" for c in mask))
        module._register_load_state_dict_pre_hook(functools.partial(_load_dense_hook, tensor=tensor),
                                                  with_module=True)
        if isinstance(module, nn.RNNBase):
            module._init_flat_weights()
    return model


def load_symmetric_model(path: str | os.PathLike, model_name: str | None = None, channel: str | None = None,
                         spatial: str | None = None, model_args: dict | None = None) -> tuple[nn.Module, dict]:
    """``(model, info)`` rebuilt from a training checkpoint or a ``weightsym.save`` weight file.

    The architecture: the checkpoint's ``state["config"]`` (``model``, ``model_args``), else ``model_name``.  The
    symmetries: the file's layer metadata, or ``channel``/``spatial`` passed to ``weightsym.symmetrize``.
    """
    import weightsym as ws
    from weightsym.models import create_model, model_info

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    meta = ws.read_metadata(path)
    fmt = meta.get("format")
    config: dict = {}
    if fmt == "weightsym-checkpoint/1":
        from weightsym.train.checkpoint import checkpoint_info

        info = checkpoint_info(path)
        config = (info.get("state") or {}).get("config") or {}
    elif fmt != "weightsym/1":
        raise ValueError(f"{str(path)!r} is neither a weightsym training checkpoint nor a weightsym weight file "
                         f"(format {fmt!r})")
    name = model_name or config.get("model")
    if not name:
        raise ValueError(f"{str(path)!r} does not say which architecture it holds; pass --model NAME "
                         "(see weightsym.models.list_models)")
    args = dict(config.get("model_args") or {}, **(model_args or {}))
    model = create_model(name, **args)
    layers = meta.get("layers") or {}
    if channel or spatial or (not layers and (config.get("channel") or config.get("spatial"))):
        ws.symmetrize(model, channel=channel or config.get("channel"), spatial=spatial or config.get("spatial"),
                      include=config.get("include"), exclude=config.get("exclude"))
    else:
        attach_from_metadata(model, layers)
    if fmt == "weightsym-checkpoint/1":
        from weightsym.train.checkpoint import load_checkpoint

        load_checkpoint(path, model)
    else:
        ws.load(path, model)
    return model.eval(), {"model": name, "format": fmt, "input_shape": model_info(name)["input_shape"]}
