"""Where datasets live (``data_root``) and where derived caches go (``cache_root``).

Resolution order for the data root: the explicit ``data_dir`` argument, else ``$WEIGHTSYM_DATA``, else the per-user
cache folder ``$XDG_CACHE_HOME/weightsym`` (``~/.cache/weightsym`` when XDG_CACHE_HOME is unset). The data root may be
read-only (e.g. a shared folder): anything weightsym derives from it (decoded JPEGs, ...) goes to ``cache_root()``:
``$WEIGHTSYM_CACHE``, else ``<user cache>/weightsym/derived``.

Example:
    >>> str(data_root("/tmp/mine"))          # an explicit folder always wins
    '/tmp/mine'
    >>> data_root() == Path(os.environ.get("WEIGHTSYM_DATA") or user_cache_dir())
    True
"""

from __future__ import annotations

import os
import pickle
import stat
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DATA_ENV = "WEIGHTSYM_DATA"
CACHE_ENV = "WEIGHTSYM_CACHE"


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/weightsym`` or ``~/.cache/weightsym``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "weightsym"


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder that holds datasets: ``data_dir``, else ``$WEIGHTSYM_DATA``, else :func:`user_cache_dir`."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return user_cache_dir()


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Writable folder for derived files: ``cache_dir``, else ``$WEIGHTSYM_CACHE``, else ``<user cache>/derived``."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "derived"


def missing_data_error(what: str, searched: list[Path], hint: str = "") -> FileNotFoundError:
    """A FileNotFoundError that names the paths searched, where the data may be pointed at (the one rule of
    :func:`data_root`: ``--data-dir``/``data_dir=``, then ``$WEIGHTSYM_DATA``, then the user cache) and ``hint``: the
    command that fetches it (``weightsym download cifar10``)."""
    paths = ", ".join(str(p) for p in searched)
    message = (f"{what}: not found (looked for {paths}); point --data-dir (data_dir= in Python) or ${DATA_ENV} at "
               "the folder holding it")
    if hint:
        message += f", or fetch it: {hint}"
    return FileNotFoundError(message)


class DataFileError(ValueError):
    """A dataset file that exists but cannot be read (damaged, truncated, or not what its name says): one line naming
    the file and what to do."""


# what reading a damaged file raises: truncated or corrupt archives, compressed streams, pickles, images
DAMAGE = (OSError, EOFError, ValueError, KeyError, IndexError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError)


@contextmanager
def reading(path: str | os.PathLike, hint: str = "delete it and download it again (weightsym download NAME)") \
        -> Iterator[None]:
    """Errors while reading dataset file ``path`` become one :class:`DataFileError` naming it (a missing file stays a
    ``FileNotFoundError``); ``path`` must be a regular file (a FIFO or a device would be waited on, or read forever).

    >>> with reading("/dev/null"):  # doctest: +ELLIPSIS
    ...     pass
    Traceback (most recent call last):
    ...
    weightsym.data.paths.DataFileError: /dev/null: is not a regular file ...
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DataFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise DataFileError(f"{path}: is not a regular file (a dataset file is read whole; got "
                            f"{'a folder' if stat.S_ISDIR(mode) else 'a FIFO, socket or device'})")
    try:
        yield
    except (FileNotFoundError, DataFileError):
        raise
    except DAMAGE as exc:
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise DataFileError(f"{path}: a damaged dataset file ({type(exc).__name__}: {detail}); {hint}") from None


def read_npz(path: str | os.PathLike, keys: tuple[str, ...],
             hint: str = "delete it and download it again (weightsym download NAME)") -> tuple:
    """The arrays ``keys`` of the ``.npz`` file at ``path``, each read whole (no pickled objects); a damaged,
    truncated or incomplete file is one :class:`DataFileError` naming it, never a ``BadZipFile`` traceback."""
    import numpy as np

    with reading(path, hint):
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in keys if key not in archive.files]
            if missing:
                held = ", ".join(archive.files) or "nothing"
                raise DataFileError(f"{path}: has no array {missing[0]!r} (it holds {held}); {hint}")
            return tuple(np.asarray(archive[key]) for key in keys)
