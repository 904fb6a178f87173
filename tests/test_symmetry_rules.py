"""Rank rules of ``lowrank`` and ``repeat`` along kernel rows/columns: counts in closed form, spec round trips
(``get_symmetry(sym.spec)``, weight-file metadata) and the paper's ``pdpt`` count for WRN-16-4-bottleneck."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

import weightsym as ws
from weightsym.models import create_model
from weightsym.symmetry import KernelRepeat, LowRank, SymmetryError, combine, get_symmetry


# -- lowrank rank rules ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,n,rank", [
    ("lowrank", 16, 4), ("lowrank", 64, 16), ("lowrank", 3, 1), ("lowrank:0.25", 64, 16), ("lowrank:0.5", 10, 5),
    ("lowrank:0.29", 100, 29), ("lowrank:1.0", 12, 12), ("lowrank:0.01", 16, 1), ("lowrank:8", 64, 8),
    ("pdpt:8", 16, 8), ("lowrank:paper", 16, 7), ("lowrank:paper", 32, 15), ("lowrank:paper", 64, 31),
    ("lowrank:paper", 15, 6), ("lowrank:paper", 5, 1),
])
def test_rank_rules(spec, n, rank):
    sym = get_symmetry(spec)
    assert sym.rank_for(n) == rank
    assert sym.stored_count((n, n)) == n * rank + rank
    assert sym.free_count((n, n)) == n * rank - rank * (rank - 1) // 2
    assert sym.stored_count((n, n, 3, 3)) == 9 * (n * rank + rank)
    assert sym.layout((n, n, 3, 3)).map_size == n and sym.stored_count((n, n, 3, 3)) == get_symmetry(
        f"lowrank:{rank}").stored_count((n, n, 3, 3))


def test_paper_rule_is_n_minus_ceil_half_minus_one():
    rule = get_symmetry("lowrank:paper")
    for n in range(3, 130):
        assert rule.rank_for(n) == n - math.ceil(n / 2) - 1


@pytest.mark.parametrize("spec,message", [
    ("lowrank:0", "must be >= 1"), ("lowrank:-2", "must be >= 1"), ("lowrank:1.5", r"fraction of n must be in \(0, 1\]"),
    ("lowrank:0.0", "fraction"), ("lowrank:half", "not a rank rule.*lowrank:paper"), ("lowrank:2:3", "one rank rule"),
])
def test_bad_rank_rules_are_explained(spec, message):
    with pytest.raises(ValueError, match=message):
        get_symmetry(spec)


def test_rank_rule_that_does_not_fit_a_plane_is_explained():
    ok, why = get_symmetry("lowrank:paper").applies_to((2, 2))
    assert not ok and "rank 0 (rule lowrank:paper)" in why and "n = 2" in why
    ok, why = get_symmetry("lowrank:8").applies_to((4, 4, 3, 3))
    assert not ok and "between 1 and the plane size 4" in why
    with pytest.raises(SymmetryError, match="plane size 4"):
        ws.symmetrize(nn.ModuleDict({"c": nn.Conv2d(4, 4, 3)}), channel="lowrank:8", include=["c"], strict=True)


def test_lowrank_paper_wrn_16_4_bottleneck_stores_170036():
    """The original code's pdpt on the middle 3x3 conv of every bottleneck block (r = 7, 15, 31)."""
    model = create_model("wrn-16-4-bottleneck")
    report = ws.symmetrize(model, channel="lowrank:paper", include=["*conv2"], strict=True)
    widths = {row.shape[0] for row in report.symmetric}
    assert {n: get_symmetry("lowrank:paper").rank_for(n) for n in widths} == {16: 7, 32: 15, 64: 31}
    assert [row.stored for row in report.symmetric] == [9 * (n * r + r) for n, r in
                                                        [(16, 7), (16, 7), (32, 15), (32, 15), (64, 31), (64, 31)]]
    assert ws.count_parameters(model).stored == 170_036


def test_describe_prints_170036_for_the_paper_rank_rule(capsys):
    from weightsym.cli import main

    assert main(["describe", "--model", "wrn-16-4-bottleneck", "--channel", "lowrank:paper",
                 "--include", "*conv2"]) == 0
    out = capsys.readouterr().out
    totals = [line for line in out.splitlines() if line.startswith("| parameters")]
    assert len(totals) == 1 and "| 170,036 |" in totals[0]
    assert "lowrank:paper" in out


# -- repeat along kernel rows / columns ----------------------------------------------------------------------------
@pytest.mark.parametrize("spec,shape,free", [
    ("repeat:3:kw", (1, 1, 3, 3), 3), ("repeat:3:kh", (1, 1, 3, 3), 3), ("repeat:2:kh", (1, 1, 4, 4), 8),
    ("repeat:4:kw", (1, 1, 4, 4), 4), ("repeat:2:kw", (1, 1, 2, 6), 6), ("repeat:5:kh", (1, 1, 5, 5), 5),
    ("repeat:3:kw", (6, 4, 3, 3), 6 * 4 * 3), ("repeat:2:kw", (8, 8, 4), 8 * 8 * 2), ("repeat:3:kw", (5, 7, 6), 5 * 7 * 2),
    ("chunk:3:kw", (2, 2, 3, 3), 12),
])
def test_kernel_repeat_free_counts_are_kh_kw_over_c_per_kernel(spec, shape, free):
    sym = get_symmetry(spec)
    assert isinstance(sym, KernelRepeat) and sym.plane == "spatial"
    out, inp, *kernel = shape
    kh, kw = (1, *kernel) if len(kernel) == 1 else kernel
    assert free == out * inp * kh * kw // sym.copies
    assert sym.free_count(shape) == sym.stored_count(shape) == free


@pytest.mark.parametrize("channel,n", [("triangular", 8), ("block", 8), ("eighth", 16), ("repeat:2", 6)])
def test_kernel_repeat_composes_with_channel_symmetries(channel, n):
    closed = {"triangular": n * (n + 1) // 2, "block": n * n // 4, "eighth": n * (n + 2) // 8, "repeat:2": n * n // 2}
    sym = get_symmetry(f"{channel}+repeat:3:kw")
    assert sym.free_count((n, n, 3, 3)) == closed[channel] * 3
    w = sym.expand(torch.randn(sym.stored_count((n, n, 3, 3)), dtype=torch.float64), (n, n, 3, 3))
    assert torch.equal(w[..., 0], w[..., 1]) and torch.equal(w[..., 0], w[..., 2])
    assert get_symmetry(channel).holds(w)


def test_kernel_repeat_invariances():
    rows = get_symmetry("repeat:2:kh").expand(torch.randn(3 * 2 * 2 * 4), (3, 2, 4, 4))
    assert torch.equal(rows[:, :, :2], rows[:, :, 2:])
    assert not torch.equal(rows[:, :, 0], rows[:, :, 1])
    cols = get_symmetry("repeat:3:kw").expand(torch.randn(2 * 2 * 3), (2, 2, 3, 3))
    assert torch.equal(cols, cols[..., :1].expand_as(cols))
    line = get_symmetry("repeat:3:kw").expand(torch.randn(4 * 4 * 2), (4, 4, 6))  # Conv1d: the kernel runs along kw
    assert torch.equal(line[..., :2], line[..., 2:4]) and torch.equal(line[..., :2], line[..., 4:])


@pytest.mark.parametrize("spec,shape,message", [
    ("repeat:2:kh", (8, 8, 3, 3), r"rows \(kh\) \(3\) to be a multiple.*pick copies from \[3\]"),
    ("repeat:2:kw", (8, 8, 5, 5), r"columns \(kw\) \(5\).*pick copies from \[5\]"),
    ("repeat:2:kh", (8, 8), "1x1 \\(or Linear\\) weight has no kernel"),
    ("repeat:3:kw", (8, 8, 1, 1), "no kernel"),
    ("repeat:2:kh", (8, 8, 4), "Conv1d kernel runs along kw"),
])
def test_kernel_repeat_that_cannot_apply_says_why(spec, shape, message):
    ok, why = get_symmetry(spec).applies_to(shape)
    assert not ok
    assert re.search(message, why), why


def test_kernel_repeat_plane_is_checked():
    with pytest.raises(ValueError, match="spatial symmetry, but a channel symmetry was asked for"):
        get_symmetry("repeat:3:kw", plane="channel")
    with pytest.raises(ValueError, match=r"channel symmetry, but a spatial.*repeat:c:kh\|kw"):
        get_symmetry("repeat:3", plane="spatial")
    with pytest.raises(ValueError, match="'out' or 'in'.*'kh' or 'kw'"):
        get_symmetry("repeat:3:kx")
    with pytest.raises(ValueError, match=r"repeat:c\[:out\|in\|kh\|kw\]"):
        get_symmetry("repeat:kw")
    report = ws.symmetrize(nn.ModuleDict({"c": nn.Conv2d(4, 6, 3), "l": nn.Linear(6, 6)}), spatial="repeat:3:kh",
                           include=["c", "l"])
    assert [(r.name, r.symmetry) for r in report.rows] == [("c", "repeat:3:kh"), ("l", None)]
    assert "no kernel to tie" in report.rows[1].note


# -- spec round trips ----------------------------------------------------------------------------------------------
SPECS = ["lowrank:paper", "lowrank:0.25", "lowrank:0.3", "lowrank:8", "lowrank", "repeat:3:kw", "repeat:2:kh",
         "repeat:4:in", "triangular+repeat:3:kw", "lowrank:paper+transpose", "repeat:2:out+repeat:3:kh",
         "lowrank:0.5+repeat:3:kh"]


@pytest.mark.parametrize("spec", SPECS)
def test_spec_round_trips(spec):
    sym = get_symmetry(spec)
    assert sym.spec == spec
    again = get_symmetry(sym.spec)
    assert again == sym and type(again) is type(sym) and hash(again) == hash(sym)
    assert get_symmetry(spec.upper()) == sym


def test_aliases_of_the_new_options():
    assert get_symmetry("pdpt:paper").spec == "lowrank:paper"
    assert get_symmetry("chunk:3:kw").spec == "repeat:3:kw"
    assert get_symmetry("tri+chunk:3:kh").spec == "triangular+repeat:3:kh"
    assert get_symmetry("lowrank:.25").spec == "lowrank:0.25"
    assert LowRank(0.25).rank_for(64) == LowRank().rank_for(64) == 16


def _net():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1),
                         nn.Conv2d(16, 16, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))


@pytest.mark.parametrize("channel,spatial", [("lowrank:paper", None), ("lowrank:0.5", "repeat:3:kw"),
                                             ("triangular", "repeat:3:kh"), (None, "repeat:3:kw")])
def test_weight_files_round_trip_the_new_specs(tmp_path, channel, spatial):
    torch.manual_seed(0)
    model = _net()
    ws.symmetrize(model, channel=channel, spatial=spatial)
    path = ws.save(model, tmp_path / "w.safetensors")
    meta = ws.read_metadata(path)
    specs = {info["symmetry"] for info in meta["layers"].values()}
    expected = combine(channel, spatial).spec
    assert specs == {expected}
    assert get_symmetry(expected) == combine(channel, spatial)

    twin = _net()
    ws.symmetrize(twin, channel=channel, spatial=spatial)
    ws.load(path, twin)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(twin(x), model(x))

    rebuilt = _net()  # symmetries from the file's metadata alone: every spec turns back into its symmetry
    for qualified, info in meta["layers"].items():
        owner, _, tensor = qualified.rpartition(".")
        ws.nn.attach(rebuilt.get_submodule(owner), tensor, get_symmetry(info["symmetry"]), info["row_blocks"])
    ws.load(path, rebuilt)
    assert torch.equal(rebuilt(x), model(x))


def test_kernel_repeat_trains_exactly():
    """Gradient of each free value is the sum over its taps; the tying holds bit for bit after optimizer steps."""
    torch.manual_seed(0)
    model = _net()
    ws.symmetrize(model, channel="block", spatial="repeat:3:kw")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3, 8, 8)).square().mean().backward()
        opt.step()
    w = model[1].weight.detach()
    assert torch.equal(w[..., 0], w[..., 1]) and torch.equal(w[..., 0], w[..., 2])
    assert get_symmetry("block").holds(w)
