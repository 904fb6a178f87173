"""Writing a benchmark's results: JSON beside a Markdown page, only where the caller says (``--out``)."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON (values JSON cannot hold as their ``str``), creating the folder; returns
    the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def write_results(base: str | Path, page: str, payload: dict) -> str:
    """Write ``BASE.md`` (``page``) and ``BASE.json`` (``payload``); returns the line saying so."""
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".md").write_text(page)
    write_json(base.with_suffix(".json"), payload)
    return f"wrote {base.with_suffix('.md')} and {base.with_suffix('.json')}"
