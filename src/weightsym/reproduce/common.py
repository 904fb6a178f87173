"""What every study writes: the header (command, machine, date), JSON, and Markdown tables."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from weightsym.atomic import atomic_output, write_json, write_text
from weightsym.machine import machine

# The paper's placement on ResNet-style networks (Hu et al., docs/science.md §1.2): only the middle 3x3 conv of every
# (bottleneck or basic) block, the square one, is symmetric.  `weightsym train --include '*conv2'` (see
# weightsym.train.describe.PLACEMENT_NOTE).
PAPER_PLACEMENT = ["*conv2"]


def command_line() -> str:
    """The command that is running, as a user would type it."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "weightsym")):
        argv[0] = "weightsym"
    return " ".join(argv)


def header(title: str, command: str | None = None, threads: str | None = None) -> str:
    """The page's first lines: title, command, machine, date.  ``threads`` says what the measured work ran with when
    that is not this process's torch thread count (e.g. ``"1 thread per run, 2 runs at a time"``)."""
    m = machine()
    return (f"## {title}\n\nCommand: `{command or command_line()}`  \n"
            f"Machine: {m['cpu_count']} CPU cores ({m['cpu']}), {m['platform']}, torch {m['torch']} "
            f"({threads or str(m['torch_threads']) + ' threads'}), allocator: {m['allocator']}  \nDate: {m['date']}\n")


SMOKE_BANNER = "SMOKE RUN (--smoke): a tiny budget that only tests the code path; the numbers mean nothing"


def write_outputs(out_dir: Path, name: str, payload: dict, markdown: str) -> None:
    """Write ``NAME.json`` (payload + machine + command) and ``NAME.md``.  A smoke run (``payload["smoke"]``) says so
    in a banner under the page's title and on every figure the page shows (:func:`mark_smoke_figure`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), "command": command_line(), **payload}
    if payload.get("smoke"):
        title, _, rest = markdown.partition("\n")
        markdown = f"{title}\n\n**{SMOKE_BANNER}.**\n{rest}"
        for figure in dict.fromkeys(re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", markdown)):
            if (out_dir / figure).is_file():
                mark_smoke_figure(out_dir / figure)
    write_json(out_dir / f"{name}.json", payload, default=str)
    write_text(out_dir / f"{name}.md", markdown)


def mark_smoke_figure(path: Path) -> None:
    """Put a red ``SMOKE RUN`` strip above a PNG (once: the file is tagged so a second call leaves it alone)."""
    from matplotlib import font_manager
    from PIL import Image, ImageDraw, ImageFont
    from PIL.PngImagePlugin import PngInfo

    with Image.open(path) as image:
        image.load()
    if image.info.get("weightsym-smoke"):
        return
    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans:bold"), size=max(14, image.width // 60))
    strip = int(font.size * 2)
    marked = Image.new("RGB", (image.width, image.height + strip), (200, 30, 30))
    marked.paste(image.convert("RGB"), (0, strip))
    ImageDraw.Draw(marked).text((image.width // 2, strip // 2), SMOKE_BANNER, fill="white", font=font, anchor="mm")
    info = PngInfo()
    info.add_text("weightsym-smoke", "1")
    with atomic_output(path) as tmp:
        marked.save(tmp, pnginfo=info)
