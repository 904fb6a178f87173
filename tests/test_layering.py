"""The import graph of ``src/weightsym`` keeps the layering of docs/STYLE.md.

``LAYERS`` and ``ALLOWED`` below are *the* table of which part of the package may import which (docs/architecture.md
cites them; change them here, with the reason).  A *unit* is a subpackage (``weightsym/nn/``) or a top-level module
(``weightsym/suggest.py``); ``weightsym`` is the package's ``__init__`` (the public verbs re-exported from ``symmetry``,
``nn`` and ``files``).  Every ``import``/``from ... import`` of a ``weightsym`` module is read with ``ast``:

* at the top of a file, inside functions, and under ``if TYPE_CHECKING:`` alike: a function-local or type-only import
  is still a dependency, so it obeys the same table and counts in the cycle check (failure messages say which kind);
* imports by string (``importlib.import_module``: the lazy attributes of ``weightsym``, the model, study and command
  registries, ``--builder``) and code run in subprocesses are not seen.

The rules (STYLE.md's order, bottom to top: symmetry < nn < files < fast < models < data < train < analysis <
reproduce < bench < cli):

* ``symmetry`` knows nothing above it; ``nn`` knows ``symmetry``; ``fast`` knows ``nn`` and ``symmetry`` (and
  ``files``), never ``train`` or ``models``; models never import symmetry code (plain torch);
* ``files`` knows ``nn`` and ``symmetry`` (and the model registry, to rebuild a model a file describes), and ``nn``
  never imports ``files``; ``analysis`` reads model files through ``files``, never through ``train``;
* only ``cli/`` imports ``argparse`` or calls ``sys.exit``/raises ``SystemExit``, and nothing imports ``cli/`` except
  the one entry point ``weightsym/__main__.py`` (``python -m weightsym``, ``torchrun -m weightsym``; the console
  script ``weightsym`` is ``weightsym.cli:main`` in pyproject.toml).  A package's own ``__main__.py`` belongs to that
  package and obeys its row: ``python -m weightsym.<package>`` is not an entry point;
* no import cycles between modules (strongly connected components of the module graph, function-local and type-only
  imports included; a package ``__init__`` re-exporting its submodules is an edge like any other, the implicit
  import of a parent package is not).

The rules are about the units that exist: a row for a package not (or no longer) in the tree costs nothing, so the
table can name ``bench/`` while it is being split out of ``fast/``.  A unit that is in
the tree but not in the table fails the test until it gets a row.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "weightsym"

# ---- the table ------------------------------------------------------------------------------------------------------
# Bottom to top.  A unit may import only units listed before it, and of those only the ones in its ALLOWED row.
LAYERS = (
    "suggest", "allocator", "machine",   # leaf utilities: did-you-mean for errors, glibc malloc tuning, the machine
                                         #   record (machine.py; today in bench/, see EXEMPTIONS)
    "atomic",                            # the one atomic-write helper every writer uses (a leaf: the symmetry
                                         #   figures, model files, data caches, run files and reports all write)
    "symmetry",                          # the mechanism: orbits, gather, projection; one file per family
    "nn",                                # attaching symmetries to torch modules, counting
    "files",                             # the model-file format: bytes + validation, records, checkpoints, rebuild
    "weightsym",                         # the package __init__: the public verbs (symmetry + nn + files)
    "fast",                              # kernels from the same orbits: folds, fold-path training, optimize, export
    "models",                            # plain torch architectures and their registry
    "data",                              # datasets
    "train",                             # the training engine
    "lm",                                # the language-modelling task on the engine
    "analysis",                          # measurements on weights and model files
    "compress",                          # compress a trained model to a budget: analysis + a short fine-tune
    "reproduce",                         # the papers' claims as studies
    "demo",                              # `weightsym demo`'s library side
    "bench",                             # the timing harness (being split out of fast/)
    "cli",                               # every argparse line
    "__main__",                          # weightsym/__main__.py: `python -m weightsym`, the only importer of cli
)
_UTILITIES = {"suggest", "allocator", "machine", "atomic"}
_CORE = _UTILITIES | {"symmetry", "nn", "weightsym", "files"}

ALLOWED: dict[str, set[str]] = {
    "suggest": set(),
    "allocator": set(),
    "machine": {"allocator"},
    "atomic": set(),
    "symmetry": {"suggest", "atomic"},                              # knows nothing above it (atomic: its figure)
    "nn": {"suggest", "symmetry"},                                  # never files: model files are one layer up
    "files": {"suggest", "symmetry", "nn", "atomic"},               # (+ the registry: EXEMPTIONS)
    "weightsym": {"symmetry", "nn", "files"},
    "fast": _CORE,                                                  # never train, models, data, analysis
    "models": {"suggest"},                                          # plain torch: never symmetry, nn, fast
    "data": {"suggest", "files", "atomic"},                         # atomic: downloads and caches
    "train": _CORE | {"fast", "models", "data"},                    # never analysis (+ EXEMPTIONS)
    "lm": _CORE | {"fast", "models", "data", "train"},
    "analysis": _CORE | {"fast", "models", "data"},                 # never train or lm: model files through files
    "compress": _CORE | {"fast", "models", "data", "train", "lm", "analysis"},
    "reproduce": _CORE | {"fast", "models", "data", "train", "lm", "analysis", "compress"},
    "demo": _CORE | {"fast", "models", "data", "train", "analysis", "reproduce"},
    "bench": _CORE | {"fast", "models", "data", "train", "lm"},
    "cli": set(LAYERS[:LAYERS.index("cli")]),     # everything below
    "__main__": {"cli"},
}


@dataclass(frozen=True)
class Exemption:
    """An import the table forbids, allowed by name until the issue it waits on is done."""

    name: str
    files: tuple        # globs of importing files, relative to src/weightsym
    imports: tuple      # imported modules (or module prefixes) it covers
    waits_on: str


EXEMPTIONS = (
    # load_model rebuilds the architecture a file names from the model registry (function-local imports in
    # files/rebuild.py only).  models sits above files, so this points up.
    Exemption("files-rebuild-registry-models", ("files/rebuild.py",), ("weightsym.models",),
              "issue 26: load_model taking the model registry from above (models/ or the caller)"),
)


# ---- reading the graph ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Import:
    file: str       # importing file, relative to src/weightsym
    line: int
    module: str     # the weightsym module imported
    kind: str       # "top" (runs at import), "function" (runs when called), "type-only" (under if TYPE_CHECKING)

    def __str__(self) -> str:
        where = {"top": "", "function": " (inside a function)", "type-only": " (under TYPE_CHECKING)"}[self.kind]
        return f"{self.file}:{self.line} imports {self.module}{where}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    """True if ``name`` (``weightsym.a.b``) is a module or package of the tree (not an attribute of one)."""
    path = SRC.joinpath(*name.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def unit_of_file(file: str) -> str:
    """``nn/symmetrize.py`` -> ``nn``; ``suggest.py`` -> ``suggest``; ``__init__.py`` -> ``weightsym``."""
    parts = Path(file).parts
    if len(parts) > 1:
        return parts[0]
    return "weightsym" if parts[0] == "__init__.py" else Path(parts[0]).stem


def unit_of_module(module: str) -> str:
    """``weightsym.nn.symmetrize`` -> ``nn``; ``weightsym`` -> ``weightsym``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "weightsym"


class _Reader(ast.NodeVisitor):
    def __init__(self, path: Path):
        self.file = str(path.relative_to(SRC))
        module = _module_name(path)
        self.package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        self.found: list[Import] = []
        self._functions = 0
        self._type_only = 0

    def _kind(self) -> str:
        return "type-only" if self._type_only else "function" if self._functions else "top"

    def _add(self, node: ast.AST, module: str) -> None:
        found = Import(self.file, node.lineno, module, self._kind())
        if (module == "weightsym" or module.startswith("weightsym.")) and found not in self.found:
            self.found.append(found)

    def visit_FunctionDef(self, node):
        self._functions += 1
        self.generic_visit(node)
        self._functions -= 1

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_If(self, node):
        test = node.test
        type_only = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
                    (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
        self._type_only += type_only
        for child in node.body:
            self.visit(child)
        self._type_only -= type_only
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node):
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node):
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")
            parts = parts[:len(parts) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            self._add(node, sub if alias.name != "*" and _is_module(sub) else base)


def read_imports() -> list[Import]:
    """Every import of a weightsym module in src/weightsym, in file order."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        reader = _Reader(path)
        reader.visit(ast.parse(path.read_text(), filename=str(path)))
        found += reader.found
    return found


IMPORTS = read_imports()
UNITS = sorted({unit_of_file(str(p.relative_to(SRC))) for p in SRC.rglob("*.py")})


def _exempted(imp: Import) -> Exemption | None:
    for exemption in EXEMPTIONS:
        if any(fnmatch.fnmatchcase(imp.file, glob) for glob in exemption.files) and \
                any(imp.module == m or imp.module.startswith(m + ".") for m in exemption.imports):
            return exemption
    return None


# ---- the table is complete and points down --------------------------------------------------------------------------
def test_every_unit_of_the_package_has_a_row_in_the_table():
    assert set(ALLOWED) == set(LAYERS)
    missing = [unit for unit in UNITS if unit not in ALLOWED]
    assert missing == [], f"add {missing} to LAYERS and ALLOWED in tests/test_layering.py (what may they import?)"


def test_the_table_points_down_the_layers():
    upward = {unit: sorted(other for other in allowed if LAYERS.index(other) >= LAYERS.index(unit))
              for unit, allowed in ALLOWED.items()}
    assert {unit: up for unit, up in upward.items() if up} == {}


def test_the_rules_of_style_md_are_in_the_table():
    below = set(LAYERS[:LAYERS.index("symmetry")])
    assert ALLOWED["symmetry"] <= below                                    # symmetry knows nothing above it
    assert ALLOWED["nn"] - below == {"symmetry"}                           # nn knows symmetry
    assert ALLOWED["files"] - below == {"symmetry", "nn"}                  # files: nn + symmetry (+ registry: EXEMPTIONS)
    assert not ALLOWED["fast"] & {"train", "models", "data", "analysis"}    # fast: nn and symmetry, never train/models
    assert not ALLOWED["models"] & {"symmetry", "nn", "weightsym", "fast"}   # models never import symmetry code
    assert not ALLOWED["analysis"] & {"train", "lm"}                       # analysis reads files through files
    assert [unit for unit, allowed in ALLOWED.items() if "cli" in allowed] == ["__main__"]  # nothing imports cli


# ---- the code follows the table -------------------------------------------------------------------------------------
@pytest.mark.parametrize("unit", LAYERS)
def test_imports_follow_the_table(unit):
    """Every import of ``unit``'s files is of itself or of a unit its row allows (or is a named exemption)."""
    offenders = []
    for imp in IMPORTS:
        target = unit_of_module(imp.module)
        if unit_of_file(imp.file) != unit or target == unit or target in ALLOWED[unit] or _exempted(imp):
            continue
        offenders.append(f"{imp}: {unit} may not import {target} (its row allows {sorted(ALLOWED[unit])})")
    assert offenders == [], "\n".join(offenders)


def test_every_exemption_is_still_needed():
    """An exemption whose files exist but no longer make the import is stale: delete it from EXEMPTIONS.  (Files that
    or imported modules that do not exist yet, or any more, are skipped: the table may name packages being split.)"""
    stale = []
    for exemption in EXEMPTIONS:
        files = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if any(fnmatch.fnmatchcase(str(p.relative_to(SRC)), glob) for glob in exemption.files)]
        if files and any(_is_module(m) for m in exemption.imports) and \
                not any(_exempted(imp) == exemption for imp in IMPORTS if imp.file in files):
            stale.append(f"{exemption.name}: {', '.join(exemption.files)} no longer import {', '.join(exemption.imports)}")
    assert stale == [], "\n".join(stale)


def test_nothing_imports_the_cli_but_the_entry_point():
    importers = sorted({str(imp) for imp in IMPORTS
                        if unit_of_module(imp.module) == "cli" and unit_of_file(imp.file) != "cli"})
    assert importers == ["__main__.py:3 imports weightsym.cli"], "\n".join(importers)


def _argument_parsing_and_exits(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] in ("argparse", "optparse", "getopt")
                                                for a in node.names):
            found.append(f"line {node.lineno}: import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("argparse", "optparse",
                                                                                       "getopt"):
            found.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.ImportFrom) and node.module in ("sys", "os") and \
                any(a.name in ("exit", "_exit") for a in node.names):
            found.append(f"line {node.lineno}: from {node.module} import exit")
        elif isinstance(node, ast.Call):
            func = node.func
            name = (f"{func.value.id}.{func.attr}" if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                    else func.id if isinstance(func, ast.Name) else "")
            if name in ("sys.exit", "os._exit", "exit", "quit", "SystemExit"):
                found.append(f"line {node.lineno}: {name}(...)")
        elif isinstance(node, ast.Raise) and isinstance(node.exc, ast.Name) and node.exc.id == "SystemExit":
            found.append(f"line {node.lineno}: raise SystemExit")
    return found


def test_only_the_cli_parses_arguments_or_exits():
    """argparse (or optparse/getopt) and sys.exit/SystemExit appear only under cli/: the library raises errors and
    returns values; the command turns them into messages and exit codes."""
    offenders = [f"{path.relative_to(SRC)} {what}" for path in sorted(SRC.rglob("*.py"))
                 if unit_of_file(str(path.relative_to(SRC))) != "cli" for what in _argument_parsing_and_exits(path)]
    assert offenders == [], "\n".join(offenders)


def _strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components of more than one module, or a module importing itself."""
    index, low, on_stack, stack, components, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph.get(node, ()):
                        components.append(sorted(component))
    return components


def test_no_import_cycles_between_modules():
    """The module graph has no cycles: not through top-level imports (a half-initialised module at import time), and
    not through function-local or type-only ones either (the two modules cannot be understood, or moved, apart)."""
    graph: dict[str, set[str]] = {_module_name(p): set() for p in SRC.rglob("*.py")}
    by_edge: dict[tuple[str, str], list[Import]] = {}
    for imp in IMPORTS:
        source = _module_name(SRC / imp.file)
        if imp.module in graph and imp.module != source:
            graph[source].add(imp.module)
            by_edge.setdefault((source, imp.module), []).append(imp)
    cycles = []
    for component in _strongly_connected_components(graph):
        members = set(component)
        edges = [str(imp) for (a, b), imps in sorted(by_edge.items()) if a in members and b in members for imp in imps]
        cycles.append(f"cycle between {', '.join(component)}:\n  " + "\n  ".join(edges))
    assert cycles == [], "\n".join(cycles)


def test_the_graph_reader_sees_every_kind_of_import():
    """The reader itself: relative imports, submodules named in ``from pkg import mod``, function-local and type-only
    imports."""
    def imports_of(file: str) -> set[tuple[str, str]]:
        return {(imp.module, imp.kind) for imp in IMPORTS if imp.file == file}

    assert ("weightsym.symmetry.d4", "top") in imports_of("symmetry/orbits.py")      # from weightsym.symmetry import d4
    assert ("weightsym.symmetry.orbits", "function") in imports_of("symmetry/layout.py")
    assert ("weightsym.cli", "top") in imports_of("__main__.py")
    assert unit_of_file("__init__.py") == "weightsym" and unit_of_module("weightsym.nn.symmetrize") == "nn"
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import base\n"
                     "def f():\n    from ..nn import symmetrize\n")
    reader = _Reader(SRC / "symmetry" / "layout.py")
    reader.visit(tree)
    assert {(i.module, i.kind) for i in reader.found} == {("weightsym.symmetry.base", "type-only"),
                                                          ("weightsym.nn.symmetrize", "function")}
    assert _strongly_connected_components({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _argument_parsing_and_exits(SRC / "cli" / "__init__.py")    # the check finds what it looks for


# ---- what the imports cannot show ------------------------------------------------------------------------------------
def test_importing_analysis_and_fast_does_not_import_train_or_models():
    code = ("import sys, weightsym.analysis, weightsym.fast; "
            "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('weightsym.')}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = eval(out.stdout)  # a list of package names
    assert "train" not in loaded and "models" not in loaded and "cli" not in loaded, loaded


def test_analyzing_and_exporting_a_training_checkpoint_does_not_import_train(tmp_path):
    """The whole path: a `weightsym train` checkpoint is read, rebuilt, analysed and exported without
    weightsym.train."""
    import torch

    import weightsym as ws
    from weightsym.models import create_model
    from weightsym.train import TrainConfig, save_checkpoint

    model = create_model("mnist1d-cnn", width=8)
    ws.symmetrize(model, channel="block")
    path = tmp_path / "checkpoint.safetensors"
    config = TrainConfig(model="mnist1d-cnn", model_args={"width": 8}, channel="block").to_dict()
    save_checkpoint(path, model, torch.optim.SGD(model.parameters(), lr=0.1), state={"config": config})
    code = (f"import sys; from weightsym.analysis import analyze_file; "
            f"from weightsym.fast import export_dense, optimize; from weightsym import load_model; "
            f"r = analyze_file({str(path)!r}, {str(tmp_path / 'a')!r}, max_batches=1, log=lambda *a: None); "
            f"m, d = load_model({str(path)!r}); "
            f"export_dense(m, {str(tmp_path / 'd.safetensors')!r}); optimize(m); "
            "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('weightsym.')}), "
            "sorted(r['consistency']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "MPLBACKEND": "Agg"})
    assert out.returncode == 0, out.stderr[-2000:]
    loaded, measured = out.stdout.strip().split("] [")
    assert "'train'" not in loaded and "'analysis'" in loaded and "'models'" in loaded, loaded
    assert "flip_consistency" in measured


def test_model_files_are_read_and_written_in_one_module():
    """Only the byte format of model files (weightsym.files.format: the one reader and the one writer) opens
    safetensors files: no other module calls safetensors' readers or writers."""
    users = []
    for path in sorted(SRC.rglob("*.py")):
        file = str(path.relative_to(SRC))
        if re.search(r"\bsafetensors\b.*\bimport\b|import safetensors", path.read_text()) and \
                file != "files/format.py":
            users.append(file)
    assert users == []


PENDING_CITATIONS: set[str] = set()  # files still citing the pre-repository SCIENCE.md: none


def test_science_citations_point_at_sections_of_docs_science_md():
    science = (REPO / "docs" / "science.md").read_text()
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[ .]", science, re.M))
    stale, broken = set(), []
    for root in ("src", "tests", "docs", "README.md"):
        paths = [REPO / root] if root.endswith(".md") else (REPO / root).rglob("*")
        for path in paths:
            if not path.is_file() or path.suffix not in (".py", ".md"):
                continue
            text = path.read_text()
            if "SCIENCE.md" in text and path.name != "test_layering.py":
                stale.add(str(path.relative_to(REPO)))
            for cited in re.findall(r"docs/science\.md`?\s*§\s*(\d+(?:\.\d+)?)", text):
                if cited not in sections:
                    broken.append(f"{path.relative_to(REPO)} cites §{cited}")
    assert stale == PENDING_CITATIONS, stale
    assert broken == []
    assert {"1.1", "1.2", "1.3", "1.4", "2", "3"} <= sections


def test_d4_is_defined_once_and_the_analysis_and_the_tyings_use_it():
    import numpy as np
    import torch

    from weightsym.analysis.kernel_symmetry import D4_TRANSFORMS, applicable_transforms
    from weightsym.symmetry import d4
    from weightsym.symmetry.orbits import _apply, plane_orbits

    assert list(D4_TRANSFORMS) == list(d4.ELEMENTS) and applicable_transforms((1, 3)) == d4.RECTANGULAR
    grid = np.arange(16).reshape(4, 4)
    for name, transform in D4_TRANSFORMS.items():
        assert np.array_equal(transform(torch.from_numpy(grid)).numpy(), d4.apply(name, grid))
    assert np.array_equal(_apply("rowflip", grid), d4.apply("vflip", grid))
    assert np.array_equal(_apply("colflip", grid), d4.apply("hflip", grid))
    # the spatial tying named after an element is exactly the invariance under it: hflip ties (i, j) with (i, k-1-j)
    ids = plane_orbits(("colflip",), 3, 3).reshape(3, 3)
    assert np.array_equal(ids, d4.apply("hflip", ids))
    # nothing else spells out the group's elements
    spelled = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
               if re.search(r"def \w*(antitranspose|rot270)\w*|[\"']antitranspose[\"']\s*:\s*lambda", p.read_text())]
    assert spelled == []
