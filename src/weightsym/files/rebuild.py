"""Rebuilding the model a file describes: ``weightsym.load_model``.

:func:`load_model` takes a weight file or a training checkpoint (classifier or language model) and returns the model,
in eval mode on the CPU, with a :class:`ModelDescription`.  The architecture comes from the file's ``architecture``
record (a :mod:`weightsym.models` registry name and arguments), else from a checkpoint's run config (files written
before architecture records), else from the registry name you pass.  The architecture is first built on the ``meta``
device and compared with the file (tensor names, shapes, dtypes, the size bound) before any real tensor is allocated;
then every layer is made symmetric as the file's layer records say and the tensors are loaded.  The meta build is
itself bounded: the recorded arguments must have the types the registry entry declares (``num_classes`` an integer,
not ``"10"`` or ``null``), and the build stops as soon as it has registered more values than the size bounds allow or
more modules than :func:`module_limit` (an architecture record asking for a million blocks is refused at once, not
built).  :func:`check_resumable` runs the same checks, and the run-state ones a resume needs, before
``--resume`` builds anything.

>>> import os, tempfile, torch, weightsym as ws
>>> from weightsym.models import create_model
>>> net = create_model("mnist1d-mlp", width=16)
>>> _ = ws.symmetrize(net, channel="block")
>>> path = ws.save(net, os.path.join(tempfile.mkdtemp(), "w.safetensors"))
>>> model, description = load_model(path)
>>> description.architecture["name"], description.checksum, sorted(description.layers)[0]
('mnist1d-mlp', 'verified', 'hidden1.weight')
>>> x = torch.randn(2, 1, 40)
>>> torch.equal(model(x), net.eval()(x))
True
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.modules import module as torch_module

from weightsym.files.checkpoint import decode
from weightsym.files.errors import ModelFileError, metadata_error
from weightsym.files.format import DTYPE_NAMES, DTYPES, EXPANSION_LIMIT, model_values_limit, read_model_file
from weightsym.files.records import ModelFile, attach_from_metadata
from weightsym.files.runstate import check_resumable as check_position
from weightsym.files.runstate import is_int, is_number
from weightsym.files.validation import too_large
from weightsym.files.weights import load_into

MODULES_PER_TENSOR = 16  # modules a model may have per tensor its file holds (activations, containers, ...)
MIN_MODULE_LIMIT = 4096


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
               max_expansion: float = EXPANSION_LIMIT, max_values: int | None = None) -> tuple[nn.Module,
                                                                                               ModelDescription]:
    """``(model in eval mode, ModelDescription)`` rebuilt from a weight file or a training checkpoint (classifier or
    language model), on the CPU.

    The architecture comes from the file's ``architecture`` record (files written by this version), else from the
    run config of a checkpoint, else from ``model`` (a registry name; also accepted when it agrees with the file).
    Every layer is made symmetric as the file's layer metadata says; for a checkpoint whose config names symmetries,
    each layer's symmetry must be one the config asks for.  Before any real tensor is allocated the architecture is
    built on the ``meta`` device, within the size bounds (``max_expansion`` values per stored value, ``max_values``
    in all: default :func:`weightsym.files.model_values_limit`), and compared with the file: tensor names, shapes,
    dtypes.
    """
    max_values = model_values_limit() if max_values is None else max_values
    mf = source if isinstance(source, ModelFile) else read_model_file(source, max_expansion=max_expansion,
                                                                      max_values=max_values)
    if mf.kind not in ("weights", "checkpoint"):
        use = ("weightsym.fast.load_dense(path, plain_model)" if mf.kind == "dense"
               else "safetensors.torch.load_file and model.load_state_dict")
        raise ModelFileError(mf.path, f"is {'a dense export' if mf.kind == 'dense' else 'a plain safetensors file'}"
                                      f" without weightsym layer metadata; load it with {use}")
    mf.require_tensors()
    from weightsym.models import create_model, model_info  # here, not above: importing weightsym stays light

    name, args = check_architecture(mf, model, max_expansion, max_values)
    info = model_info(name)
    try:
        net = create_model(name, **args)
        attach_from_metadata(net, mf.layers)
        load_into(net, mf, hint=f"the file does not describe registry model {name!r} with {args}")
    except (TypeError, KeyError, AttributeError, IndexError, RuntimeError) as exc:  # ValueErrors name the layer
        raise ModelFileError(mf.path, f"cannot be rebuilt ({type(exc).__name__}: {' '.join(str(exc).split())[:200]});"
                                      " a damaged or edited file") from None
    net.eval()
    try:
        state = decode(mf.state, mf.tensors) if mf.kind == "checkpoint" else {}
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise ModelFileError(mf.path, f"its run state cannot be decoded ({type(exc).__name__}: {exc}); a damaged or "
                                      "edited file") from None
    description = ModelDescription(
        path=str(mf.path), kind=mf.role, format=mf.format, architecture={"name": name, "args": args},
        task=info.get("task", "classification"), input_shape=tuple(info["input_shape"]), layers=mf.layers,
        config=mf.config, state=state,
        user=mf.metadata.get("user") or {}, checksum=mf.checksum, notes=list(mf.notes))
    return net, description


def check_architecture(mf: ModelFile, model: str | None = None, max_expansion: float = EXPANSION_LIMIT,
                       max_values: int | None = None) -> tuple[str, dict]:
    """``(registry name, arguments)`` of the model ``mf`` describes, after building it on the ``meta`` device within
    the size bounds and comparing it with the file (:func:`load_model` before it builds anything real)."""
    from weightsym.models import create_model

    max_values = model_values_limit() if max_values is None else max_values
    name, args = _architecture(mf, model)
    _check_arguments(mf, name, args)
    stored = sum(math.prod(s) for k, s in mf.shapes.items() if k.startswith(mf.prefix))
    try:
        with torch.device("meta"), _bounded(mf, min(max_expansion * max(stored, 1), max_values), max_values):
            probe = create_model(name, **args)
    except ModelFileError:
        raise
    except (TypeError, ValueError, RuntimeError, OverflowError, KeyError, AttributeError, IndexError) as exc:
        raise ModelFileError(mf.path, f"cannot build its architecture {name!r} with {args}: "
                                      f"{' '.join(str(exc).split())[:300]}") from None
    _check_probe(mf, probe, max_expansion, max_values)
    return name, args


def check_resumable(mf: ModelFile, max_values: int | None = None) -> None:
    """A checkpoint a run can resume from: its run state holds a position (``state.step`` and ``state.loader``), and
    the architecture it describes builds within the size bounds and matches its tensors; a
    :class:`ModelFileError` naming the file and the field otherwise (the rest of the run state was checked when the
    file was read)."""
    check_position(mf.path, mf.state)
    if mf.architecture is not None:
        check_architecture(mf, max_values=max_values)


def module_limit(mf: ModelFile) -> int:
    """How many modules the model a file describes may have: :data:`MODULES_PER_TENSOR` per tensor of the file
    (at least :data:`MIN_MODULE_LIMIT`)."""
    return max(MIN_MODULE_LIMIT, MODULES_PER_TENSOR * len(mf.model_keys))


@contextmanager
def _bounded(mf: ModelFile, value_limit: float, max_values: int):
    """While the architecture is built: a :class:`ModelFileError` as soon as its registered parameters and buffers
    hold more than ``value_limit`` values or it registers more than :func:`module_limit` modules, so a record asking
    for a billion blocks (or channels) stops at the bound instead of building them."""
    counts = {"values": 0, "modules": 0}
    modules = module_limit(mf)

    def on_module(owner, name, child):
        counts["modules"] += 1
        if counts["modules"] > modules:
            raise ModelFileError(mf.path, f"its architecture has more than {modules:,} modules for the "
                                          f"{len(mf.model_keys):,} tensors the file holds; refusing to build it (a "
                                          "damaged or edited file)")

    def on_tensor(owner, name, tensor):
        counts["values"] += tensor.numel() if tensor is not None else 0
        if counts["values"] > value_limit:
            problem = (too_large(counts["values"], max_values) if counts["values"] > max_values else
                       f"its architecture has more than {counts['values']:,} values, more than the size bound of "
                       f"{int(value_limit):,} for the values the file stores; refusing to build it (a damaged or "
                       "edited file)")
            raise ModelFileError(mf.path, problem)

    handles = [torch_module.register_module_module_registration_hook(on_module),
               torch_module.register_module_parameter_registration_hook(on_tensor),
               torch_module.register_module_buffer_registration_hook(on_tensor)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _check_arguments(mf: ModelFile, name: str, args: dict) -> None:
    """The recorded arguments have the types the registry entry declares (its annotations, else its defaults'
    types): ``num_classes`` is an integer (``"10"`` or ``null`` would be converted or replaced silently), a width a
    number, a flag true/false."""
    from weightsym.models import model_info
    from weightsym.models.registry import model_parameters

    try:
        model_info(name)
        parameters = model_parameters(name)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(mf.path, f"its architecture {name!r} cannot be built: {exc}") from None
    tests = {"int": (is_int, "an integer"), "float": (is_number, "a finite number"),
             "bool": (lambda v: isinstance(v, bool), "true or false"), "str": (lambda v: isinstance(v, str), "a string")}
    where = "architecture.args" if mf.architecture is not None else "state.config.model_args"
    for key, value in args.items():
        parameter = parameters.get(key)
        if parameter is None:
            continue  # create_model refuses it, naming the options
        declared = parameter.annotation if isinstance(parameter.annotation, str) else (
            getattr(parameter.annotation, "__name__", None) if parameter.annotation is not parameter.empty
            else type(parameter.default).__name__ if parameter.default is not parameter.empty else None)
        test, what = tests.get(str(declared).split(" ")[0], (None, ""))
        if test is not None and not test(value):
            raise metadata_error(mf.path, f"{where}.{key}", f"{value!r} is not {what} (model {name!r} takes "
                                                            f"{key}: {declared})")
        if key == "num_classes" and not (is_int(value) and 1 <= value <= 2**24):
            raise metadata_error(mf.path, f"{where}.{key}", f"{value!r} is not an integer in [1, {2**24}]")


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


def _file_shape(mf: ModelFile, key: str) -> tuple[int, ...] | None:
    """The dense shape of model tensor ``key`` in the file (symmetric tensors from their layer entry)."""
    if key in mf.layers:
        return tuple(mf.layers[key]["shape"])
    return mf.model_shape(key)


def _infer_num_classes(mf: ModelFile, name: str, args: dict) -> int:
    """The class count of an old file from the shapes it holds (the classifier's rows)."""
    from weightsym.models import create_model, model_info

    default = model_info(name)["num_classes"]
    stored = sum(math.prod(s) for k, s in mf.shapes.items() if k.startswith(mf.prefix))
    try:
        with torch.device("meta"), _bounded(mf, min(EXPANSION_LIMIT * max(stored, 1), model_values_limit()),
                                            model_values_limit()):
            probe = create_model(name, **args)
    except ModelFileError:
        raise
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise ModelFileError(mf.path, f"cannot build its architecture {name!r} with {args}: "
                                      f"{' '.join(str(exc).split())[:300]}") from None
    found = set()
    for key, tensor in probe.state_dict().items():
        shape = _file_shape(mf, key)
        if shape is not None and shape != tuple(tensor.shape) and len(shape) == tensor.dim() \
                and tensor.shape[0] == default and shape[1:] == tuple(tensor.shape[1:]):
            found.add(shape[0])
    return found.pop() if len(found) == 1 else default


def _check_probe(mf: ModelFile, probe: nn.Module, max_expansion: float, max_values: int) -> None:
    """The architecture built on the meta device against the file, before anything real is allocated."""
    state = probe.state_dict()
    stored = sum(math.prod(s) for k, s in mf.shapes.items() if k.startswith(mf.prefix))
    dense = sum(t.numel() for t in state.values())
    if dense > max_values:
        raise ModelFileError(mf.path, too_large(dense, max_values))
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
