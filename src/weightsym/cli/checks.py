"""Argument checks that run before any work: argparse ``type=`` functions (names, ranges, formats) and the
post-parse checks (files, checkpoint kinds, options that must agree).

A ``type=`` function raises ``argparse.ArgumentTypeError``; argparse turns it into one line naming the option
(``weightsym train: error: argument --epochs: -1 is not an integer >= 1``).  Post-parse checks raise
:class:`UsageError`, which the dispatcher prints the same way.  Either way the exit code is 2 and nothing has been
loaded or trained yet.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


class UsageError(ValueError):
    """An argument that parses but cannot work (a missing file, a checkpoint of the wrong kind, options that
    contradict each other).  The message names the argument and what would work."""


# ------------------------------------------------------------------------------------------------ numbers
def integer(low: int | None = None, high: int | None = None):
    """``type=`` for an integer in ``[low, high]`` (either bound optional)."""
    what = ("an integer" + (f" >= {low}" if low is not None and high is None else "")
            + (f" <= {high}" if high is not None and low is None else "")
            + (f" in [{low}, {high}]" if low is not None and high is not None else ""))

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    parse.__name__ = what
    return parse


def number(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False):
    """``type=`` for a finite float in the interval given (``low_open``: ``> low`` instead of ``>= low``)."""
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    what = "a number" + (" " + " and ".join(parts) if parts else "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        bad = not math.isfinite(value)
        if low is not None:
            bad |= value <= low if low_open else value < low
        if high is not None:
            bad |= value >= high if high_open else value > high
        if bad:
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    parse.__name__ = what
    return parse


def float_list(low: float | None = None, high: float | None = None, length: int | None = None):
    """``type=`` for comma-separated numbers, e.g. ``0.3,0.6,0.8``."""
    one = number(low, high, high_open=high is not None)

    def parse(text: str) -> list[float]:
        values = [one(v) for v in text.replace(" ", "").split(",") if v]
        if not values or (length is not None and len(values) != length):
            raise argparse.ArgumentTypeError(f"{text!r}: give {length or 'one or more'} comma-separated numbers, "
                                             f"e.g. {'0.9,0.999' if length == 2 else '0.3,0.6,0.8'}")
        return values

    return parse


# -------------------------------------------------------------------------------------------------- names
def symmetry(plane: str, allow_none: bool = False):
    """``type=`` for one ``channel`` or ``spatial`` symmetry name (``none`` too when ``allow_none``)."""

    def parse(text: str) -> str | None:
        if allow_none and text.strip().lower() in ("", "none", "dense"):
            return None
        from weightsym.symmetry import get_symmetry

        if "+" in text:
            raise argparse.ArgumentTypeError(f"{text!r} composes two symmetries; give the channel one to --channel "
                                             "and the spatial one to --spatial")
        try:
            get_symmetry(text, plane)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    parse.__name__ = f"{plane} symmetry"
    return parse


def any_symmetry(text: str) -> str:
    """``type=`` for a symmetry name, alias or ``channel+spatial`` composition (or ``all``)."""
    if text == "all":
        return text
    from weightsym.symmetry import get_symmetry

    try:
        get_symmetry(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def model_name(task: str | None = None):
    """``type=`` for a registry model name (``task``: only models of that task, e.g. ``classification``)."""

    def parse(text: str) -> str:
        from weightsym.models import model_info

        try:
            info = model_info(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc}; `weightsym models` lists them with one line each") from None
        if task is not None and info.get("task", "classification") != task:
            other = "`weightsym lm`" if info.get("task") == "language-model" else "another command"
            raise argparse.ArgumentTypeError(f"{text!r} is a {info.get('task', '?').replace('-', ' ')}; this "
                                             f"command takes {task} models (`weightsym models --task {task}` lists "
                                             f"them); train it with {other}")
        return text

    parse.__name__ = "model name"
    return parse


def dataset_name(text: str) -> str:
    """``type=`` for a dataset ``weightsym train`` can read (in-memory datasets and image folders)."""
    from weightsym.data.datasets import canonical_name
    from weightsym.data.folders import FOLDER_DATASETS

    if text.strip().lower() in FOLDER_DATASETS:
        return text
    try:
        canonical_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; image folders: {', '.join(FOLDER_DATASETS)}") from None
    return text


def plan(values: list[str] | None, option: str = "--plan") -> dict[str, str] | None:
    """A per-layer plan ``{module glob: symmetry}`` from ``GLOB=SYMMETRY`` words, or from one FILE holding a JSON
    object or such lines (``#`` comments allowed).  :class:`UsageError` naming the entry and what would work."""
    if not values:
        return None
    words = list(values)
    if len(words) == 1 and "=" not in words[0]:
        path = Path(words[0])
        if not path.is_file():
            raise UsageError(f"{option} {words[0]}: neither GLOB=SYMMETRY (e.g. '*conv2=tri+spa') nor a plan file")
        text = path.read_text()
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError:
            loaded = None
        if isinstance(loaded, dict):
            words = [f"{k}={v}" for k, v in loaded.items()]
        else:
            words = [line.split("#", 1)[0].strip() for line in text.splitlines()]
            words = [w for w in words if w]
    from weightsym.symmetry import get_symmetry

    entries: dict[str, str] = {}
    for word in words:
        glob, sep, name = (str(word).partition("="))
        glob, name = glob.strip(), name.strip()
        if not sep or not glob or not name:
            raise UsageError(f"{option} {word!r}: use GLOB=SYMMETRY, e.g. '*conv2=tri+spa' '*conv1=block'")
        if glob in entries:
            raise UsageError(f"{option}: {glob!r} is given twice ({entries[glob]} and {name})")
        try:
            get_symmetry(name)
        except ValueError as exc:
            raise UsageError(f"{option} {word!r}: {exc}") from None
        entries[glob] = name
    return entries


def gate_mask(text: str) -> str:
    """``type=`` for a gate mask such as ``1111`` (LSTM gates i f g o) or ``111`` (GRU r z n)."""
    if not text or set(text) - {"0", "1"} or len(text) not in (1, 3, 4):
        raise argparse.ArgumentTypeError(f"{text!r} must be 0/1 characters, one per gate: 1111 for an LSTM "
                                         "(gates i f g o), 111 for a GRU (r z n)")
    return text


def qkv_mask(text: str) -> str:
    """``type=`` for an attention projection mask: three 0/1 characters, order q k v (``110``: query and key)."""
    if len(text) != 3 or set(text) - {"0", "1"}:
        raise argparse.ArgumentTypeError(f"{text!r} must be three 0/1 characters, one per projection in the order "
                                         "q k v, e.g. 110 for symmetric query and key projections")
    return text


def key_value(text: str) -> tuple[str, object]:
    """``type=`` for ``KEY=VALUE`` (the value is JSON if it parses, else a string)."""
    if "=" not in text or not text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"{text!r}: use KEY=VALUE, e.g. width=16")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def augment(text: str) -> str:
    """``type=`` for a training augmentation spec (``weightsym.data.loader.make_augment``: default, none, crop-flip,
    crop, flip, or '+'-joined flip/altflip/translate:P)."""
    if text == "default":
        return text
    from weightsym.data.loader import make_augment

    try:
        make_augment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("augment=", "", 1)) from None
    return text


def epochs(text: str) -> int | float:
    """``type=`` for ``--epochs``: a whole number or a fraction >= 1 (9.9 ends the 10th epoch at 90% of its steps)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 1 (e.g. 200 or 9.9)") from None
    if not math.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a number >= 1 (e.g. 200 or 9.9)")
    return int(value) if value.is_integer() else value


def freeze(text: str) -> tuple[str, int]:
    """``type=`` for ``--freeze-after NAME=EPOCHS`` (a parameter trains for EPOCHS epochs, then is frozen)."""
    name, _, value = text.partition("=")
    if not name or not value.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: use PARAMETER=EPOCHS, e.g. whiten.bias=3")
    return name, int(value)


def device(text: str) -> str:
    """``type=`` for ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (a GPU must be visible for the cuda ones)."""
    from weightsym.train.distributed import resolve_device

    key = text.strip().lower()
    if not (key in ("auto", "cpu", "cuda") or (key.startswith("cuda:") and key[5:].isdigit())):
        raise argparse.ArgumentTypeError(f"{text!r}: use auto, cpu, cuda or cuda:N")
    try:
        resolve_device(key)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None
    return key


# ------------------------------------------------------------------------------------ files (after parsing)
def existing_file(path: str, option: str, hint: str = "") -> Path:
    p = Path(path)
    if not p.is_file():
        what = ("is a folder, not a file" if p.is_dir() else "does not exist" if not p.exists()
                else "is not a regular file (a FIFO, socket or device: never read, it could block forever)")
        raise UsageError(f"{option} {path}: {what}" + (f"; {hint}" if hint else ""))
    return p


def existing_folder(path: str | None, option: str, hint: str = "") -> None:
    if path is not None and not Path(path).expanduser().is_dir():
        raise UsageError(f"{option} {path}: no such folder" + (f"; {hint}" if hint else ""))


def _not_empty(path: str, option: str, what: str) -> None:
    if not str(path).strip():
        raise UsageError(f"{option} is empty: name {what} (an empty path would write into the current folder; give "
                         f"{option} . to do that on purpose)")


def output_folder(path: str, option: str = "--out") -> None:
    """``path`` must be a folder or not exist yet (and its parent must not be a file); an empty ``path`` (``--out
    ''``, which would write into the current folder) is refused."""
    _not_empty(path, option, "a folder")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{option} {path}: is a file; name a folder (it is created if missing)")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{option} {path}: {parent} is a file; name a folder")
            break


def output_file(path: str, option: str = "--out") -> None:
    """``path`` must not be empty or a folder, and the nearest existing parent must be a folder."""
    _not_empty(path, option, "a file")
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{option} {path}: is a folder; name a file, e.g. {p / 'model.safetensors'}")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{option} {path}: {parent} is a file; name a path inside a folder")
            break


def same_file(a: str | Path, b: str | Path) -> bool:
    """True if ``a`` and ``b`` name the same file (the same path spelled differently, a symlink or a hard link)."""
    try:
        return Path(a).resolve() == Path(b).resolve() or Path(a).samefile(b)
    except OSError:  # one of them does not exist (yet)
        return False


def not_overwritten(inputs: dict[str, str | Path], outputs: list[str | Path], option: str = "--out") -> None:
    """No file the command writes (``outputs``) is one it reads (``inputs``: ``{argument: path}``): a
    :class:`UsageError` naming both, before anything is read or written."""
    for argument, source in inputs.items():
        for target in outputs:
            if same_file(source, target):
                written = "" if str(target) == str(source) else f" (as {target})"
                raise UsageError(f"{option} would overwrite {argument} {source}{written}, which this command reads; "
                                 "write to another file or folder")


KINDS = {
    "classifier": "an image-classifier checkpoint (written by `weightsym train`)",
    "language-model": "a language-model checkpoint (written by `weightsym lm`)",
    "checkpoint": "a training checkpoint without a run config (written by save_checkpoint directly)",
    "weights": "a weightsym weight file (written by weightsym.save)",
    "dense": "a dense export (written by `weightsym export --format dense`)",
    "safetensors": "a plain safetensors file without weightsym metadata",
}
USE = {"classifier": "`weightsym eval`, `weightsym analyze` or `weightsym export`",
       "language-model": "`weightsym lm-sample` (or `weightsym lm --resume` on its folder)",
       "weights": "`weightsym analyze`, `weightsym export` or `weightsym describe FILE`",
       "dense": "safetensors.torch.load_file and the plain model's load_state_dict"}


def checkpoint(path: str, option: str, kinds: tuple[str, ...]):
    """The model file at ``path``, read once and validated completely (:func:`weightsym.files.read_model_file`: header,
    metadata, checksum, finite values), as a :class:`weightsym.files.ModelFile` to hand to the library.  A damaged file
    is a :class:`UsageError` naming it and its problem; a file of another kind (``ModelFile.role`` not in ``kinds``)
    one saying what it is, what the command needs and which command reads it."""
    from weightsym.files import read_model_file

    existing_file(path, option)
    try:
        mf = read_model_file(path)
    except ValueError as exc:
        raise UsageError(f"{option} {exc}") from None
    kind = mf.role
    if kind not in kinds:
        need = " or ".join(KINDS[k].split(" (")[0] for k in kinds)
        use = f"; for this file use {USE[kind]}" if kind in USE else ""
        raise UsageError(f"{option} {path}: this is {KINDS[kind]}, this command needs {need}{use}")
    return mf
