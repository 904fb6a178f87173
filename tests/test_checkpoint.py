"""Checkpoint files: exact round trip of model, optimizer, scheduler and RNG states; atomicity; clear mismatch errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

import weightsym as ws
from weightsym.train.checkpoint import checkpoint_info, load_checkpoint, save_checkpoint


def _net(channel="triangular"):
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                        nn.Linear(8, 3))
    if channel:
        ws.symmetrize(net, channel=channel)
    return net


def _train_steps(net, opt, sched=None, steps=3):
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 6, generator=gen)
        loss = net(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
    lambda p: torch.optim.AdamW(p, lr=1e-2, betas=(0.8, 0.95), weight_decay=0.01),
])
def test_round_trip_model_optimizer_scheduler_rng(tmp_path, make_opt):
    net = _net()
    opt = make_opt(net.parameters())
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 4], gamma=0.2)
    _train_steps(net, opt, sched)
    path = tmp_path / "c.safetensors"
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)
    save_checkpoint(path, net, opt, sched, state={"epoch": 2, "step": 3, "best": 0.5, "config": {"lr": 0.1},
                                                  "gen": torch.Generator().manual_seed(9).get_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())

    other = _net()
    opt2 = make_opt(other.parameters())
    sched2 = torch.optim.lr_scheduler.MultiStepLR(opt2, milestones=[2, 4], gamma=0.2)
    torch.manual_seed(0)
    state = load_checkpoint(path, other, opt2, sched2, restore_rng=True)
    assert (torch.rand(3) == expected[0]).all() and (np.random.rand(3) == expected[1]).all()
    assert random.random() == expected[2]
    assert state["epoch"] == 2 and state["best"] == 0.5 and state["config"] == {"lr": 0.1}
    assert torch.equal(state["gen"], torch.Generator().manual_seed(9).get_state())
    for a, b in zip(net.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert sched2.state_dict() == sched.state_dict()
    assert sched2.milestones == {2: 1, 4: 1}
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for pid in s1["state"]:
        for key, value in s1["state"][pid].items():
            assert torch.equal(value, s2["state"][pid][key]), key
    # continuing both gives bit-identical weights
    _train_steps(net, opt, sched)
    _train_steps(other, opt2, sched2)
    for a, b in zip(net.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)


def test_file_holds_only_free_values_and_layer_metadata(tmp_path):
    net = _net()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, net, state={"epoch": 0})
    with safe_open(str(path), framework="pt") as fh:
        keys = set(fh.keys())
    assert "model.2.parametrizations.weight.original" in keys and "model.2.weight" not in keys
    with safe_open(str(path), framework="pt") as fh:
        assert fh.get_tensor("model.2.parametrizations.weight.original").numel() == 8 * 9 // 2
        assert fh.get_tensor("rng.torch").dtype == torch.uint8
    info = checkpoint_info(path)
    assert info["layers"]["2.weight"]["symmetry"] == "triangular"
    assert info["format"] == "weightsym-checkpoint/2"


def test_mismatched_symmetry_names_the_layer(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, _net("triangular"))
    with pytest.raises(ValueError, match=r"layer `2\.weight`.*triangular.*dense"):
        load_checkpoint(path, _net(None))
    with pytest.raises(ValueError, match=r"layer `2\.weight`.*triangular.*block"):
        load_checkpoint(path, _net("block"))


def test_mismatched_architecture_is_a_value_error(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, _net(None))
    wider = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                          nn.Linear(8, 5))
    with pytest.raises(ValueError, match="6.weight"):
        load_checkpoint(path, wider)


def test_atomic_write_keeps_previous_file_on_failure(tmp_path):
    path = tmp_path / "c.safetensors"
    net = _net()
    save_checkpoint(path, net, state={"epoch": 1})
    with pytest.raises(TypeError, match="object"):
        save_checkpoint(path, net, state={"epoch": 2, "bad": object()})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "w.safetensors"
    ws.save(_net(), path)
    with pytest.raises(ValueError, match="not a weightsym training checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_state_round_trips_awkward_values(tmp_path):
    import collections

    path = tmp_path / "c.safetensors"
    state = {"a.b": torch.ones(2), "a": {"b": torch.zeros(3)}, 3: "int key", "t": (1, 2.5, None),
             "c": collections.Counter({60: 1, 120: 1}), "nan": float("nan"), "arr": np.arange(3, dtype=np.int16),
             "__weird": 1}
    save_checkpoint(path, _net(), state=state)
    back = load_checkpoint(path)
    assert torch.equal(back["a.b"], torch.ones(2)) and torch.equal(back["a"]["b"], torch.zeros(3))
    assert back[3] == "int key" and back["t"] == (1, 2.5, None) and back["__weird"] == 1
    assert isinstance(back["c"], collections.Counter) and back["c"] == {60: 1, 120: 1}
    assert np.isnan(back["nan"]) and back["arr"].dtype == np.int16 and back["arr"].tolist() == [0, 1, 2]
