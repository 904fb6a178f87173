"""Model files: the one reader and writer of weightsym's safetensors files (weights, checkpoints, dense exports).

Every command and every Python entry point that reads a model file goes through :func:`read_model_file`, which
validates the whole file before a single tensor is built:

1. the safetensors header (length, UTF-8 JSON, no duplicate keys) and its tensor table (known dtypes, non-negative
   shapes, data offsets that tile the data exactly: a truncated or padded file is refused);
2. the weightsym metadata against a schema: required keys per format, JSON types, layer entries whose symmetry,
   shape, row blocks and gate mask agree with the stored tensor and the symmetry's stored count, aliases and tensor
   references that point at tensors of the file;
3. a size bound before anything is allocated: reading allocates the file's size, and the model the file describes may
   hold at most :data:`EXPANSION_LIMIT` dense-equivalent values per stored value (a 200000 x 200000 x 3 layer in a
   tiny file is refused, not allocated);
4. the checksum (SHA-256 of the metadata and every stored tensor, written at save time, :func:`checksum`); files
   written before checksums existed (format version 1) still load, with a :class:`LegacyFileWarning`;
5. every floating tensor is finite.

:func:`load_model` then rebuilds the model a weight file or checkpoint describes (architecture from the model
registry, symmetry of every layer from the layer metadata), checking it first on the ``meta`` device, and returns it
with a :class:`ModelDescription`.  :func:`save` / :func:`load` are the weight-file API (``weightsym.save``,
``weightsym.load``); :mod:`weightsym.train.checkpoint` and :func:`weightsym.fast.export_dense` write through
:func:`write_model_file`.  Nothing is ever unpickled.  The format is described in ``docs/file-format.md``.

>>> import torch, tempfile, os, weightsym as ws
>>> from weightsym.models import create_model
>>> net = create_model("mnist1d-mlp", width=16)
>>> _ = ws.symmetrize(net, channel="block")
>>> path = ws.save(net, os.path.join(tempfile.mkdtemp(), "w.safetensors"))
>>> model, description = ws.load_model(path)
>>> description.architecture["name"], description.checksum
('mnist1d-mlp', 'verified')
>>> x = torch.randn(2, 1, 40)
>>> torch.equal(model(x), net.eval()(x))
True
"""

from __future__ import annotations

import collections
import fnmatch
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

VERSION = 2  # format version written; 1 = before checksums and architecture records
READABLE = (1, 2)
PREFIXES = {"weightsym": "weights", "weightsym-checkpoint": "checkpoint", "weightsym-dense": "dense"}
FORMATS = {kind: f"{prefix}/{VERSION}" for prefix, kind in PREFIXES.items()}
MAX_HEADER = 100 * 2**20  # the safetensors limit on the JSON header
EXPANSION_LIMIT = 256  # dense-equivalent values a file may describe per value it stores
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
    "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
# metadata keys each format requires (version 1 lacks "architecture" and "checksum")
REQUIRED = {
    "weights": ("layers", "aliases", "user"),
    "checkpoint": ("layers", "model_aliases", "optimizer", "scheduler", "state", "rng"),
    "dense": ("user",),
}
V2_REQUIRED = ("architecture", "checksum")
PICKLE_HINT = ("only .safetensors files are read: weightsym never unpickles a file (a .pt/.pth file is a pickle); "
               "convert a checkpoint you trust with: python -c \"import torch; from safetensors.torch import "
               "save_file; save_file(torch.load('IN.pt', weights_only=True), 'OUT.safetensors')\"")


class ModelFileError(ValueError):
    """A model file that cannot be used; the message is ``<path>: <problem>`` on one line (and what would work)."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")


class LegacyFileWarning(UserWarning):
    """A file written before weightsym stored checksums: it loads, but its contents cannot be verified."""


# ------------------------------------------------------------------------------------------------------- the file
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
        """The JSON part of a checkpoint's run state (tensor references not resolved; see :func:`decode`)."""
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
        self._need_tensors()
        n = len(self.prefix)
        state = {k[n:]: v for k, v in self.tensors.items() if k.startswith(self.prefix)}
        for alias, key in self.aliases.items():
            state[alias] = state[key]
        return state

    def dense_state(self) -> dict[str, torch.Tensor]:
        """The model's *dense* state dict: symmetric tensors expanded with the symmetry of their layer entry, in
        natural key order (``layer2`` before ``layer10``)."""
        from weightsym.symmetry import get_symmetry

        state = self.model_state()
        for qualified, info in self.layers.items():
            module, _, tensor = qualified.rpartition(".")
            stored = f"{module}.parametrizations.{tensor}.original" if module else f"parametrizations.{tensor}.original"
            mask = info.get("block_mask")
            state[qualified] = get_symmetry(info["symmetry"]).expand(
                state.pop(stored), tuple(info["shape"]), row_blocks=info.get("row_blocks", 1),
                block_mask=None if mask is None else [c == "1" for c in mask])
        return {key: state[key] for key in sorted(state, key=_natural_key)}

    def _need_tensors(self) -> None:
        if not self.tensors and self.shapes:
            raise ValueError(f"{self.path} was read without its tensors (read_model_file(..., tensors=False))")


def _natural_key(key: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


# ----------------------------------------------------------------------------------------------------- reading
def read_model_file(path: str | os.PathLike, tensors: bool = True,
                    max_expansion: float = EXPANSION_LIMIT) -> ModelFile:
    """Validate the file at ``path`` (see the module docstring) and return it as a :class:`ModelFile`.

    ``tensors=False`` reads and validates the header and metadata only (no tensor data, no checksum): for looking
    at what a file is.  Raises ``FileNotFoundError`` for a missing file and :class:`ModelFileError` (a
    ``ValueError`` whose message is ``<path>: <problem>``) for anything else; never allocates more than the file's
    size plus the size bound of the model it describes.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: does not exist")
    if path.is_dir():
        raise ModelFileError(path, "is a folder, not a model file")
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        header, header_len = _read_header(handle, path, size)
        mf = _parse(path, header, size, header_len)
        if tensors:
            mf.tensors = _read_tensors(handle, mf, header, 8 + header_len)
            _check_finite(mf)
    _check_layers(mf, max_expansion)
    _check_references(mf)
    _check_dtypes(mf)
    _check_config_architecture(mf)
    _check_config_symmetry(mf)
    if mf.version == 1:
        note = (f"{path} was written before weightsym stored checksums (format {mf.format}): it loads, but its "
                "contents cannot be verified; save it again to add a checksum")
        mf.notes.append(note)
        warnings.warn(note, LegacyFileWarning, stacklevel=2)
    return mf


def read_metadata(path: str | os.PathLike) -> dict:
    """The decoded, validated metadata of a weightsym file (``format``, ``layers``, ``aliases``, ``user``, ...),
    without reading its tensors."""
    mf = read_model_file(path, tensors=False)
    return {"format": mf.format, **mf.metadata}


def _looks_pickled(head: bytes) -> bool:
    return head[:1] == b"\x80" or head[:4] == b"PK\x03\x04"  # pickle protocol 2+, torch.save's zip


def _read_header(handle, path: Path, size: int) -> tuple[dict, int]:
    head = handle.read(8)
    hint = f"; {PICKLE_HINT}" if _looks_pickled(head) or path.suffix.lower() in (".pt", ".pth", ".pkl", ".bin") else ""
    if size < 8:
        raise ModelFileError(path, f"not a safetensors file: {size} bytes, shorter than the 8-byte header length"
                                   f"{hint or ' (empty or truncated)'}")
    n = int.from_bytes(head, "little")
    if n < 2 or n > size - 8:
        raise ModelFileError(path, f"not a safetensors file: its header length field says {n:,} bytes but "
                                   f"{size - 8:,} follow{hint or ' (truncated, or another format)'}")
    if n > MAX_HEADER:
        raise ModelFileError(path, f"header of {n:,} bytes is larger than the safetensors limit of {MAX_HEADER:,}")
    raw = handle.read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(path, f"the header is not UTF-8 text (byte {exc.start}): a damaged header{hint}") from None
    if not text.lstrip().startswith("{"):
        raise ModelFileError(path, f"not a safetensors file: the header is not a JSON object{hint}")
    try:
        header = json.loads(text, object_pairs_hook=_unique_keys)
    except ValueError as exc:
        raise ModelFileError(path, f"the header is not valid JSON ({str(exc).splitlines()[0]}): a damaged "
                                   "header") from None
    if not isinstance(header, dict):
        raise ModelFileError(path, "the header is not a JSON object")
    return header, n


def _unique_keys(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse(path: Path, header: dict, size: int, header_len: int) -> ModelFile:
    """The tensor table and the metadata, validated (no tensor data needed)."""
    data_size = size - 8 - header_len
    shapes, dtypes, spans = {}, {}, []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise ModelFileError(path, f"tensor `{name}`: header entry must have exactly dtype, shape and "
                                       "data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPES:
            raise ModelFileError(path, f"tensor `{name}` has dtype {dtype!r}; weightsym reads {', '.join(DTYPES)}")
        if not isinstance(shape, list) or len(shape) > 8 or not all(_int(d) and d >= 0 for d in shape):
            raise ModelFileError(path, f"tensor `{name}`: shape {shape!r} is not a list of at most 8 sizes >= 0")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise ModelFileError(path, f"tensor `{name}`: data_offsets {offsets!r} must be [begin, end] with "
                                       "0 <= begin <= end")
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise ModelFileError(path, f"tensor `{name}`: a {dtype} tensor of shape {tuple(shape)} needs {nbytes:,} "
                                       f"bytes but its data_offsets span {offsets[1] - offsets[0]:,}")
        shapes[name], dtypes[name] = tuple(shape), dtype
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise ModelFileError(path, f"tensor `{name}` starts at byte {begin:,} of the data, expected {end:,} "
                                       "(overlapping tensors or a gap)")
        end = stop
    if end != data_size:
        raise ModelFileError(path, f"the tensors fill {end:,} bytes but the file holds {data_size:,} after its "
                                   f"header ({'truncated' if end > data_size else 'extra bytes at the end'})")
    raw = header.get("__metadata__") or {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ModelFileError(path, "__metadata__ must map strings to strings")
    fmt = raw.get("format")
    kind, version = "safetensors", None
    ours = sorted(set(raw) & {"layers", "aliases", "model_aliases", "checksum", "architecture", "optimizer", "state",
                              "rng", "user"})
    if ours and not (isinstance(fmt, str) and fmt.startswith("weightsym")):
        raise ModelFileError(path, f"its metadata has weightsym fields ({', '.join(ours)}) but the format is "
                                   f"{fmt!r}, not a weightsym format (a damaged or edited file)")
    if isinstance(fmt, str) and fmt.startswith("weightsym"):
        prefix, _, number = fmt.partition("/")
        if prefix not in PREFIXES or not number.isdigit():
            raise ModelFileError(path, f"unknown format {fmt!r}; weightsym writes {', '.join(FORMATS.values())}")
        kind, version = PREFIXES[prefix], int(number)
        if version not in READABLE:
            newer = " (written by a newer weightsym: upgrade it)" if version > VERSION else ""
            raise ModelFileError(path, f"format {fmt!r} cannot be read{newer}; this version reads versions "
                                       f"{', '.join(map(str, READABLE))}")
    metadata: dict[str, Any] = {}
    if kind != "safetensors":
        required = REQUIRED[kind] + (V2_REQUIRED if version >= 2 else ())
        for key in required:
            if key not in raw:
                raise ModelFileError(path, f"metadata has no `{key}`, which format {fmt} requires (a damaged or "
                                           "edited file)")
        for key, text in raw.items():
            if key in ("format", "checksum"):
                continue
            try:
                metadata[key] = json.loads(text)
            except ValueError as exc:
                raise ModelFileError(path, f"metadata `{key}` is not valid JSON ({str(exc).splitlines()[0]})") from None
        _check_schema(path, kind, metadata)
        if version >= 2 and not re.fullmatch(r"sha256:[0-9a-f]{64}", raw["checksum"]):
            raise ModelFileError(path, f"metadata `checksum` must be 'sha256:' and 64 hex digits, got "
                                       f"{raw['checksum'][:80]!r}")
    return ModelFile(path, kind, fmt if kind != "safetensors" else None, version, metadata, shapes, dtypes, size,
                     checksum="absent" if version in (None, 1) else "not read")


def _fail(path, key: str, problem: str):
    raise ModelFileError(path, f"metadata `{key}`: {problem} (a damaged or edited file)")


def _check_schema(path: Path, kind: str, meta: dict) -> None:
    """Types and ranges of the metadata fields (the tensors they refer to are checked later)."""
    if "layers" in meta:
        layers = meta["layers"]
        if not isinstance(layers, dict):
            _fail(path, "layers", "must be an object {tensor name: layer entry}")
        for name, info in layers.items():
            key = f"layers.{name}"
            if not name or not isinstance(info, dict):
                _fail(path, key, "must be an object with symmetry, shape, row_blocks, block_mask, stored")
            for field_name in ("symmetry", "shape", "row_blocks", "block_mask", "stored"):
                if field_name not in info:
                    _fail(path, key, f"has no `{field_name}`")
            shape, rows, mask, stored = info["shape"], info["row_blocks"], info["block_mask"], info["stored"]
            if not isinstance(info["symmetry"], str) or not info["symmetry"]:
                _fail(path, key, f"symmetry {info['symmetry']!r} is not a symmetry name")
            if not isinstance(shape, list) or not 2 <= len(shape) <= 4 or not all(_int(d) and d >= 1 for d in shape):
                _fail(path, key, f"shape {shape!r} is not a list of 2 to 4 sizes >= 1")
            if not _int(rows) or rows < 1 or shape[0] % rows:
                _fail(path, key, f"row_blocks {rows!r} must be an integer >= 1 dividing the {shape[0]} rows")
            if mask is not None and (not isinstance(mask, str) or len(mask) != rows or set(mask) - {"0", "1"}):
                _fail(path, key, f"block_mask {mask!r} must be null or {rows} characters of 0/1")
            if not _int(stored) or stored < 1:
                _fail(path, key, f"stored {stored!r} must be an integer >= 1")
    for key in ("aliases", "model_aliases"):
        if key in meta and not (isinstance(meta[key], dict)
                                and all(isinstance(a, str) and isinstance(b, str) for a, b in meta[key].items())):
            _fail(path, key, "must map tensor names to tensor names")
    if "architecture" in meta and meta["architecture"] is not None:
        arch = meta["architecture"]
        if not (isinstance(arch, dict) and isinstance(arch.get("name"), str) and isinstance(arch.get("args"), dict)):
            _fail(path, "architecture", "must be null or {\"name\": registry name, \"args\": {...}}")
    for key in ("optimizer", "scheduler"):
        if key in meta and meta[key] is not None and not isinstance(meta[key], dict):
            _fail(path, key, "must be null or an object")
    if kind == "checkpoint":
        if not isinstance(meta.get("state"), dict):
            _fail(path, "state", "must be an object")
        if not isinstance(meta.get("rng"), dict):
            _fail(path, "rng", "must be an object")
        config = meta["state"].get("config")
        if config is not None:
            _check_config(path, config)
        vocab = meta["state"].get("vocab")
        if vocab is not None and not (isinstance(vocab, list) and all(isinstance(w, str) for w in vocab)):
            _fail(path, "state.vocab", "must be a list of words")


def _check_config(path: Path, config) -> None:
    """The run-config fields a model is rebuilt from (the rest is checked by the training code that reads it)."""
    if not isinstance(config, dict):
        _fail(path, "state.config", "must be an object")
    types = {"model": str, "corpus": str, "rnn_type": str, "model_args": dict, "channel": (str, type(None)),
             "spatial": (str, type(None)), "plan": (dict, type(None)), "include": (list, type(None)),
             "exclude": (list, type(None)), "hh_gates": (str, type(None)), "ih_gates": (str, type(None))}
    for key, kinds in types.items():
        if key in config and not isinstance(config[key], kinds):
            _fail(path, f"state.config.{key}", f"{config[key]!r} has the wrong type")
    for key in ("dataset", "data_dir"):
        if config.get(key) is not None and not isinstance(config[key], str):
            _fail(path, f"state.config.{key}", f"{config[key]!r} is not a name")
    for key, high in (("emb", 2**20), ("hidden", 2**20), ("layers", 2**10), ("image_size", 2**16),
                      ("expand_input", 64)):
        if key in config and (not _int(config[key]) or not 1 <= config[key] <= high):
            _fail(path, f"state.config.{key}", f"{config[key]!r} is not an integer in [1, {high}]")
    if "expand_fill" in config and not (isinstance(config["expand_fill"], (int, float))
                                        and not isinstance(config["expand_fill"], bool)
                                        and math.isfinite(config["expand_fill"])):
        _fail(path, "state.config.expand_fill", f"{config['expand_fill']!r} is not a finite number")
    if "dropout" in config and not (isinstance(config["dropout"], (int, float)) and 0 <= config["dropout"] < 1):
        _fail(path, "state.config.dropout", f"{config['dropout']!r} is not a number in [0, 1)")
    if "tie" in config and not isinstance(config["tie"], bool):
        _fail(path, "state.config.tie", f"{config['tie']!r} is not true or false")


def checksum(metadata: dict[str, str], tensors) -> str:
    """``"sha256:<hex>"`` of a file's metadata and tensors, as stored (see ``docs/file-format.md``).

    ``metadata``: the raw string metadata (the ``checksum`` key itself is left out); ``tensors``: ``(name, dtype
    name, shape, raw bytes)`` tuples.  Hashed: every metadata ``key NUL value NUL`` in sorted key order, then every
    tensor in sorted name order as ``name NUL dtype NUL d1,d2,... NUL`` followed by its little-endian bytes.
    """
    digest = hashlib.sha256(b"weightsym-checksum/1\0")
    for key in sorted(metadata):
        if key != "checksum":
            digest.update(key.encode() + b"\0" + metadata[key].encode() + b"\0")
    for name, dtype, shape, data in sorted(tensors, key=lambda t: t[0]):
        digest.update(f"{name}\0{dtype}\0{','.join(map(str, shape))}\0".encode())
        digest.update(data)
    return "sha256:" + digest.hexdigest()


def _read_tensors(handle, mf: ModelFile, header: dict, base: int) -> dict[str, torch.Tensor]:
    """Every tensor read straight into its own (freshly allocated, aligned) storage, in name order, hashing the bytes
    on the way; the checksum of a version-2 file is compared before any tensor is returned."""
    if sys.byteorder != "little":  # pragma: no cover
        raise ModelFileError(mf.path, "reading safetensors files needs a little-endian machine")
    out, entries = {}, []
    for name in sorted(k for k in header if k != "__metadata__"):
        entry = header[name]
        tensor = torch.empty(entry["shape"], dtype=DTYPES[entry["dtype"]])
        data = _tensor_bytes(tensor)
        if len(data):
            handle.seek(base + entry["data_offsets"][0])
            if handle.readinto(data) != len(data):
                raise ModelFileError(mf.path, "the file changed size while it was read; read it again")
        out[name] = tensor
        entries.append((name, entry["dtype"], entry["shape"], data))
    if mf.version is not None and mf.version >= 2:
        raw = header["__metadata__"]
        if checksum(raw, entries) != raw["checksum"]:
            raise ModelFileError(mf.path, "its contents do not match the checksum written with it: tensors or "
                                          "metadata changed after saving (a damaged or edited file); use another copy")
        mf.checksum = "verified"
    return out


def _check_finite(mf: ModelFile) -> None:
    for name, tensor in mf.tensors.items():
        if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
            nan = int(torch.isnan(tensor).sum())
            inf = int(torch.isinf(tensor).sum())
            raise ModelFileError(mf.path, f"tensor `{name}` holds {nan:,} NaN and {inf:,} infinite values; a model "
                                          "file must hold finite numbers (the run that wrote it diverged, or the "
                                          "file is damaged)")


def _check_layers(mf: ModelFile, max_expansion: float) -> None:
    """Each layer entry against its stored tensor, the size bound, then the symmetry's own stored count."""
    if mf.kind not in ("weights", "checkpoint"):
        return
    stored_total = sum(math.prod(s) for k, s in mf.shapes.items() if k.startswith(mf.prefix))
    dense_total = stored_total
    for qualified, info in mf.layers.items():
        module, _, tensor = qualified.rpartition(".")
        key = f"{module}.parametrizations.{tensor}.original" if module else f"parametrizations.{tensor}.original"
        shape = mf.model_shape(key)
        if shape is None:
            raise ModelFileError(mf.path, f"layer `{qualified}`: the metadata names a symmetric tensor but the file "
                                          f"has no `{mf.prefix}{key}` (a damaged or edited file)")
        if math.prod(shape) != info["stored"] or len(shape) != 1:
            raise ModelFileError(mf.path, f"layer `{qualified}`: the metadata says {info['stored']:,} stored values "
                                          f"but `{mf.prefix}{key}` has shape {shape}")
        dense_total += math.prod(info["shape"]) - info["stored"]
    if dense_total > max_expansion * max(stored_total, 1):
        raise ModelFileError(mf.path, f"describes {dense_total:,} dense-equivalent values from {stored_total:,} "
                                      f"stored ones, more than {max_expansion:g}x; refusing to allocate it (a "
                                      "damaged or edited file)")
    from weightsym.symmetry import get_symmetry

    for qualified, info in mf.layers.items():
        try:
            symmetry = get_symmetry(info["symmetry"])
        except ValueError as exc:
            raise ModelFileError(mf.path, f"layer `{qualified}`: {exc}") from None
        shape, rows = tuple(info["shape"]), info["row_blocks"]
        mask = None if info["block_mask"] is None else tuple(c == "1" for c in info["block_mask"])
        ok, why = symmetry.applies_to(shape, rows)
        if not ok:
            raise ModelFileError(mf.path, f"layer `{qualified}`: {symmetry.spec} cannot act on shape {shape}: {why}")
        expected = symmetry.stored_count(shape, rows, mask)
        if expected != info["stored"]:
            raise ModelFileError(mf.path, f"layer `{qualified}`: {symmetry.spec} on shape {shape} stores "
                                          f"{expected:,} values but the file holds {info['stored']:,}")


def _check_dtypes(mf: ModelFile) -> None:
    """A model is in one floating dtype: every floating tensor of the model part shares it, and the free values of a
    symmetric layer are floating (an int32 or float16 tensor among float32 ones is a damaged or edited file)."""
    if mf.kind not in ("weights", "checkpoint", "dense"):
        return
    floating = {"F64", "F32", "F16", "BF16"}
    seen: dict[str, str] = {}
    for key, dtype in mf.dtypes.items():
        if key.startswith(mf.prefix) and dtype in floating:
            seen.setdefault(dtype, key)
    if len(seen) > 1:
        (a, ka), (b, kb) = sorted(seen.items())[:2]
        raise ModelFileError(mf.path, f"tensor `{kb}` is {b} but `{ka}` is {a}; a model's floating tensors share one "
                                      "dtype (a damaged or edited file)")
    for qualified in mf.layers:
        module, _, tensor = qualified.rpartition(".")
        key = f"{module}.parametrizations.{tensor}.original" if module else f"parametrizations.{tensor}.original"
        dtype = mf.model_dtype(key)
        if dtype not in floating:
            raise ModelFileError(mf.path, f"tensor `{mf.prefix}{key}` holds the free values of layer `{qualified}` "
                                          f"but is {dtype}, not a floating dtype (a damaged or edited file)")


def _check_references(mf: ModelFile) -> None:
    """Aliases and ``{"__tensor__": key}`` references point at tensors of the file."""
    names = set(mf.shapes)
    for alias, key in mf.aliases.items():
        if mf.prefix + key not in names:
            raise ModelFileError(mf.path, f"alias `{alias}` points at `{key}`, which the file does not hold")
        if mf.prefix + alias in names:
            raise ModelFileError(mf.path, f"alias `{alias}` is also a stored tensor")

    def walk(obj, where):
        if isinstance(obj, dict):
            if "__tensor__" in obj and obj["__tensor__"] not in names:
                raise ModelFileError(mf.path, f"metadata `{where}` refers to tensor {obj['__tensor__']!r}, which the "
                                              "file does not hold")
            for k, v in obj.items():
                walk(v, f"{where}.{k}")
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, f"{where}.{i}")

    for key in ("optimizer", "scheduler", "state"):
        walk(mf.metadata.get(key), key)


# ----------------------------------------------------------------------------------------------------- writing
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


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def write_model_file(path: str | os.PathLike, kind: str, tensors: dict[str, torch.Tensor],
                     fields: dict[str, Any]) -> Path:
    """Write a model file of ``kind`` (``"weights"``, ``"checkpoint"``, ``"dense"``) atomically: ``fields`` are
    JSON-encoded into the metadata, the checksum is added, and the file appears under ``path`` only when complete
    (temporary file in the same folder, fsync, rename), with the mode a plain ``open()`` would give it.

    A tensor of a dtype weightsym cannot read, or a floating tensor holding NaN/inf, is refused (``ValueError`` naming
    it): every file weightsym writes, it can read back.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    for name, tensor in tensors.items():
        if tensor.dtype not in DTYPE_NAMES:
            raise ValueError(f"cannot save tensor `{name}` of dtype {tensor.dtype}; weightsym files hold "
                             f"{', '.join(str(d) for d in DTYPES.values())}")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"tensor `{name}` holds NaN or infinite values; refusing to write {path}, which no "
                             "weightsym reader would accept")
    metadata = {"format": FORMATS[kind], **{k: json.dumps(v) for k, v in fields.items()}}
    metadata["checksum"] = checksum(metadata, [(k, DTYPE_NAMES[t.dtype], list(t.shape), _tensor_bytes(t))
                                               for k, t in tensors.items()])
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
    return path


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


def layer_metadata(model: nn.Module) -> dict[str, dict]:
    """``{qualified tensor name: parametrization description}`` for every symmetric tensor."""
    from weightsym.nn.parametrization import symmetric_parametrization
    from weightsym.nn.symmetrize import symmetric_layers

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


# ----------------------------------------------------------------------------------------------------- loading
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


# ------------------------------------------------------------------------------------- rebuilding the model
@dataclass
class ModelDescription:
    """What :func:`load_model` rebuilt: the file, its kind and architecture, the symmetry of every layer, the run
    config and state of a checkpoint, and whether the checksum was verified."""

    path: str
    kind: str  # classifier, language-model, checkpoint, weights
    format: str
    architecture: dict  # {"name": registry name, "args": {...}}
    task: str
    input_shape: tuple
    layers: dict
    config: dict | None
    state: dict
    user: dict
    checksum: str
    notes: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def load_model(source: str | os.PathLike | ModelFile, model: str | None = None,
               max_expansion: float = EXPANSION_LIMIT) -> tuple[nn.Module, ModelDescription]:
    """``(model in eval mode, ModelDescription)`` rebuilt from a weight file or a training checkpoint (classifier or
    language model), on the CPU.

    The architecture comes from the file's ``architecture`` record (files written by this version), else from the
    run config of a checkpoint, else from ``model`` (a registry name; also accepted when it agrees with the file).
    Every layer is made symmetric as the file's layer metadata says; for a checkpoint whose config names symmetries,
    each layer's symmetry must be one the config asks for.  Before any real tensor is allocated the architecture is
    built on the ``meta`` device and compared with the file: tensor names, shapes, dtypes and the size bound.
    """
    mf = source if isinstance(source, ModelFile) else read_model_file(source, max_expansion=max_expansion)
    if mf.kind not in ("weights", "checkpoint"):
        use = ("weightsym.fast.load_dense(path, plain_model)" if mf.kind == "dense"
               else "safetensors.torch.load_file and model.load_state_dict")
        raise ModelFileError(mf.path, f"is {'a dense export' if mf.kind == 'dense' else 'a plain safetensors file'}"
                                      f" without weightsym layer metadata; load it with {use}")
    mf._need_tensors()
    from weightsym.models import create_model, model_info

    name, args = _architecture(mf, model)
    try:
        info = model_info(name)
        with torch.device("meta"):
            probe = create_model(name, **args)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise ModelFileError(mf.path, f"cannot build its architecture {name!r} with {args}: "
                                      f"{' '.join(str(exc).split())}") from None
    _check_probe(mf, probe, max_expansion)
    net = create_model(name, **args)
    attach_from_metadata(net, mf.layers)
    load_into(net, mf, hint=f"the file does not describe registry model {name!r} with {args}")
    net.eval()
    try:
        state = decode(mf.state, mf.tensors) if mf.kind == "checkpoint" else {}
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ModelFileError(mf.path, f"its run state cannot be decoded ({type(exc).__name__}: {exc}); a damaged or "
                                      "edited file") from None
    description = ModelDescription(
        path=str(mf.path), kind=mf.role, format=mf.format, architecture={"name": name, "args": args},
        task=info.get("task", "classification"), input_shape=tuple(info["input_shape"]), layers=mf.layers,
        config=mf.config, state=state,
        user=mf.metadata.get("user") or {}, checksum=mf.checksum, notes=list(mf.notes))
    return net, description


def _architecture(mf: ModelFile, requested: str | None) -> tuple[str, dict]:
    recorded = mf.architecture
    if recorded is not None:
        if requested and requested.strip().lower() != recorded["name"]:
            raise ModelFileError(mf.path, f"holds registry model {recorded['name']!r}, not {requested!r}; leave the "
                                          "model name out")
        return recorded["name"], dict(recorded["args"])
    config = mf.config or {}
    if "corpus" in config:  # a `weightsym lm` checkpoint written before architecture records
        vocab = mf.state.get("vocab")
        encoder = mf.model_shape("encoder.weight")
        if not encoder or len(encoder) != 2:
            raise ModelFileError(mf.path, "a language-model checkpoint without `encoder.weight`")
        args = {"num_classes": len(vocab) if vocab else encoder[0], "emb_size": config.get("emb", encoder[1]),
                "hidden_size": config.get("hidden", 256), "num_layers": config.get("layers", 2),
                "dropout": config.get("dropout", 0.5), "tie_weights": config.get("tie", False)}
        return f"{config.get('rnn_type', 'lstm')}-lm", args
    name = requested or config.get("model")
    if not name:
        raise ModelFileError(mf.path, "does not say which architecture it holds; pass the registry name (--model NAME, "
                                      "or load_model(path, model=NAME); `weightsym models` lists them)")
    args = dict(config.get("model_args") or {}) if config.get("model") == name or not requested else {}
    if "num_classes" not in args:
        args["num_classes"] = _infer_num_classes(mf, name, args)
    return name, args


def _check_config_architecture(mf: ModelFile) -> None:
    """A checkpoint's run config and its architecture record describe the same model."""
    config, recorded = mf.config or {}, mf.architecture
    if recorded is None:
        return
    if "model" in config:
        wanted = {"name": config["model"].strip().lower(), "args": config.get("model_args") or {}}
    elif "corpus" in config:
        keys = {"emb": "emb_size", "hidden": "hidden_size", "layers": "num_layers", "tie": "tie_weights",
                "dropout": "dropout"}
        wanted = {"name": f"{config.get('rnn_type', 'lstm')}-lm",
                  "args": {arg: config[key] for key, arg in keys.items() if key in config}}
    else:
        return
    name, args = recorded["name"], recorded["args"]
    differ = [k for k, v in wanted["args"].items() if args.get(k) != v]
    if wanted["name"] != name or differ:
        what = (f"model {wanted['name']!r}" if wanted["name"] != name
                else ", ".join(f"{k}={wanted['args'][k]!r}" for k in differ))
        raise ModelFileError(mf.path, f"its run config asks for {what} but its architecture record is {name!r} with "
                                      f"{args} (a damaged or edited file)")


def _file_shape(mf: ModelFile, key: str) -> tuple[int, ...] | None:
    """The dense shape of model tensor ``key`` in the file (symmetric tensors from their layer entry)."""
    if key in mf.layers:
        return tuple(mf.layers[key]["shape"])
    return mf.model_shape(key)


def _infer_num_classes(mf: ModelFile, name: str, args: dict) -> int:
    """The class count of an old file from the shapes it holds (the classifier's rows)."""
    from weightsym.models import create_model, model_info

    default = model_info(name)["num_classes"]
    try:
        with torch.device("meta"):
            probe = create_model(name, **args)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(mf.path, f"cannot build its architecture {name!r} with {args}: {exc}") from None
    found = set()
    for key, tensor in probe.state_dict().items():
        shape = _file_shape(mf, key)
        if shape is not None and shape != tuple(tensor.shape) and len(shape) == tensor.dim() \
                and tensor.shape[0] == default and shape[1:] == tuple(tensor.shape[1:]):
            found.add(shape[0])
    return found.pop() if len(found) == 1 else default


def _check_probe(mf: ModelFile, probe: nn.Module, max_expansion: float) -> None:
    """The architecture built on the meta device against the file, before anything real is allocated."""
    state = probe.state_dict()
    stored = sum(math.prod(s) for k, s in mf.shapes.items() if k.startswith(mf.prefix))
    dense = sum(t.numel() for t in state.values())
    if dense > max_expansion * max(stored, 1):
        raise ModelFileError(mf.path, f"its architecture has {dense:,} values but the file stores {stored:,}, "
                                      f"more than {max_expansion:g}x fewer; refusing to build it (a damaged or "
                                      "edited file)")
    expected = {}
    for key, tensor in state.items():
        if key in mf.layers:
            module, _, name = key.rpartition(".")
            expected[f"{module}.parametrizations.{name}.original" if module else f"parametrizations.{name}.original"] \
                = (key, tensor)
        else:
            expected[key] = (key, tensor)
    have = set(mf.model_keys)
    missing = [k for k in expected if k not in have]
    unexpected = [k for k in have if k not in expected]
    if missing or unexpected:
        what = (f"its architecture needs `{missing[0]}`, which the file does not hold" if missing
                else f"the file holds `{unexpected[0]}`, which its architecture does not have")
        raise ModelFileError(mf.path, f"does not match its architecture: {what}")
    for stored_key, (key, tensor) in expected.items():
        shape = _file_shape(mf, key)
        if shape != tuple(tensor.shape):
            raise ModelFileError(mf.path, f"tensor `{key}` has shape {shape} in the file but {tuple(tensor.shape)} in "
                                          "its architecture")
        dtype = mf.model_dtype(stored_key)
        if DTYPES[dtype] != tensor.dtype:
            raise ModelFileError(mf.path, f"tensor `{stored_key}` is {dtype} but the model's is "
                                          f"{DTYPE_NAMES.get(tensor.dtype, tensor.dtype)} (a damaged or converted "
                                          "file)")


def _check_config_symmetry(mf: ModelFile) -> None:
    """A checkpoint's layers carry only symmetries its run config asked for (catches an edited layer entry in a file
    without a checksum)."""
    config = mf.config or {}
    plan = config.get("plan")
    channel, spatial = config.get("channel"), config.get("spatial")
    if not (plan or channel or spatial):
        if mf.layers and mf.config is not None and ("model" in config or "corpus" in config):
            first = next(iter(mf.layers))
            raise ModelFileError(mf.path, f"layer `{first}` is symmetric but the run config names no symmetry (a "
                                          "damaged or edited file)")
        return
    from weightsym.symmetry import combine, get_symmetry

    def allowed_for(layer: str) -> set[str]:
        if plan:
            for pattern, spec in plan.items():
                if fnmatch.fnmatchcase(layer, pattern):
                    return _parts(get_symmetry(spec))
            return set()
        try:
            return _parts(combine(channel, spatial))
        except ValueError:
            return set()

    for qualified, info in mf.layers.items():
        layer = qualified.rpartition(".")[0]
        if info["symmetry"] not in allowed_for(layer):
            raise ModelFileError(mf.path, f"layer `{qualified}` is {info['symmetry']} but the run config asks for "
                                          f"{sorted(allowed_for(layer)) or 'none'} there (a damaged or edited file)")


def _parts(symmetry) -> set[str]:
    """The specs a layer asked for ``symmetry`` may carry: all of it, or the plane that applies."""
    from weightsym.symmetry import Composite

    if isinstance(symmetry, Composite):
        return {symmetry.spec, symmetry.channel.spec, symmetry.spatial.spec}
    return {symmetry.spec} if symmetry is not None else set()


def attach_from_metadata(model: nn.Module, layers: dict[str, dict]) -> nn.Module:
    """Make ``model`` symmetric as weight-file layer metadata ``{"a.b.weight": {"symmetry", ...}}`` describes, with
    the one attach routine (:func:`weightsym.nn.attach`: parametrization, dense-load hook, recurrent forward)."""
    from weightsym.nn.parametrization import attach
    from weightsym.symmetry import get_symmetry

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


# ------------------------------------------------------------------------------------ checkpoint state codec
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
