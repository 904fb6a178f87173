"""The output folder of a run, kept safe: one process at a time, a torn log line survived, a full disk named.

* :class:`RunLock` — ``<out>/.lock`` held with ``flock`` while a run writes there.  A second run (or a ``--resume``
  started while the first is alive) is refused with :class:`RunLocked`, naming the holder's pid.  The kernel drops
  the lock when its process dies, even by SIGKILL, so a stale lock file is simply taken over (with a note naming the
  dead pid).  On file systems without ``flock`` the pid in the file decides.
* :func:`read_log` / :func:`truncate_log` — ``log.jsonl`` with one JSON object per line; a torn last line (left by
  a version that appended in place) is dropped with a note, a bad line elsewhere is an error naming it.  Every
  rewrite of the log (the resume's truncation, each epoch's line) goes through :mod:`weightsym.atomic`: a kill at any
  moment leaves the old log or the new one, never a truncated one.
* :func:`write_guard` — turns an ``OSError`` while writing a run file (a full disk, a quota; the
  :class:`~weightsym.atomic.WriteError` of the atomic writes) into :class:`RunWriteError`: one line naming the file,
  the reason and the last good checkpoint.
* :class:`TrainingInterrupted` — Ctrl-C / SIGTERM during a run, with the checkpoint a ``--resume`` will continue from.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with RunLock(folder):
    ...     try:
    ...         RunLock(folder).acquire()
    ...     except RunLocked as exc:
    ...         print("refused:", "in use by pid" in str(exc))
    refused: True
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from weightsym.atomic import WriteError, write_error, write_text

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS: the pid in the lock file decides
    fcntl = None

LOCK = ".lock"


class RunLocked(RuntimeError):
    """Another live process holds the output folder."""


class RunWriteError(WriteError):
    """Writing a run file failed (full disk, quota, permissions); the message names the file, the reason and the last
    good checkpoint, which the atomic writes left intact."""

    def __init__(self, path, reason: str, code: int | None = None, last_good: str = ""):
        super().__init__(path, reason, code)
        self.last_good = last_good
        if last_good:
            self.strerror = f"{self.strerror}; {last_good}; continue with --resume"

    def __reduce__(self):
        return type(self), (self.path, self.reason, self.errno, self.last_good)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run; ``str()`` says which checkpoint ``--resume`` continues from."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class RunLock:
    """Exclusive use of a run folder by this process (a context manager; :meth:`acquire` / :meth:`release`).

    ``note`` receives one line when a stale lock of a dead process is taken over (default: print).
    """

    def __init__(self, folder: str | os.PathLike, note: Callable[[str], None] = print):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.note = note
        self._fd: int | None = None

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(10):  # retried only if the lock file is replaced between open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                if not self._lock(fd):
                    holder = self._holder()
                    raise RunLocked(f"--out {self.folder} is in use by pid {holder.get('pid', '?')} on "
                                    f"{holder.get('host', '?')} (started {holder.get('started', '?')}); wait for it "
                                    "to finish or stop it, or choose another --out")
                if not self._same_file(fd):  # released and removed by its holder after we opened it: start over
                    os.close(fd)
                    continue
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
            previous = self._holder()
            pid = previous.get("pid")
            if pid and pid != os.getpid() and previous.get("host") == socket.gethostname():
                self.note(f"note: {self.path} was left by pid {pid}, which is no longer running (killed?); "
                          "taking it over")
            try:  # who holds it, for the message of a refused run (the lock itself is the flock)
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                         "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
            except OSError as exc:  # a full disk: nothing was written yet, and no lock file is left
                error = write_error(self.path, exc)
                with contextlib.suppress(OSError):
                    self.path.unlink()
                os.close(fd)
                raise error from exc
            self._fd = fd
            return self
        raise RunLocked(f"--out {self.folder}: the lock file {self.path} keeps changing; is another run starting?")

    def _same_file(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def _lock(self, fd: int) -> bool:
        """True if this process now holds the lock."""
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
        holder = self._holder()  # no flock here: trust the pid written in the file
        pid = holder.get("pid")
        return not (pid and pid != os.getpid() and holder.get("host") == socket.gethostname() and _pid_alive(pid))

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still holding it: a waiting process re-checks the inode and retries
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def read_log(path: str | os.PathLike, note: Callable[[str], None] = print) -> list[dict]:
    """The records of a ``log.jsonl``; a torn (unparsable) last line is skipped with a note through ``note``."""
    path = Path(path)
    if not path.exists():
        return []
    lines = [(number, line) for number, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    records = []
    for index, (number, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except ValueError:
            if index == len(lines) - 1:
                note(f"note: {path}: skipped its last line {number}, torn (the run was stopped while writing it); "
                     "the epoch it logged is redone")
                break
            raise ValueError(f"{path}: line {number} is not JSON ({line[:40]!r}); delete that line or start a new "
                             "--out") from None
    return records


def truncate_log(path: str | os.PathLike, keep: Callable[[dict], bool], note: Callable[[str], None] = print) -> None:
    """Keep in ``log.jsonl`` the records ``keep`` accepts (a torn last line is dropped with a note).  The log is
    rewritten atomically, and only when something is dropped: a kill during a resume never loses its history."""
    path = Path(path)
    if path.exists():
        text = path.read_text()
        records = [r for r in read_log(path, note) if keep(r)]
        kept = "".join(json.dumps(r) + "\n" for r in records)
        if kept != text:
            write_text(path, kept)


@contextlib.contextmanager
def write_guard(what: str | os.PathLike, last_good: Callable[[], str]):
    """Run the body; an ``OSError`` (ENOSPC, EDQUOT, EACCES, ...) becomes one :class:`RunWriteError` line naming
    the file (a :class:`~weightsym.atomic.WriteError`'s own, else ``what``), the reason, and ``last_good()`` (e.g.
    "the last good checkpoint runs/x/checkpoint.safetensors (step 120) was kept")."""
    try:
        yield
    except RunWriteError:
        raise
    except OSError as exc:
        error = write_error(what, exc)  # a WriteError names the file it was writing and says when the disk is full
        reason = error.reason.replace("write somewhere with room", "use another --out on a disk with room")
        raise RunWriteError(error.path, reason, error.errno, last_good()) from exc
