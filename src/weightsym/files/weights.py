"""Weight files: ``weightsym.save`` and ``weightsym.load``, a model's state dict with the records to check it by.

:func:`save` writes ``model.state_dict()`` (free values only for symmetric layers, tied tensors once) with the
records of :mod:`weightsym.files.records` (each symmetric layer, the aliases, the registry architecture) and your
``metadata``; :func:`load` reads one into a model symmetrized the same way.  :func:`load_into` is the loading step
shared with checkpoints (:func:`weightsym.train.load_checkpoint`): every symmetric layer, key, shape and dtype must
agree, and the first that does not is named.  To rebuild the model from the file alone, use
:func:`weightsym.load_model` (:mod:`weightsym.files.rebuild`).

>>> import os, tempfile, torch, weightsym as ws
>>> def mlp():
...     return torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(3)])
>>> net = mlp()
>>> _ = ws.symmetrize(net, channel="triangular")     # layer 1 (the first and the last stay dense)
>>> path = save(net, os.path.join(tempfile.mkdtemp(), "w.safetensors"), metadata={"note": "demo"})
>>> copy = mlp()
>>> _ = ws.symmetrize(copy, channel="triangular")
>>> load(path, copy)
{'note': 'demo'}
>>> torch.equal(copy[1].weight, net[1].weight)
True
>>> load(path, mlp())  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: layer `1.weight`: the file ... holds triangular (4, 4) but the model has dense; symmetrize the model ...
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from weightsym.files.errors import ModelFileError
from weightsym.files.format import DTYPE_NAMES, read_model_file, write_model_file
from weightsym.files.records import ModelFile, architecture_of, check_layer_metadata, layer_metadata, unique_state


def save(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Save ``model.state_dict()`` (free values only for symmetric layers) to a weight file; returns the path.

    The file also records each symmetric layer (``layers``), tied tensors (``aliases``), the registry architecture
    when the model came from :func:`weightsym.models.create_model` (so :func:`load_model` can rebuild it), and
    ``metadata`` (JSON) under ``user``.
    """
    tensors, aliases = unique_state(model.state_dict())
    return write_model_file(path, "weights", tensors, {"layers": layer_metadata(model), "aliases": aliases,
                                                       "architecture": architecture_of(model),
                                                       "user": metadata or {}})


def load_into(model: nn.Module, mf: ModelFile, strict: bool = True, hint: str | None = None) -> None:
    """Load the model tensors of a validated file into ``model`` (symmetrized the same way): every symmetric layer,
    key, shape and dtype must agree; the first that does not is a ``ValueError`` naming it."""
    hint = hint or "symmetrize the model the same way before loading (see weightsym.read_metadata(path))"
    check_layer_metadata(mf.layers, model, f"the file {str(mf.path)!r}", hint)
    state = mf.model_state()
    expected = model.state_dict()
    for key in [k for k in expected if k in state]:  # network order
        tensor = state[key]
        if expected[key].dtype != tensor.dtype:
            raise ModelFileError(mf.path, f"tensor `{key}` is {DTYPE_NAMES.get(tensor.dtype, tensor.dtype)} but the "
                                          f"model's is {DTYPE_NAMES.get(expected[key].dtype, expected[key].dtype)}; "
                                          "convert the model (model.to(dtype)) or the file")
        if tuple(expected[key].shape) != tuple(tensor.shape):
            raise ModelFileError(mf.path, f"tensor `{key}` has shape {tuple(tensor.shape)} but the model's is "
                                          f"{tuple(expected[key].shape)}; {hint}")
    if strict:
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        if missing or unexpected:
            what = (f"the model's `{missing[0]}` is not in the file" if missing
                    else f"the file's `{unexpected[0]}` is not in the model")
            more = len(missing) + len(unexpected) - 1
            raise ModelFileError(mf.path, f"does not match the model's architecture: {what}"
                                          f"{f' ({more} more differences)' if more else ''}; {hint}")
    model.load_state_dict(state, strict=strict)


def load(path: str | os.PathLike, model: nn.Module, strict: bool = True) -> dict:
    """Load a weight file written by :func:`save` into ``model`` (symmetrized the same way); returns its user
    metadata.  Raises ``ValueError`` naming the file and the first problem (a mismatching layer, a damaged file)."""
    mf = path if isinstance(path, ModelFile) else read_model_file(path)
    if mf.kind != "weights":
        use = ("weightsym.load_model(path), or weightsym.train.load_checkpoint(path, model)" if mf.kind == "checkpoint"
               else "safetensors.torch.load_file and model.load_state_dict")
        raise ModelFileError(mf.path, f"is not a weightsym weight file ({mf.format or 'no weightsym format'}); for "
                                      f"this file use {use}")
    load_into(model, mf, strict=strict)
    return mf.metadata.get("user", {})
