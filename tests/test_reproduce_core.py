"""The core reproduction studies (issue 4, items 1, 3, 4): params, width-sweep, universal-approximation.

Each study runs end to end in its ``--smoke`` mode; the numbers it reports are checked against independent formulas.
"""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image
import torch

import weightsym as ws
from weightsym.reproduce import (
    get_study,
    list_studies,
    params,
    universal_approximation,
    width_sweep,
)


def tri_saved(channels: int, taps: int = 9) -> int:
    """Parameters triangular symmetry removes from one C x C conv with ``taps`` spatial taps: taps * C(C-1)/2."""
    return taps * channels * (channels - 1) // 2


def test_studies_are_registered():
    for name in ("params", "width-sweep", "universal-approximation"):
        assert name in list_studies()
        study = get_study(name)
        assert study.NAME == name and study.TITLE and study.BUDGET


# --- params -------------------------------------------------------------------------------------------------------


def test_resnet101_triangular_saves_almost_a_quarter():
    row = params.count_row("resnet-101", "triangular")
    # the 3x3 conv of every bottleneck: 3, 4, 23, 3 blocks of width 64, 128, 256, 512
    expected = sum(blocks * tri_saved(c) for blocks, c in ((3, 64), (4, 128), (23, 256), (3, 512)))
    assert row["dense"] == 44_549_160
    assert row["dense"] - row["stored"] == expected
    assert 23.0 < row["saved_pct"] < 26.0  # the paper: "almost 25% fewer parameters"
    assert row["layers"] == 33


def test_params_smoke_run(tmp_path):
    payload = params.run(tmp_path, smoke=True)
    saved = json.loads((tmp_path / "params.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(payload["rows"]))
    assert (tmp_path / "params.png").stat().st_size > 1000
    markdown = (tmp_path / "params.md").read_text()
    assert "Command:" in markdown and "Machine:" in markdown and "### Verdict" in markdown
    assert "SMOKE RUN (--smoke)" in markdown.split("Command:")[0]  # said before anything else
    with Image.open(tmp_path / "params.png") as image:
        assert image.info.get("weightsym-smoke") == "1" and image.convert("RGB").getpixel((2, 2)) == (200, 30, 30)

    rows = {(r["model"], r["placement"], r["symmetry"]): r for r in payload["rows"]}
    for placement in ("paper", "default"):
        for symmetry in ["dense"] + params.SMOKE_SYMMETRIES:
            assert ("wrn-16-4-bottleneck", placement, symmetry) in rows
    # WRN-16-4 bottleneck: middle convs of width 16, 32, 64, two blocks each
    tri = rows[("wrn-16-4-bottleneck", "paper", "triangular")]
    assert tri["dense"] == 219_482
    assert tri["dense"] - tri["stored"] == sum(2 * tri_saved(c) for c in (16, 32, 64))
    # spatial transpose keeps 6 of 9 taps of every middle conv
    spa = rows[("wrn-16-4-bottleneck", "paper", "transpose")]
    assert spa["dense"] - spa["stored"] == sum(2 * 3 * c * c for c in (16, 32, 64))
    # average stores a full matrix: nothing saved, but its free count equals triangular's
    avg = rows[("wrn-16-4-bottleneck", "paper", "average")]
    assert avg["stored"] == avg["dense"] and avg["free"] == tri["stored"]

    # PTB LSTM: 2 layers x 4 gates of 650 x 650
    lstm = {(r["placement"], r["symmetry"]): r for r in payload["rows"] if r["model"] == "lstm-lm-650"}
    assert lstm[("-", "dense")]["dense"] == 19_780_400
    hh = lstm[("hh", "triangular")]
    assert hh["dense"] - hh["stored"] == 2 * 4 * 650 * 649 // 2
    both = lstm[("hh+ih", "triangular")]
    assert both["dense"] - both["stored"] == 2 * (hh["dense"] - hh["stored"])
    assert lstm[("hh", "average")]["stored"] == 19_780_400
    lstm_layers = 2 * (4 * 650 * (650 + 650) + 2 * 4 * 650)  # weight_ih, weight_hh, two biases per layer
    assert abs(hh["rnn_saved_pct"] - 100 * (hh["dense"] - hh["stored"]) / lstm_layers) < 1e-9


# --- width-sweep ----------------------------------------------------------------------------------------------------


def test_rescale_init_restores_dense_scale_and_keeps_symmetry():
    torch.manual_seed(0)
    for symmetry in ("triangular", "block", "eighth"):
        layer = torch.nn.Linear(64, 64)
        dense_std = layer.weight.std().item()
        ws.symmetrize(layer, channel=symmetry, include=[""], init="project")  # rescale_init starts from orbit means
        projected_std = layer.weight.std().item()
        assert width_sweep.rescale_init(layer) == 1
        weight = layer.weight.detach()
        assert projected_std < 0.8 * dense_std
        assert abs(weight.std().item() / dense_std - 1) < 0.15
        if symmetry != "block":
            assert torch.equal(weight, weight.T)
        if symmetry != "triangular":
            assert torch.equal(weight, weight.flip(0)) and torch.equal(weight, weight.flip(1))


def test_trend_classification():
    def row(width, symmetry, gap, std):
        return {"dataset": "d", "width": width, "symmetry": symmetry, "gap_mean": gap, "gap_std": std}

    summary = [row(4, "triangular", -0.20, 0.02), row(64, "triangular", -0.01, 0.01),
               row(4, "block", 0.005, 0.01), row(64, "block", -0.004, 0.01),
               row(4, "eighth", -0.05, 0.04), row(64, "eighth", -0.04, 0.03)]
    verdicts = {t["symmetry"]: t["verdict"] for t in width_sweep.trend(summary)}
    assert verdicts == {"triangular": "shrinks", "block": "flat", "eighth": "no clear shrink"}


def test_width_sweep_smoke_run(tmp_path):
    payload = width_sweep.run(tmp_path, smoke=True)
    assert (tmp_path / "width-sweep.png").stat().st_size > 1000
    assert "### Verdict" in (tmp_path / "width-sweep.md").read_text()
    setup = width_sweep.SMOKE["mnist1d"]
    assert len(payload["runs"]) == len(setup["widths"]) * len(width_sweep.SYMMETRIES) * len(setup["seeds"])
    rows = {(r["width"], r["symmetry"]): r for r in payload["summary"]}
    for width in setup["widths"]:
        assert rows[(width, "dense")]["gap_mean"] == 0.0
        # mnist1d-cnn: stem 1->w (k5), two square w->w convs (k3) carry the symmetry, fc w*5 -> 10
        dense = (5 * width + width) + 2 * (3 * width * width + width) + (5 * width * 10 + 10)
        assert rows[(width, "dense")]["stored"] == dense
        assert rows[(width, "triangular")]["stored"] == dense - 2 * tri_saved(width, taps=3)
        assert rows[(width, "eighth")]["stored"] == dense - 2 * 3 * (width * width - width * (width + 2) // 8)
        for symmetry in width_sweep.SYMMETRIES:
            assert 0.0 <= rows[(width, symmetry)]["acc_mean"] <= 1.0
    for run in payload["runs"]:
        if run["symmetry"] != "dense":
            assert run["symmetric_layers"] == ["conv1", "conv2"]


# --- universal-approximation ----------------------------------------------------------------------------------------


def test_triangular_network_contains_the_dense_one():
    """For d = 1 a zero-padded triangular layer has a free first column: it reproduces any dense network exactly."""
    torch.manual_seed(0)
    width = 16
    dense = universal_approximation.make_network(1, width, "dense")
    sym = universal_approximation.make_network(1, width, "triangular")
    weight = torch.randn(width, width)
    weight = (weight + weight.T) / 2
    weight[:, 0] = dense[0].weight.detach()[:, 0]
    weight[0, :] = weight[:, 0]
    with torch.no_grad():
        sym[1].weight = weight  # parametrize: right_inverse stores the free values
        sym[1].bias.copy_(dense[0].bias)
        sym[3].load_state_dict(dense[2].state_dict())
    x = torch.linspace(-1, 1, 50)[:, None]
    torch.testing.assert_close(sym(x), dense(x))


def test_symmetric_embedding_of_a_dense_layer():
    """[[0, Vᵀ], [V, 0]] applied to (x, 0) gives (0, V x): a symmetric layer of width n + d contains a dense one."""
    torch.manual_seed(0)
    d, n = 2, 6
    v = torch.randn(n, d)
    big = torch.zeros(n + d, n + d)
    big[d:, :d], big[:d, d:] = v, v.T
    layer = torch.nn.Linear(n + d, n + d, bias=False)
    ws.symmetrize(layer, channel="triangular", include=[""], strict=True)
    with torch.no_grad():
        layer.weight = big
    assert torch.equal(layer.weight, layer.weight.T)
    x = torch.randn(5, d)
    out = layer(universal_approximation.ZeroPad(n + d)(x))
    torch.testing.assert_close(out[:, :d], torch.zeros(5, d))
    torch.testing.assert_close(out[:, d:], x @ v.T)


def test_block_network_pairs_hidden_units():
    net = universal_approximation.make_network(1, 8, "block")
    column = net[1].weight.detach()[:, 0]
    torch.testing.assert_close(column, column.flip(0))
    assert net[1].bias.requires_grad and not torch.equal(net[1].bias, net[1].bias.flip(0))


def test_universal_approximation_fit_improves_and_smoke_run(tmp_path):
    before = universal_approximation.fit_point("abs", 16, "eighth", 0, adam_steps=0, lbfgs_steps=0)
    after = universal_approximation.fit_point("abs", 16, "eighth", 0, adam_steps=200, lbfgs_steps=20)
    assert after["rmse"] < 0.5 * before["rmse"]
    assert after["stored_hidden"] == 16 * 18 // 8 + 16  # eighth n(n+2)/8 weights + n biases

    payload = universal_approximation.run(tmp_path, smoke=True)
    smoke = universal_approximation.SMOKE
    assert len(payload["runs"]) == len(smoke["targets"]) * len(smoke["widths"]) * len(universal_approximation.VARIANTS)
    assert all(math.isfinite(r["rmse"]) for r in payload["runs"])
    assert {t["target"] for t in payload["trend"]} == set(smoke["targets"])
    assert (tmp_path / "universal-approximation.png").stat().st_size > 1000
    markdown = (tmp_path / "universal-approximation.md").read_text()
    assert "zero-padded" in markdown and "Command:" in markdown


@pytest.mark.parametrize("symmetry", ["triangular", "block", "eighth"])
def test_network_rejects_width_below_input_dimension(symmetry):
    with pytest.raises(ValueError, match="must be >= the input dimension"):
        universal_approximation.make_network(2, 1, symmetry)


def test_a_smoke_figure_is_marked_once_and_a_full_run_not_at_all(tmp_path):
    from weightsym.reproduce.common import mark_smoke_figure, write_outputs

    Image.new("RGB", (300, 200), "white").save(tmp_path / "fig.png")
    mark_smoke_figure(tmp_path / "fig.png")
    with Image.open(tmp_path / "fig.png") as image:
        once = image.size
        assert once[1] > 200 and image.getpixel((150, 2)) == (200, 30, 30)
        assert image.getpixel((150, 199)) == (255, 255, 255)
    mark_smoke_figure(tmp_path / "fig.png")
    with Image.open(tmp_path / "fig.png") as image:
        assert image.size == once
    Image.new("RGB", (300, 200), "white").save(tmp_path / "full.png")
    write_outputs(tmp_path, "full", {"smoke": False}, "## Title\n\n![f](full.png)\n")
    with Image.open(tmp_path / "full.png") as image:
        assert image.size == (300, 200) and "weightsym-smoke" not in image.info
    assert "SMOKE" not in (tmp_path / "full.md").read_text()


def test_universal_approximation_fits_through_the_engine_step_with_the_old_numbers():
    """The Adam phase runs through weightsym.train.step.train_steps: the same numbers as the hand loop it replaced."""
    target, width, symmetry, seed, steps = "sin", 8, "triangular", 0, 25
    dim, func = universal_approximation.TARGETS[target]
    x_train, _ = universal_approximation.grids(dim)
    y_train = func(x_train)[:, None]
    torch.manual_seed(seed)
    net = universal_approximation.make_network(dim, width, symmetry)
    adam = torch.optim.Adam(net.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(adam, steps)
    for _ in range(steps):  # the loop before
        adam.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(net(x_train), y_train)
        loss.backward()
        adam.step()
        schedule.step()
    with torch.no_grad():
        before = torch.nn.functional.mse_loss(net(x_train), y_train).sqrt().item()
    point = universal_approximation.fit_point(target, width, symmetry, seed, adam_steps=steps, lbfgs_steps=0)
    assert point["train_rmse"] == before
