"""The cases of the hostile-input corpus (``tests/hostile_files.py`` runs them): each a file forged from a valid one,
the readers that must refuse it and the field the one-line refusal must name."""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch

from hostile_files import Case, forge, join, nested, seal, setting, split, with_tensor

CLF_READERS = ("read", "load_checkpoint", "resume")
LM_READERS = ("read", "load_checkpoint", "lm-sample", "resume")
FILE_READERS = {"clf": ("read", "load_model", "describe", "export"), "weights": ("read", "load_model", "describe"),
                "lm": ("read", "load_model", "lm-sample")}


def _bytes(data: bytes, name: str = "model.safetensors"):
    def make(folder: Path) -> Path:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path
    return make


def _edited(base, klass, name, kind, path, value, readers=None, field=None, delete=False, **kw) -> Case:
    """A case: field ``path`` of ``kind``'s metadata set to ``value`` (or deleted), checksum recomputed."""
    data = forge(base[kind], setting(path, value, delete))
    readers = readers or (CLF_READERS if kind == "clf" else LM_READERS if kind == "lm" else FILE_READERS[kind])
    return Case(klass, name, kind, _bytes(data), readers, field=field if field is not None else (path if isinstance(path, str) else ".".join(path)), **kw)


# ------------------------------------------------------------------------------------------- item 1: the run state
CLF_CONFIG = [  # (field, hostile value): every one out of the field's type or range
    ("lr", float("nan")), ("lr", float("inf")), ("lr", 1e300), ("lr", 0), ("lr", -0.1), ("lr", "0.1"), ("lr", None),
    ("momentum", 1.5), ("momentum", -1), ("weight_decay", -1), ("weight_decay", float("nan")), ("betas", [0.9]),
    ("betas", [2, 0.9]), ("betas", "0.9"), ("epochs", 0), ("epochs", "many"), ("epochs", 1e300),
    ("epochs", float("nan")), ("batch_size", 0), ("batch_size", 2**40), ("batch_size", 1.5), ("batch_size", True),
    ("seed", -1), ("seed", 2**70), ("seed", 1.5), ("threads", 0), ("workers", -1), ("model", 5), ("model", ""),
    ("model_args", []), ("model_args", {"width": [1]}), ("dataset", 5), ("plan", []), ("plan", {"*": 5}),
    ("channel", 5), ("hh_gates", "2222"), ("schedule", "sometimes"), ("precision", "fp8"), ("fold", "sometimes"),
    ("tta", 5), ("tta", True), ("data_source", "floppy"), ("milestones", [-1]), ("milestones", "0.3"),
    ("label_smoothing", 1.0), ("distill", {"teacher": 5, "temperature": 1, "weight": 0.5}),
    ("freeze_after", {"x": -1}), ("expand_input", 0), ("expand_input", 1000), ("image_size", 0), ("max_steps", 0),
    ("checkpoint_every", -1), ("device", "tpu"), ("init", "zeros"), ("optimizer", "rmsprop"), ("gamma", 0),
    ("warmup", 1.0), ("bn_bias_lr_scale", 0), ("drop_last", "yes"), ("deterministic", 1), ("out", 5),
]
CLF_NAMES = [  # names whose registries live above files/: refused by the resume, which uses them
    ("model", "resnet-7", "model"), ("dataset", "imagenet-21k", "dataset"), ("augment", "spin", "augment"),
]
LM_CONFIG = [
    ("lr", float("nan")), ("lr", 1e300), ("emb", 0), ("hidden", 2**30), ("layers", 10**6), ("dropout", 1.5),
    ("tie", "yes"), ("tie", 1), ("rnn_type", "rnn"), ("heads", 0), ("bptt", 0), ("anneal", 0.5), ("clip", -1),
    ("qkv", "1111"), ("epochs", 0), ("optimizer", "adam"), ("channel", "nosuch"), ("plan", {"rnn": "nosuch"}),
    ("hh_gates", "11111"), ("seed", -5),
]
CLF_STATE = [
    ("step", -1), ("step", "2"), ("step", 1.5), ("step", 2**60), ("loader.batch", -1), ("loader.epoch", "0"),
    ("loader.seed", -1), ("loader.x", 1), ("loader", [0, 2]), ("world_size", 0), ("epoch_sums", [float("nan")]),
    ("epoch_sums", "x"), ("best_accuracy", 2.0), ("best_accuracy", float("nan")), ("best_epoch", 0),
    ("wall_seconds", -1), ("wall_seconds", float("inf")), ("fold_layers", "conv2"), ("fold_layers", [5]),
    ("fold_note", 5), ("evals", [[1]]), ("epoch_seconds", [-1]), ("epochs_done", -1),
]
RESUME_ONLY = [  # valid types, but no position a resume can start from (read_model_file and load_checkpoint accept)
    ("step", None, True, "state.step"), ("loader", None, True, "state.loader"),
    ("step", 5, False, "state.step"), ("loader.batch", 10**6, False, "state.loader.batch"),
    ("epoch_sums", [0.0], False, "state.epoch_sums"), ("world_size", 2, False, "2 process"),
]
RNG = [
    ("numpy.2", -1), ("numpy.2", 625), ("numpy.2", 10**6), ("numpy.1", [0] * 623), ("numpy.1.0", 2**32),
    ("numpy.1.0", -1), ("numpy.0", "PCG64"), ("numpy.3", 2), ("numpy.4", float("nan")), ("python.0", 2),
    ("python.1.624", 625), ("python.1", [0] * 624), ("python.2", "x"), ("numpy", {"a": 1}),
]
OPTIMIZER = [
    ("optimizer.param_groups.0.lr", float("nan")), ("optimizer.param_groups.0.lr", 1e300),
    ("optimizer.param_groups.0.lr", -1), ("optimizer.param_groups.0.momentum", 2),
    ("optimizer.param_groups.0.weight_decay", -1), ("optimizer.param_groups.0.params", [0, 0, 1, 2, 3, 4, 5, 6]),
    ("optimizer.param_groups.0.params", ["a"]), ("optimizer.param_groups", {"a": 1}),
    ("scheduler.last_epoch", -5), ("scheduler.last_epoch", "2"), ("scheduler.base_lrs", [float("nan")]),
    ("scheduler._last_lr", [-1]), ("scheduler._step_count", -1),
]
LM_STATE = [
    ("vocab", ["<eos>", "the", "the", "cat", "sat", "<unk>"]), ("vocab", ["<eos>", 5, "a", "cat", "sat", "<unk>"]),
    ("vocab", ["<eos>", "", "a", "cat", "sat", "<unk>"]), ("vocab", ["<eos>", "the cat", "a", "c", "sat", "<unk>"]),
    ("valid_loss", float("nan")), ("best_val", -1), ("history", [{"x": 1}]), ("epoch", -1), ("step", -3),
]


def run_state_cases(base) -> list[Case]:
    out = []
    for name, value in CLF_CONFIG:
        out.append(_edited(base, "run state", f"classifier config {name} = {value!r}", "clf", f"state.config.{name}",
                           value))
    for name, value, field in CLF_NAMES:
        out.append(_edited(base, "run state", f"classifier config {name} = {value!r} (unknown)", "clf",
                           f"state.config.{name}", value, readers=("resume",), field=field))
    for name, value in LM_CONFIG:
        out.append(_edited(base, "run state", f"language-model config {name} = {value!r}", "lm", f"state.config.{name}",
                           value))
    out.append(_edited(base, "run state", "language-model config corpus = 'klingon' (unknown)", "lm",
                       "state.config.corpus", "klingon", readers=("lm-sample", "resume"), field="corpus"))
    for name, value in CLF_STATE:
        out.append(_edited(base, "run state", f"state {name} = {value!r}", "clf", f"state.{name}", value))
    for name, value, delete, field in RESUME_ONLY:
        what = "missing" if delete else f"= {value!r}"
        out.append(_edited(base, "run state", f"state {name} {what}", "clf", f"state.{name}", value,
                           readers=("resume",), field=field, delete=delete))
    for name, value in RNG:
        out.append(_edited(base, "run state", f"rng {name} = {str(value)[:20]}", "clf", f"rng.{name}", value,
                           field=f"rng.{name.split('.')[0]}"))
    for name, value in OPTIMIZER:
        out.append(_edited(base, "run state", f"{name} = {value!r}", "clf", name, value,
                           field=".".join(name.split(".")[:2])))
    for name, value in LM_STATE:
        out.append(_edited(base, "run state", f"language-model state {name} = {str(value)[:30]}", "lm",
                           f"state.{name}", value))
    tensors = split(base["clf"])[0]
    momentum = next(k for k in tensors if k.startswith("optim.state.") and k.endswith("momentum_buffer"))
    out.append(Case("run state", "a momentum buffer of another shape", "clf",
                    _bytes(with_tensor(base["clf"], momentum, torch.zeros(3))), ("load_checkpoint", "resume"),
                    field="optimizer.state"))
    out.append(Case("run state", "rng.torch of 5055 bytes", "clf",
                    _bytes(with_tensor(base["clf"], "rng.torch", torch.zeros(5055, dtype=torch.uint8))),
                    CLF_READERS, field="rng.torch"))
    out.append(Case("run state", "rng.torch as float32", "clf",
                    _bytes(with_tensor(base["clf"], "rng.torch", torch.zeros(1264))), CLF_READERS, field="rng.torch"))
    return out


# --------------------------------------------------------------------------------------------------- item 2: sizes
def _sparse(kind: str, base):
    """A file whose tensor claims 10^12 elements (plain safetensors) or 8 GB (a weight file's extra tensor), its
    offsets consistent, its data a hole: the file's apparent size matches, its size on disk does not."""
    def make(folder: Path) -> Path:
        path = folder / "model.safetensors"
        if kind == "plain":
            header = {"x": {"dtype": "U8", "shape": [10**12], "data_offsets": [0, 10**12]}}
            body_size, raw = 10**12, json.dumps(header).encode()
        else:
            header, body = split(base["weights"])
            end = len(body)
            header["huge"] = {"dtype": "F32", "shape": [2 * 10**9], "data_offsets": [end, end + 8 * 10**9]}
            raw, body_size = json.dumps(header).encode(), end + 8 * 10**9
        with open(path, "wb") as handle:
            handle.write(struct.pack("<Q", len(raw)) + raw)
            if kind != "plain":
                handle.write(split(base["weights"])[1])
            handle.truncate(8 + len(raw) + body_size)
        return path
    return make


def _fifo(folder: Path) -> Path:
    path = folder / "model.safetensors"
    os.mkfifo(path)
    return path


def _socket(folder: Path) -> Path:
    path = folder / "model.safetensors"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))  # left bound: the path stays a socket until the folder is deleted
    _socket.keep = getattr(_socket, "keep", []) + [server]
    return path


def _link(target: str):
    def make(folder: Path) -> Path:
        path = folder / "model.safetensors"
        path.symlink_to(target)
        return path
    return make


def _architecture(kind: str, name: str | None = None, **args):
    def edit(meta):
        if name is not None:
            meta["architecture"]["name"] = name
        meta["architecture"]["args"].update(args)
        config = meta.get("state", {}).get("config")
        if config and "model" in config:  # a consistent forgery: the run config says the same
            config["model"] = meta["architecture"]["name"]
            config["model_args"] = {k: v for k, v in meta["architecture"]["args"].items() if k != "num_classes"}
    return edit


def size_cases(base) -> list[Case]:
    out = []
    for kind in ("weights", "clf"):
        # the readers that build the model; ``read`` checks the header, not what an architecture would build
        readers = tuple(r for r in FILE_READERS[kind] if r != "read") + (("resume",) if kind == "clf" else ())
        for label, edit in (("num_square 10^6 (a million blocks)", _architecture(kind, num_square=10**6)),
                            ("num_square 10^9", _architecture(kind, num_square=10**9)),
                            ("wrn-6000004-4 (a million blocks)", _architecture(kind, "wrn-6000004-4")),
                            ("wrn-6000000004-4 (a billion blocks)", _architecture(kind, "wrn-6000000004-4")),
                            ("width 10^9 channels", _architecture(kind, width=10**9))):
            out.append(Case("size", f"{kind} architecture {label}", kind, _bytes(forge(base[kind], edit)), readers,
                            field="architecture" if "wrn" in label else None))
    out.append(Case("size", "lm architecture num_layers 10^6", "lm",
                    _bytes(forge(base["lm"], lambda m: (m["architecture"]["args"].update(num_layers=10**6),
                                                        m["state"]["config"].update(layers=10**6)))),
                    FILE_READERS["lm"] + ("resume",), field="layers"))
    layer = next(iter(json.loads(split(base["weights"])[0]["__metadata__"]["layers"])))
    out.append(_edited(base, "size", "a layer of 200000x200000x3 (298 GiB)", "weights", ("layers", layer, "shape"),
                       [200000, 200000, 3], field="refusing to allocate"))
    out.append(Case("size", "sparse: a tensor of 10^12 elements (1 TB hole)", "none", _sparse("plain", base),
                    ("read", "describe"), field="sparse"))
    out.append(Case("size", "sparse: a weight file with an 8 GB hole", "weights", _sparse("weights", base),
                    FILE_READERS["weights"], field="sparse"))
    out.append(Case("size", "a FIFO without a writer", "clf", _fifo,
                    ("read", "load_model", "load_checkpoint", "describe", "resume"), field="FIFO"))
    out.append(Case("size", "a symlink to /dev/zero", "clf", _link("/dev/zero"), ("read", "load_model", "describe"),
                    field="not"))
    out.append(Case("size", "a model over the model-size limit ($WEIGHTSYM_MAX_MODEL_VALUES=100)", "weights",
                    _bytes(base["weights"]), ("read", "load_model", "describe"), field="WEIGHTSYM_MAX_MODEL_VALUES",
                    env={"WEIGHTSYM_MAX_MODEL_VALUES": "100"}))
    return out


# --------------------------------------------------------------------------------------- item 3: malformed metadata
def _header_edit(data: bytes, edit) -> bytes:
    header, body = split(data)
    edit(header)
    return join(json.dumps(header), body)


def _tensor(header) -> str:
    return next(k for k in header if k != "__metadata__")


def malformed_cases(base) -> list[Case]:
    out = []
    entry = [("dtype", ["F32"]), ("dtype", {"a": 1}), ("dtype", 5), ("shape", "4"), ("shape", [[4]]),
             ("shape", [4.0]), ("data_offsets", ["0", "16"]), ("data_offsets", {"a": 1})]
    for key, value in entry:
        data = _header_edit(base["weights"], lambda h, k=key, v=value: h[_tensor(h)].__setitem__(k, v))
        out.append(Case("malformed", f"header: a tensor's {key} given as {json.dumps(value)}", "weights",
                        _bytes(data), FILE_READERS["weights"], field=key if key != "dtype" else "dtype"))
    for label, edit, field in (
            ("a tensor entry as a list", lambda h: h.__setitem__(_tensor(h), [1, 2]), "header entry"),
            ("__metadata__ as a list", lambda h: h.__setitem__("__metadata__", [1]), "__metadata__"),
            ("__metadata__ values as numbers", lambda h: h["__metadata__"].__setitem__("layers", 5), "__metadata__")):
        out.append(Case("malformed", f"header: {label}", "weights", _bytes(_header_edit(base["weights"], edit)),
                        FILE_READERS["weights"], field=field))
    header, body = split(base["weights"])
    text = json.dumps(header)
    for depth in (5000, 200000):
        deep = text.replace('"shape": [', f'"deep": {nested(depth)}, "shape": [', 1)
        out.append(Case("malformed", f"header JSON nested {depth:,} deep", "weights", _bytes(join(deep, body)),
                        FILE_READERS["weights"], field="nested"))
    out.append(Case("malformed", "header: a shape of a 5000-digit integer", "weights",
                    _bytes(join(text.replace('"shape": [', '"shape": [' + "9" * 5000 + ", ", 1), body)),
                    FILE_READERS["weights"], field="JSON"))
    out.append(Case("malformed", "header: a lone surrogate in a metadata value", "weights",
                    _bytes(join(text.replace('"user": "{}"', '"user": "\\"\\ud800\\""'), body)), FILE_READERS["weights"],
                    field="metadata"))
    for depth in (100, 5000, 200000):
        for kind, key in (("weights", "user"), ("clf", "state")):
            def raw(meta, d=depth, k=key):
                meta[k] = meta[k][:-1] + f', "deep": {nested(d)}}}' if k == "state" else nested(d)
            out.append(Case("malformed", f"{kind} metadata `{key}` nested {depth:,} deep", kind,
                            _bytes(forge(base[kind], raw=raw)), FILE_READERS[kind], field=key))
    layer = next(iter(json.loads(header["__metadata__"]["layers"])))
    for name, value in (("symmetry", ["block"]), ("kind", ["Conv3d"]), ("block_mask", 5), ("shape", "8x8x5"),
                        ("stored", "10")):
        out.append(_edited(base, "malformed", f"layer entry {name} as {json.dumps(value)}", "weights",
                           ("layers", layer, name), value, field="layers"))
    for path, value, field in (("layers", [1], "layers"), ("aliases", {"a": ["b"]}, "aliases"),
                               ("architecture", [1], "architecture"), ("architecture.name", 5, "architecture"),
                               ("architecture.args", [], "architecture"),
                               ("architecture.args.width", [8], "architecture.args.width"),
                               ("architecture.args.width", {"x": 1}, "architecture.args.width")):
        out.append(_edited(base, "malformed", f"{path} as {json.dumps(value)}", "weights", path, value, field=field))
    out.append(_edited(base, "malformed", "a plan naming an unknown symmetry inside a checkpoint", "clf",
                       "state.config.plan", {"*conv*": "triangle"}, readers=CLF_READERS + ("load_model",)))
    for label, value in (("__tensor__ 5", {"__tensor__": 5}), ("__tuple__ 5", {"__tuple__": 5}),
                         ("__ndarray__ of dtype S10^12", {"__ndarray__": [1], "dtype": "S1000000000000"}),
                         ("__ndarray__ of dtype object", {"__ndarray__": [1], "dtype": "object"}),
                         ("__ndarray__ of text", {"__ndarray__": ["a"], "dtype": "int8"}),
                         ("__items__ 5", {"__items__": 5, "__type__": "dict"}),
                         ("__items__ with a list key", {"__items__": [[[1], 2]], "__type__": "dict"}),
                         ("an unknown tag", {"__weird__": 1})):
        out.append(_edited(base, "malformed", f"run state holds a tagged object: {label}", "clf", "state.extra",
                           value, readers=CLF_READERS + ("load_model",), field="state.extra"))
    for path, value in (("optimizer", "x"), ("scheduler", [1]), ("rng", []), ("state", 5), ("state.config", [1])):
        out.append(_edited(base, "malformed", f"{path} as {json.dumps(value)}", "clf", path, value,
                           readers=CLF_READERS + ("load_model",), field=path.split(".")[0]))
    out.append(Case("malformed", "a 5000-digit integer in the run state", "clf",
                    _bytes(forge(base["clf"], raw=lambda m: m.__setitem__("state", m["state"][:-1] + ', "n": '
                                                                          + "9" * 5000 + "}"))),
                    CLF_READERS, field="state"))
    out.append(Case("malformed", "a unix socket", "clf", _socket, ("read", "load_model", "load_checkpoint", "describe"),
                    field="socket"))
    out.append(Case("malformed", "a folder", "clf", lambda f: f, ("read", "load_model", "load_checkpoint"),
                    field="folder"))
    out.append(Case("malformed", "a symlink to /dev/null", "clf", _link("/dev/null"), ("read", "load_checkpoint"),
                    field="not"))
    return out


# ------------------------------------------------------------------------- item 4: duplicates, types, dataset files
def _duplicate(meta_key: str, *path: str):
    """The metadata string ``meta_key`` with the field at ``path`` written twice (first a copy, then the original)."""
    def raw(meta):
        decoded = json.loads(meta[meta_key])
        node = decoded
        for part in path[:-1]:
            node = node[part]
        first = json.dumps({path[-1]: node[path[-1]]})[1:-1]
        marker = json.dumps(path[-2]) + ": {" if len(path) > 1 else "{"
        text = json.dumps(decoded)
        at = text.index(marker) + len(marker)
        meta[meta_key] = text[:at] + first + ", " + text[at:]
    return raw


def _zip_damaged(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[:len(data) // 2]
    if how == "zero bytes":
        return b""
    if how == "random bytes":
        return bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8))
    out = bytearray(data)  # a flipped byte inside the first member's compressed data: the CRC fails
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    out[start + info.compress_size // 2] ^= 0xFF
    return bytes(out)


def _npz(data: bytes):
    return _bytes(data, "fashion_mnist/fashion_mnist_train.npz")


def duplicate_cases(base) -> list[Case]:
    out = []
    layer = next(iter(json.loads(split(base["weights"])[0]["__metadata__"]["layers"])))
    for kind, meta_key, key in (("weights", "layers", (layer,)), ("clf", "state", ("step",)),
                                ("weights", "architecture", ("args", "num_classes")),
                                ("clf", "optimizer", ("param_groups",)), ("lm", "state", ("vocab",)),
                                ("clf", "state", ("config", "lr"))):
        readers = CLF_READERS if kind == "clf" else LM_READERS if kind == "lm" else FILE_READERS[kind]
        out.append(Case("duplicates", f"{kind} metadata `{meta_key}` with `{'.'.join(key)}` twice", kind,
                        _bytes(forge(base[kind], raw=_duplicate(meta_key, *key))), readers, field="duplicate"))
    header, body = split(base["weights"])
    text = json.dumps(header)
    name = _tensor(header)
    entry = json.dumps(header[name])
    for label, doubled in (("a tensor named twice", text.replace("{", "{" + json.dumps(name) + ": " + entry + ", ",
                                                                  1)),
                           ("__metadata__ twice", text.replace("{", '{"__metadata__": {}, ', 1)),
                           ("format twice in __metadata__", text.replace('"__metadata__": {',
                                                                         '"__metadata__": {"format": "weightsym/2", ',
                                                                         1))):
        out.append(Case("duplicates", f"header: {label}", "weights", _bytes(join(doubled, body)),
                        FILE_READERS["weights"], field="duplicate"))
    for name, value in (("num_classes", "10"), ("num_classes", None), ("num_classes", 10.0), ("num_classes", True),
                        ("width", True), ("width", "8"), ("width", 8.0), ("padding_mode", 5), ("norm", "yes"),
                        ("norm", 1)):
        registry = name != "num_classes"  # typed by the registry entry: refused where the model is built
        out.append(_edited(base, "duplicates", f"architecture {name} = {value!r}", "weights",
                           f"architecture.args.{name}", value, field=f"architecture.args.{name}",
                           readers=("load_model", "describe") if registry else None))
    for name, value in (("tie_weights", 1), ("dropout", "0.5"), ("num_layers", 1.0)):
        edit = (lambda m, n=name, v=value: m["architecture"]["args"].__setitem__(n, v))
        out.append(Case("duplicates", f"lm architecture {name} = {value!r}", "lm", _bytes(forge(base["lm"], edit)),
                        ("load_model", "lm-sample"), field="architecture"))
    for name, value in (("epochs", "1"), ("seed", True), ("lr", "0.1"), ("batch_size", 500.0),
                        ("model_args", {"width": "8"})):
        out.append(_edited(base, "duplicates", f"classifier config {name} = {value!r}", "clf",
                           f"state.config.{name}", value, field="state.config" if name != "model_args" else "width"))
    out.append(_edited(base, "duplicates", "language-model config tie = 1", "lm", "state.config.tie", 1))
    for how in ("truncated", "zero bytes", "random bytes", "a flipped byte (CRC)"):
        out.append(Case("duplicates", f"dataset npz: {how}", "data", _npz(_zip_damaged(base["data"], how)),
                        ("dataset",), field="fashion_mnist_train.npz"))
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((10, 28, 28), np.uint8))
    out.append(Case("duplicates", "dataset npz without its labels", "data", _npz(buffer.getvalue()), ("dataset",),
                    field="'y'"))
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((10, 28, 28), np.uint8), y=np.array([object()] * 10, dtype=object))
    out.append(Case("duplicates", "dataset npz holding pickled objects", "data", _npz(buffer.getvalue()),
                    ("dataset",), field="fashion_mnist_train.npz"))
    out.append(Case("duplicates", "dataset npz as a FIFO", "data",
                    lambda f: (f / "fashion_mnist").mkdir() or os.mkfifo(f / "fashion_mnist" / "fashion_mnist_train.npz")
                    or f / "fashion_mnist" / "fashion_mnist_train.npz", ("dataset",), field="regular"))
    return out


def valid_cases(base) -> list[Case]:
    return [Case("valid", "classifier checkpoint of a real run", "clf", _bytes(base["clf"]),
                 ("read", "load_model", "load_checkpoint", "describe", "export", "resume"), expect="accepted"),
            Case("valid", "language-model checkpoint", "lm", _bytes(base["lm"]),
                 ("read", "load_model", "load_checkpoint", "lm-sample"), expect="accepted"),
            Case("valid", "weight file", "weights", _bytes(base["weights"]), FILE_READERS["weights"] + ("export",),
                 expect="accepted"),
            Case("valid", "weight file under a raised model-size limit", "weights", _bytes(base["weights"]),
                 ("read", "load_model"), expect="accepted", env={"WEIGHTSYM_MAX_MODEL_VALUES": "1e6"}),
            Case("valid", "dataset npz", "data", _npz(base["data"]), ("dataset",), expect="accepted")]


def cases(base) -> list[Case]:
    """Every case, valid controls first (they also warm up the readers before memory is measured)."""
    return valid_cases(base) + run_state_cases(base) + size_cases(base) + malformed_cases(base) + \
        duplicate_cases(base)
