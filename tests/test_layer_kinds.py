"""The one table of layer kinds (weightsym.nn.layers): Conv3d and ConvTranspose2d added through it work end to end,
and no other module lists layer types."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import weightsym as ws
from weightsym.fast import export_dense, fold_training, optimize
from weightsym.fast.export import load_dense
from weightsym.files import ModelFileError, attach_from_metadata, read_model_file
from weightsym.nn import symmetric_parametrization
from weightsym.nn.layers import FAST_PATH_READERS, KINDS, STEMS, layer_kind, markdown
from weightsym.nn.parametrization import KERNEL

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "weightsym"

# ---- Conv3d and ConvTranspose2d through the table ---------------------------------------------------------------------
# (constructor, channel groups, depth slices, input shape); every channel plane is 4 x 4 (per group), kernels 3 x 3
LAYERS = {
    "Conv3d": (lambda: nn.Conv3d(4, 4, (2, 3, 3), padding=(0, 1, 1)), 1, 2, (2, 4, 3, 5, 5)),
    "Conv3d-groups": (lambda: nn.Conv3d(8, 8, (2, 3, 3), groups=2), 2, 2, (2, 8, 2, 4, 4)),
    "ConvTranspose2d": (lambda: nn.ConvTranspose2d(4, 4, 3, stride=2), 1, 1, (2, 4, 3, 3)),
    "ConvTranspose2d-groups": (lambda: nn.ConvTranspose2d(8, 8, 3, groups=2, padding=1), 2, 1, (2, 8, 4, 4)),
    # added later through the table alone (src/weightsym/nn/layers.py, one row): the proof that a kind is one line
    "ConvTranspose3d": (lambda: nn.ConvTranspose3d(4, 4, (2, 3, 3)), 1, 2, (2, 4, 2, 3, 3)),
    "ConvTranspose3d-groups": (lambda: nn.ConvTranspose3d(8, 8, (2, 3, 3), groups=2), 2, 2, (2, 8, 2, 3, 3)),
}
N = 4  # channel plane per group
# (free, stored) per 4 x 4 channel plane, from the orbit formulas of docs/science.md §1.1 (n = 4)
CHANNEL = {"triangular": (N * (N + 1) // 2,) * 2, "centrosymmetric": (N * N // 2,) * 2,
           "bisymmetric": (N * (N + 2) // 4,) * 2, "block": (N * N // 4,) * 2, "eighth": (N * (N + 2) // 8,) * 2,
           "repeat:2:out": (N * N // 2,) * 2, "repeat:2:in": (N * N // 2,) * 2,
           "average": (N * (N + 1) // 2, N * N), "eigen": (N * (N + 1) // 2,) * 2, "lowrank:2": (2 * N - 1, 2 * N + 2)}
# free values per 3 x 3 kernel: transpose k(k+1)/2, flips k·⌈k/2⌉, rot180 (k²+1)/2, dihedral 3, repeat:3:kw kh·kw/3
SPATIAL = {"transpose": 6, "hflip": 6, "vflip": 6, "rot180": 5, "dihedral": 3, "repeat:3:kw": 3}
COMPOSITE = ["triangular+dihedral", "block+hflip", "average+rot180", "repeat:2:out+transpose"]
MAPS = ("average", "eigen", "lowrank")  # matrix maps: symmetric up to rounding, not bit for bit


def expected_counts(layer: str, spec: str) -> tuple[int, int]:
    """(free, stored) of the layer's weight: groups x depth slices x (channel orbits or n²) x (kernel orbits or 9)."""
    _, groups, depth, _ = LAYERS[layer]
    channel, spatial = spec.split("+") if "+" in spec else (spec, None) if spec in CHANNEL else (None, spec)
    free, stored = CHANNEL[channel] if channel else (N * N, N * N)
    taps = SPATIAL[spatial] if spatial else 9
    return groups * depth * free * taps, groups * depth * stored * taps


SPECS = list(CHANNEL) + list(SPATIAL) + COMPOSITE
CASES = [(layer, spec) for layer in LAYERS for spec in SPECS]


def test_the_grid_covers_every_symmetry_of_the_registry():
    names = {ws.get_symmetry(s).name for s in SPECS} | {ws.get_symmetry(s).spatial.name for s in COMPOSITE}
    assert set(ws.available_symmetries("channel")) | set(ws.available_symmetries("spatial")) <= names


def _make(layer: str) -> nn.Sequential:
    return nn.Sequential(LAYERS[layer][0]())


@pytest.mark.parametrize("layer,spec", CASES)
def test_symmetrize_count_train_save_unsymmetrize_export(tmp_path, layer, spec):
    torch.manual_seed(0)
    model = _make(layer)
    x = torch.randn(LAYERS[layer][3])
    report = ws.symmetrize(model, plan={"0": spec}, strict=True)
    free, stored = expected_counts(layer, spec)
    row = report.rows[0]
    assert (row.kind, row.symmetry, row.free, row.stored) == (layer.split("-")[0], ws.get_symmetry(spec).spec,
                                                              free, stored)
    weight = model[0].weight
    bias = model[0].bias.numel()
    assert ws.count_parameters(model) == ws.ParameterCount(dense=weight.numel() + bias, stored=stored + bias,
                                                           free=free + bias)
    param = symmetric_parametrization(model[0], "weight")
    atol = 1e-6 if any(spec.startswith(m) for m in MAPS) else 0.0
    assert param.holds(weight, atol)

    # one training step: the free values move, the symmetry holds
    before = weight.detach().clone()
    model(x).square().mean().backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    after = model[0].weight.detach().clone()
    assert not torch.equal(before, after) and param.holds(after, atol)
    assert model[0].parametrizations.weight.original.numel() == stored
    with torch.no_grad():
        y = model(x)

    # save / load through weightsym.files: the records (kind included) expand and rebuild the same layer
    path = ws.save(model, tmp_path / "m.safetensors")
    mf = read_model_file(path)
    assert mf.layers["0.weight"]["kind"] == layer.split("-")[0]
    assert torch.equal(mf.dense_state()["0.weight"], after)
    again = _make(layer)
    ws.symmetrize(again, plan={"0": spec})
    ws.load(path, again)
    rebuilt = attach_from_metadata(_make(layer), mf.layers)
    rebuilt.load_state_dict(mf.model_state())
    with torch.no_grad():
        assert torch.equal(again(x), y) and torch.equal(rebuilt(x), y)

    # dense export into the plain layer
    export_dense(model, tmp_path / "dense.safetensors")
    plain = _make(layer)
    load_dense(tmp_path / "dense.safetensors", plain)
    # unsymmetrize: the plain class, identical outputs
    ws.unsymmetrize(model)
    assert type(model[0]) is type(plain[0]) and not hasattr(model[0], "parametrizations")
    with torch.no_grad():
        assert torch.equal(plain(x), y) and torch.equal(model(x), y)


def test_the_transposed_plane_is_out_by_in_per_group():
    """ConvTranspose2d stores (in, out/groups, kh, kw): repeat along *out* repeats its second axis, along *in* the
    input channels of each group (not of the whole layer)."""
    out = nn.ConvTranspose2d(4, 8, 3, groups=2)              # weight (4, 4, 3, 3): 2 in x 4 out per group
    ws.nn.attach(out, "weight", "repeat:2:out", row_blocks=2)
    w = out.weight
    assert torch.equal(w[:, :2], w[:, 2:]) and not torch.equal(w[:2], w[2:])
    inward = nn.ConvTranspose2d(8, 4, 3, groups=2)           # weight (8, 2, 3, 3): 4 in x 2 out per group
    ws.nn.attach(inward, "weight", "repeat:2:in", row_blocks=2)
    w = inward.weight
    assert torch.equal(w[0:2], w[2:4]) and torch.equal(w[4:6], w[6:8]) and not torch.equal(w[0:4], w[4:8])
    tri = nn.ConvTranspose2d(4, 4, 1)
    ws.nn.attach(tri, "weight", "triangular")
    assert torch.equal(tri.weight[..., 0, 0], tri.weight[..., 0, 0].T)


def test_conv3d_spatial_symmetries_tie_each_depth_slice_on_its_own():
    conv = nn.Conv3d(2, 3, (2, 3, 3))
    ws.nn.attach(conv, "weight", "dihedral")
    w = conv.weight
    assert torch.equal(w, w.flip(-1)) and torch.equal(w, w.flip(-2)) and torch.equal(w, w.transpose(-1, -2))
    assert not torch.equal(w[:, :, 0], w[:, :, 1])                  # the depth slices stay independent
    assert conv.parametrizations.weight.original.numel() == 3 * 2 * 2 * 3


def test_gather_path_only_kinds_stay_gathered_and_optimize_materialises_them():
    torch.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose2d(4, 4, 3), nn.ReLU(), nn.ConvTranspose2d(4, 4, 3))
    ws.symmetrize(model, plan={"*": "block+dihedral"})
    report = fold_training(model, policy="always")
    assert [(r.name, r.path) for r in report.rows] == [("0", "gather"), ("2", "gather")]
    assert all("gather path only" in r.why for r in report.rows) and report.folded == []
    assert not any(KERNEL in m._modules for m in model.modules())
    with pytest.raises(ValueError, match="not a layer that can train through a fold"):
        fold_training(model, layers=["0"])
    x = torch.randn(2, 4, 5, 5)
    fast = optimize(model)
    assert {r.chosen for r in fast.optimize_report.rows} == {"dense"}
    assert type(fast[0]) is nn.ConvTranspose2d
    with torch.no_grad():
        assert torch.equal(fast(x), model(x))


def test_errors_name_the_layer_its_shape_and_what_works():
    model = nn.Sequential(nn.Conv3d(4, 6, 3), nn.Conv3d(6, 6, (3, 1, 1)))
    with pytest.raises(ws.SymmetryError) as error:
        ws.symmetrize(model, plan={"0": "triangular"}, strict=True)
    message = str(error.value)
    assert "\n" not in message and "Conv3d `0`" in message and "(6, 4, 3, 3, 3)" in message
    assert "use another symmetry or exclude this layer" in message
    with pytest.raises(ws.SymmetryError, match=r"Conv3d `1` weight \(6, 6, 3, 1, 1\).*kh x kw plane of each"):
        ws.symmetrize(model, plan={"1": "dihedral"}, strict=True)
    report = ws.symmetrize(model, plan={"1": "dihedral"})      # not strict: left dense, the report says why
    assert report.rows[1].symmetry is None and "depth slices" in report.rows[1].note


def test_model_files_record_the_kind_only_where_the_axes_move(tmp_path):
    model = nn.Sequential(nn.Conv2d(4, 4, 3), nn.ConvTranspose2d(4, 4, 3), nn.Conv2d(4, 4, 3))
    ws.symmetrize(model, plan={"*": "triangular"})
    path = ws.save(model, tmp_path / "m.safetensors")
    layers = read_model_file(path).layers
    assert "kind" not in layers["0.weight"] and layers["1.weight"]["kind"] == "ConvTranspose2d"
    # a record whose kind is not in the table, or does not match the model, names the layer
    from weightsym.files.format import write_model_file

    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    bad = json.loads(json.dumps(layers))
    bad["1.weight"]["kind"] = "ConvTranspose9d"
    with pytest.raises(ModelFileError, match="kind 'ConvTranspose9d' is not a layer kind"):
        read_model_file(write_model_file(tmp_path / "bad.safetensors", "weights", tensors,
                                         {"layers": bad, "aliases": {}, "architecture": None, "user": {}}))
    other = nn.Sequential(nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3))
    ws.symmetrize(other, plan={"*": "triangular"})
    with pytest.raises(ValueError, match="layer `1.weight`.*ConvTranspose2d"):
        ws.load(path, other)


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None,
                    reason="SKIPPED LOUDLY: onnx/onnxscript not installed (pip install 'weightsym[onnx]')")
def test_onnx_export_covers_the_gather_path_kinds(tmp_path):
    import onnx
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose2d(4, 4, 3), nn.ReLU(), nn.ConvTranspose2d(4, 4, 3)).eval()
    ws.symmetrize(model, plan={"*": "block+hflip"})
    x = torch.randn(1, 4, 4, 4)
    proto = onnx.load(str(ws.fast.export_onnx(model, tmp_path / "m.onnx", x)))
    got = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(got), model(x), rtol=1e-4, atol=1e-5)


# ---- the table is the one place -----------------------------------------------------------------------------------
def test_the_table_is_consistent_and_documented():
    names = [k.name for k in KINDS]
    assert len(names) == len(set(names))
    for kind in KINDS:  # fold kernels and BatchNorm folding read the weight as (out, in, *kernel)
        if kind.fold or kind.bn_fold:
            assert not kind.transposed and kind.kernel_dims <= 2, kind.name
        assert kind.fold in ("linear", "conv", None) and kind.blocks in ("groups", "gates", "qkv", "slices")
        assert isinstance(kind.type, type) or "." in kind.type  # a class, or the dotted path of a library's class
    # the docs show the table as the table prints it (regenerate: python -c "from weightsym.nn.layers import
    # markdown; print(markdown())")
    assert markdown() in (REPO / "docs" / "fast.md").read_text()
    assert all(f"`{name}`" in (REPO / "README.md").read_text() for name in names)


def _layer_classes() -> set[str]:
    """Names of the torch.nn classes that are, or are families of, layer kinds (subclasses included: LazyConv2d,
    ConvTranspose1d, ...), plus the stems and fast-path readers of the table."""
    roots = tuple(k.type for k in KINDS if isinstance(k.type, type)) + STEMS + tuple(t for t, _ in FAST_PATH_READERS) + \
        (nn.RNNBase, nn.modules.conv._ConvNd)
    names = {name for name, obj in vars(nn).items() if isinstance(obj, type) and issubclass(obj, roots)}
    return names | {"RNNBase", "_ConvNd"}


# Files that may still name layer types, and why (an entry that stops being needed fails the test below).
ALLOWED = {
    "reproduce/small_runs.py": "sets padding_mode on the Conv2d layers of a plain model (a torch attribute, not "
                               "weight planes)",
    "reproduce/params.py": "finds the LSTM of the paper's language model to place ih symmetry (owned by reproduce/; "
                           "could ask layer_kind(m).blocks == 'gates')",
}


def _names_layer_types(source: str, classes: set[str]) -> list[str]:
    """Lines of ``source`` that refer to a layer class other than to build one (isinstance checks, tuples of types,
    annotations, imports)."""
    tree = ast.parse(source)
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in classes and id(node) not in called:
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch.nn"):
            found += [(node.lineno, f"import {a.name}") for a in node.names if a.name in classes]
    return [f"line {line}: {what}" for line, what in sorted(found)]


def test_no_module_outside_the_table_lists_layer_kinds():
    """Only weightsym/nn/layers.py names layer types; models/ build their own plain-torch layers (and initialise
    them by type) and never read the table (models never import symmetry code)."""
    classes = _layer_classes()
    assert {"Conv2d", "Linear", "LSTM", "MultiheadAttention", "Conv3d", "ConvTranspose2d", "RNNBase"} <= classes
    offenders, used = [], set()
    for path in sorted(SRC.rglob("*.py")):
        rel = str(path.relative_to(SRC))
        if rel == "nn/layers.py" or rel.startswith("models/"):
            continue
        lines = _names_layer_types(path.read_text(), classes)
        if lines and rel in ALLOWED:
            used.add(rel)
        elif lines:
            offenders += [f"{rel} {line}" for line in lines]
    assert offenders == [], "read weightsym.nn.layers instead:\n" + "\n".join(offenders)
    assert used == set(ALLOWED), f"stale allow-list entries: {sorted(set(ALLOWED) - used)}"
    # the scanner finds what it looks for, and leaves building a layer alone
    probe = "isinstance(m, nn.Conv2d)\nconv = nn.Conv2d(3, 3, 3)\nfrom torch.nn import LSTM, ReLU\nx: torch.nn.GRU\n"
    assert _names_layer_types(probe, classes) == ["line 1: Conv2d", "line 3: import LSTM", "line 4: GRU"]
