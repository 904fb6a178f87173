"""What a model file records about a model, both ways: reading the records of a validated file, and making them.

A weightsym file records, besides the tensors: the symmetry of every symmetric layer (``layers``: symmetry, dense
shape, row blocks, gate mask, stored count per tensor, and the layer kind when the tensor's axes are not
``(out, in, *kernel)``: :mod:`weightsym.nn.layers`), tied tensors stored once (``aliases``), the registry entry the
model was built from (``architecture``) and, in a checkpoint, the run state.  This module owns those records:

* :class:`ModelFile`, a file :func:`weightsym.files.read_model_file` has validated, with the records as properties
  and the model's state dict as stored (:meth:`ModelFile.model_state`) or expanded (:meth:`ModelFile.dense_state`);
* the writer's side: :func:`layer_metadata`, :func:`architecture_of` and :func:`unique_state` turn a model into
  records; :func:`attach_from_metadata` turns layer records back into symmetric layers of a model, and
  :func:`check_layer_metadata` compares them with a model, naming the first layer that differs.

>>> import torch, weightsym as ws
>>> net = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(3)])
>>> _ = ws.symmetrize(net, channel="triangular")     # the first and the last layer stay dense by default
>>> layers = layer_metadata(net)
>>> layers
{'1.weight': {'symmetry': 'triangular', 'shape': [4, 4], 'row_blocks': 1, 'block_mask': None, 'stored': 10}}
>>> plain = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(3)])
>>> layer_metadata(attach_from_metadata(plain, layers)) == layers
True
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from weightsym.nn.layers import record_planes
from weightsym.nn.parametrization import attach, symmetric_parametrization
from weightsym.nn.symmetrize import symmetric_layers
from weightsym.symmetry import get_symmetry


# ------------------------------------------------------------------------------------------------------ reading records
@dataclass
class ModelFile:
    """A validated model file.  ``kind``: ``"weights"``, ``"checkpoint"``, ``"dense"`` or ``"safetensors"`` (a plain
    state dict); ``metadata``: the decoded metadata fields; ``tensors``: every stored tensor (``{}`` when read with
    ``tensors=False``); ``checksum``: ``"verified"``, ``"absent"`` (version 1, plain safetensors) or ``"not read"``."""

    path: Path
    kind: str
    format: str | None
    version: int | None
    metadata: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    size: int
    tensors: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    checksum: str = "not read"
    notes: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        """Key prefix of the model's tensors: ``"model."`` in a checkpoint, ``""`` otherwise."""
        return "model." if self.kind == "checkpoint" else ""

    @property
    def layers(self) -> dict[str, dict]:
        return self.metadata.get("layers") or {}

    @property
    def aliases(self) -> dict[str, str]:
        return self.metadata.get("model_aliases" if self.kind == "checkpoint" else "aliases") or {}

    @property
    def architecture(self) -> dict | None:
        return self.metadata.get("architecture")

    @property
    def state(self) -> dict:
        """The JSON part of a checkpoint's run state (tensor references not resolved; see
        :func:`weightsym.files.checkpoint.decode`)."""
        return self.metadata.get("state") or {} if self.kind == "checkpoint" else {}

    @property
    def config(self) -> dict | None:
        config = self.state.get("config")
        return config if isinstance(config, dict) else None

    @property
    def role(self) -> str:
        """What the file is for: ``classifier`` (``weightsym train``), ``language-model`` (``weightsym lm``),
        ``checkpoint`` (a training checkpoint without a run config), ``weights``, ``dense`` or ``safetensors``."""
        if self.kind != "checkpoint":
            return self.kind
        config = self.config or {}
        return "language-model" if "corpus" in config else "classifier" if "model" in config else "checkpoint"

    @property
    def model_keys(self) -> list[str]:
        """Names (without the checkpoint prefix) of the model's tensors, aliases included."""
        n = len(self.prefix)
        return [k[n:] for k in self.shapes if k.startswith(self.prefix)] + list(self.aliases)

    def model_shape(self, key: str) -> tuple[int, ...] | None:
        full = self.prefix + self.aliases.get(key, key)
        return self.shapes.get(full)

    def model_dtype(self, key: str) -> str | None:
        return self.dtypes.get(self.prefix + self.aliases.get(key, key))

    def model_state(self) -> dict[str, torch.Tensor]:
        """The model's state dict as stored (free values for symmetric layers), tied tensors restored."""
        self.require_tensors()
        n = len(self.prefix)
        state = {k[n:]: v for k, v in self.tensors.items() if k.startswith(self.prefix)}
        for alias, key in self.aliases.items():
            state[alias] = state[key]
        return state

    def dense_state(self) -> dict[str, torch.Tensor]:
        """The model's *dense* state dict: symmetric tensors expanded with the symmetry of their layer entry, in
        natural key order (``layer2`` before ``layer10``)."""
        state = self.model_state()
        for qualified, info in self.layers.items():
            module, _, tensor = qualified.rpartition(".")
            stored = f"{module}.parametrizations.{tensor}.original" if module else f"parametrizations.{tensor}.original"
            mask = info.get("block_mask")
            planes = record_planes(info.get("kind"), info["shape"], info.get("row_blocks", 1))  # the layer's axes
            state[qualified] = planes.expand(get_symmetry(info["symmetry"]), state.pop(stored),
                                             None if mask is None else [c == "1" for c in mask])
        return {key: state[key] for key in sorted(state, key=_natural_key)}

    def require_tensors(self) -> None:
        """Raise ``ValueError`` if the file was read without its tensors."""
        if not self.tensors and self.shapes:
            raise ValueError(f"{self.path} was read without its tensors (read_model_file(..., tensors=False))")


def _natural_key(key: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


# ------------------------------------------------------------------------------------------------------- making records
def layer_metadata(model: nn.Module) -> dict[str, dict]:
    """``{qualified tensor name: parametrization description}`` for every symmetric tensor."""
    out = {}
    for qualified, module, _ in symmetric_layers(model):
        out[qualified] = symmetric_parametrization(module, qualified.rsplit(".", 1)[-1]).describe()
    return out


def architecture_of(model: nn.Module) -> dict | None:
    """The registry entry a model was built from (``{"name", "args"}``, stamped by
    :func:`weightsym.models.create_model`), if it is plain JSON; else None."""
    entry = model.__dict__.get("registry_entry")
    if not (isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("args"), dict)):
        return None
    try:
        return json.loads(json.dumps({"name": entry["name"], "args": entry["args"]}))
    except (TypeError, ValueError):
        return None


def unique_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Drop aliases of shared storage (tied weights), remembering ``alias -> kept key``."""
    kept, aliases, seen = {}, {}, {}
    for key, t in state.items():
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and ident in seen:
            aliases[key] = seen[ident]
            continue
        seen[ident] = key
        kept[key] = t.detach().contiguous().cpu()
    return kept, aliases


# ---------------------------------------------------------------------------------------------- records against a model
def attach_from_metadata(model: nn.Module, layers: dict[str, dict]) -> nn.Module:
    """Make ``model`` symmetric as weight-file layer metadata ``{"a.b.weight": {"symmetry", ...}}`` describes, with
    the one attach routine (:func:`weightsym.nn.attach`: parametrization, dense-load hook, recurrent forward)."""
    for qualified, info in layers.items():
        owner, _, tensor = qualified.rpartition(".")
        try:
            module = model.get_submodule(owner)
        except AttributeError:
            raise ValueError(f"the file describes layer `{qualified}` but the model has no module `{owner}`; "
                             "pass the model the file was trained with") from None
        mask = info.get("block_mask")
        attach(module, tensor, get_symmetry(info["symmetry"]), int(info.get("row_blocks", 1)),
               None if mask is None else tuple(c == "1" for c in mask))
    return model


def check_layer_metadata(file_layers: dict, model: nn.Module, source: str, hint: str) -> None:
    """Raise ``ValueError`` naming the first layer (in network order) whose symmetry, shape or gate mask differs
    between ``file_layers`` (from a file's metadata) and ``model``.  ``source`` names the file in the message and
    ``hint`` says how to build a matching model."""
    model_layers = layer_metadata(model)
    for name in list(model_layers) + [k for k in file_layers if k not in model_layers]:  # network order
        f, m = file_layers.get(name), model_layers.get(name)
        if f is None or m is None or f["symmetry"] != m["symmetry"] or f["shape"] != m["shape"] \
                or f.get("block_mask") != m.get("block_mask") or f.get("kind") != m.get("kind"):
            fs = f"{f['symmetry']} {tuple(f['shape'])}{' ' + f['kind'] if f.get('kind') else ''}" if f else "dense"
            ms = f"{m['symmetry']} {tuple(m['shape'])}{' ' + m['kind'] if m.get('kind') else ''}" if m else "dense"
            raise ValueError(f"layer `{name}`: {source} holds {fs} but the model has {ms}; {hint}")
