"""Download files with a SHA-256 check, extract archives, and fetch the known datasets.

``download(url, dest, sha256)`` streams ``url`` into a temporary file in ``dest``'s folder while hashing it, and only
renames it to ``dest`` (atomically) when the digest matches. On a wrong checksum or any error the temporary file is
removed, so ``dest`` is either absent or complete and verified.  A file already at ``dest`` is re-verified first; if
its digest is wrong it is moved aside to ``<dest>.bad-<first 8 hex of its digest>`` (and the move is reported), so a
corrupted copy is never used again, not even when the new download fails.  An archive kept next to what it extracted
to is re-verified the same way (:func:`download_resource`) and extracted again when it had to be fetched again.

``download_dataset(name, root)`` fetches one of ``cifar10``, ``cifar100``, ``fashion-mnist``, ``ptb``, ``wikitext-2``
into the layout that :mod:`weightsym.data` reads:

==============  =======================================================================
cifar10         ``root/cifar-10-batches-bin/`` (``variant="python"``: ``cifar-10-batches-py/``)
cifar100        ``root/cifar-100-binary/`` (``variant="python"``: ``cifar-100-python/``)
fashion-mnist   ``root/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``
ptb             ``root/text/ptb/ptb.{train,valid,test}.txt``
wikitext-2      ``root/text/wikitext-2/{train,valid,test}.txt``
==============  =======================================================================

Example (needs network access)::

    from weightsym.data import download_dataset
    download_dataset("fashion-mnist")          # into data_root(): $WEIGHTSYM_DATA or ~/.cache/weightsym
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from weightsym.atomic import atomic_write
from weightsym.suggest import did_you_mean

from .paths import data_root

CHUNK = 1 << 20
USER_AGENT = "weightsym (https://pypi.org/project/weightsym)"


class ChecksumError(ValueError):
    """A downloaded or local file does not have the expected SHA-256."""


def sha256_file(path: str | os.PathLike, chunk_size: int = CHUNK) -> str:
    """Hex SHA-256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: str | os.PathLike, sha256: str, progress: bool = True, timeout: float = 60.0,
             log=print) -> Path:
    """Download ``url`` to ``dest`` and verify its SHA-256; return ``dest``.

    If ``dest`` already exists with the right digest nothing is fetched; with a wrong digest it is moved aside
    (:func:`verify_cached`, reported through ``log``) and fetched again. The data is streamed to a temporary file next
    to ``dest`` (same filesystem) and renamed into place only after the digest matched. A mismatch raises
    :class:`ChecksumError` naming the URL, the expected and the actual digest, and leaves no partial file behind.

    Example: ``download("https://host/file.gz", "data/file.gz", sha256="3aede38d...")``.
    """
    if not sha256 or len(sha256) != 64:
        raise ValueError(f"download({url!r}): pass the expected sha256 (64 hex digits), got {sha256!r}")
    sha256 = sha256.lower()
    dest = Path(dest)
    if dest.is_file():
        if verify_cached(dest, sha256, log=log):
            return dest
    digest = hashlib.sha256()
    size = 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    # whole or not at all (weightsym.atomic): renamed into place, mode 0666 minus the umask, only if the digest matched
    with atomic_write(dest, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        bar = _progress_bar(total=int(total) if total else None, desc=dest.name, enabled=progress)
        try:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                digest.update(block)
                size += len(block)
                bar.update(len(block))
        finally:
            bar.close()
        actual = digest.hexdigest()
        if actual != sha256:
            raise ChecksumError(f"download {url}: checksum mismatch for {dest.name} ({size:,} bytes): "
                                f"expected sha256 {sha256}, got {actual}; the file was discarded. "
                                f"Retry, or use another mirror if the server changed the file.")
    return dest


def verify_cached(path: str | os.PathLike, sha256: str, log=print) -> bool:
    """True if the file at ``path`` has SHA-256 ``sha256``.  Otherwise it is renamed to ``<path>.bad-<8 hex of its
    digest>`` (so nothing reads the corrupted copy again; it is kept for inspection), ``log`` says so, and the
    result is False.  A missing file is False."""
    path = Path(path)
    if not path.is_file():
        return False
    actual = sha256_file(path)
    if actual == sha256.lower():
        return True
    aside = path.with_name(f"{path.name}.bad-{actual[:8]}")
    os.replace(path, aside)
    log(f"note: {path} failed its checksum (expected sha256 {sha256.lower()}, got {actual}); moved it aside to "
        f"{aside.name} and fetching it again")
    return False


def _progress_bar(total: int | None, desc: str, enabled: bool):
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)
        except ImportError:  # pragma: no cover - tqdm is a dependency
            pass

    class _Silent:
        def update(self, n: int) -> None:
            pass

        def close(self) -> None:
            pass

    return _Silent()


def extract(archive: str | os.PathLike, dest_dir: str | os.PathLike | None = None) -> Path:
    """Extract ``archive`` into ``dest_dir`` (default: the archive's folder) and return ``dest_dir``.

    ``.tar.gz``/``.tgz``/``.tar`` and ``.zip`` are unpacked (tar members are filtered: no absolute paths, no ``..``,
    no links outside); a plain ``.gz`` is decompressed to ``dest_dir/<name without .gz>``, written atomically.
    """
    archive = Path(archive)
    dest_dir = Path(dest_dir) if dest_dir is not None else archive.parent
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
                tar.extractall(dest_dir, filter="data")
            else:  # pragma: no cover
                root = dest_dir.resolve()
                for member in tar.getmembers():
                    target = (dest_dir / member.name).resolve()
                    if not (member.isfile() or member.isdir()) or not str(target).startswith(str(root)):
                        raise ValueError(f"extract {archive}: refusing member {member.name!r}")
                tar.extractall(dest_dir)
    elif name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (dest_dir / member).resolve()
                if not str(target).startswith(str(dest_dir.resolve())):
                    raise ValueError(f"extract {archive}: member {member!r} would be written outside {dest_dir}")
            zf.extractall(dest_dir)
    elif name.endswith(".gz"):
        target = dest_dir / archive.name[:-3]
        with gzip.open(archive, "rb") as src, atomic_write(target, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
    else:
        raise ValueError(f"extract: don't know how to extract {archive} (expected .tar.gz, .tgz, .tar, .zip or .gz)")
    return dest_dir


@dataclass(frozen=True)
class Resource:
    """One downloadable file: mirrors tried in order, its SHA-256 and size, and where it goes under the data root."""

    filename: str  # path relative to the data root
    urls: tuple[str, ...]
    sha256: str
    size: int | None = None
    extract_to: str | None = None  # folder (relative to the root) to extract into, for archives
    provides: str | None = None  # a path (relative to the root) whose presence means "already extracted"


_KRIZ = "https://www.cs.toronto.edu/~kriz/"
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/")
# PTB and WikiText-2: the original hosts no longer serve these plain-text files. The URLs below are copies in public
# GitHub repositories (tomsercu/lstm for PTB, pytorch/examples for WikiText-2), listed as a CONVENIENCE for users; they
# are not official distributions. The SHA-256s (from shared/data/MANIFEST.md) pin the exact bytes, so a changed copy
# is rejected. PTB comes from the LDC Penn Treebank and has no open licence; WikiText-2 is CC BY-SA 3.0.
_PTB_MIRRORS = ("https://raw.githubusercontent.com/tomsercu/lstm/master/data/",)
_WIKITEXT2_MIRRORS = ("https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/",)

RESOURCES: dict[str, dict[str, tuple[Resource, ...]]] = {
    "cifar10": {
        "binary": (Resource("cifar-10-binary.tar.gz", (_KRIZ + "cifar-10-binary.tar.gz",),
                            "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd", 170_052_171,
                            extract_to=".", provides="cifar-10-batches-bin/test_batch.bin"),),
        "python": (Resource("cifar-10-python.tar.gz", (_KRIZ + "cifar-10-python.tar.gz",),
                            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", 170_498_071,
                            extract_to=".", provides="cifar-10-batches-py/test_batch"),),
    },
    "cifar100": {
        "binary": (Resource("cifar-100-binary.tar.gz", (_KRIZ + "cifar-100-binary.tar.gz",),
                            "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec", 168_513_733,
                            extract_to=".", provides="cifar-100-binary/test.bin"),),
        "python": (Resource("cifar-100-python.tar.gz", (_KRIZ + "cifar-100-python.tar.gz",),
                            "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7", 169_001_437,
                            extract_to=".", provides="cifar-100-python/test"),),
    },
    "fashion-mnist": {
        "idx": tuple(
            Resource(f"fashion-mnist/{name}", tuple(m + name for m in _FASHION_MIRRORS), sha, size)
            for name, sha, size in [
                ("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                 26_421_880),
                ("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                 29_515),
                ("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                 4_422_102),
                ("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                 5_148),
            ]),
    },
    "ptb": {
        "text": tuple(
            Resource(f"text/ptb/{name}", tuple(m + name for m in _PTB_MIRRORS), sha, size)
            for name, sha, size in [
                ("ptb.train.txt", "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf", 5_101_618),
                ("ptb.valid.txt", "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2", 399_782),
                ("ptb.test.txt", "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0", 449_945),
            ]),
    },
    "wikitext-2": {
        "text": tuple(
            Resource(f"text/wikitext-2/{name}", tuple(m + name for m in _WIKITEXT2_MIRRORS), sha, size)
            for name, sha, size in [
                ("train.txt", "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f", 10_797_148),
                ("valid.txt", "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8", 1_121_681),
                ("test.txt", "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0", 1_256_449),
            ]),
    },
}
_ALIASES = {"cifar-10": "cifar10", "cifar-100": "cifar100", "fashion_mnist": "fashion-mnist",
            "fmnist": "fashion-mnist", "penn": "ptb", "wikitext2": "wikitext-2", "wikitext_2": "wikitext-2"}


def download_resource(resource: Resource, root: str | os.PathLike, progress: bool = True, log=print) -> Path:
    """Fetch one :class:`Resource` into ``root`` (trying its mirrors in order) and extract it if it is an archive.

    Files already there are re-verified first (:func:`verify_cached`: a corrupted copy is moved aside, never used).
    """
    root = Path(root)
    dest = root / resource.filename
    if resource.provides and (root / resource.provides).exists():
        # extracted before: re-verify the archive kept beside it; a corrupted one is moved aside and fetched again
        if not dest.exists() or verify_cached(dest, resource.sha256, log=log):
            return root / resource.provides
    errors = []
    for url in resource.urls:
        try:
            download(url, dest, resource.sha256, progress=progress, log=log)
            break
        except (urllib.error.URLError, OSError, ChecksumError) as error:  # HTTPError is a URLError
            errors.append(f"{url}: {error}")
    else:
        raise RuntimeError(f"could not download {resource.filename} from any mirror: " + " | ".join(errors))
    if resource.extract_to is not None:
        extract(dest, root / resource.extract_to)
        return root / resource.provides if resource.provides else root / resource.extract_to
    return dest


def download_dataset(name: str, root: str | os.PathLike | None = None, variant: str | None = None,
                     progress: bool = True) -> Path:
    """Download dataset ``name`` (cifar10, cifar100, fashion-mnist, ptb, wikitext-2) into ``root`` and return it.

    ``root`` defaults to :func:`~weightsym.data.paths.data_root`. ``variant`` picks the CIFAR format: ``"binary"``
    (default) or ``"python"``. Files already present with the right checksum are not fetched again; archives are kept
    next to what they extract to, so the data can be re-verified with :func:`sha256_file`.

    Example: ``download_dataset("ptb", "/data")`` creates ``/data/text/ptb/ptb.train.txt`` etc.
    """
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in RESOURCES:
        raise ValueError(f"download_dataset: unknown dataset {name!r}{did_you_mean(key, {**{k: k for k in RESOURCES}, **_ALIASES})}; known: {', '.join(RESOURCES)}")
    variants = RESOURCES[key]
    chosen = variant or next(iter(variants))
    if chosen not in variants:
        raise ValueError(f"download_dataset({name!r}): variant={variant!r} is not one of {list(variants)}")
    root = data_root(root)
    root.mkdir(parents=True, exist_ok=True)
    for resource in variants[chosen]:
        download_resource(resource, root, progress=progress)
    return root
