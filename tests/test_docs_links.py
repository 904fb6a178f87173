"""Every relative link and image in the README and the docs points at a file of the checkout (a renamed page or a
results folder that was never committed breaks a reader's click, not a test, unless this one runs)."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def pages():
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_relative_links_resolve():
    broken = []
    for page in pages():
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold commands, not links
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0]
            if path and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)


def test_the_link_pattern_finds_links_and_images():
    assert LINK.findall("see [a](docs/a.md#x) and ![b](img/b.png) and [c](https://x.org)") == [
        "docs/a.md#x", "img/b.png", "https://x.org"]
