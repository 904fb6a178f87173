"""What a model-file reader tells its caller when a file is not plain good news.

:class:`ModelFileError` (a ``ValueError``): the file cannot be used; its message is ``<path>: <problem>`` on one line,
and says what would work.  :class:`LegacyFileWarning`: the file can be used, but it was written before weightsym stored
checksums, so its contents cannot be verified.

>>> from weightsym.files import ModelFileError
>>> error = ModelFileError("run/last.safetensors", "its contents do not match\\n    the checksum")
>>> str(error)
'run/last.safetensors: its contents do not match the checksum'
>>> error.path, error.problem
('run/last.safetensors', 'its contents do not match the checksum')
>>> str(metadata_error("w.safetensors", "layers", "must be an object"))
'w.safetensors: metadata `layers`: must be an object (a damaged or edited file)'
"""

from __future__ import annotations


class ModelFileError(ValueError):
    """A model file that cannot be used; the message is ``<path>: <problem>`` on one line (and what would work)."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")


class LegacyFileWarning(UserWarning):
    """A file written before weightsym stored checksums: it loads, but its contents cannot be verified."""


def metadata_error(path, key: str, problem: str) -> ModelFileError:
    """The error for a metadata field that breaks the schema (``raise metadata_error(path, "layers", "...")``)."""
    return ModelFileError(path, f"metadata `{key}`: {problem} (a damaged or edited file)")
