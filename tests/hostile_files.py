"""The hostile-input corpus of issue 28, "validation before trust": files forged to make weightsym act on what they
say, each with the outcome every reader that uses it must give.

A checksum detects damage, not forgery: every forged model file here has its checksum recomputed, so only validating
what the file *says* can refuse it.  Four classes (issue 28 items 1-4), plus valid controls:

* ``run state``: a checkpoint's run config, position, records, optimizer, scheduler and RNG states out of type or
  range (``lr = nan``, a missing ``step``, a numpy RNG position of -1, an unknown corpus, ...), refused by every
  reader that uses the field: ``--resume``, ``load_checkpoint``, ``lm-sample``, ``read_model_file``;
* ``size``: architectures of a million or a billion blocks, sparse files whose tensors claim terabytes, a FIFO without
  a writer, a device, the model-size limit: refused at once, never built, read or waited on;
* ``malformed``: metadata of the wrong JSON type (a dtype given as a list), nested 5,000 or 200,000 levels, a socket,
  malformed tagged objects: one line naming the file, never a traceback;
* ``duplicates``: duplicate JSON keys, wrong types that would happen to work (``num_classes`` as ``"10"`` or ``null``),
  damaged dataset files (a truncated ``.npz``): one line naming the file.

Each (case, reader) run ends in one outcome: ``refused`` (one line naming the file, and the field where the case
names one), ``accepted``, ``unclear`` (refused, but the message does not name the file or field, or is more than one
line), ``traceback``, ``hang`` (over :data:`TIMEOUT` seconds) or ``memory`` (peak memory grew more than the file's
size bound).  Huge and sparse files are made on the fly and deleted.  ``tests/test_hostile_files.py`` asserts the
expected outcome of every case; run this file as a script for the counts by class and outcome
(docs/file-format.md quotes them):

    python tests/hostile_files.py            # the table; exit code 1 if any case has an unexpected outcome
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

TIMEOUT = 60.0  # seconds a reader may take on one case (a hang is a case that takes longer)
CLASSES = ("valid", "run state", "size", "malformed", "duplicates")
OUTCOMES = ("refused", "accepted", "unclear", "traceback", "hang", "memory")


@dataclass
class Case:
    klass: str                      # one of CLASSES
    name: str
    base: str                       # the valid file it is forged from: clf, lm, weights, data (or none)
    make: Callable[[Path], Path]    # writes the case under a folder; returns the path the readers get
    readers: tuple[str, ...]        # the readers that must give `expect` (see READERS)
    expect: str = "refused"
    field: str | None = None        # text the one-line message must hold besides the path (the field)
    env: dict = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ forging the bytes
def split(data: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def join(header_text: str | bytes, body: bytes) -> bytes:
    raw = header_text.encode() if isinstance(header_text, str) else header_text
    return struct.pack("<Q", len(raw)) + raw + body


def seal(header: dict, body: bytes) -> bytes:
    """The file with its checksum recomputed over the metadata strings and tensor bytes as they are: a forgery."""
    from weightsym.files import checksum

    meta = header["__metadata__"]
    if "checksum" in meta:
        entries = [(k, e["dtype"], e["shape"], body[e["data_offsets"][0]:e["data_offsets"][1]])
                   for k, e in header.items() if k != "__metadata__"]
        meta["checksum"] = checksum(meta, entries)
    return join(json.dumps(header), body)


def forge(data: bytes, edit: Callable[[dict], None] | None = None, raw: Callable[[dict], None] | None = None) -> bytes:
    """``edit`` changes the decoded metadata (``{key: JSON value}``), ``raw`` the metadata strings; resealed."""
    header, body = split(data)
    meta = header["__metadata__"]
    if edit is not None:
        decoded = {k: json.loads(v) for k, v in meta.items() if k not in ("format", "checksum")}
        edit(decoded)
        for key in [k for k in meta if k not in ("format", "checksum") and k not in decoded]:
            del meta[key]
        meta.update({k: json.dumps(v) for k, v in decoded.items()})
    if raw is not None:
        raw(meta)
    return seal(header, body)


def setting(path: str | tuple, value, delete: bool = False) -> Callable[[dict], None]:
    """An edit setting (or deleting) the field at dotted ``path`` (``state.config.lr``, ``rng.numpy.2``), or at a
    tuple of keys where a key holds a dot (``("layers", "block.conv1", "shape")``)."""
    keys = list(path) if isinstance(path, tuple) else path.split(".")

    def edit(meta):
        node = meta
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        last = int(keys[-1]) if isinstance(node, list) else keys[-1]
        if delete:
            del node[last]
        else:
            node[last] = value
    return edit


def with_tensor(data: bytes, name: str, tensor: torch.Tensor) -> bytes:
    """The file with tensor ``name`` replaced (resealed)."""
    from safetensors.torch import load, save

    header, _ = split(data)
    tensors = load(data)
    tensors[name] = tensor
    return forge(save(tensors, metadata=header["__metadata__"]))


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# ------------------------------------------------------------------------------------------------------ valid files
def build_base(root: Path) -> dict[str, bytes]:
    """The valid files the cases are forged from: a classifier checkpoint of a real (two-step) ``weightsym train``
    run, a language-model checkpoint with the engine's run state, a weight file, and a small Fashion-MNIST npz."""
    import weightsym as ws
    from weightsym.cli import main
    from weightsym.lm.config import LMConfig, build_model
    from weightsym.train import save_checkpoint

    run = root / "clf-run"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["train", "--model", "mnist1d-cnn", "--model-arg", "width=8", "--channel", "block", "--epochs", "1",
                     "--batch-size", "500", "--max-steps", "2", "--threads", "1", "--no-progress", "--out", str(run)])
    assert code == 0, "the classifier run that makes the base checkpoint failed"
    model, _ = ws.load_model(run / "checkpoint.safetensors")
    ws.save(model, root / "weights.safetensors")
    config = LMConfig(emb=8, hidden=8, layers=1, dropout=0.0, tie=True, channel="average", out=str(root / "lm"))
    vocab = ["<eos>", "the", "a", "cat", "sat", "<unk>"]
    torch.manual_seed(0)
    lm, _ = build_model(config, len(vocab))
    save_checkpoint(root / "lm.safetensors", lm, torch.optim.SGD(lm.parameters(), lr=config.lr),
                    state={"config": asdict(config), "step": 3, "loader": {"epoch": 0, "batch": 3}, "epoch": 0,
                           "history": [], "best_val": None, "best_epoch": None, "epoch_sums": [0.0, 0.0, 0.0],
                           "fold_layers": None, "fold_note": "", "wall_seconds": 1.0, "world_size": 1,
                           "valid_loss": 5.0, "vocab": vocab})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.zeros((10, 28, 28), np.uint8), y=np.arange(10, dtype=np.int64))
    return {"clf": (run / "checkpoint.safetensors").read_bytes(), "lm": (root / "lm.safetensors").read_bytes(),
            "weights": (root / "weights.safetensors").read_bytes(), "data": buffer.getvalue()}


# ------------------------------------------------------------------------------------------------------- the readers
def _cli(argv: list[str]) -> int:
    from weightsym.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        return main(argv)


def _load_checkpoint(path: Path, base: str) -> None:
    import weightsym as ws
    from weightsym.train.checkpoint import load_checkpoint

    model, description = ws.load_model(BASES[base])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9 if base == "clf" else 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0) if base == "clf" else None
    load_checkpoint(path, model, optimizer, scheduler, restore_rng=True)


def _resume(path: Path, base: str, scratch: Path) -> int:
    run = scratch / "run"
    run.mkdir(parents=True, exist_ok=True)
    name = "checkpoint.safetensors" if base == "clf" else "last.safetensors"
    if path.is_file() and not path.is_symlink():
        shutil.copy(path, run / name)
    else:
        (run / name).symlink_to(path)
    return _cli(["train" if base == "clf" else "lm", "--resume", "--out", str(run), "--no-progress"])


def _dataset(path: Path) -> None:
    from weightsym.data.fashion_mnist import load_fashion_mnist

    load_fashion_mnist("train", data_dir=path.parent.parent, source="npz")


READERS: dict[str, Callable] = {  # reader(path, base, scratch) -> CLI exit code, or None for a Python call
    "read": lambda p, b, s: __import__("weightsym").files.read_model_file(p) and None,
    "load_model": lambda p, b, s: __import__("weightsym").load_model(p) and None,
    "load_checkpoint": lambda p, b, s: _load_checkpoint(p, b),
    "resume": lambda p, b, s: _resume(p, b, s),
    "lm-sample": lambda p, b, s: _cli(["lm-sample", str(p), "--words", "3", "--seed", "0"]),
    "describe": lambda p, b, s: _cli(["describe", str(p)]),
    "export": lambda p, b, s: _cli(["export", str(p), "--out", str(s / "dense.safetensors")]),
    "dataset": lambda p, b, s: _dataset(p),
}
BASES: dict[str, Path] = {}  # base name -> its valid file on disk (set by prepare)


def _peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def size_bound_kib(path: Path) -> int:
    """What reading a file may allocate: its bytes on disk and a model of at most EXPANSION_LIMIT dense values (and
    their gather index) per stored one, plus 64 MiB for Python and torch."""
    from weightsym.files import EXPANSION_LIMIT

    try:
        info = os.stat(path)
        size = min(info.st_size, info.st_blocks * 512) if stat.S_ISREG(info.st_mode) else 0
    except OSError:
        size = 0
    return (size * (1 + 3 * EXPANSION_LIMIT)) // 1024 + 64 * 1024


def run_reader(case: Case, reader: str, path: Path, scratch: Path) -> tuple[str, str]:
    """``(outcome, detail)`` of one reader on one case, in a thread with a :data:`TIMEOUT` (a hang is reported, not
    waited for)."""
    result: dict = {}
    stderr = io.StringIO()

    def target():
        try:
            with contextlib.redirect_stderr(stderr):
                result["code"] = READERS[reader](path, case.base, scratch)
        except BaseException as exc:  # noqa: BLE001  (the outcome is what is being measured)
            result["error"] = exc

    saved = {k: os.environ.get(k) for k in case.env}
    os.environ.update(case.env)
    _reset_peak()
    before = _peak_kib()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    for key, value in saved.items():
        os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    if thread.is_alive():
        return "hang", f"still running after {TIMEOUT:g} s"
    grown = _peak_kib() - before
    if case.expect == "refused" and grown > size_bound_kib(path):
        return "memory", f"peak memory grew {grown:,} KiB"
    if "error" in result:
        exc = result["error"]
        if not isinstance(exc, (ValueError, FileNotFoundError)):
            return "traceback", f"{type(exc).__name__}: {str(exc)[:200]}"
        message = str(exc)
        lines = [message]
    elif result.get("code") in (None, 0):
        return "accepted", ""
    else:
        lines = [line for line in stderr.getvalue().strip().splitlines() if ": error: " in line]
        if result["code"] != 2 or len(lines) != 1:
            return "unclear", f"exit {result['code']}: {stderr.getvalue().strip()[:300]!r}"
        message = lines[0]
    wanted = str(path)
    if reader == "resume":
        wanted = "checkpoint.safetensors" if case.base == "clf" else "last.safetensors"
    if "\n" in message or wanted not in message or (case.field and case.field not in message):
        return "unclear", message[:300]
    return "refused", message[:300]


def run_case(case: Case, folder: Path) -> list[tuple[str, str, str]]:
    """``[(reader, outcome, detail)]`` for every reader of ``case``; the case's files are deleted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = case.make(folder)
        return [(reader, *run_reader(case, reader, path, folder / reader)) for reader in case.readers]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def prepare(root: Path) -> dict[str, bytes]:
    """The valid files, written under ``root`` (``BASES``), and the environment the readers run in: no dataset
    folder (MNIST-1D is generated; a language-model resume that got as far as its corpus would fail)."""
    os.environ["WEIGHTSYM_DATA"] = str(root / "no-data")
    base = build_base(root / "base")
    for name in ("clf", "lm", "weights"):
        BASES[name] = root / "base" / f"{name}.safetensors"
        BASES[name].write_bytes(base[name])
    return base


def run_all(root: Path, classes=CLASSES, log=None) -> list[tuple[Case, str, str, str]]:
    from hostile_cases import cases

    base = prepare(root)
    rows = []
    for index, case in enumerate(c for c in cases(base) if c.klass in classes):
        for reader, outcome, detail in run_case(case, root / "cases" / str(index)):
            rows.append((case, reader, outcome, detail))
            if log is not None:
                log(case, reader, outcome, detail)
    return rows


def table(rows) -> str:
    """Counts of (case, reader) runs by class and outcome, and of cases by expectation met."""
    counts = Counter((case.klass, outcome) for case, _, outcome, _ in rows)
    names = {case.name + case.klass for case, *_ in rows}
    lines = [f"{'class':<12}" + "".join(f"{o:>11}" for o in OUTCOMES) + f"{'runs':>8}",
             "-" * (12 + 11 * len(OUTCOMES) + 8)]
    for klass in CLASSES:
        total = sum(counts[(klass, o)] for o in OUTCOMES)
        if total:
            lines.append(f"{klass:<12}" + "".join(f"{counts[(klass, o)]:>11}" for o in OUTCOMES) + f"{total:>8}")
    lines.append(f"{'all':<12}" + "".join(f"{sum(counts[(k, o)] for k in CLASSES):>11}" for o in OUTCOMES)
                 + f"{len(rows):>8}")
    unexpected = [(c, r, o, d) for c, r, o, d in rows if o != c.expect]
    lines.append(f"{len(names)} cases, {len(rows)} reader runs; {len(unexpected)} with an unexpected outcome")
    lines += [f"  UNEXPECTED {c.klass} / {c.name} / {r}: {o} ({d})" for c, r, o, d in unexpected]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    verbose = "--verbose" in sys.argv
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="weightsym-hostile-") as tmp:
        rows = run_all(Path(tmp), log=(lambda c, r, o, d: print(f"{c.klass:<11} {o:<9} {r:<15} {c.name}: {d[:150]}",
                                                                flush=True)) if verbose else None)
    print(table(rows))
    print(f"({time.perf_counter() - started:.0f} s; command: python tests/hostile_files.py)")
    sys.exit(0 if all(o == c.expect for c, _, o, _ in rows) else 1)
