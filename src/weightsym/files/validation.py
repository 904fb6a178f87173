"""Every check a model file passes once its bytes parse, before any of it is trusted.

:func:`weightsym.files.read_model_file` (the one reader, in :mod:`weightsym.files.format`) calls these in order:

1. :func:`check_schema`: the decoded metadata against its schema: nesting depth (:data:`MAX_DEPTH`), JSON types
   and ranges of every field, layer entries (symmetry name, dense shape, row blocks, gate mask, stored count),
   aliases, the architecture record (its arguments plain JSON values, ``num_classes`` an integer); a checkpoint's run
   state is checked next, by :func:`weightsym.files.runstate.check_run_state`;
2. :func:`check_finite`: every floating tensor holds finite numbers;
3. :func:`check_consistency`: the metadata against the tensors and the symmetries: each layer entry against its
   stored tensor and the symmetry's own stored count, the size bounds (at most ``max_expansion`` dense-equivalent
   values per stored value and ``max_values`` in all, checked before anything that size is allocated), aliases and
   tensor references, one floating dtype per model, and a checkpoint's run config against its architecture record
   and layer symmetries.

Each failure is a :class:`weightsym.files.ModelFileError` naming the file, the field or layer, and the problem.

>>> layer = {"symmetry": "triangular", "shape": [4, 4], "row_blocks": 3, "block_mask": None, "stored": 10}
>>> try:
...     check_schema("w.safetensors", "weights", {"layers": {"fc.weight": layer}})
... except ModelFileError as error:
...     print(error.problem)
metadata `layers.fc.weight`: row_blocks 3 must be an integer >= 1 dividing the 4 rows (a damaged or edited file)
"""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path

import torch

from weightsym.files.errors import ModelFileError, metadata_error
from weightsym.files.records import ModelFile
from weightsym.files.runstate import MODEL_ARGS, Invalid, is_int
from weightsym.nn.layers import MAX_WEIGHT_DIMS, kind_named, kind_names, record_planes
from weightsym.symmetry import Composite, combine, get_symmetry

FLOATING = ("F64", "F32", "F16", "BF16")  # the floating dtype names of the safetensors header
MAX_DEPTH = 64  # how deep a metadata value may nest (what weightsym writes nests fewer than 10 levels)


# ------------------------------------------------------------------------------------------------------ metadata schema
def check_depth(path, key: str, value, limit: int = MAX_DEPTH) -> None:
    """``value`` (decoded JSON) nests at most ``limit`` levels, checked without recursion, so that nothing that walks
    it later can run out of stack."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                raise metadata_error(path, key, f"nests more than {limit} levels deep")
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))


def check_schema(path: Path, kind: str, meta: dict) -> None:
    """Types and ranges of the metadata fields (the tensors they refer to are checked later; a checkpoint's run
    state by :func:`weightsym.files.runstate.check_run_state`)."""
    for key, value in meta.items():
        check_depth(path, key, value)
    if "layers" in meta:
        layers = meta["layers"]
        if not isinstance(layers, dict):
            raise metadata_error(path, "layers", "must be an object {tensor name: layer entry}")
        for name, info in layers.items():
            key = f"layers.{name}"
            if not name or not isinstance(info, dict):
                raise metadata_error(path, key, "must be an object with symmetry, shape, row_blocks, block_mask, "
                                                "stored")
            for field_name in ("symmetry", "shape", "row_blocks", "block_mask", "stored"):
                if field_name not in info:
                    raise metadata_error(path, key, f"has no `{field_name}`")
            shape, rows, mask, stored = info["shape"], info["row_blocks"], info["block_mask"], info["stored"]
            if not isinstance(info["symmetry"], str) or not info["symmetry"]:
                raise metadata_error(path, key, f"symmetry {info['symmetry']!r} is not a symmetry name")
            if not isinstance(shape, list) or not 2 <= len(shape) <= MAX_WEIGHT_DIMS \
                    or not all(is_int(d) and d >= 1 for d in shape):
                raise metadata_error(path, key, f"shape {shape!r} is not a list of 2 to {MAX_WEIGHT_DIMS} sizes >= 1")
            if "kind" in info and info["kind"] not in kind_names():
                raise metadata_error(path, key, f"kind {info['kind']!r} is not a layer kind (one of "
                                                f"{', '.join(kind_names())})")
            cut = kind_named(info["kind"]).blocked_rows(shape) if "kind" in info else shape[0]
            if not is_int(rows) or rows < 1 or cut % rows:
                raise metadata_error(path, key, f"row_blocks {rows!r} must be an integer >= 1 dividing the "
                                                f"{cut} rows")
            if mask is not None and (not isinstance(mask, str) or len(mask) != rows or set(mask) - {"0", "1"}):
                raise metadata_error(path, key, f"block_mask {mask!r} must be null or {rows} characters of 0/1")
            if not is_int(stored) or stored < 1:
                raise metadata_error(path, key, f"stored {stored!r} must be an integer >= 1")
    for key in ("aliases", "model_aliases"):
        if key in meta and not (isinstance(meta[key], dict)
                                and all(isinstance(a, str) and isinstance(b, str) for a, b in meta[key].items())):
            raise metadata_error(path, key, "must map tensor names to tensor names")
    if "architecture" in meta and meta["architecture"] is not None:
        arch = meta["architecture"]
        if not (isinstance(arch, dict) and set(arch) == {"name", "args"} and isinstance(arch["name"], str)
                and 0 < len(arch["name"]) <= 100 and isinstance(arch["args"], dict)):
            raise metadata_error(path, "architecture", "must be null or {\"name\": registry name, \"args\": {...}}")
        try:
            MODEL_ARGS(arch["args"], "architecture.args", {})
        except Invalid as exc:
            raise metadata_error(path, exc.where, exc.problem) from None
        classes = arch["args"].get("num_classes", 1)
        if not is_int(classes) or not 1 <= classes <= 2**24:
            raise metadata_error(path, "architecture.args.num_classes", f"{classes!r} is not an integer in "
                                                                        f"[1, {2**24}]")
    for key in ("optimizer", "scheduler"):
        if key in meta and meta[key] is not None and not isinstance(meta[key], dict):
            raise metadata_error(path, key, "must be null or an object")
    if kind == "checkpoint":
        if not isinstance(meta.get("state"), dict):
            raise metadata_error(path, "state", "must be an object")
        if not isinstance(meta.get("rng"), dict):
            raise metadata_error(path, "rng", "must be an object")


# -------------------------------------------------------------------------------------------------------------- tensors
def check_finite(mf: ModelFile) -> None:
    """Every floating tensor of the file holds finite numbers (no NaN, no infinity)."""
    for name, tensor in mf.tensors.items():
        if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
            nan = int(torch.isnan(tensor).sum())
            inf = int(torch.isinf(tensor).sum())
            raise ModelFileError(mf.path, f"tensor `{name}` holds {nan:,} NaN and {inf:,} infinite values; a model "
                                          "file must hold finite numbers (the run that wrote it diverged, or the "
                                          "file is damaged)")


def too_large(values: int, limit: int) -> str:
    """The problem of a model larger than the model-size limit, with how to raise the limit."""
    return (f"describes a model of {values:,} dense-equivalent values, more than the limit of {limit:,}; if you trust "
            f"the file, raise the limit with $WEIGHTSYM_MAX_MODEL_VALUES (or max_values=)")


# ------------------------------------------------------------------------------ metadata against tensors and symmetries
def check_consistency(mf: ModelFile, max_expansion: float, max_values: int) -> None:
    """The metadata of ``mf`` against its tensors and symmetries (see the module docstring), first failure raised."""
    _check_layers(mf, max_expansion, max_values)
    _check_references(mf)
    _check_dtypes(mf)
    _check_config_architecture(mf)
    _check_config_symmetry(mf)


def _check_layers(mf: ModelFile, max_expansion: float, max_values: int) -> None:
    """Each layer entry against its stored tensor, the size bounds, then the symmetry's own stored count."""
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
    if dense_total > max_values:
        raise ModelFileError(mf.path, too_large(dense_total, max_values))
    for qualified, info in mf.layers.items():
        try:
            symmetry = get_symmetry(info["symmetry"])
        except ValueError as exc:
            raise ModelFileError(mf.path, f"layer `{qualified}`: {exc}") from None
        shape, rows = tuple(info["shape"]), info["row_blocks"]
        mask = None if info["block_mask"] is None else tuple(c == "1" for c in info["block_mask"])
        try:
            planes = record_planes(info.get("kind"), shape, rows)  # where the layer kind keeps its planes
        except ValueError as exc:
            raise ModelFileError(mf.path, f"layer `{qualified}`: {exc}") from None
        ok, why = planes.applies(symmetry)
        if not ok:
            raise ModelFileError(mf.path, f"layer `{qualified}`: {symmetry.spec} cannot act on shape {shape}: {why}")
        try:
            expected = planes.layout(symmetry, mask).stored_count
        except ValueError as exc:  # e.g. a block mask the symmetry does not take (qk-tie)
            raise ModelFileError(mf.path, f"layer `{qualified}`: {exc}") from None
        if expected != info["stored"]:
            raise ModelFileError(mf.path, f"layer `{qualified}`: {symmetry.spec} on shape {shape} stores "
                                          f"{expected:,} values but the file holds {info['stored']:,}")


def _check_dtypes(mf: ModelFile) -> None:
    """A model is in one floating dtype: every floating tensor of the model part shares it, and the free values of a
    symmetric layer are floating (an int32 or float16 tensor among float32 ones is a damaged or edited file)."""
    if mf.kind not in ("weights", "checkpoint", "dense"):
        return
    seen: dict[str, str] = {}
    for key, dtype in mf.dtypes.items():
        if key.startswith(mf.prefix) and dtype in FLOATING:
            seen.setdefault(dtype, key)
    if len(seen) > 1:
        (a, ka), (b, kb) = sorted(seen.items())[:2]
        raise ModelFileError(mf.path, f"tensor `{kb}` is {b} but `{ka}` is {a}; a model's floating tensors share one "
                                      "dtype (a damaged or edited file)")
    for qualified in mf.layers:
        module, _, tensor = qualified.rpartition(".")
        key = f"{module}.parametrizations.{tensor}.original" if module else f"parametrizations.{tensor}.original"
        dtype = mf.model_dtype(key)
        if dtype not in FLOATING:
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


# ------------------------------------------------------------------------ a checkpoint's run config against its records
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
    if isinstance(symmetry, Composite):
        return {symmetry.spec, symmetry.channel.spec, symmetry.spatial.spec}
    return {symmetry.spec} if symmetry is not None else set()
