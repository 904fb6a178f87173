"""analyze(): files written, figures readable, JSON consistent with kernel_symmetry; the `analyze` subcommand."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from weightsym.analysis import analyze, kernel_symmetry
from weightsym.cli import main


def net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )


def check_png(path, min_side=200, max_side=4000):
    with Image.open(path) as image:
        image.load()
        width, height = image.size
    assert min_side <= width <= max_side and min_side <= height <= max_side, (path.name, image.size)


def test_analyze_module_with_loader(tmp_path):
    model = net()
    loader = [(torch.randn(8, 1, 12, 12), torch.zeros(8, dtype=torch.long)) for _ in range(3)]
    result = analyze(model, tmp_path / "out", loader=loader, title="test net", max_batches=2)
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"report.md", "analysis.json", "kernels.png", "score_depth.png"}
    for name in ("kernels.png", "score_depth.png"):
        check_png(out / name)
    saved = json.loads((out / "analysis.json").read_text())
    records = kernel_symmetry(model)
    assert [layer["name"] for layer in saved["layers"]] == [r.name for r in records] == ["0", "2", "4"]
    assert [layer["score"] for layer in saved["layers"]] == pytest.approx([r.score for r in records])
    assert [layer["strided"] for layer in saved["layers"]] == [False, False, True]
    assert saved["summary"]["layers"] == 3
    assert saved["summary"]["mean_score"] == pytest.approx(sum(r.score for r in records) / 3)
    assert saved["summary"]["mean_score_strided"] == pytest.approx(records[2].score)
    consistency = saved["consistency"]
    assert set(consistency) == {"flip_consistency", "shift_consistency (max_shift=4, reflect)"}
    assert all(0.0 <= v <= 1.0 for v in consistency.values())
    report = (out / "report.md").read_text()
    assert report.startswith("# test net")
    assert "![mean kernels](kernels.png)" in report and "flip_consistency" in report
    assert f"{records[2].score:.3f}" in report and "`4`" in report
    assert result["title"] == "test net" and len(result["files"]) == 4


def test_analyze_state_dict_from_safetensors(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in net().state_dict().items()}, str(path))
    from weightsym.analysis import load_state_dict

    result = analyze(load_state_dict(path), tmp_path / "sd")
    assert result["consistency"] is None
    assert [layer["stride"] for layer in result["layers"]] == [None, None, None]
    check_png(tmp_path / "sd" / "score_depth.png")
    with pytest.raises(ValueError, match="needs a model"):
        analyze(load_state_dict(path), tmp_path / "sd2", loader=[torch.zeros(1, 1, 4, 4)])


def test_many_layers_and_nan_scores_make_sane_figures(tmp_path):
    layers = [nn.Conv2d(4, 4, 3, stride=2 if i % 5 == 4 else 1) for i in range(30)]
    model = nn.Sequential(*layers)
    with torch.no_grad():
        layers[3].weight.zero_()  # S is NaN for a zero mean kernel
    result = analyze(model, tmp_path / "big")
    assert result["layers"][3]["score"] is None  # NaN → null in JSON
    assert math.isnan(kernel_symmetry(model)[3].score)
    check_png(tmp_path / "big" / "kernels.png")
    check_png(tmp_path / "big" / "score_depth.png")
    saved = json.loads((tmp_path / "big" / "analysis.json").read_text())
    assert len(saved["layers"]) == 30 and saved["layers"][3]["score"] is None
    assert [layer["strided"] for layer in saved["layers"]] == [i % 5 == 4 for i in range(30)]
    finite = [r.score for r in kernel_symmetry(model) if not math.isnan(r.score)]
    assert saved["summary"]["mean_score"] == pytest.approx(sum(finite) / len(finite))


def test_analyze_subcommand_on_a_safetensors_checkpoint(tmp_path, monkeypatch, capsys):
    path = tmp_path / "ckpt.safetensors"
    save_file({k: v.contiguous() for k, v in net().state_dict().items()}, str(path))
    assert main(["analyze", str(path), "--out", str(tmp_path / "cli"), "--max-batches", "2"]) == 0
    assert "3 conv layers" in capsys.readouterr().out
    check_png(tmp_path / "cli" / "kernels.png")
    assert main(["analyze", str(path)]) == 0
    assert (tmp_path / "ckpt_analysis" / "report.md").exists()
    assert main(["analyze", str(tmp_path / "nope.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "CHECKPOINT" in err and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_a_model_without_conv_layers_gets_a_report_that_says_so(tmp_path, capsys):
    """An MLP has no kernels: the figures and the report say "no conv layers" instead of showing an empty grid."""
    mlp = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    result = analyze(mlp, tmp_path / "mlp", title="mlp")
    assert result["summary"]["layers"] == 0 and result["layers"] == []
    assert "No 2-D conv layers with kernels larger than 1×1" in (tmp_path / "mlp" / "report.md").read_text()
    for name in ("kernels.png", "score_depth.png"):
        with Image.open(tmp_path / "mlp" / name) as image:
            pixels = np.asarray(image.convert("L"))
        assert (pixels < 128).mean() > 0.005  # the message is drawn: dark text, not a blank canvas
        assert image.size[0] >= 400


def test_weightsym_weight_files_are_expanded_and_kept_in_network_order(tmp_path):
    import weightsym as ws
    from weightsym.analysis import load_state_dict

    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Conv2d(4, 4, 3, padding=1) for _ in range(12)])
    ws.symmetrize(model, channel="triangular", spatial="dihedral")  # first and last stay dense
    path = ws.save(model, tmp_path / "w.safetensors")
    state = load_state_dict(path)
    assert not any("parametrizations" in key for key in state)
    from_module = kernel_symmetry(model)
    from_file = kernel_symmetry(state)
    assert [r.name for r in from_file] == [r.name for r in from_module] == [str(i) for i in range(12)]
    for a, b in zip(from_module, from_file):
        assert b.score == pytest.approx(a.score, abs=1e-12)
    assert from_file[5].score == pytest.approx(1.0) and from_file[5].residuals["triangular"] < 1e-6
    assert from_file[0].score < 1.0
    assert kernel_symmetry(state, residuals=False)[5].residuals == {}


