"""Per-layer symmetry plans and repeated symmetrize calls (issue 10): one call can mix symmetries by module glob, a
second call can add symmetry to other layers, and a deep copy can be unsymmetrized without touching the original."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import weightsym as ws
from weightsym.models import create_model, wrn_param_count


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.LSTM(8, 8), nn.Linear(8, 2))


def test_unsymmetrizing_a_deep_copy_leaves_the_original_working():
    """Issue 10: parametrize's generated class was shared by the copy, and removing the copy's parametrization
    deleted the original's `weight` property (AttributeError: ... has no attribute 'weight')."""
    model = _mlp()
    ws.symmetrize(model, channel="triangular", include=["1", "3"])
    x = torch.randn(3, 8)
    before = model[1](x)
    plain = ws.unsymmetrize(copy.deepcopy(model))
    assert type(plain[1]) is nn.Linear and type(plain[3]) is nn.LSTM and not ws.symmetric_layers(plain)
    assert torch.equal(model[1](x), before) and torch.equal(plain[1](x), before)
    assert [q for q, _, _ in ws.symmetric_layers(model)] == ["1.weight", "3.weight_hh_l0"]
    seq = torch.randn(5, 2, 8)
    assert torch.allclose(model[3](seq)[0], plain[3](seq)[0], atol=1e-6)
    # and symmetrizing more of the copy does not give the original new properties either
    twin = copy.deepcopy(model)
    ws.symmetrize(twin, channel="triangular", include=["2"], ih_gates="1111", hh_gates=None)
    assert [q for q, _, _ in ws.symmetric_layers(model)] == ["1.weight", "3.weight_hh_l0"]
    assert model[2].weight is model[2]._parameters["weight"]


def test_a_second_call_symmetrizes_other_layers_and_lists_the_first_ones():
    """Issue 10: a second call with a disjoint include used to fail with "already symmetric"."""
    model = _mlp()
    ws.symmetrize(model, channel="block", include=["1"])
    report = ws.symmetrize(model, channel="triangular", include=["2"])
    rows = {(r.name, r.tensor): r for r in report.rows}
    assert rows[("1", "weight")].symmetry == "block" and rows[("1", "weight")].note == "already symmetric"
    assert rows[("2", "weight")].symmetry == "triangular"
    assert {q: s.spec for q, _, s in ws.symmetric_layers(model)} == {"1.weight": "block", "2.weight": "triangular"}
    with pytest.raises(ValueError, match=r"layer `1` \(weight\) is already symmetric \(block\)"):
        ws.symmetrize(model, channel="triangular", include=["1"])


def test_a_plan_maps_globs_to_symmetries_first_match_wins():
    model = _mlp()
    report = ws.symmetrize(model, plan={"1": "block", "[12]": "triangular", "3": "average"})
    assert {(r.name, r.tensor): r.symmetry for r in report.rows} == {
        ("0", "weight"): None, ("1", "weight"): "block", ("2", "weight"): "triangular",
        ("3", "weight_ih_l0"): None, ("3", "weight_hh_l0"): "average", ("4", "weight"): None}  # ih: no gates
    assert next(r for r in report.rows if r.name == "0").note == "no plan entry"
    counts = ws.count_parameters(model)
    assert counts.dense - counts.stored == (64 - 16) + (64 - 36)  # block 8x8: 16 free; triangular: 36


def test_a_plan_is_checked_before_anything_changes():
    model = _mlp()
    with pytest.raises(ValueError, match="either plan= .* or channel="):
        ws.symmetrize(model, channel="block", plan={"1": "block"})
    with pytest.raises(ValueError, match="plan's globs choose the layers; leave include out"):
        ws.symmetrize(model, plan={"1": "block"}, include=["2"])
    with pytest.raises(ValueError, match="plan entry '1': unknown symmetry 'blok'"):
        ws.symmetrize(model, plan={"1": "blok"})
    with pytest.raises(ValueError, match="non-empty mapping"):
        ws.symmetrize(model, plan={})
    with pytest.raises(ws.SymmetryError, match="plan/exclude pattern 'conv9' matches no weight layer"):
        ws.symmetrize(model, plan={"conv9": "block"}, strict=True)
    with pytest.raises(ws.SymmetryError, match="triangular needs as many inputs as outputs"):
        ws.symmetrize(model, plan={"0": "triangular"}, strict=True)  # 4 -> 8 is not square
    assert not ws.symmetric_layers(model)


def wrn_mixed_counts() -> tuple[int, int]:
    """Closed forms for WRN-16-4-bottleneck with tri+spa on every conv2 and block on every conv1.

    Groups g = 1, 2, 3 have widths c = 64, 128, 256 and 2 blocks each; a bottleneck's middle width is m = c/4 and its
    first 1x1 conv maps ni -> m with ni = 16, 64, 128 in the first block of each group and ni = c in the second.
    conv2 (m x m x 3 x 3): tri+spa keeps m(m+1)/2 channel orbits x 6 spatial orbits of the 9 m^2 values.  conv1
    (m x ni, 1x1): block keeps ceil(m/2) ceil(ni/2) of m ni."""
    dense = wrn_param_count(16, 4, block="bottleneck")
    saved = 0
    for c, first_in in ((64, 16), (128, 64), (256, 128)):
        m = c // 4
        saved += 2 * (9 * m * m - m * (m + 1) // 2 * 6)
        for ni in (first_in, c):
            saved += m * ni - (-(-m // 2)) * (-(-ni // 2))
    return dense, dense - saved


def test_mixed_plan_counts_are_the_sum_of_per_layer_closed_forms():
    model = create_model("wrn-16-4-bottleneck")
    report = ws.symmetrize(model, plan={"*conv2": "tri+spa", "*conv1": "block"})
    dense, stored = wrn_mixed_counts()
    counts = ws.count_parameters(model)
    assert (counts.dense, counts.stored, counts.free) == (dense, stored, stored)
    assert len([r for r in report.symmetric if r.symmetry == "triangular+transpose"]) == 6
    assert len([r for r in report.symmetric if r.symmetry == "block"]) == 6
    assert report.totals()["dense"] - report.totals()["stored"] == dense - stored


def test_mixed_plan_cli_describe_and_plan_files(tmp_path, capsys):
    import json

    from weightsym.cli import main

    dense, stored = wrn_mixed_counts()
    assert main(["describe", "--model", "wrn-16-4-bottleneck", "--plan", "*conv2=tri+spa", "*conv1=block",
                 "--json"]) == 0
    out = capsys.readouterr().out
    totals = json.loads(out.strip().splitlines()[-1])
    assert (totals["dense"], totals["stored"]) == (dense, stored)
    assert out.count("| triangular+transpose |") == 6 and out.count("| block ") == 6
    plan_file = tmp_path / "plan.txt"
    plan_file.write_text("# the mixed plan\n*conv2 = tri+spa\n*conv1=block\n")
    assert main(["describe", "--model", "wrn-16-4-bottleneck", "--plan", str(plan_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == totals
    for argv, needle in [
        (["--plan", "*conv2=tri+sp"], "--plan '*conv2=tri+sp': unknown symmetry"),
        (["--plan", "*conv2"], "neither GLOB=SYMMETRY"),
        (["--plan", "*conv2=block", "--channel", "triangular"], "leave --channel out"),
        (["--plan", "*conv2=block", "*conv2=tri"], "'*conv2' is given twice"),
    ]:
        assert main(["describe", "--model", "wrn-16-4-bottleneck", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err


def test_mixed_plan_wrn_trains_saves_loads_exports_optimizes_and_analyzes(tmp_path, shared_data, capsys):
    """WRN-16-4-bottleneck with tri+spa on every conv2 and block on every conv1, through every step a model takes."""
    import importlib.util
    import json

    import numpy as np

    from weightsym.cli import main
    from weightsym.fast.export import load_dense

    dense, stored = wrn_mixed_counts()
    run = tmp_path / "run"
    assert main(["train", "--model", "wrn-16-4-bottleneck", "--plan", "*conv2=tri+spa", "*conv1=block",
                 "--data-dir", str(shared_data), "--train-subset", "64", "--batch-size", "32", "--epochs", "1",
                 "--lr", "0.05", "--no-progress", "--out", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["params"]["dense"], summary["params"]["stored"]) == (dense, stored) and summary["steps"] == 2
    assert summary["symmetry"] == {"plan": {"*conv2": "tri+spa", "*conv1": "block"}}

    model, description = ws.load_model(run / "checkpoint.safetensors")  # saved and loaded
    assert description.checksum == "verified" and description.kind == "classifier"
    assert sorted({entry["symmetry"] for entry in description.layers.values()}) == ["block", "triangular+transpose"]
    counts = ws.count_parameters(model)
    assert (counts.dense, counts.stored) == (dense, stored)
    for qualified, module, symmetry in ws.symmetric_layers(model):
        assert symmetry.holds(module.weight.detach(), row_blocks=module.groups)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)

    assert main(["export", str(run / "checkpoint.safetensors"), "--out", str(tmp_path / "dense.safetensors")]) == 0
    plain = create_model("wrn-16-4-bottleneck").eval()
    load_dense(tmp_path / "dense.safetensors", plain)
    with torch.no_grad():
        assert torch.allclose(plain(x), reference, rtol=1e-4, atol=1e-5)

    fast = ws.fast.optimize(model, example_input=x)  # every symmetric layer: its own kernel choice
    assert len(fast.optimize_report.rows) == 12
    assert {row.symmetry for row in fast.optimize_report.rows} == {"block", "triangular+transpose"}
    with torch.no_grad():
        assert torch.allclose(fast(x), reference, rtol=1e-4, atol=1e-4)

    if importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxscript"):
        import onnx
        from onnx.reference import ReferenceEvaluator

        assert main(["export", str(run / "checkpoint.safetensors"), "--format", "onnx", "--out",
                     str(tmp_path / "m.onnx")]) == 0
        proto = onnx.load(str(tmp_path / "m.onnx"))
        onnx.checker.check_model(proto)
        got = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x[:1].numpy()})[0]
        assert np.allclose(got, reference[:1].numpy(), rtol=1e-3, atol=1e-4)

    assert main(["analyze", str(run / "checkpoint.safetensors"), "--data-dir", str(shared_data), "--max-batches",
                 "1", "--out", str(tmp_path / "analysis")]) == 0
    analysis = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    by_name = {layer["name"]: layer for layer in analysis["layers"]}
    conv2 = [name for name in by_name if name.endswith("conv2")]
    assert len(conv2) == 6 and all(by_name[n]["symmetry"] == "triangular+transpose" for n in conv2)
    assert all(by_name[n]["transform_scores"]["transpose"] == pytest.approx(1.0) for n in conv2)
    assert by_name["conv0"]["symmetry"] is None and "flip_consistency" in analysis["consistency"]
    assert main(["describe", str(run / "checkpoint.safetensors")]) == 0
    out = capsys.readouterr().out
    assert out.count("| triangular+transpose |") == 6 and "checksum verified" in out
