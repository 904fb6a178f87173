"""Training checkpoints: ONE safetensors file with everything needed to resume a run exactly, and nothing pickled.

What a checkpoint file holds:

* tensors ``model.<key>``: ``model.state_dict()``; symmetric layers contribute only their free values
  (``<layer>.parametrizations.weight.original``), so the file is as small as the model's stored parameters;
* tensors ``optim.<path>``: every tensor of ``optimizer.state_dict()`` (momentum buffers, Adam moments, steps);
* tensors ``sched.<path>`` / ``state.<path>``: tensors inside the scheduler state or your ``state`` dict (if any);
* tensors ``rng.torch`` (the CPU generator state, uint8) and ``rng.cuda.<i>`` (one per visible GPU, if any);
* JSON metadata: ``format`` (``weightsym-checkpoint/2``), ``layers`` (the weightsym layer metadata,
  ``weightsym.files.layer_metadata``), ``model_aliases`` (tied tensors stored once), ``architecture`` (the
  registry entry of the model, when it has one), ``optimizer`` and ``scheduler`` (their state dicts with tensors
  replaced by references; includes ``param_groups``), ``state`` (your dict: epoch, step, config, best metric, ...),
  ``rng`` (numpy and Python RNG states), ``checksum`` (of everything above and every tensor).

Non-JSON values (tuples, ``collections.Counter`` with integer keys as in ``MultiStepLR.milestones``, dicts with
integer keys as in ``optimizer.state``, tensors) are encoded with small tagged objects, so they round-trip exactly.

The file is written and read by :mod:`weightsym.files` (the one reader of model files; the format is in
``docs/file-format.md``): written atomically (temporary file in the same folder, fsync, rename), so a crash while
saving leaves the previous checkpoint intact; validated completely (header, metadata schema, checksum, finite values)
before anything is loaded.  Loading then checks the weightsym layer metadata and raises ``ValueError`` naming the
first layer whose symmetry or shape differs from the model's.

Example:
    >>> import torch, tempfile, os, weightsym as ws
    >>> from weightsym.train.checkpoint import save_checkpoint, load_checkpoint
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    >>> _ = ws.symmetrize(net, channel="triangular")
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.safetensors")
    >>> save_checkpoint(path, net, opt, state={"epoch": 3, "config": {"lr": 0.1}})
    >>> load_checkpoint(path, net, opt)["epoch"]
    3
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
from torch import nn

from weightsym.files import (
    FORMATS,
    ModelFile,
    ModelFileError,
    architecture_of,
    decode,
    encode,
    layer_metadata,
    load_into,
    read_model_file,
    unique_state,
    write_model_file,
)

FORMAT = FORMATS["checkpoint"]

__all__ = ["FORMAT", "checkpoint_info", "checkpoint_kind", "get_rng_state", "load_checkpoint", "save_checkpoint",
           "set_rng_state", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


# ---------------------------------------------------------------------------------------------------------------- RNG
def get_rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, json_state)``: torch CPU (and CUDA) generator states as tensors; numpy and Python states as JSON."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    np_state = np.random.get_state()
    py_state = random.getstate()
    return tensors, {
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def set_rng_state(tensors: dict[str, torch.Tensor], json_state: dict) -> None:
    """Restore the states returned by :func:`get_rng_state` (CUDA only if the same number of GPUs is visible)."""
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")),
                                       key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)
    if "numpy" in json_state:
        name, keys, pos, has_gauss, cached = json_state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "python" in json_state:
        version, internal, gauss = json_state["python"]
        random.setstate((version, tuple(internal), gauss))


# ------------------------------------------------------------------------------------------------------- save / load
def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, state: dict | None = None) -> None:
    """Write model, optimizer, scheduler, RNG states and ``state`` to one safetensors file, atomically.

    ``model`` may be wrapped in DistributedDataParallel (the inner module is saved).  ``state`` holds anything else a
    run needs (epoch, step, config, best metric, a data-order ``torch.Generator`` state, ...): JSON values, tuples,
    int-keyed dicts and tensors, nested.  RNG states are those of the calling process at the moment of saving.
    """
    model = unwrap_model(model)
    model_state, aliases = unique_state(model.state_dict())
    tensors = {f"model.{k}": v for k, v in model_state.items()}
    meta_optim = encode(optimizer.state_dict(), "optim", tensors) if optimizer is not None else None
    meta_sched = encode(scheduler.state_dict(), "sched", tensors) if scheduler is not None else None
    meta_state = encode(dict(state or {}), "state", tensors)
    rng_tensors, rng_json = get_rng_state()
    tensors.update(rng_tensors)
    write_model_file(path, "checkpoint", tensors, {
        "layers": layer_metadata(model), "model_aliases": aliases, "architecture": architecture_of(model),
        "optimizer": meta_optim, "scheduler": meta_sched, "state": meta_state, "rng": rng_json})


def _checkpoint(source: str | os.PathLike | ModelFile, tensors: bool = True) -> ModelFile:
    mf = source if isinstance(source, ModelFile) else read_model_file(source, tensors=tensors)
    if mf.kind != "checkpoint":
        raise ModelFileError(mf.path, f"is not a weightsym training checkpoint ({mf.format or 'no weightsym format'}); "
                                      "weight files written by weightsym.save load with weightsym.load or "
                                      "weightsym.load_model")
    return mf


def checkpoint_info(path: str | os.PathLike | ModelFile) -> dict:
    """The decoded JSON metadata of a checkpoint (``format``, ``layers``, ``state``, ...), validated, without
    loading tensors.  Tensor references inside ``state`` / ``optimizer`` appear as ``{"__tensor__": key}``."""
    mf = _checkpoint(path, tensors=False)
    return {"format": mf.format, **mf.metadata}


def checkpoint_kind(path: str | os.PathLike) -> str:
    """What a safetensors file is, from its validated header alone (no tensor is read):

    ``"classifier"`` (a ``weightsym train`` checkpoint), ``"language-model"`` (a ``weightsym lm`` checkpoint),
    ``"checkpoint"`` (a training checkpoint without a config, e.g. from :func:`save_checkpoint` called directly),
    ``"weights"`` (``weightsym.save``), ``"dense"`` (``weightsym.fast.export_dense``) or ``"safetensors"`` (none of
    these).  A missing file raises ``FileNotFoundError``, a damaged one ``ValueError``.
    """
    return read_model_file(path, tensors=False).role


def load_checkpoint(path: str | os.PathLike | ModelFile, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None, *,
                    restore_rng: bool = False) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`; returns the ``state`` dict that was saved.

    The file is validated completely first (:func:`weightsym.files.read_model_file`).  Each of ``model`` /
    ``optimizer`` / ``scheduler`` given is loaded in place (``model`` may be DDP-wrapped and must be symmetrized
    exactly as the saved one: otherwise ``ValueError`` names the first differing layer; a dense-layer shape mismatch
    also raises ``ValueError``).  ``restore_rng=True`` also restores the torch/CUDA/numpy/Python RNG states saved with
    the checkpoint (what ``--resume`` does); the default leaves global RNGs alone.
    """
    mf = _checkpoint(path)
    info, tensors = mf.metadata, mf.tensors
    if model is not None:
        load_into(unwrap_model(model), mf, hint="build the model with the same symmetry options as the run that wrote "
                                                "it (they are in the checkpoint's state['config'], see "
                                                "weightsym.train.checkpoint.checkpoint_info)")
    try:
        if optimizer is not None:
            if info.get("optimizer") is None:
                raise ModelFileError(mf.path, "holds no optimizer state")
            optimizer.load_state_dict(decode(info["optimizer"], tensors))
            _check_optimizer_state(mf, optimizer)
        if scheduler is not None:
            if info.get("scheduler") is None:
                raise ModelFileError(mf.path, "holds no scheduler state")
            scheduler.load_state_dict(decode(info["scheduler"], tensors))
        if restore_rng:
            set_rng_state({k: v for k, v in tensors.items() if k.startswith("rng.")}, info.get("rng", {}))
        return decode(info.get("state", {}), tensors)
    except ModelFileError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError, AttributeError, OverflowError) as exc:
        raise ModelFileError(mf.path, f"its optimizer, scheduler, RNG or run state cannot be restored "
                                      f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None


def _check_optimizer_state(mf: ModelFile, optimizer: torch.optim.Optimizer) -> None:
    """Every tensor of the restored optimizer state has its parameter's shape (momentum, Adam moments) or is a
    scalar (a step count): torch restores any shape, and a wrong one would fail steps later, inside the run."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            for key, value in optimizer.state.get(parameter, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != parameter.shape:
                    raise ModelFileError(mf.path, f"metadata `optimizer.state`: its `{key}` has shape "
                                                  f"{tuple(value.shape)} for a parameter of shape "
                                                  f"{tuple(parameter.shape)} (a damaged or edited file)")
