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
    """A FileNotFoundError that names the paths searched, the env var and how to get the data."""
    paths = ", ".join(str(p) for p in searched)
    message = f"{what}: not found (looked for {paths}); set ${DATA_ENV} or pass data_dir= to the folder holding it"
    if hint:
        message += f", or {hint}"
    return FileNotFoundError(message)
