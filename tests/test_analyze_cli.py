"""`weightsym analyze CHECKPOINT`: training checkpoints are rebuilt as models (symmetric or not) and measured for
flip/shift consistency on their test set; weight files and state dicts still give the kernel report."""

import json

import pytest
import torch
from PIL import Image

import weightsym as ws
from weightsym.cli import main


def _train_tiny(out, data_dir, **options):
    from weightsym.train import TrainConfig, train

    config = TrainConfig(model="fmnist-cnn", model_args={"width": 8}, train_subset=300, epochs=1, batch_size=50,
                         lr=0.05, schedule="constant", out=str(out), data_dir=str(data_dir), progress=False,
                         **options)
    return train(config)


def _open_png(path):
    with Image.open(path) as image:
        image.load()
        assert image.size[0] >= 200 and image.size[1] >= 200, (path, image.size)


@pytest.mark.parametrize("spatial", [None, "hflip"])
def test_analyze_training_checkpoint(tmp_path, shared_data, capsys, spatial):
    # every conv symmetric (symmetrize leaves the stem dense by default): then the whole network is mirror-invariant
    options = {"spatial": spatial, "include": ["stem", "conv*"]} if spatial else {}
    _train_tiny(tmp_path / "run", shared_data, **options)
    out = tmp_path / "report"
    code = main(["analyze", str(tmp_path / "run" / "checkpoint.safetensors"), "--data-dir", str(shared_data),
                 "--out", str(out), "--max-batches", "2"])
    assert code == 0
    assert "flip_consistency" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"report.md", "analysis.json", "kernels.png", "score_depth.png"}
    for name in ("kernels.png", "score_depth.png"):
        _open_png(out / name)
    result = json.loads((out / "analysis.json").read_text())
    consistency = result["consistency"]
    assert set(consistency) == {"flip_consistency", "shift_consistency (max_shift=4, reflect)", "accuracy"}
    assert all(0.0 <= value <= 1.0 for value in consistency.values())
    assert result["source"]["model"] == "fmnist-cnn" and result["source"]["test_data"] == "fashion-mnist"
    assert [layer["name"] for layer in result["layers"]] == ["stem", "conv1", "conv2"]
    if spatial == "hflip":
        # hflip-symmetric kernels + even-sized max-pools + global pooling: the network is mirror-invariant
        assert consistency["flip_consistency"] == 1.0
        assert result["source"]["symmetry"] == {"spatial": "hflip", "include": ["stem", "conv*"]}
        assert all(layer["transform_scores"]["hflip"] == pytest.approx(1.0) for layer in result["layers"])
        assert all(layer["symmetry"] == "hflip" for layer in result["layers"])
    report = (out / "report.md").read_text()
    assert "## Consistency" in report and "fmnist-cnn" in report


def test_analyze_checkpoint_with_expanded_inputs(tmp_path, shared_data):
    _train_tiny(tmp_path / "run", shared_data, expand_input=2)
    out = tmp_path / "report"
    assert main(["analyze", str(tmp_path / "run" / "best.safetensors"), "--data", "fmnist", "--data-dir",
                 str(shared_data), "--out", str(out), "--max-batches", "1", "--max-shift", "2"]) == 0
    result = json.loads((out / "analysis.json").read_text())
    assert result["source"]["expand_input"] == 2
    assert set(result["consistency"]) == {"flip_consistency", "shift_consistency (max_shift=2, reflect)", "accuracy"}
    assert all(0.0 <= value <= 1.0 for value in result["consistency"].values())


def test_analyze_rejects_data_with_another_input_shape(tmp_path, shared_data, capsys):
    _train_tiny(tmp_path / "run", shared_data)
    code = main(["analyze", str(tmp_path / "run" / "checkpoint.safetensors"), "--data", "mnist1d",
                 "--data-dir", str(shared_data), "--out", str(tmp_path / "x")])
    assert code == 2
    assert "trained on fashion-mnist" in capsys.readouterr().err


def test_analyze_weight_file_and_state_dict(tmp_path, capsys):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Conv2d(4, 4, 3, stride=2))
    ws.symmetrize(net, spatial="dihedral", include=["0", "1"])
    weights = ws.save(net, tmp_path / "w.safetensors")
    assert main(["analyze", str(weights), "--data", "fmnist", "--out", str(tmp_path / "a")]) == 0
    assert "ignored" in capsys.readouterr().out
    result = json.loads((tmp_path / "a" / "analysis.json").read_text())
    assert result["consistency"] is None
    assert [layer["score"] for layer in result["layers"]] == pytest.approx([1.0, 1.0])
    _open_png(tmp_path / "a" / "kernels.png")

    plain = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3))
    from safetensors.torch import save_file

    save_file(plain.state_dict(), tmp_path / "plain.safetensors")
    assert main(["analyze", str(tmp_path / "plain.safetensors"), "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "analysis.json").read_text())["layers"][0]["name"] == "0"


def test_analyze_refuses_pickled_checkpoints(tmp_path, capsys):
    """Nothing a user hands us is unpickled: a .pt file is refused with a conversion hint, not loaded."""
    path = tmp_path / "plain.pt"
    torch.save(torch.nn.Conv2d(2, 4, 3).state_dict(), path)
    assert main(["analyze", str(path), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "only .safetensors" in err and "save_file" in err and len(err.strip().splitlines()) == 1
