"""The package layering of docs/STYLE.md holds: ``analysis`` and ``fast`` never import ``train``, ``fast`` never imports
``models``, ``nn`` knows only ``symmetry`` (and the model registry, to rebuild a model a file describes); model files
are read in one module; the science the code cites is in docs/science.md."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "weightsym"


def _imports(path: Path) -> set[str]:
    """Every ``weightsym.*`` module a file imports, at the top or inside functions (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("weightsym")}


def _package_imports(package: str) -> dict[str, set[str]]:
    return {str(p.relative_to(SRC)): _imports(p) for p in sorted((SRC / package).rglob("*.py"))}


def _offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{file} imports {name}" for file, names in _package_imports(package).items() for name in sorted(names)
            if any(name == f or name.startswith(f + ".") for f in forbidden)]


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
            f"from weightsym.fast import export_dense, optimize; from weightsym.nn import load_model; "
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


def test_analysis_and_fast_never_import_train_and_fast_never_imports_models():
    """Not even inside a function: reading a model file goes through weightsym.nn (load_model, read_model_file)."""
    assert _offenders("analysis", ("weightsym.train", "weightsym.lm", "weightsym.cli")) == []
    assert _offenders("fast", ("weightsym.train", "weightsym.models", "weightsym.lm", "weightsym.data",
                               "weightsym.analysis", "weightsym.cli")) == []


def test_nn_knows_only_symmetry_and_the_registry_it_rebuilds_models_from():
    outside = {file: sorted({".".join(n.split(".")[:2]) for n in names
                             if not n.startswith(("weightsym.nn", "weightsym.symmetry"))})
               for file, names in _package_imports("nn").items()}
    outside = {file: names for file, names in outside.items() if names}
    assert outside == {"nn/modelfile.py": ["weightsym.models"]}  # load_model: the architecture by registry name
    assert _offenders("symmetry", ("weightsym.nn", "weightsym.fast", "weightsym.train", "weightsym.models")) == []


def test_models_never_import_symmetry_code():
    assert _offenders("models", ("weightsym.nn", "weightsym.symmetry", "weightsym.fast", "weightsym.train")) == []


def test_model_files_are_read_and_written_in_one_module():
    """Only weightsym.nn.modelfile opens safetensors files: no other module calls safetensors' readers or writers."""
    users = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        if re.search(r"\bsafetensors\b.*\bimport\b|import safetensors", text) and path.name != "modelfile.py":
            users.append(str(path.relative_to(SRC)))
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
