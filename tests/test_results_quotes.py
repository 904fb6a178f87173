"""Every number that docs/results.md and the README quote from a results page matches that page or the data beside it
(issue 27 item 7): the pages are generated or checked, not hand-copied.

What is checked. A *unit* is a table row or a sentence. A unit cites the results pages it links to under
docs/results/ and the pages or folders it names with ``--out docs/results/NAME`` (or ``--markdown``); the other
sentences of a paragraph cite what its first sentence cites, and a section (a ``#`` heading and what follows) whose
``Command:`` paragraph names a page or folder cites it for every unit in it. In a unit that cites something, every
*data number* -- one with a decimal point, with thousands separators, or followed by % -- must appear in a cited
source: the page, the JSON or folder of the same name beside it, or any text file in the cited folder. A number
matches a source value that rounds to it at the number's own precision (0.73 matches 0.7349; 0.03 does not match
0.0351), ignoring sign, thousands separators, % and ±; a value stored as a fraction under a JSON key that says so
(accuracy, saved, consistency, ...) also matches as a percentage (0.8666 -> 86.66%).

Not checked: numbers in code spans and link targets, integers without % (seeds, epochs, widths, steps), dates and
versions, and units that cite no results page. Numbers the text computes rather than copies are in DERIVED (each with
its reason); every "95% CI a to b" the two pages quote is in INTERVALS and recomputed here from the committed per-seed
values with weightsym.analysis.stats.

Limit worth knowing: a one-decimal number checked against a large JSON can match some unrelated value by chance, so
this test catches a wrong digit in most quotes, not in every one (the doctored cases below are ones it must catch).
"""

from __future__ import annotations

import bisect
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
CHECKED = {"docs/results.md": 250, "README.md": 60}  # page: at least this many quotes checked (parsing broke if fewer)
TEXT_SUFFIXES = {".md", ".json", ".jsonl", ".out", ".txt", ".csv"}
FRACTION_KEY = re.compile(r"acc|saved|fraction|consisten|share|disagree", re.I)

LINK = re.compile(r"\]\(([^)\s]+)\)")
OUT = re.compile(r"--(?:out|markdown)\s+(docs/results/[\w./+-]+)")
CODE = re.compile(r"`[^`]*`")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z*`\[(_])")
NOT_DATA = [  # removed from a unit's text before numbers are read
    re.compile(r"!?\[([^\]]*)\]\([^)]*\)"),  # a link keeps its text, loses its target
    re.compile(r"\d+\.\d+\.\d+\S*"),  # versions: torch 2.13.0+cpu
    re.compile(r"\d{4}-\d{2}-\d{2}"),  # dates
    re.compile(r"\b\d{1,2}:\d{2}\b"),  # times
    re.compile(r"arXiv \d+\.\d+"),
    re.compile(r"\b\d+%(?= (?:CI|(?:t-)?intervals?|confidence)\b)"),  # the level of an interval: 95% CI
]
QUOTE = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w.]?\d)(\s?%)?")
SOURCE_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


# Phrases whose numbers the text computes from the cited data instead of copying them (page, phrase): reason. Keep
# this list short: a number a study can print belongs on its page. Each phrase must still be on its page.
DERIVED = {
    ("docs/results.md", "at least 0.55 points below the lower dense seed"):
        "lower dense seed 86.53 minus the best symmetric run, triangular.s0 85.98 (cifar10-accuracy.md)",
    ("docs/results.md", "about 2.3 standard errors"):
        "eighth init=project minus eighth: 3.0 / 1.3, the cifar-symmetries page's '-3.0 ± 1.3 points'",
    ("README.md", "in about 9.5 minutes"):
        "airbench-64-256-256's median wall clock per run, 571 s on fast-recipe.md, in minutes",
}


def _cifar_symmetries(variant):
    """Per-seed test accuracies of one row of cifar-symmetries.json."""
    return lambda d: [v for row in d["summary"] if row["variant"] == variant for v in row["test_accuracy"]["values"]]


def _cifar10_accuracy(variant):
    return lambda d: [run["test_accuracy"] for run in d["runs"] if run["variant"] == variant]


def _width_gaps(dataset, width, symmetry):
    """Per-seed gap (symmetric minus dense, same seed) of width-sweep.json."""
    def gaps(d):
        acc = {(r["symmetry"], r["seed"]): r["test_acc"] for r in d["runs"]
               if r["dataset"] == dataset and r["width"] == width}
        return [acc[(symmetry, s)] - acc[("dense", s)] for (name, s) in sorted(acc) if name == symmetry]
    return gaps


def _summary(*keys):
    """values under d["summary"][key1][key2]...["values"] (replica-breakers, input-expansion, kernel-symmetry, ...)."""
    def values(d):
        node = d["summary"]
        for key in keys:
            node = node[key]
        return node["values"]
    return values


# Every 95% confidence interval quoted in docs/results.md or the README: (pages, JSON, a, b, scale, decimals, text).
# b = None: the t-interval of the mean of a (paired per-seed differences); else Welch's interval of mean(a) - mean(b).
INTERVALS = [
    *[(("docs/results.md",), "cifar-symmetries/cifar-symmetries.json", _cifar_symmetries(a), _cifar_symmetries(b),
       100, 1, text) for a, b, text in [
        ("dihedral", "dense", "−10.2 to +10.8"),
        ("triangular", "dense@triangular", "−2.7 to +6.6"),
        ("bisymmetric", "dense@bisymmetric", "−2.7 to +4.2"),
        ("eighth", "dense@eighth", "−8.0 to +10.4"),
        ("eighth init=project", "eighth", "−8.2 to +2.3"),
        ("bisymmetric init=project", "bisymmetric", "−6.0 to +4.4"),
        ("block init=project", "block", "−5.0 to +4.4"),
        ("dense@triangular", "dense", "−8.0 to +1.3"),
    ]],
    (("docs/results.md", "README.md"), "cifar10-accuracy/runs.json", _cifar10_accuracy("triangular"),
     _cifar10_accuracy("dense"), 100, 2, "−1.73 to +0.26"),
    *[(("docs/results.md",), "width-sweep/width-sweep.json", _width_gaps(*key), None, 100, 1, text) for key, text in [
        (("fashion-mnist", 8, "block"), "−23.0 to −3.3"),
        (("fashion-mnist", 128, "block"), "−2.3 to +0.9"),
        (("fashion-mnist", 8, "eighth"), "−32.1 to +6.3"),
    ]],
    (("docs/results.md",), "kernel-symmetry/kernel-symmetry.json", _summary("cifar10/reflect", "mean_score_strided"),
     _summary("cifar10/zeros", "mean_score_strided"), 1, 3, "−0.051 to +0.286"),
    (("docs/results.md",), "consistency/consistency.json", _summary("hflip (internal convs)", "flip_consistency"),
     _summary("dense", "flip_consistency"), 1, 3, "−0.028 to +0.098"),
    (("docs/results.md",), "input-expansion/input-expansion.json", _summary("2", "test_accuracy"),
     _summary("1", "test_accuracy"), 100, 0, "−49 to +28"),
    (("docs/results.md",), "input-expansion/input-expansion.json", _summary("3", "test_accuracy"),
     _summary("1", "test_accuracy"), 100, 0, "−71 to +29"),
    (("docs/results.md",), "replica-breakers/replica-breakers.json", _summary("+ dropout", "replica_distance"),
     _summary("plain", "replica_distance"), 1, 3, "−0.120 to −0.027"),
]


def _interval_text(lo: float, hi: float, decimals: int) -> str:
    """'−8.2 to +2.3': signed, unicode minus, as the pages write an interval."""
    return " to ".join(f"{x:+.{decimals}f}".replace("-", "−") for x in (lo, hi))


# ---------------------------------------------------------------------------------------------------------------------
# reading the pages


@dataclass(frozen=True)
class Quote:
    text: str  # as written, e.g. "21.6%"
    value: float  # 21.6
    decimals: int


@dataclass
class Unit:
    line: int
    text: str
    cites: tuple[Path, ...]


def quotes(text: str) -> list[Quote]:
    """The data numbers of a piece of text (code spans, link targets, versions and dates removed first)."""
    text = CODE.sub(" ", text)
    for pattern in NOT_DATA:
        text = pattern.sub(lambda m: m.group(1) if m.re is NOT_DATA[0] else " ", text)
    found = []
    for m in QUOTE.finditer(text):
        whole, fraction, percent = m.group(1), m.group(2) or "", m.group(3)
        start, end = m.start(), m.end()
        if start >= 2 and text[start - 1] == "-" and text[start - 2].isalnum():
            continue  # part of a name: wrn-16-4, lr 1e-3
        if re.match(r"[eE][-+]?\d", text[end:end + 3]):
            continue  # 3e-3
        if not (fraction or "," in whole or percent):
            continue  # a count, not a data number
        found.append(Quote(m.group(0).strip(), float(whole.replace(",", "") + fraction), max(0, len(fraction) - 1)))
    return found


def _cites(text: str, page: Path) -> set[Path]:
    cited = set()
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if path.is_relative_to(RESULTS):
            cited.add(path)
    for target in OUT.findall(text):
        path = (ROOT / target.rstrip(".,;)")).resolve()
        if path.name.isupper() and not path.exists():
            continue  # a placeholder: --out docs/results/NAME
        cited.add(path)
    return cited


def units(page: Path, text: str | None = None) -> list[Unit]:
    """Table rows and sentences of a page, each with what it cites (its own links plus its section's Command:)."""
    text = page.read_text() if text is None else text
    lines = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S).split("\n")
    sections, current = [], []
    for number, line in enumerate(lines, 1):
        if line.startswith("#"):
            sections.append(current)
            current = []
        current.append((number, line))
    sections.append(current)
    found = []
    for section in sections:
        blocks, block = [], []  # paragraphs and list items as (first line, text); table rows each on their own
        for number, line in section:
            stripped = line.strip()
            new_item = re.match(r"^(\s*[-*] |\s*\d+\. )", line)
            if not stripped or stripped.startswith("|") or line.startswith("#") or new_item:
                if block:
                    blocks.append(block)
                block = []
                if stripped.startswith("|") and not re.fullmatch(r"\|[\s:|-]+\|?", stripped):
                    blocks.append([(number, stripped)])
                    continue
                if not stripped or line.startswith("#"):
                    continue
            block.append((number, stripped))
        if block:
            blocks.append(block)
        section_cites = set()
        for block in blocks:
            joined = " ".join(t for _, t in block)
            if re.match(r"^\**Commands?\**:", joined):
                section_cites |= _cites(joined, page)
        for block in blocks:
            joined = " ".join(t for _, t in block)
            pieces = [joined] if joined.startswith("|") else SENTENCE_END.split(joined)
            lead = _cites(pieces[0], page)  # "**Verdict at ... ([page](...)).** ..." names the paragraph's source
            for piece in pieces:
                cited = _cites(piece, page) | lead | section_cites
                if cited:
                    found.append(Unit(block[0][0], piece, tuple(sorted(cited))))
    return found


# ---------------------------------------------------------------------------------------------------------------------
# reading the sources


def _walk(node, key, plain, fractions):
    if isinstance(node, bool) or node is None:
        return
    if isinstance(node, (int, float)):
        if math.isfinite(node):
            plain.append(abs(float(node)))
            if key and FRACTION_KEY.search(key) and abs(node) <= 1:
                fractions.append(abs(float(node)) * 100)
        return
    if isinstance(node, str):
        plain.extend(_numbers(node))
    elif isinstance(node, dict):
        for k, v in node.items():
            _walk(v, str(k), plain, fractions)
    elif isinstance(node, list):
        for v in node:
            _walk(v, key, plain, fractions)


def _numbers(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in SOURCE_NUMBER.findall(text)]


@lru_cache(maxsize=None)
def _file_values(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    plain, fractions = [], []
    text = path.read_text(errors="replace")
    if path.suffix == ".json":
        _walk(json.loads(text), "", plain, fractions)
    elif path.suffix == ".jsonl":
        for line in text.splitlines():
            if line.strip():
                _walk(json.loads(line), "", plain, fractions)
    else:
        plain.extend(_numbers(text))
    return tuple(sorted(plain)), tuple(sorted(fractions))


def sources(cited: Path) -> list[Path]:
    """The files a citation lets a number come from."""
    def texts(folder):
        return [p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix in TEXT_SUFFIXES]
    files = []
    if cited.is_dir():
        files += texts(cited)
    for candidate in (cited, cited.with_suffix(".md"), cited.with_suffix(".json")):
        if candidate.is_file():
            files.append(candidate)
    if cited.with_suffix("").is_dir() and not cited.is_dir():
        files += texts(cited.with_suffix(""))
    if cited.suffix and cited.parent != RESULTS and cited.parent.is_dir():
        files += texts(cited.parent)
    return sorted(set(files))


def _found(quote: Quote, values: tuple[float, ...]) -> bool:
    tolerance = 0.5 * 10 ** -quote.decimals * (1 + 1e-9) + 1e-12
    i = bisect.bisect_left(values, quote.value - tolerance)
    return i < len(values) and values[i] <= quote.value + tolerance


def problems(page: str, text: str | None = None) -> tuple[list[str], int]:
    """(every quoted number no cited source supports, how many quotes were checked) for one page."""
    path = ROOT / page
    removed = [phrase for (doc, phrase) in DERIVED if doc == page]
    removed += [f"95% CI {spec[-1]}" for spec in INTERVALS if page in spec[0]]  # recomputed by their own test
    wrong, checked = [], 0
    for unit in units(path, text):
        files = [f for c in unit.cites for f in sources(c)]
        missing = [c for c in unit.cites if not sources(c)]
        if missing:
            wrong.append(f"{page}:{unit.line}: cites {', '.join(str(m.relative_to(ROOT)) for m in missing)}, "
                         f"which holds no readable file")
        body = unit.text
        for phrase in removed:
            body = body.replace(phrase, " ")
        for quote in quotes(body):
            checked += 1
            if any(_found(quote, values) for f in files for values in _file_values(f)):
                continue
            names = ", ".join(sorted({str(f.relative_to(RESULTS)) for f in files}))
            wrong.append(f"{page}:{unit.line}: {quote.text!r} is in none of {names}\n    in: {unit.text[:200]}")
    return wrong, checked


# ---------------------------------------------------------------------------------------------------------------------
# the tests


@pytest.mark.parametrize("page", CHECKED)
def test_every_quoted_number_is_in_the_page_it_cites(page):
    wrong, checked = problems(page)
    assert checked >= CHECKED[page], f"{page}: only {checked} numbers were checked; the unit or citation parsing broke"
    assert not wrong, f"{len(wrong)} of {checked} quoted numbers not found in what they cite:\n" + "\n".join(wrong)


DOCTORED = [  # (page, a line as it could be written, the true number, a wrong one the check must catch)
    ("docs/results.md", "| 5 | LSTM | `weightsym lm ...` ([results/lm_ptb.md](results/lm_ptb.md)) | test ppl 150.25 "
     "dense, {} hh |", "149.04", "148.04"),
    ("docs/results.md", "Reflect padding raises the strided layers' score (CIFAR-10: S 0.587 → {}; "
     "[kernel-symmetry](results/kernel-symmetry/kernel-symmetry.md)).", "0.704", "0.714"),
    ("docs/results.md", "Hflip kernels raise flip consistency by {} "
     "([consistency](results/consistency/consistency.md)).", "0.0351", "0.0315"),
    ("README.md", "ResNet-101 with triangular symmetry stores {} fewer parameters "
     "([params](docs/results/params/params.md)).", "23.9%", "26.9%"),
    ("README.md", "At 40 epochs `triangular` ends at {} ([docs/results/cifar10-accuracy.md]"
     "(docs/results/cifar10-accuracy.md)).", "85.93%", "85.39%"),
    ("docs/results.md", "Command: `weightsym reproduce width-sweep --out docs/results/width-sweep`\n\nOn Fashion-MNIST "
     "`block` goes from {} to −0.7 points.", "−13.1", "−13.7"),
    ("docs/results.md", "Inference: WRN-16-4 block {}× faster ([inference.md](results/inference.md)).", "2.28", "2.82"),
    # an interval other than the recomputed one is checked like any other number:
    ("docs/results.md", "| 2 | init | `--out docs/results/cifar-symmetries` | `eighth` −3.0 ± 1.3 points, "
     "95% CI −8.2 to {} |", "+2.3", "+3.2"),
    ("docs/results.md", "Command: `weightsym reproduce universal-approximation --out "
     "docs/results/universal-approximation`\n\nAt the largest width the error is ×{} to ×1.1 the dense one's.",
     "0.67", "0.76"),
]


@pytest.mark.parametrize("page, line, right, wrong", DOCTORED)
def test_a_doctored_number_is_caught_and_the_true_one_passes(page, line, right, wrong):
    ok, checked = problems(page, line.format(right))
    assert checked and not ok, ok
    caught, _ = problems(page, line.format(wrong))
    assert len(caught) == 1 and repr(wrong.lstrip("−+")) in caught[0], caught


def test_what_counts_as_a_data_number():
    text = ("dense 86.66% ± 0.18 (two seeds), 219,482 stored, 28 % fewer, 3 seeds, width 64, epochs 2–4, "
            "`--lr 0.1`, torch 2.13.0+cpu, 2026-12-02 13:02, wrn-16-4, lr 3e-3, ×0.67 ([x](results/a1.5.md))")
    assert [q.text for q in quotes(text)] == ["86.66%", "0.18", "219,482", "28 %", "0.67"]
    assert [(q.value, q.decimals) for q in quotes("0.0351 and 21.6% and 1,840")] == [
        (0.0351, 4), (21.6, 1), (1840.0, 0)]


def test_rounding_matches_at_the_quotes_precision_only():
    values = (0.0351, 0.7349, 21.585369)
    assert _found(Quote("0.73", 0.73, 2), values) and _found(Quote("21.6%", 21.6, 1), values)
    assert not _found(Quote("0.03", 0.03, 2), values) and not _found(Quote("0.8", 0.8, 1), values)


def test_a_section_command_cites_its_folder_for_every_sentence():
    text = ("## 3. Width\n\nCommand: `weightsym reproduce width-sweep --out docs/results/width-sweep` →\n"
            "[results/width-sweep/width-sweep.md](results/width-sweep/width-sweep.md)\n\n"
            "**Verdict.** Block goes from −13.1 to −0.7 points. Eighth from −12.9 to −0.2.\n\n## 4. Other\n\n"
            "No cite 9.9%.")
    found = {u.text: u.cites for u in units(ROOT / "docs/results.md", text)}
    folder = (RESULTS / "width-sweep", RESULTS / "width-sweep" / "width-sweep.md")
    assert found["**Verdict.** Block goes from −13.1 to −0.7 points."] == folder
    assert found["Eighth from −12.9 to −0.2."] == folder
    assert not any("9.9%" in t for t in found)  # a section without a Command: line cites nothing by itself


def test_every_derived_phrase_is_still_on_its_page():
    for (page, phrase), reason in DERIVED.items():
        text = " ".join((ROOT / page).read_text().split())
        assert reason and phrase in text, f"{page} no longer says {phrase!r}: drop the entry"


@pytest.mark.parametrize("spec", INTERVALS, ids=lambda s: f"{s[1].split('/')[0]}:{s[-1]}")
def test_every_quoted_interval_is_recomputed_from_the_per_seed_values(spec):
    from weightsym.analysis.stats import summarize, welch

    docs, json_path, take_a, take_b, scale, decimals, quoted = spec
    data = json.loads((RESULTS / json_path).read_text())
    a = take_a(data)
    if take_b is None:
        s = summarize(a)
        lo, hi = s.low, s.high
    else:
        b = take_b(data)
        assert len(a) >= 2 and len(b) >= 2, (len(a), len(b))
        d = welch(a, b)
        lo, hi = d.low, d.high
    assert _interval_text(scale * lo, scale * hi, decimals) == quoted
    for doc in docs:
        assert f"95% CI {quoted}" in " ".join((ROOT / doc).read_text().split()), f"{doc} does not quote 95% CI {quoted}"
