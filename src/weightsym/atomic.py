"""Every file weightsym writes appears whole or not at all: the one atomic-write helper every writer goes through.

A file is written to a temporary file beside it (``.<name>.<random>.tmp``, same folder, so the same file system),
flushed, fsync'd, given the mode a plain ``open()`` would give it (:func:`new_file_mode`) and renamed over the target
(``os.replace``: atomic on POSIX); then the folder is fsync'd so the rename survives a power cut.  So a crash, a kill
or a full disk at any moment leaves the old file or the new one under the name, never a half-written one.  A failed
write (ENOSPC, EDQUOT, EACCES, EROFS, ...) removes the temporary file and raises :class:`WriteError`: an ``OSError``
whose message is one line, ``could not write <path>: <reason>``.

* :func:`atomic_write` — a file handle (``"w"`` text or ``"wb"`` bytes) on the temporary file;
* :func:`atomic_output` — for writers that take a file name (``torch.onnx.export``, ``fig.savefig``): a temporary path
  with the target's own name (so suffix-driven formats still work) in a hidden folder beside it; what the writer
  puts there (``m.onnx``, and ``m.onnx.data`` for a large model) is moved into place, the named file last;
* :func:`write_text`, :func:`write_bytes`, :func:`write_json`, :func:`append_line`, :func:`save_figure` — the common
  cases;
* :func:`remove_partial` — the temporaries a process killed while writing left behind (SIGKILL runs no cleanup).

Used by every file weightsym writes: model files (:func:`weightsym.files.write_model_file`: weight files,
checkpoints, dense exports), ONNX exports, a run's ``log.jsonl`` and ``summary.json``, analysis, compression and
study reports and their figures, benchmark results, dataset downloads and caches, ``weightsym plot-structure``.

Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = write_json(os.path.join(folder, "summary.json"), {"accuracy": 0.93})
    >>> path.read_text()
    '{\\n  "accuracy": 0.93\\n}\\n'
    >>> with atomic_write(path, "w") as handle:
    ...     _ = handle.write("half of a new summary")
    ...     raise ValueError("stopped while writing")  # the old file stays, nothing else is left
    Traceback (most recent call last):
    ValueError: stopped while writing
    >>> path.read_text(), os.listdir(folder)
    ('{\\n  "accuracy": 0.93\\n}\\n', ['summary.json'])
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["WriteError", "append_line", "atomic_output", "atomic_write", "new_file_mode", "remove_partial",
           "save_figure", "write_bytes", "write_error", "write_json", "write_text"]

# a temporary of this module: ".<name>.<8 random characters of mkstemp/mkdtemp>.tmp"
PARTIAL = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
FULL = (errno.ENOSPC, errno.EDQUOT)


class WriteError(OSError):
    """Writing a file failed (a full disk, a quota, permissions, a read-only file system).  ``str()`` is one line,
    ``could not write <path>: <reason>``; ``path`` and ``reason`` are attributes.  Nothing was left under the file's
    name: the previous version of the file, if there was one, is intact."""

    def __init__(self, path: str | os.PathLike, reason: str, code: int | None = None):
        self.path, self.reason = str(path), " ".join(str(reason).split())
        super().__init__(code, f"could not write {self.path}: {self.reason}")

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):
        return type(self), (self.path, self.reason, self.errno)


def _free_bytes(folder: Path) -> int | None:
    try:
        stat = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return stat.f_bavail * stat.f_frsize


def write_error(path: str | os.PathLike, exc: OSError, free: int | None = None) -> WriteError:
    """The :class:`WriteError` for ``exc`` raised while writing ``path``.  ``free``: bytes free on its disk when the
    write failed (measured here if not given); a write that failed on a (nearly) full disk says so, even when the
    writer's own error gives no errno (e.g. ``"3072 requested and 1312 written"``)."""
    if isinstance(exc, WriteError):
        return exc
    path = Path(path)
    reason = exc.strerror or str(exc) or type(exc).__name__
    free = _free_bytes(path.parent) if free is None else free
    code = exc.errno
    nearly_full = free is not None and free < 2**20
    if code in FULL or (code is None and nearly_full):
        code = code or errno.ENOSPC
        left = f"{free:,} bytes free; " if nearly_full else ""
        reason += f" (the disk is full or over quota: {left}free some space, or write somewhere with room)"
    return WriteError(path, reason, code)


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


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so a rename in it is on disk (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(tmp: Path, path: Path) -> None:
    os.chmod(tmp, new_file_mode())  # mkstemp creates 0600
    os.replace(tmp, path)


class _Handle:
    """The temporary file, as the writer sees it: a failed ``write`` is a :class:`WriteError` naming the target (other
    ``OSError`` s of the writer's own, e.g. a failed download, pass through unchanged)."""

    def __init__(self, handle: IO, path: Path):
        self._handle, self._path = handle, path

    def write(self, data):
        try:
            return self._handle.write(data)
        except OSError as exc:
            raise write_error(self._path, exc) from exc

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        try:
            self._handle.flush()
        except OSError as exc:
            raise write_error(self._path, exc) from exc

    def __getattr__(self, name):
        return getattr(self._handle, name)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str = "utf-8") -> Iterator[IO]:
    """Write ``path`` atomically: the block writes to the handle given (``mode`` ``"w"`` or ``"wb"``); when it ends,
    the file is flushed, fsync'd and renamed into place.  An exception in the block (or Ctrl-C) removes the temporary
    file and leaves ``path`` as it was; a failed write raises :class:`WriteError`."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from exc
    tmp, ours = Path(name), False
    handle = open(fd, mode, encoding=None if "b" in mode else encoding)
    try:
        yield _Handle(handle, path)
        ours = True  # from here on, an OSError is this module's: flush, fsync, close, chmod, rename
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        _commit(tmp, path)
    except BaseException as exc:
        # measured before the temporary file gives its space back; a WriteError of the handle, or the block's own
        # error (e.g. a failed download), goes on unchanged
        error = write_error(path, exc) if ours and isinstance(exc, OSError) else exc
        with contextlib.suppress(OSError):  # closing flushes what is buffered: on a full disk that fails too
            handle.close()
        tmp.unlink(missing_ok=True)
        if error is exc:
            raise
        raise error from exc
    _sync_folder(path.parent)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """For a writer that takes a file name: the block writes the temporary path given (named like ``path``, in a
    hidden folder beside it); when it ends, every file written there is fsync'd and moved beside ``path`` (``path``
    itself last) and the hidden folder removed.  Any ``OSError`` of the block is a :class:`WriteError`; any exception
    leaves nothing behind."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise write_error(path, exc) from exc
    target = staging / path.name
    try:
        try:
            yield target
            if not target.is_file():
                raise WriteError(path, "the writer finished without writing it")
            written = sorted(p for p in staging.iterdir() if p != target) + [target]
            for file in written:
                with open(file, "rb") as handle:
                    os.fsync(handle.fileno())
        except OSError as exc:
            raise write_error(path, exc) from exc
        for file in written:
            _commit(file, path.parent / file.name)
    except OSError as exc:
        error = write_error(path, exc)  # measured before the temporary files give their space back
        shutil.rmtree(staging, ignore_errors=True)
        if error is exc:
            raise
        raise error from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    _sync_folder(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``path`` holding ``data``, written atomically; returns ``path``."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``path`` holding ``text`` (UTF-8), written atomically; returns ``path``."""
    with atomic_write(path, "w") as handle:
        handle.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, value: Any, indent: int | None = 2, **dumps) -> Path:
    """``json.dumps(value, indent=indent, **dumps)`` and a newline, written atomically; returns ``path``."""
    return write_text(path, json.dumps(value, indent=indent, **dumps) + "\n")


def append_line(path: str | os.PathLike, line: str) -> Path:
    """``path`` with one more line (``line`` and a newline) at the end: the file is rewritten atomically, so a kill
    or a full disk leaves it with or without the line, never with a torn one (for small files such as a run's
    ``log.jsonl``).  A missing file is created."""
    path = Path(path)
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        old = b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    return write_bytes(path, old + line.rstrip("\n").encode() + b"\n")


def save_figure(figure, path: str | os.PathLike, **savefig) -> Path:
    """``figure.savefig(path, **savefig)`` (a matplotlib figure), written atomically; returns ``path``."""
    with atomic_output(path) as tmp:
        figure.savefig(tmp, **savefig)
    return Path(path)


def remove_partial(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of this module in ``folder`` (left by a process killed while writing); returns them.

    Only call it on a folder no other live process writes to (a run folder under its lock)."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if PARTIAL.match(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
