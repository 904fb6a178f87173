"""Model files (issue 10): every command that reads a model file, and the Python loaders, refuse every damaged or
edited file with one line naming the file and the problem (exit code 2), accept none, and never allocate more than
the file's own size bound; valid files load with a verified checksum; files written before checksums load with a note.

The files are generated here: a classifier checkpoint (``weightsym train`` layout), a weight file and a language-model
checkpoint, each with a symmetric layer.  Each corruption is applied to the bytes of a file; "resealed" variants
rewrite the checksum after editing, so the schema, size, dtype and finiteness checks must catch them on their own.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import struct
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import weightsym as ws
from weightsym.cli import main
from weightsym.files import DTYPE_NAMES, EXPANSION_LIMIT, LegacyFileWarning, ModelFileError, checksum
from weightsym.files import format as file_format


# ------------------------------------------------------------------------------------------------ generated files
def _classifier_model():
    from weightsym.models import create_model

    torch.manual_seed(0)
    model = create_model("mnist1d-cnn", width=8)
    ws.symmetrize(model, channel="block")
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from weightsym.lm.train import LMConfig
    from weightsym.lm.train import build_model as build_lm
    from weightsym.train import TrainConfig, save_checkpoint

    root = tmp_path_factory.mktemp("model-files")
    model = _classifier_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 1, 40)).sum().backward()
    optimizer.step()
    config = TrainConfig(model="mnist1d-cnn", model_args={"width": 8}, channel="block", epochs=1, batch_size=64,
                         out=str(root / "run")).to_dict()
    save_checkpoint(root / "clf.safetensors", model, optimizer,
                    state={"config": config, "step": 1, "epochs_done": 1, "loader": {"seed": 0, "epoch": 1, "batch": 0},
                           "best_accuracy": 0.1, "best_epoch": 1, "epoch_sums": [0.0, 0.0, 0.0, 0.0],
                           "epoch_seconds": [1.0]})
    ws.save(model, root / "weights.safetensors", metadata={"note": "test"})
    lm_config = LMConfig(emb=8, hidden=8, layers=1, dropout=0.0, tie=True, channel="average", out=str(root / "lm"))
    vocab = ["<eos>", "the", "a", "cat", "sat", "<unk>"]
    torch.manual_seed(0)
    lm, _ = build_lm(lm_config, len(vocab))
    save_checkpoint(root / "lm.safetensors", lm, state={"config": asdict(lm_config), "epoch": 1, "valid_loss": 1.5,
                                                        "vocab": vocab})
    return {"clf": root / "clf.safetensors", "weights": root / "weights.safetensors", "lm": root / "lm.safetensors"}


def _parse(data: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def _tensors(header: dict, body: bytes) -> dict[str, torch.Tensor]:
    out = {}
    for name, entry in header.items():
        if name != "__metadata__":
            b, e = entry["data_offsets"]
            dtype = file_format.DTYPES[entry["dtype"]]
            out[name] = torch.frombuffer(bytearray(body[b:e]) or bytearray(1), dtype=dtype)[
                :math.prod(entry["shape"])].reshape(entry["shape"]).clone()
    return out


def _write(tensors: dict[str, torch.Tensor], metadata: dict[str, str], reseal: bool) -> bytes:
    """A safetensors file of ``tensors`` and ``metadata`` (checksum recomputed when ``reseal``)."""
    from safetensors.torch import save

    metadata = dict(metadata)
    if reseal and "checksum" in metadata:
        metadata["checksum"] = checksum(metadata, [
            (k, DTYPE_NAMES[t.dtype], list(t.shape), file_format._tensor_bytes(t)) for k, t in tensors.items()])
    return save(tensors, metadata=metadata)


def _edit_metadata(data: bytes, key_path: list[str], value, reseal: bool, delete: bool = False) -> bytes:
    header, body = _parse(data)
    meta = dict(header["__metadata__"])
    if len(key_path) == 1:
        if delete:
            meta.pop(key_path[0])
        else:
            meta[key_path[0]] = value if isinstance(value, str) and key_path[0] in ("format", "checksum") \
                else json.dumps(value)
    else:
        tree = json.loads(meta[key_path[0]])
        node = tree
        for key in key_path[1:-1]:
            node = node[key]
        if delete:
            node.pop(key_path[-1])
        else:
            node[key_path[-1]] = value
        meta[key_path[0]] = json.dumps(tree)
    return _write(_tensors(header, body), meta, reseal)


def _edit_tensor(data: bytes, pick, change, reseal: bool = True) -> bytes:
    header, body = _parse(data)
    tensors = _tensors(header, body)
    name = pick(tensors)
    tensors[name] = change(tensors[name])
    return _write(tensors, header["__metadata__"], reseal)


def _free_key(tensors) -> str:
    return next(k for k in sorted(tensors) if k.endswith("parametrizations.weight.original")
                or k.endswith("parametrizations.weight_hh_l0.original"))


def _drop_tensor(data: bytes) -> bytes:
    header, body = _parse(data)
    tensors = _tensors(header, body)
    tensors.pop(_free_key(tensors))
    return _write(tensors, header["__metadata__"], reseal=True)


def _flip(data: bytes, offset: int, bit: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1 << bit
    return bytes(out)


def _exponent_flip(data: bytes) -> bytes:
    """Flip the top exponent bit of one float32 free value (a weight of 0.01 becomes about 3e36)."""
    header, _ = _parse(data)
    n = struct.unpack("<Q", data[:8])[0]
    name = _free_key({k: None for k in header if k != "__metadata__"})
    begin = header[name]["data_offsets"][0]
    return _flip(data, 8 + n + begin + 4 * 3 + 3, 6)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {Path(os.environ.get('WS_MARKER', '/tmp/ws-pwned'))}",))


def _layer(data: bytes) -> str:
    return next(iter(json.loads(_parse(data)[0]["__metadata__"]["layers"])))


# Byte-level damage, valid for any file: (name, function of the file's bytes).
def byte_corruptions(data: bytes) -> list[tuple[str, bytes]]:
    n = struct.unpack("<Q", data[:8])[0]
    cases = [("zero bytes", b""), ("4 bytes", data[:4]), ("header length only", data[:8]),
             ("truncated in the header", data[:8 + n // 2]), ("truncated after the header", data[:8 + n]),
             ("truncated in the data", data[:len(data) - (len(data) - 8 - n) // 2]),
             ("last byte missing", data[:-1]), ("a byte appended", data + b"\0"),
             ("random bytes", bytes(torch.randint(0, 256, (len(data),), generator=torch.Generator().manual_seed(1),
                                                  dtype=torch.uint8).tolist())),
             ("bit flipped in the header length", _flip(data, 2, 3)),
             ("bit flipped in the header JSON", _flip(data, 8 + n // 2, 1)),
             ("bit flipped in the metadata", _flip(data, 8 + data[8:8 + n].index(b'"symmetry') + 12, 0)),
             ("bit flipped in the tensor data", _flip(data, 8 + n + (len(data) - 8 - n) // 2, 0)),
             ("exponent bit flipped", _exponent_flip(data)),
             ("a pickle that runs code", pickle.dumps(_Exploit()))]
    return cases


def metadata_corruptions(data: bytes) -> list[tuple[str, bytes]]:
    """Every top-level metadata field with a wrong type, a huge value and missing; then nested fields."""
    header, _ = _parse(data)
    meta = header["__metadata__"]
    layer = _layer(data)
    cases = []
    for key in meta:
        cases.append((f"{key}: wrong type", _edit_metadata(data, [key], 12345 if key not in ("format", "checksum")
                                                           else "many", reseal=False)))
        cases.append((f"{key}: huge value", _edit_metadata(data, [key], 10**30 if key not in ("format", "checksum")
                                                           else "weightsym/" + "9" * 30, reseal=False)))
        cases.append((f"{key}: missing", _edit_metadata(data, [key], None, reseal=False, delete=True)))
    for field in ("symmetry", "shape", "row_blocks", "block_mask", "stored"):
        cases.append((f"layers.{field}: wrong type", _edit_metadata(data, ["layers", layer, field], {"x": 1},
                                                                    reseal=False)))
        cases.append((f"layers.{field}: missing", _edit_metadata(data, ["layers", layer, field], None, reseal=False,
                                                                 delete=True)))
    for field, huge in (("shape", [200000, 200000, 3]), ("row_blocks", 10**9), ("stored", 10**12)):
        cases.append((f"layers.{field}: huge", _edit_metadata(data, ["layers", layer, field], huge, reseal=False)))
    if "state" in meta:
        for field in json.loads(meta["state"]).get("config", {}):
            cases.append((f"state.config.{field}: wrong type",
                          _edit_metadata(data, ["state", "config", field], {"bad": [1]}, reseal=False)))
    return cases


# Who must refuse a resealed edit (its checksum is right): "all" readers; "model": the readers that rebuild the model
# from its architecture record (every command and weightsym.load_model; weightsym.load and load_checkpoint load into
# a model you built, read_model_file builds none); "training": the readers that use the training options (eval,
# resume).
SCOPES = {"architecture of 10^9 channels": {"weights": "model"}, "architecture name unknown": {"weights": "model"},
          "run config epochs 'many'": {"clf": "training"}}


def resealed_corruptions(data: bytes, kind: str) -> list[tuple[str, bytes]]:
    """Edits whose checksum is recomputed: the other checks must catch them."""
    layer = _layer(data)
    meta = _parse(data)[0]["__metadata__"]
    cases = [
        ("layer shape 200000x200000x3 (298 GiB)",
         _edit_metadata(data, ["layers", layer, "shape"], [200000, 200000, 3], reseal=True)),
        ("layer row_blocks 0", _edit_metadata(data, ["layers", layer, "row_blocks"], 0, reseal=True)),
        ("layer stored count wrong", _edit_metadata(data, ["layers", layer, "stored"], 7, reseal=True)),
        ("layer symmetry unknown", _edit_metadata(data, ["layers", layer, "symmetry"], "triangle", reseal=True)),
        ("layer symmetry of another stored count",
         _edit_metadata(data, ["layers", layer, "symmetry"], "triangular", reseal=True)),
        ("layer symmetry wrong type", _edit_metadata(data, ["layers", layer, "symmetry"], 5, reseal=True)),
        ("layers missing", _edit_metadata(data, ["layers"], None, reseal=True, delete=True)),
        ("architecture missing", _edit_metadata(data, ["architecture"], None, reseal=True, delete=True)),
        ("architecture of 10^9 channels", _edit_metadata(data, ["architecture", "args", "width" if kind != "lm"
                                                                else "hidden_size"], 10**9, reseal=True)),
        ("architecture name unknown", _edit_metadata(data, ["architecture", "name"], "resnet-7", reseal=True)),
        ("architecture args wrong type", _edit_metadata(data, ["architecture", "args"], [1, 2], reseal=True)),
        ("format from the future", _edit_metadata(data, ["format"], meta["format"].split("/")[0] + "/3",
                                                  reseal=True)),
        ("NaN in a weight", _edit_tensor(data, _free_key, lambda t: t.index_fill(0, torch.tensor([1]), math.nan))),
        ("Inf in a weight", _edit_tensor(data, _free_key, lambda t: t.index_fill(0, torch.tensor([0]), math.inf))),
        ("float16 weights", _edit_tensor(data, _free_key, lambda t: t.half())),
        ("int32 weights", _edit_tensor(data, _free_key, lambda t: (t * 100).int())),
        ("float64 weights", _edit_tensor(data, _free_key, lambda t: t.double())),
        ("a weight of another size", _edit_tensor(data, _free_key, lambda t: t[:-1])),
        ("a tensor missing", _drop_tensor(data)),
        ("an alias to a missing tensor",
         _edit_metadata(data, ["model_aliases" if "model_aliases" in meta else "aliases"], {"x.weight": "nope"},
                        reseal=True)),
    ]
    if kind != "weights":
        cases += [
            ("run config of a wrong type", _edit_metadata(data, ["state", "config"], "many", reseal=True)),
            ("symmetry swapped against the run config",
             _edit_metadata(data, ["layers", layer, "symmetry"], "repeat:4:out" if kind == "clf" else "triangular",
                            reseal=True)),
            ("a tensor reference to nothing", _edit_metadata(data, ["state", "bogus"], {"__tensor__": "missing"},
                                                             reseal=True)),
        ]
    if kind == "clf":
        cases += [
            ("run config asks for another model", _edit_metadata(data, ["state", "config", "model"], "fmnist-cnn",
                                                                 reseal=True)),
            ("run config epochs 'many'", _edit_metadata(data, ["state", "config", "epochs"], "many", reseal=True)),
            ("run config image size huge", _edit_metadata(data, ["state", "config", "image_size"], 10**12,
                                                          reseal=True)),
        ]
    return cases


def all_corruptions(files) -> list[tuple[str, str, bytes, str]]:
    """``(kind, name, bytes, scope)`` for every corruption of every generated file."""
    out = []
    for kind, path in files.items():
        data = path.read_bytes()
        for name, bad in byte_corruptions(data) + metadata_corruptions(data) + resealed_corruptions(data, kind):
            out.append((kind, name, bad, SCOPES.get(name, {}).get(kind, "all")))
    return out


# ---------------------------------------------------------------------------------------------- running the readers
def _commands(kind: str, path: Path, scratch: Path) -> list[list[str]]:
    if kind == "clf":
        run = scratch / "run"
        run.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, run / "checkpoint.safetensors")
        return [["eval", str(path)], ["analyze", str(path), "--max-batches", "1", "--out", str(scratch / "a")],
                ["export", str(path), "--out", str(scratch / "d.safetensors")],
                ["export", str(path), "--format", "onnx", "--out", str(scratch / "m.onnx")],
                ["describe", str(path)], ["train", "--resume", "--out", str(run), "--no-progress"]]
    if kind == "weights":
        return [["analyze", str(path), "--out", str(scratch / "a")],
                ["export", str(path), "--out", str(scratch / "d.safetensors")], ["describe", str(path)]]
    run = scratch / "lm"
    run.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, run / "last.safetensors")
    return [["lm-sample", str(path), "--words", "3", "--seed", "0"], ["describe", str(path)],
            ["lm", "--resume", "--out", str(run), "--no-progress"]]


def _python_loaders(kind: str, path: Path, scope: str = "all"):
    """The Python entry points that must refuse a file damaged in ``scope``."""
    from weightsym.lm.train import load_language_model
    from weightsym.train.checkpoint import load_checkpoint

    if scope == "training":
        return []
    loaders = [lambda: ws.load_model(path)]
    if kind == "lm":
        loaders.append(lambda: load_language_model(path))
    if scope == "all":
        loaders.append(lambda: ws.files.read_model_file(path))
        if kind == "clf":
            loaders.append(lambda: load_checkpoint(path, _classifier_model()))
        elif kind == "weights":
            loaders.append(lambda: ws.load(path, _classifier_model()))
    return loaders


def _peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def size_bound_kib(size: int) -> int:
    """What reading a file of ``size`` bytes may allocate: the file, and a model of at most EXPANSION_LIMIT dense
    values per stored one (dense weights and their int64 gather index), plus 64 MiB for Python and torch."""
    return (size * (1 + 3 * EXPANSION_LIMIT)) // 1024 + 64 * 1024


def test_valid_files_load_everywhere_with_a_verified_checksum(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WEIGHTSYM_DATA", str(tmp_path / "no-data"))  # mnist1d is generated offline
    for kind, path in files.items():
        for argv in _commands(kind, path, tmp_path / kind):
            if argv[0] in ("train", "lm"):
                continue  # a resume would train; the corrupted runs stop before that
            if argv[0] == "export" and "onnx" in argv and not modelfile_onnx():
                continue
            assert main(argv) == 0, (argv, capsys.readouterr().err)
        for load in _python_loaders(kind, path):
            load()
        model, description = ws.load_model(path)
        assert description.checksum == "verified" and description.notes == []
    capsys.readouterr()


def modelfile_onnx() -> bool:
    from weightsym.fast.export import onnx_available

    return onnx_available()


@pytest.mark.slow
def test_every_corruption_is_refused_by_every_reader_in_one_line(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WS_MARKER", str(tmp_path / "pwned"))
    monkeypatch.setenv("WEIGHTSYM_DATA", str(tmp_path / "no-data"))
    for kind, path in files.items():  # warm up: imports and first-call allocations are not the file's doing
        for argv in _commands(kind, path, tmp_path / "warm" / kind):
            if argv[0] not in ("train", "lm") and not (argv[0] == "export" and "onnx" in argv):
                main(argv)
    capsys.readouterr()
    cases = all_corruptions(files)
    assert len(cases) > 150
    failures = []
    for index, (kind, name, data, scope) in enumerate(cases):
        path = tmp_path / "bad" / str(index) / "model.safetensors"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        bound = size_bound_kib(len(data))
        for argv in _commands(kind, path, path.parent):
            if scope == "training" and argv[0] not in ("eval", "train", "lm"):
                continue
            _reset_peak()
            before = _peak_kib()
            code = main(argv)
            grown = _peak_kib() - before
            err = capsys.readouterr().err.strip().splitlines()
            errors = [line for line in err if ": error: " in line]
            where = str(path.parent / "run" / "checkpoint.safetensors") if argv[0] == "train" else \
                str(path.parent / "lm" / "last.safetensors") if argv[0] == "lm" else str(path)
            if code != 2 or len(errors) != 1 or where not in errors[0] or "Traceback" in " ".join(err) \
                    or len(err) > 2:
                failures.append(f"{kind} / {name} / weightsym {argv[0]}: exit {code}, stderr {err[:3]}")
            if grown > bound:
                failures.append(f"{kind} / {name} / weightsym {argv[0]}: peak memory grew {grown:,} KiB > {bound:,}")
        for load in _python_loaders(kind, path, scope):
            _reset_peak()
            before = _peak_kib()
            try:
                load()
            except (ValueError, FileNotFoundError) as exc:
                message = str(exc)
                if str(path) not in message or "\n" in message:
                    failures.append(f"{kind} / {name} / Python: message {message[:200]!r}")
            else:
                failures.append(f"{kind} / {name} / Python: accepted")
            if _peak_kib() - before > bound:
                failures.append(f"{kind} / {name} / Python: peak memory grew {_peak_kib() - before:,} KiB")
    assert not (tmp_path / "pwned").exists(), "the pickle payload ran"
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:40])


# ------------------------------------------------------------------------------------------------------ legacy files
def _as_legacy(data: bytes) -> bytes:
    """The same file as weightsym wrote it before checksums and architecture records (format version 1)."""
    header, body = _parse(data)
    meta = {k: v for k, v in header["__metadata__"].items() if k not in ("checksum", "architecture")}
    meta["format"] = meta["format"].replace("/2", "/1")
    return _write(_tensors(header, body), meta, reseal=False)


def test_files_written_before_checksums_load_with_a_note(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WEIGHTSYM_DATA", str(tmp_path / "no-data"))
    legacy = {}
    for kind, path in files.items():
        legacy[kind] = tmp_path / f"{kind}-v1.safetensors"
        legacy[kind].write_bytes(_as_legacy(path.read_bytes()))
    x = torch.randn(2, 1, 40)
    with pytest.warns(LegacyFileWarning, match="written before weightsym stored checksums"):
        model, description = ws.load_model(legacy["clf"])
    assert description.checksum == "absent" and description.notes
    reference, _ = ws.load_model(files["clf"])
    assert description.architecture == {"name": "mnist1d-cnn", "args": {"width": 8, "num_classes": 10}}
    assert torch.equal(model(x), reference(x))
    with pytest.warns(LegacyFileWarning):
        with pytest.raises(ModelFileError, match="does not say which architecture"):
            ws.load_model(legacy["weights"])  # an old weight file does not record its architecture
        with pytest.raises(ModelFileError, match=r"`stem.weight` has shape \(8, 1, 5\) in the file but \(32, 1, 5\)"):
            ws.load_model(legacy["weights"], model="mnist1d-cnn")  # the registry default is width 32, the file 8
    legacy["plain"] = tmp_path / "plain-v1.safetensors"  # a model at the registry defaults rebuilds from its name
    from weightsym.models import create_model

    plain = create_model("mnist1d-cnn")
    ws.symmetrize(plain, spatial="hflip")
    legacy["plain"].write_bytes(_as_legacy(ws.save(plain, tmp_path / "plain.safetensors").read_bytes()))
    with pytest.warns(LegacyFileWarning):
        model, _ = ws.load_model(legacy["plain"], model="mnist1d-cnn")
    assert torch.equal(model(x), plain.eval()(x))
    with pytest.warns(LegacyFileWarning):
        lm, description = ws.load_model(legacy["lm"])
    assert description.kind == "language-model" and description.architecture["args"]["num_classes"] == 6
    assert main(["eval", str(legacy["clf"])]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning (LegacyFileWarning)" in err[0] and str(legacy["clf"]) in err[0]
    assert main(["export", str(legacy["plain"]), "--model", "mnist1d-cnn", "--out", str(tmp_path / "d")]) == 0
    assert main(["export", str(legacy["plain"]), "--out", str(tmp_path / "d")]) == 2
    assert "does not record its architecture; pass --model NAME" in capsys.readouterr().err


def test_legacy_files_are_still_checked_without_a_checksum(files, tmp_path, capsys, monkeypatch):
    """Without a checksum the other checks still refuse what matters: a swapped symmetry (against the run config), a
    layer shape too large for the file, NaN weights, a wrong dtype."""
    data = _as_legacy(files["clf"].read_bytes())
    layer = _layer(data)
    cases = {
        "swapped": _edit_metadata(data, ["layers", layer, "symmetry"], "repeat:4:out", reseal=False),
        "huge": _edit_metadata(data, ["layers", layer, "shape"], [200000, 200000, 3], reseal=False),
        "nan": _edit_tensor(data, _free_key, lambda t: t.index_fill(0, torch.tensor([1]), math.nan), reseal=False),
        "half": _edit_tensor(data, _free_key, lambda t: t.half(), reseal=False),
        "epochs": _edit_metadata(data, ["state", "config", "epochs"], "many", reseal=False),
    }
    for name, bad in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(bad)
        assert main(["eval", str(path)]) == 2, name
        err = [line for line in capsys.readouterr().err.strip().splitlines() if ": error: " in line]
        assert len(err) == 1 and str(path) in err[0], (name, err)


# ------------------------------------------------------------------------------------------------------- the format
def test_checksum_covers_metadata_and_every_tensor_and_other_readers_can_recompute_it(files, tmp_path):
    """The reader in docs/file-format.md (standard library only) verifies files weightsym wrote and refuses a flipped
    bit in the metadata or the tensors."""
    import re

    page = (Path(__file__).resolve().parents[1] / "docs" / "file-format.md").read_text()
    namespace = {}
    exec(re.findall(r"```python\n(.*?)```", page, re.S)[0], namespace)
    check = namespace["weightsym_checksum_ok"]
    for path in files.values():
        assert check(path)
        data = path.read_bytes()
        n = struct.unpack("<Q", data[:8])[0]
        shape_at = 8 + data[8:8 + n].index(b"shape")
        digit = next(i for i in range(shape_at, 8 + n) if data[i:i + 1].isdigit() and data[i] != ord("9"))
        for offset in (digit, len(data) - 5):  # a layer's shape (still valid JSON), a tensor byte
            bad = tmp_path / "bad.safetensors"
            bad.write_bytes(_flip(data, offset, 0))
            assert not check(bad)


def test_the_writer_refuses_what_the_reader_would_refuse(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight[0, 0] = math.nan
    with pytest.raises(ValueError, match=r"tensor `0\.weight` holds NaN"):
        ws.save(net, tmp_path / "nan.safetensors")
    assert not (tmp_path / "nan.safetensors").exists() and list(tmp_path.iterdir()) == []


def test_reading_opens_the_file_once(files, monkeypatch):
    import builtins

    opened = []
    real = builtins.open

    def counting(file, *args, **kwargs):
        if str(file).endswith(".safetensors"):
            opened.append(str(file))
        return real(file, *args, **kwargs)

    real_os_open = os.open

    def counting_os(file, *args, **kwargs):  # the reader opens with os.open (non-blocking, after a stat)
        if str(file).endswith(".safetensors"):
            opened.append(str(file))
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting)
    monkeypatch.setattr(os, "open", counting_os)
    model_file = ws.files.read_model_file(files["clf"])
    ws.load_model(model_file)
    from weightsym.analysis.report import load_state_dict

    load_state_dict(model_file)
    assert opened == [str(files["clf"])]
