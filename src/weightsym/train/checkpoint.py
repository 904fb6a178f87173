"""Training checkpoints: ONE safetensors file with everything needed to resume a run exactly, and nothing pickled.

What a checkpoint file holds:

* tensors ``model.<key>``: ``model.state_dict()``; symmetric layers contribute only their free values
  (``<layer>.parametrizations.weight.original``), so the file is as small as the model's stored parameters;
* tensors ``optim.<path>``: every tensor of ``optimizer.state_dict()`` (momentum buffers, Adam moments, steps);
* tensors ``sched.<path>`` / ``state.<path>``: tensors inside the scheduler state or your ``state`` dict (if any);
* tensors ``rng.torch`` (the CPU generator state, uint8) and ``rng.cuda.<i>`` (one per visible GPU, if any);
* JSON metadata: ``format`` (``weightsym-checkpoint/1``), ``layers`` (the weightsym layer metadata,
  ``weightsym.nn.io.layer_metadata``), ``model_aliases`` (tied tensors stored once), ``optimizer`` and
  ``scheduler`` (their state dicts with tensors replaced by references; includes ``param_groups``), ``state`` (your
  dict: epoch, step, config, best metric, ...), ``rng`` (numpy and Python RNG states).

Non-JSON values (tuples, ``collections.Counter`` with integer keys as in ``MultiStepLR.milestones``, dicts with
integer keys as in ``optimizer.state``, tensors) are encoded with small tagged objects, so they round-trip exactly.

The file is written atomically (temporary file in the same folder, fsync, rename): a crash while saving leaves the
previous checkpoint intact.  Loading checks the weightsym layer metadata first and raises ``ValueError`` naming the
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

import collections
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from weightsym.nn.io import _unique_state, atomic_save_tensors, layer_metadata

FORMAT = "weightsym-checkpoint/1"

__all__ = ["FORMAT", "checkpoint_info", "checkpoint_kind", "get_rng_state", "load_checkpoint", "save_checkpoint", "set_rng_state",
           "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


# ----------------------------------------------------------------------------------------------------------- encoding
def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able form of ``obj``; tensors go to ``tensors[path]`` and are replaced by ``{"__tensor__": path}``."""
    if isinstance(obj, torch.Tensor):
        key, n = path, 1
        while key in tensors:  # keys containing "." can map two values to one path
            key, n = f"{path}#{n}", n + 1
        tensors[key] = obj.detach().contiguous().cpu().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        kind = "Counter" if isinstance(obj, collections.Counter) else "dict"
        if kind == "dict" and all(isinstance(k, str) for k in obj) and not any(k.startswith("__") for k in obj):
            return {k: _encode(v, f"{path}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, _encode(v, f"{path}.{k}", tensors)] for k, v in obj.items()], "__type__": kind}
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"checkpoint: cannot store {type(obj).__name__} at `{path}` (use JSON values or tensors)")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    if "__items__" in obj:
        items = [(k, _decode(v, tensors)) for k, v in obj["__items__"]]
        return collections.Counter(dict(items)) if obj.get("__type__") == "Counter" else dict(items)
    return {k: _decode(v, tensors) for k, v in obj.items()}


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
    model_state, aliases = _unique_state(model.state_dict())
    tensors = {f"model.{k}": v for k, v in model_state.items()}
    meta_optim = _encode(optimizer.state_dict(), "optim", tensors) if optimizer is not None else None
    meta_sched = _encode(scheduler.state_dict(), "sched", tensors) if scheduler is not None else None
    meta_state = _encode(dict(state or {}), "state", tensors)
    rng_tensors, rng_json = get_rng_state()
    tensors.update(rng_tensors)
    metadata = {
        "format": FORMAT,
        "layers": json.dumps(layer_metadata(model)),
        "model_aliases": json.dumps(aliases),
        "optimizer": json.dumps(meta_optim),
        "scheduler": json.dumps(meta_sched),
        "state": json.dumps(meta_state),
        "rng": json.dumps(rng_json),
    }
    atomic_save_tensors(tensors, path, metadata)


def checkpoint_info(path: str | os.PathLike) -> dict:
    """The decoded JSON metadata of a checkpoint (``format``, ``layers``, ``state``, ...), without loading tensors.

    Tensor references inside ``state`` / ``optimizer`` appear as ``{"__tensor__": key}``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{str(path)!r} is not a safetensors file ({exc})") from None
    if raw.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a weightsym training checkpoint (format {raw.get('format')!r}); "
                         "weight files written by weightsym.save load with weightsym.load")
    return {k: (json.loads(v) if k != "format" else v) for k, v in raw.items()}


def checkpoint_kind(path: str | os.PathLike) -> str:
    """What a safetensors file is, from its header alone (no tensor is read):

    ``"classifier"`` (a ``weightsym train`` checkpoint), ``"language-model"`` (a ``weightsym lm`` checkpoint),
    ``"checkpoint"`` (a training checkpoint without a config, e.g. from :func:`save_checkpoint` called directly),
    ``"weights"`` (``weightsym.save``), ``"dense"`` (``weightsym.fast.export_dense``) or ``"safetensors"`` (none of
    these).  A missing file raises ``FileNotFoundError``, a file that is not safetensors ``ValueError``.
    """
    from weightsym.nn.io import read_safetensors_metadata

    raw = read_safetensors_metadata(path, kind="checkpoint")
    fmt = raw.get("format", "")
    if fmt == FORMAT:
        config = json.loads(raw.get("state", "{}")).get("config") or {}
        return "language-model" if "corpus" in config else "classifier" if "model" in config else "checkpoint"
    if fmt.startswith("weightsym-dense/"):
        return "dense"
    if fmt.startswith("weightsym/"):
        return "weights"
    return "safetensors"


def _check_layers(file_layers: dict, model: nn.Module, path: Path) -> None:
    """Raise ``ValueError`` naming the first layer whose symmetry/shape differs between the file and the model."""
    model_layers = layer_metadata(model)
    for name in list(model_layers) + [k for k in file_layers if k not in model_layers]:  # network order
        f, m = file_layers.get(name), model_layers.get(name)
        if f is None or m is None or f["symmetry"] != m["symmetry"] or f["shape"] != m["shape"] \
                or f.get("block_mask") != m.get("block_mask"):
            fs = f"{f['symmetry']} {tuple(f['shape'])}" if f else "dense"
            ms = f"{m['symmetry']} {tuple(m['shape'])}" if m else "dense"
            raise ValueError(f"layer `{name}`: the checkpoint {str(path)!r} holds {fs} but the model has {ms}; "
                             "build the model with the same symmetry options as the run that wrote it (they are in "
                             "the checkpoint's state['config'], see weightsym.train.checkpoint.checkpoint_info)")


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None, *,
                    restore_rng: bool = False) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`; returns the ``state`` dict that was saved.

    Each of ``model`` / ``optimizer`` / ``scheduler`` given is loaded in place (``model`` may be DDP-wrapped and must be
    symmetrized exactly as the saved one: otherwise ``ValueError`` names the first differing layer; a dense-layer
    shape mismatch also raises ``ValueError``).  ``restore_rng=True`` also restores the torch/CUDA/numpy/Python RNG
    states saved with the checkpoint (what ``--resume`` does); the default leaves global RNGs alone.
    """
    path = Path(path)
    info = checkpoint_info(path)
    tensors = load_file(str(path))
    if model is not None:
        model = unwrap_model(model)
        _check_layers(info.get("layers", {}), model, path)
        model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        for alias, key in info.get("model_aliases", {}).items():
            model_state[alias] = model_state[key]
        try:
            model.load_state_dict(model_state, strict=True)
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())
            raise ValueError(f"checkpoint {str(path)!r} does not match the model's architecture: {detail}") from None
    if optimizer is not None:
        saved = info.get("optimizer")
        if saved is None:
            raise ValueError(f"checkpoint {str(path)!r} holds no optimizer state")
        optimizer.load_state_dict(_decode(saved, tensors))
    if scheduler is not None:
        saved = info.get("scheduler")
        if saved is None:
            raise ValueError(f"checkpoint {str(path)!r} holds no scheduler state")
        scheduler.load_state_dict(_decode(saved, tensors))
    if restore_rng:
        set_rng_state({k: v for k, v in tensors.items() if k.startswith("rng.")}, info.get("rng", {}))
    return _decode(info.get("state", {}), tensors)
