"""Writing a benchmark's results: JSON beside a Markdown page, only where the caller says (``--out``)."""

from __future__ import annotations

from pathlib import Path

from weightsym import atomic


def write_json(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON (values JSON cannot hold as their ``str``), creating the folder, atomically
    (:mod:`weightsym.atomic`); returns the path."""
    return atomic.write_json(path, payload, default=str)


def write_results(base: str | Path, page: str, payload: dict) -> str:
    """Write ``BASE.md`` (``page``) and ``BASE.json`` (``payload``); returns the line saying so."""
    base = Path(base)
    atomic.write_text(base.with_suffix(".md"), page)
    write_json(base.with_suffix(".json"), payload)
    return f"wrote {base.with_suffix('.md')} and {base.with_suffix('.json')}"
