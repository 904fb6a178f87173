"""Model files: weight files, training checkpoints and dense exports, read and written in one place.

Every weightsym file is a safetensors file with a small, strictly checked metadata schema (``docs/file-format.md``).
Each module owns one part:

* :mod:`~weightsym.files.format`: the bytes: :func:`read_model_file`, the one reader (validates header, tensor table,
  metadata, checksum, finite values and the size bound before anything is trusted), :func:`write_model_file`, the one
  writer (atomic through :mod:`weightsym.atomic`, checksummed), the format names, dtypes and limits;
* :mod:`~weightsym.files.validation`: the checks the reader runs once the bytes parse (metadata schema, metadata
  against tensors and symmetries, a checkpoint's run config against its records);
* :mod:`~weightsym.files.records`: what a file records about a model (symmetry per layer, tied tensors, architecture)
  and :class:`ModelFile`, a validated file;
* :mod:`~weightsym.files.checkpoint`: a checkpoint's run state (optimizer, scheduler, run config, RNG) as JSON and
  tensors;
* :mod:`~weightsym.files.runstate`: the schema of that run state (every field a resumed run uses, its type and
  range), checked when a checkpoint is read and, for what a resume needs on top, by :func:`check_resumable`;
* :mod:`~weightsym.files.weights`: weight files, :func:`save` and :func:`load` (``weightsym.save``, ``weightsym.load``);
* :mod:`~weightsym.files.rebuild`: :func:`load_model` (``weightsym.load_model``), the model a file describes, rebuilt
  from the model registry within the size bounds (:func:`model_values_limit`, ``$WEIGHTSYM_MAX_MODEL_VALUES``).

Layering: ``files`` builds on :mod:`weightsym.nn` and :mod:`weightsym.symmetry` (and :mod:`weightsym.models`, inside
:func:`load_model` only); ``nn`` never imports ``files``.  Training checkpoints are written by
:func:`weightsym.train.save_checkpoint` and dense exports by :func:`weightsym.fast.export_dense`, both through
:func:`write_model_file`.  Nothing is ever unpickled.

>>> import os, tempfile, torch, weightsym as ws
>>> from weightsym.models import create_model
>>> net = create_model("mnist1d-cnn", width=8)
>>> _ = ws.symmetrize(net, channel="block")
>>> path = ws.save(net, os.path.join(tempfile.mkdtemp(), "w.safetensors"))
>>> mf = ws.files.read_model_file(path, tensors=False)   # what the file is, without its tensor data
>>> mf.role, mf.architecture, mf.layers["conv2.weight"]["symmetry"]
('weights', {'name': 'mnist1d-cnn', 'args': {'num_classes': 10, 'width': 8}}, 'block')
>>> model, description = ws.load_model(path)
>>> x = torch.randn(2, 1, 40)
>>> torch.equal(model(x), net.eval()(x)), description.checksum
(True, 'verified')
"""

from weightsym.atomic import WriteError, new_file_mode
from weightsym.files.checkpoint import decode, encode
from weightsym.files.errors import LegacyFileWarning, ModelFileError
from weightsym.files.format import (
    DTYPE_NAMES,
    DTYPES,
    EXPANSION_LIMIT,
    FORMATS,
    MODEL_VALUES_LIMIT,
    VERSION,
    checksum,
    model_values_limit,
    read_metadata,
    read_model_file,
    write_model_file,
)
from weightsym.files.rebuild import ModelDescription, check_architecture, check_resumable, load_model
from weightsym.files.records import (
    ModelFile,
    architecture_of,
    attach_from_metadata,
    check_layer_metadata,
    layer_metadata,
    unique_state,
)
from weightsym.files.weights import load, load_into, save

__all__ = [
    # for users: weightsym.save / load / load_model / read_metadata, and a file as read
    "LegacyFileWarning", "MODEL_VALUES_LIMIT", "ModelDescription", "ModelFile", "ModelFileError", "WriteError", "load",
    "load_model", "model_values_limit", "read_metadata", "read_model_file", "save",
    # for the library's other layers (checkpoints, dense exports, downloads)
    "DTYPES", "DTYPE_NAMES", "EXPANSION_LIMIT", "FORMATS", "VERSION", "architecture_of", "attach_from_metadata",
    "check_architecture", "check_layer_metadata", "check_resumable", "checksum", "decode", "encode", "layer_metadata",
    "load_into", "new_file_mode", "unique_state", "write_model_file",
]
