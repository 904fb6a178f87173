"""Weight files: safetensors holding only the stored (free) values, plus metadata naming each layer's symmetry.

A file written by :func:`save` is as small as the model's stored parameters.  :func:`load` checks the metadata
against the model first, so loading into a model with a different symmetry (or none) fails with a message that
names the layer and says how to build a matching model.  Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from weightsym.nn.symmetrize import symmetric_layers

FORMAT = "weightsym/1"


def layer_metadata(model: nn.Module) -> dict[str, dict]:
    """``{qualified tensor name: parametrization description}`` for every symmetric tensor."""
    from weightsym.nn.parametrization import symmetric_parametrization

    out = {}
    for qualified, module, _ in symmetric_layers(model):
        tensor = qualified.rsplit(".", 1)[-1]
        out[qualified] = symmetric_parametrization(module, tensor).describe()
    return out


def _unique_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
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


def new_file_mode() -> int:
    """The mode a plain ``open()`` gives a new file: 0666 minus the process umask (0644 with the usual 022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read the umask by setting it, and put it back at once
    os.umask(mask)
    return 0o666 & ~mask


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically (temp file in the same folder, fsync, rename), with the mode a plain
    ``open()`` would give it (:func:`new_file_mode`; ``mkstemp`` and ``save_file`` make 0600 files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, new_file_mode())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Save ``model.state_dict()`` (free values only for symmetric layers) to a safetensors file.

    ``metadata`` (JSON-serialisable) is stored under the ``user`` key.  Returns the path.
    """
    tensors, aliases = _unique_state(model.state_dict())
    meta = {
        "format": FORMAT,
        "layers": json.dumps(layer_metadata(model)),
        "aliases": json.dumps(aliases),
        "user": json.dumps(metadata or {}),
    }
    atomic_save_tensors(tensors, path, meta)
    return Path(path)


def read_safetensors_metadata(path: str | os.PathLike, kind: str = "weight file") -> dict[str, str]:
    """The raw (string) metadata of a safetensors file; clear errors for a missing or non-safetensors file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{kind} {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{str(path)!r} is not a safetensors file ({exc})") from None


def read_metadata(path: str | os.PathLike) -> dict:
    """The decoded weightsym metadata of a file (``format``, ``layers``, ``aliases``, ``user``)."""
    raw = read_safetensors_metadata(path)
    return {k: (json.loads(v) if k != "format" else v) for k, v in raw.items()}


def check_layer_metadata(file_layers: dict, model: nn.Module, source: str, hint: str) -> None:
    """Raise ``ValueError`` naming the first layer (in network order) whose symmetry, shape or gate mask differs
    between ``file_layers`` (from a file's metadata) and ``model``.  ``source`` names the file in the message and
    ``hint`` says how to build a matching model."""
    model_layers = layer_metadata(model)
    for name in list(model_layers) + [k for k in file_layers if k not in model_layers]:  # network order
        f, m = file_layers.get(name), model_layers.get(name)
        if f is None or m is None or f["symmetry"] != m["symmetry"] or f["shape"] != m["shape"] \
                or f.get("block_mask") != m.get("block_mask"):
            fs = f"{f['symmetry']} {tuple(f['shape'])}" if f else "dense"
            ms = f"{m['symmetry']} {tuple(m['shape'])}" if m else "dense"
            raise ValueError(f"layer `{name}`: {source} holds {fs} but the model has {ms}; {hint}")


def load(path: str | os.PathLike, model: nn.Module, strict: bool = True) -> dict:
    """Load a file written by :func:`save` into ``model`` (which must be symmetrized the same way).

    Returns the user metadata.  Raises ``ValueError`` naming the first mismatching layer.
    """
    from safetensors.torch import load_file

    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a weightsym weight file (format {meta.get('format')!r}); "
                         "for a plain state dict use safetensors.torch.load_file and model.load_state_dict")
    check_layer_metadata(meta.get("layers", {}), model, f"the file {str(path)!r}",
                         "symmetrize the model the same way before loading (see the file's metadata with "
                         "weightsym.read_metadata)")
    tensors = load_file(str(path))
    for alias, key in meta.get("aliases", {}).items():
        tensors[alias] = tensors[key]
    model.load_state_dict(tensors, strict=strict)
    return meta.get("user", {})
