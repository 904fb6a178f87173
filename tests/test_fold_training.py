"""Training through the folds (weightsym.fast.fold_training) gives the gather path's numbers, and keeps the symmetry."""

from __future__ import annotations

import copy
import itertools
import json

import pytest
import torch
from torch import nn

import weightsym as ws
from weightsym.fast import fold_training, unfold_training
from weightsym.fast.structured import layer_structure
from weightsym.nn.parametrization import KERNEL

FOLDING = ["centrosymmetric", "bisymmetric", "block", "eighth", "repeat:2:out", "repeat:2:in", "hflip", "transpose",
           "dihedral", "rot180", "vflip", "block+dihedral", "tri+spa", "centro+hflip", "average+dihedral",
           "repeat:2:in+rot180", "eighth+dihedral", "bisymmetric+vflip"]
NOT_FOLDING = ["triangular", "average", "lowrank:2", "eigen"]

LAYERS = {
    "linear6": lambda: nn.Linear(6, 6),
    "linear7": lambda: nn.Linear(7, 7),
    "linear6x10": lambda: nn.Linear(10, 6, bias=False),
    "conv1d": lambda: nn.Conv1d(6, 6, 3, padding=1),
    "conv1d-odd-stride-reflect": lambda: nn.Conv1d(7, 7, 5, stride=2, padding=2, padding_mode="reflect"),
    "conv2d": lambda: nn.Conv2d(6, 6, 3, padding=1),
    "conv2d-odd-circular-dilated": lambda: nn.Conv2d(7, 7, 3, padding=2, dilation=2, padding_mode="circular"),
    "conv2d-stride2-groups": lambda: nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2),
    "conv2d-replicate-5x5": lambda: nn.Conv2d(6, 6, 5, padding=2, padding_mode="replicate", bias=False),
    "conv2d-nopad-6x4": lambda: nn.Conv2d(4, 6, 3),
}
INPUTS = {"linear": (5,), "conv1d": (3, 11), "conv2d": (2, 9, 8)}


def _input(name: str, layer: nn.Module) -> torch.Tensor:
    kind = "linear" if name.startswith("linear") else name.split("-")[0]
    extra = INPUTS[kind]
    channels = layer.in_features if kind == "linear" else layer.in_channels
    shape = (extra[0], channels) if kind == "linear" else (extra[0], channels, *extra[1:])
    return torch.randn(shape, dtype=torch.float64)


def _symmetric_pair(layer_name: str, spec: str):
    torch.manual_seed(0)
    layer = LAYERS[layer_name]().double()
    sym = ws.get_symmetry(spec)
    groups = getattr(layer, "groups", 1)
    ok, why = sym.applies_to(layer.weight.shape, groups)
    if not ok:
        return None
    ws.nn.attach(layer, "weight", sym, groups)
    folded = copy.deepcopy(layer)
    return layer, folded


CASES = [(layer, spec) for layer, spec in itertools.product(LAYERS, FOLDING)
         if _symmetric_pair(layer, spec) is not None]


def test_the_grid_covers_every_layer_kind_and_symmetry():
    assert {layer for layer, _ in CASES} == set(LAYERS)
    assert {spec for _, spec in CASES} == set(FOLDING)
    assert len(CASES) > 80


@pytest.mark.parametrize("layer_name,spec", CASES)
def test_fold_path_equals_gather_path(layer_name, spec):
    gather, folded = _symmetric_pair(layer_name, spec)
    report = fold_training(nn.ModuleDict({"layer": folded}), policy="always")
    expect_fold = layer_structure(folded) is not None
    assert report.folded == (["layer"] if expect_fold else [])
    if not expect_fold:  # e.g. tri+spa on a 1-D kernel: no structure saves multiplies, the gather path stays
        assert KERNEL not in folded._modules
        return
    x = _input(layer_name, gather)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = gather(xa), folded(xb)
    torch.testing.assert_close(yb, ya, atol=1e-12, rtol=1e-12)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xb.grad, xa.grad, atol=1e-12, rtol=1e-12)
    for (name, pa), (_, pb) in zip(gather.named_parameters(), folded.named_parameters()):
        assert pb.grad is not None, name
        torch.testing.assert_close(pb.grad, pa.grad, atol=1e-11, rtol=1e-11, msg=f"gradient of {name}")


@pytest.mark.parametrize("spec", NOT_FOLDING)
def test_tyings_without_a_fold_keep_the_gather_path(spec):
    gather, folded = _symmetric_pair("conv2d", spec)
    report = fold_training(nn.ModuleDict({"layer": folded}), policy="always")
    assert report.folded == [] and report.rows[0].path == "gather"
    assert KERNEL not in folded._modules and "forward" not in folded.__dict__


def _net(channel, spatial):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8),
                        nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    ws.symmetrize(net, channel=channel, spatial=spatial)
    return net


def _train(net, steps=4, seed=3):
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x = torch.randn(6, 3, 6, 6, generator=gen)
        y = torch.randint(0, 4, (6,), generator=gen)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_training_steps_keep_the_symmetry_bit_for_bit_and_match_the_gather_path():
    gather = _net("block", "dihedral")
    folded = copy.deepcopy(gather)
    report = fold_training(folded, policy="always")
    assert report.folded == ["2", "5", "8", "10"]
    la, lb = _train(gather), _train(folded)
    assert la == pytest.approx(lb, rel=1e-5, abs=1e-6)
    for qualified, module, symmetry in ws.nn.symmetric_layers(folded):
        weight = getattr(module, qualified.rsplit(".", 1)[1])
        assert symmetry.holds(weight), qualified  # atol=0: bit for bit
    sa, sb = gather.state_dict(), folded.state_dict()
    assert sa.keys() == sb.keys()  # same weight file, no kernel buffers in it
    for key in sa:
        torch.testing.assert_close(sb[key], sa[key], atol=1e-5, rtol=1e-4)


def test_deepcopy_save_load_and_unsymmetrize(tmp_path):
    net = _net("bisymmetric", "rot180")
    fold_training(net, policy="always")
    clone = copy.deepcopy(net)
    assert clone[2]._modules[KERNEL] is not net[2]._modules[KERNEL]
    assert clone[2].forward.__self__ is clone[2]  # the override follows the copy
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(clone(x), net(x))
    ws.save(net, tmp_path / "m.safetensors")
    fresh = _net("bisymmetric", "rot180")
    ws.load(tmp_path / "m.safetensors", fresh)
    torch.testing.assert_close(fresh(x), net(x), atol=1e-6, rtol=1e-5)
    expected = net(x)
    ws.unsymmetrize(net)
    assert KERNEL not in net[2]._modules and "forward" not in net[2].__dict__
    torch.testing.assert_close(net(x), expected, atol=1e-6, rtol=1e-5)


def test_unfold_and_never_restore_the_gather_path():
    net = _net("block", None)
    assert len(fold_training(net, policy="always").folded) == 4
    x = torch.randn(2, 3, 6, 6)
    y = net(x)
    assert unfold_training(net) == 4
    assert not any(KERNEL in m._modules for m in net.modules())
    torch.testing.assert_close(net(x), y, atol=1e-6, rtol=1e-5)
    fold_training(net, policy="always")
    assert fold_training(net, policy="never").folded == []
    with pytest.raises(ValueError, match="policy"):
        fold_training(net, policy="sometimes")


def test_optimize_of_a_fold_trained_model_matches():
    net = _net("block", "dihedral").eval()
    fold_training(net, policy="always")
    x = torch.randn(2, 3, 6, 6)
    fast = ws.fast.optimize(net, calibrate=False)
    torch.testing.assert_close(fast(x), net(x), atol=1e-5, rtol=1e-5)
    assert KERNEL in net[2]._modules  # the original keeps training folded


def test_estimated_speedup_grows_with_the_saving_and_the_product_size():
    from weightsym.fast.training import estimated_speedup, fold_kernel

    def speedup(layer, channel, spatial, compiled=True):
        ws.nn.attach(layer, "weight", ws.symmetry.combine(channel, spatial))
        return estimated_speedup(fold_kernel(layer), compiled)

    assert speedup(nn.Linear(2048, 2048), "block", None) > 3.0  # a quarter of the multiplies, negligible folds
    assert speedup(nn.Linear(32, 32), "block", None) < 1.15  # a tiny product: the folds' own cost dominates
    big, small = nn.Conv2d(128, 128, 3), nn.Conv2d(16, 16, 3)
    assert speedup(big, "block", "dihedral") > speedup(copy.deepcopy(nn.Conv2d(128, 128, 3)), None, "dihedral") > 1
    assert speedup(small, None, "dihedral") < 1.15
    assert speedup(nn.Conv2d(128, 128, 3), None, "dihedral", compiled=False) < \
        speedup(nn.Conv2d(128, 128, 3), None, "dihedral", compiled=True)
    strided = speedup(nn.Conv2d(64, 64, 3, stride=2), "block", "dihedral")
    assert strided < speedup(nn.Conv2d(64, 64, 3), "block", "dihedral")


def test_auto_policy_decides_by_multiplies_and_size():
    big = nn.Sequential(nn.Linear(4, 1024), nn.Linear(1024, 1024), nn.Linear(1024, 1024), nn.Linear(1024, 1024),
                        nn.Linear(1024, 2))
    ws.symmetrize(big, channel="block", include=["1"])
    report = fold_training(big, policy="auto", compiled=True)
    assert report.folded == ["1"] and report.rows[0].multiply_fraction == 0.25
    small = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    ws.symmetrize(small, channel="block")
    row = fold_training(small, policy="auto", compiled=True).rows[0]
    assert row.path == "gather" and "too few to pay" in row.why
    medium = nn.Sequential(nn.Linear(4, 128), nn.Conv2d(128, 128, 3, stride=4), nn.Linear(8, 2))
    ws.symmetrize(medium, channel="bisymmetric", spatial="vflip", include=["1"])
    row = fold_training(medium, policy="auto", compiled=False).rows[0]
    assert row.path == "gather" and "memory passes" in row.why and "estimated" in row.why


@pytest.mark.parametrize("generators,kernel,stride,dilation,padding,mode,groups", [
    (("transpose", "rowflip", "colflip"), 3, 1, 1, 1, "zeros", 1),
    (("transpose", "rowflip", "colflip"), 3, 2, 1, 1, "zeros", 1),
    (("colflip",), 5, 3, 2, 2, "reflect", 2),
    (("transpose",), 3, 1, 1, 1, "reflect", 2),
    (("colflip",), 5, 1, 2, 3, "circular", 1),
    (("rot180",), 3, 1, 1, 0, "zeros", 4),
    (("rot180",), 3, 2, 2, 1, "replicate", 1),
])
@pytest.mark.parametrize("traced", [False, True])
def test_spatial_fold_backward_is_the_adjoint_of_its_maps(monkeypatch, generators, kernel, stride, dilation, padding,
                                                         mode, groups, traced):
    """Eager (scatter into one buffer) and traced (gather from the padded gradient) backward of the orbit maps equal
    autograd's backward of the slicing forward."""
    import weightsym.fast.spatial_fold as sf
    from weightsym.symmetry import plane_orbits

    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, kernel, stride, padding, dilation, groups, padding_mode=mode)
    fold = sf.SpatialFold(plane_orbits(generators, kernel, kernel), conv.kernel_size, conv.stride, conv.dilation,
                          conv._reversed_padding_repeated_twice, conv.padding_mode, conv.groups)
    x = torch.randn(2, 8, 11, 10, dtype=torch.float64, requires_grad=True)
    padded = nn.functional.pad(x, fold.padding, mode=fold.mode) if any(fold.padding) else x
    reference = fold.maps(padded)
    g = torch.randn_like(reference)
    (expected,) = torch.autograd.grad(reference, x, g)
    monkeypatch.setattr(sf, "_tracing", lambda: traced)
    maps = fold(x)
    torch.testing.assert_close(maps, reference, atol=0, rtol=0)
    (got,) = torch.autograd.grad(maps, x, g)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-12)


@pytest.mark.slow
def test_torchrun_two_processes_train_the_fold_path_like_one_process(tmp_path):
    """DDP over two gloo processes, each with half of every global batch, ends at the weights of one process that sees
    the whole batch (same free values up to float rounding; the fold path is what both run)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import ddp_fold_worker

    out = tmp_path / "ddp.safetensors"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).parent / "ddp_fold_worker.py"), str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    single = ddp_fold_worker.train(ddp_fold_worker.build(), rank=0, world=1)
    distributed = ddp_fold_worker.build()
    ws.load(out, distributed)
    for (name, a), (_, b) in zip(single.state_dict().items(), distributed.state_dict().items()):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=name)
    start = ddp_fold_worker.build().state_dict()
    assert any(not torch.equal(start[k], v) for k, v in single.state_dict().items())  # training moved the weights


@pytest.mark.slow
def test_compiled_fold_path_trains_like_eager():
    """torch.compile of a model that trains through its folds (channel and spatial folds, a strided fold, a Linear)
    follows the eager model's losses and weights, and its free values still expand to symmetric weights."""
    eager = _net("block", "dihedral")
    fold_training(eager, policy="always")
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model)
    assert _train(compiled, steps=3) == pytest.approx(_train(eager, steps=3), rel=1e-4, abs=1e-5)
    for (name, a), (_, b) in zip(eager.state_dict().items(), compiled_model.state_dict().items()):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-3, msg=name)
    for qualified, module, symmetry in ws.nn.symmetric_layers(compiled_model):
        assert symmetry.holds(getattr(module, qualified.rsplit(".", 1)[1]))


def test_train_command_folds_and_ends_where_the_gather_path_ends(tmp_path):
    """`weightsym train --fold always` trains the same run as `--fold never` up to float rounding; the log and the
    summary name the layers that trained through their folds; the weight file is the same format."""
    from weightsym.train import TrainConfig, train

    base = dict(model="mnist1d-cnn", model_args={"width": 16}, channel="block", spatial="rot180", train_subset=256,
                batch_size=64, epochs=1, lr=0.05, progress=False, threads=1)
    folded = train(TrainConfig(**base, fold="always", out=str(tmp_path / "fold")))
    gathered = train(TrainConfig(**base, fold="never", out=str(tmp_path / "gather")))
    assert [r["path"] for r in folded["fold_training"]] == ["fold", "fold"]
    assert [r["path"] for r in gathered["fold_training"]] == ["gather", "gather"]
    record = json.loads((tmp_path / "fold" / "log.jsonl").read_text().splitlines()[-1])
    assert record["folded"] == ["conv1", "conv2"]
    assert folded["test_loss"] == pytest.approx(gathered["test_loss"], rel=1e-4)
    from safetensors.torch import load_file

    fa = load_file(tmp_path / "fold" / "checkpoint.safetensors")
    ga = load_file(tmp_path / "gather" / "checkpoint.safetensors")
    assert fa.keys() == ga.keys()  # same weight file: no kernel buffers in it
    for key in fa:
        if fa[key].is_floating_point():
            torch.testing.assert_close(fa[key], ga[key], atol=1e-5, rtol=1e-4, msg=key)


def _fake_timer(monkeypatch, ratios):
    """Make fast.timing.time_calls report, layer after layer, gather/fold time ratios from ``ratios``."""
    from weightsym.fast import timing

    calls = iter(ratios)

    def fake(steps, rounds=5, budget=2.0):
        assert set(steps) == {"gather", "fold"}
        for step in steps.values():  # the steps run: a forward and a backward of the layer
            step()
        return {"gather": next(calls), "fold": 1.0}

    monkeypatch.setattr(timing, "time_calls", fake)


def test_measure_policy_folds_where_the_timed_step_is_faster(monkeypatch):
    """policy="measure" folds exactly the layers whose timed fold step beats the gather step by the margin (5%):
    1.30x and 1.06x fold, 1.04x and 0.90x keep the gather; the reasons quote the measured ratios."""
    net = _net("block", "dihedral")
    _fake_timer(monkeypatch, [1.30, 1.04, 0.90, 1.06])
    report = fold_training(net, policy="measure", compiled=False, example_input=torch.randn(6, 3, 6, 6))
    foldable = [r for r in report.rows if r.kernel != "dense op" or "measured" in r.why]
    assert [r.name for r in foldable] == ["2", "5", "8", "10"]
    assert report.folded == ["2", "10"]
    assert [r.why.split("measured ")[1][:5] for r in foldable] == ["1.30x", "1.04x", "0.90x", "1.06x"]
    assert all("(eager" in r.why for r in foldable)
    assert [KERNEL in net[int(n)]._modules for n in ("2", "5", "8", "10")] == [True, False, False, True]


def test_measure_policy_leaves_the_model_and_the_rng_as_they_were():
    """Measuring (real timing, eager) neither updates BatchNorm statistics nor draws from the global RNG nor leaves
    the model in eval mode; whatever it picks, the model computes what the gather path computes."""
    net = _net("block", "dihedral")
    x = torch.randn(6, 3, 6, 6)
    net.eval()
    expected = net(x)
    net.train()
    stats = [b.clone() for b in net[3].buffers()]
    example = torch.randn(6, 3, 6, 6)
    rng = torch.get_rng_state()
    report = fold_training(net, policy="measure", compiled=False, example_input=example)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(a, b) for a, b in zip(stats, net[3].buffers()))
    assert net.training
    assert [r.name for r in report.rows if "measured" in r.why] == ["2", "5", "8", "10"]
    assert all(p.grad is None for p in net.parameters())  # the timed steps leave no gradients behind
    net.eval()
    torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=1e-4)


def test_busy_machine_note_from_the_load_average(monkeypatch):
    """Measuring beside other busy processes is flagged: load beyond this process's own thread plus half the CPUs."""
    import os
    import warnings

    from weightsym.fast import timing

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(os, "getloadavg", lambda: (1.9, 1.0, 1.0))
    assert timing.busy_machine_note() == ""
    monkeypatch.setattr(os, "getloadavg", lambda: (3.1, 1.0, 1.0))
    note = timing.busy_machine_note()
    assert note.startswith("measured while the machine was busy (1-minute load average 3.1 on 2 CPUs)")
    _fake_timer(monkeypatch, itertools.cycle([1.2]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = fold_training(_net("block", "dihedral"), policy="measure", compiled=False,
                               example_input=torch.randn(6, 3, 6, 6))
    assert report.note == note and str(report).endswith(f"note: {note}")
    assert [str(w.message) for w in caught] == [f"fold_training(policy='measure'): {note}"]
    assert fold_training(_net("block", "dihedral"), policy="auto").note == ""  # only measuring is affected


def test_measure_needs_an_example_and_layers_replays_a_choice():
    net = _net("block", "dihedral")
    with pytest.raises(ValueError, match="example_input"):
        fold_training(net, policy="measure")
    report = fold_training(net, policy="never", layers=["2", "8"])  # layers= wins over the policy
    assert report.folded == ["2", "8"]
    assert [r.why for r in report.rows] == ["replayed", "replayed: not among the folded layers", "replayed",
                                            "replayed: not among the folded layers"]
    with pytest.raises(ValueError, match=r"layers=: 7 is not a layer that can train through a fold \(foldable: "
                                         r"2, 5, 8, 10\)"):
        fold_training(net, layers=["2", "7"])


def test_measure_policy_falls_back_to_the_model_for_layers_the_example_does_not_reach(monkeypatch):
    class TwoHeads(nn.Module):  # only one head runs on this input
        def __init__(self):
            super().__init__()
            self.used, self.unused, self.out = nn.Linear(512, 512), nn.Linear(512, 512), nn.Linear(512, 4)

        def forward(self, x):
            return self.out(self.used(x))

    net = TwoHeads()
    ws.symmetrize(net, channel="block", include=["used", "unused"])
    _fake_timer(monkeypatch, [2.0])
    report = fold_training(net, policy="measure", compiled=False, example_input=torch.randn(4, 512))
    why = {r.name: r.why for r in report.rows}
    assert "measured 2.00x" in why["used"]
    assert why["unused"].startswith("not reached by example_input; estimated:")


@pytest.mark.slow
def test_measure_policy_compiles_each_layer_and_resets_dynamo(monkeypatch):
    """compiled=True times torch.compile'd copies of each layer and resets dynamo after each (no compiled frames are
    left to count against the recompile limit of the model's own compile); the model trains like the gather path."""
    import torch._dynamo

    resets = []
    reset = torch._dynamo.reset
    monkeypatch.setattr(torch._dynamo, "reset", lambda: (resets.append(1), reset()))
    net = _net("block", "dihedral")
    reference = copy.deepcopy(net)
    report = fold_training(net, policy="measure", compiled=True, example_input=torch.randn(6, 3, 6, 6))
    assert [r.name for r in report.rows if "(compiled" in r.why] == ["2", "5", "8", "10"]
    assert len(resets) == 4
    assert _train(net, steps=2) == pytest.approx(_train(reference, steps=2), rel=1e-4, abs=1e-5)


def test_train_command_measures_once_and_resume_replays_the_choice(tmp_path, monkeypatch, capsys):
    """`--fold measure`: the choice is measured at the start, stored in the checkpoint, and a resumed run replays it
    without timing anything; the run reaches the weights of an uninterrupted one."""
    from weightsym.fast import timing, training
    from weightsym.train import TrainConfig, load_checkpoint, train

    base = dict(model="mnist1d-cnn", model_args={"width": 16}, channel="block", spatial="rot180", train_subset=256,
                batch_size=64, epochs=2, lr=0.05, progress=False, threads=1, fold="measure")
    _fake_timer(monkeypatch, itertools.cycle([0.5, 3.0]))  # conv1 slower folded, conv2 faster
    monkeypatch.setattr(timing, "busy_machine_note", lambda: "busy")
    full = train(TrainConfig(**base, out=str(tmp_path / "full")))
    assert [r["path"] for r in full["fold_training"]] == ["gather", "fold"]
    out = capsys.readouterr().out
    assert "fold training (measure): 1 of 2 symmetric layers fold: conv2 (6x fewer multiplies, measured 3.00x " \
           "faster)\nfold training (measure): note: busy\n" in out
    assert full["fold_note"] == "busy"
    assert load_checkpoint(tmp_path / "full" / "checkpoint.safetensors")["fold_layers"] == ["conv2"]

    _fake_timer(monkeypatch, itertools.cycle([0.5, 3.0]))
    train(TrainConfig(**base, out=str(tmp_path / "cut"), max_steps=5))
    monkeypatch.setattr(training, "_measure", lambda *a: pytest.fail("a resumed run must not measure again"))
    resumed = train(TrainConfig(**base, out=str(tmp_path / "cut"), resume=True))
    assert [(r["path"], r["why"]) for r in resumed["fold_training"]] == [
        ("gather", "replayed: not among the folded layers"), ("fold", "replayed")]
    assert resumed["weights_sha256"] == full["weights_sha256"]
    assert resumed["fold_note"] == "busy"  # the replayed measurement keeps its note
