"""What a training checkpoint holds beyond the model: its run state, as JSON metadata plus tensors.

A checkpoint (``weightsym-checkpoint/2``, written by :func:`weightsym.train.save_checkpoint`) stores the model like a
weight file (tensors ``model.<key>``) and, in its metadata, the optimizer and scheduler state dicts, the caller's run
state (epoch, step, run config, ...) and the RNG states.  Those are Python objects, not JSON: :func:`encode` turns one
into JSON, moving every tensor into the file's tensor table (replaced by ``{"__tensor__": key}``) and tagging what
JSON lacks (tuples, numpy arrays, ``collections.Counter``, dicts with non-string keys), so that :func:`decode` gives
back an equal object.  Nothing is pickled.  The run config's fields a model is rebuilt from are checked by
:mod:`weightsym.files.validation`; :func:`weightsym.load_model` decodes the run state into
``ModelDescription.state``.

>>> import collections, torch
>>> tensors = {}
>>> state = {"epoch": 3, "milestones": collections.Counter({30: 1, 60: 1}), "shape": (2, 3), "m": torch.ones(2)}
>>> encoded = encode(state, "state", tensors)
>>> encoded["shape"], encoded["m"], sorted(tensors)
({'__tuple__': [2, 3]}, {'__tensor__': 'state.m'}, ['state.m'])
>>> back = decode(encoded, tensors)
>>> back["milestones"] == state["milestones"] and back["shape"] == (2, 3) and torch.equal(back["m"], state["m"])
True
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np
import torch


def encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able form of ``obj`` for a checkpoint's metadata; tensors go to ``tensors[path]`` and are replaced by
    ``{"__tensor__": path}``.  Tuples, numpy arrays, ``collections.Counter`` and dicts with non-string keys are
    tagged objects (``__tuple__``, ``__ndarray__``, ``__items__``), so they round-trip exactly (:func:`decode`)."""
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
        return {"__tuple__": [encode(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        kind = "Counter" if isinstance(obj, collections.Counter) else "dict"
        if kind == "dict" and all(isinstance(k, str) for k in obj) and not any(k.startswith("__") for k in obj):
            return {k: encode(v, f"{path}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, encode(v, f"{path}.{k}", tensors)] for k, v in obj.items()], "__type__": kind}
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"checkpoint: cannot store {type(obj).__name__} at `{path}` (use JSON values or tensors)")


def decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode` (tensor references resolved from ``tensors``)."""
    if isinstance(obj, list):
        return [decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__tuple__" in obj:
        return tuple(decode(v, tensors) for v in obj["__tuple__"])
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    if "__items__" in obj:
        items = [(k, decode(v, tensors)) for k, v in obj["__items__"]]
        return collections.Counter(dict(items)) if obj.get("__type__") == "Counter" else dict(items)
    return {k: decode(v, tensors) for k, v in obj.items()}
