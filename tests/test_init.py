"""Initialising symmetric layers (docs/science.md §5): ``init="variance"`` keeps the dense initialisation's variance
entry by entry, ``init="project"`` keeps the orbit means (the behaviour before ``init`` existed, bit for bit), and
loading a dense state dict always projects."""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import weightsym as ws
from weightsym.nn import attach, symmetric_parametrization


def host(layer: nn.Module) -> nn.ModuleDict:
    return nn.ModuleDict({"layer": layer})


# (case id, layer factory, symmetrize options); large layers so that sample stds are within ~1% of their expectation
CASES = [
    *[(f"linear256-{c}", lambda: nn.Linear(256, 256), {"channel": c})
      for c in ["triangular", "centrosymmetric", "bisymmetric", "block", "eighth", "repeat:4:out", "repeat:2:in",
                "average", "lowrank", "lowrank:paper", "lowrank:0.5"]],
    ("linear128-eigen", lambda: nn.Linear(128, 128), {"channel": "eigen"}),
    *[(f"linear255-{c}", lambda: nn.Linear(255, 255), {"channel": c})  # odd n: centre row/column orbits are smaller
      for c in ["centrosymmetric", "block", "eighth", "bisymmetric"]],
    *[(f"conv128-{c or ''}+{s or ''}", lambda: nn.Conv2d(128, 128, 3), {"channel": c, "spatial": s})
      for c, s in [("triangular", "transpose"), ("eighth", "dihedral"), ("block", "hflip"), (None, "dihedral"),
                   (None, "rot180"), (None, "repeat:3:kw"), (None, "repeat:3:kh"), ("average", "rot180"),
                   ("lowrank:paper", "transpose"), ("triangular", "repeat:3:kw")]],
    ("conv128-groups2-eighth", lambda: nn.Conv2d(128, 128, 3, groups=2), {"channel": "eighth"}),
    ("conv1d128-repeat:2:kw", lambda: nn.Conv1d(128, 128, 4), {"spatial": "repeat:2:kw"}),
    ("conv1d128-block+hflip", lambda: nn.Conv1d(128, 128, 5), {"channel": "block", "spatial": "hflip"}),
    *[(f"lstm256-{c}", lambda: nn.LSTM(256, 256), {"channel": c, "hh_gates": "1101", "ih_gates": "0110"})
      for c in ["triangular", "eighth", "average"]],
    ("lstm64-eigen", lambda: nn.LSTM(64, 64), {"channel": "eigen", "hh_gates": "1111", "ih_gates": "1001"}),
    ("gru192-block", lambda: nn.GRU(192, 192), {"channel": "block", "hh_gates": "101"}),
]
TYING = {case for case, _, opts in CASES
         if not any(m in str(opts.get("channel")) for m in ("average", "eigen", "lowrank"))}


def build(factory, options, init, seed=0):
    """``(symmetric host, dense copy)`` of one freshly initialised layer."""
    torch.manual_seed(seed)
    model = host(factory())
    dense = copy.deepcopy(model)
    options = {k: v for k, v in options.items() if v is not None}
    report = ws.symmetrize(model, include=["layer"], init=init, **options)
    assert report.symmetric, report
    return model, dense


def symmetric_tensors(model, dense):
    """``(name, symmetric weight, dense weight, parametrization)`` for every symmetric tensor of the layer."""
    layer, ref = model["layer"], dense["layer"]
    out = []
    for name in list(layer.parametrizations.keys()):
        out.append((name, getattr(layer, name).detach(), getattr(ref, name).detach(),
                    symmetric_parametrization(layer, name)))
    return out


@pytest.mark.parametrize("case,factory,options", CASES, ids=[c[0] for c in CASES])
def test_variance_init_keeps_the_dense_std_and_project_shrinks_it(case, factory, options):
    """After symmetrize, the expanded weight's std is the dense layer's within 3% (init="variance"); with
    init="project" it is the orbit-mean prediction sqrt(mean(1/m)) of docs/science.md §5 (tyings)."""
    variance, dense = build(factory, options, "variance")
    project, dense2 = build(factory, options, "project")
    for (name, w, d, param), (_, wp, d2, _) in zip(symmetric_tensors(variance, dense),
                                                   symmetric_tensors(project, dense2)):
        assert torch.equal(d, d2)  # same seed, same dense init
        ratio = (w.std() / d.std()).item()
        assert abs(ratio - 1) < 0.03, f"{case} {name}: init='variance' std is {ratio:.3f}x the dense std"
        projected = (wp.std() / d.std()).item()
        if case in TYING or "average" in case or "eigen" in case:
            # orbit means of m iid entries: variance σ²/m; average/eigen project onto the triangular set ((A + Aᵀ)/2)
            twin = param.symmetry.spec.replace("average", "triangular").replace("eigen", "triangular")
            layout = ws.get_symmetry(twin).layout(d.shape, param.row_blocks, param.block_mask)
            sizes = layout.counts[layout.index].to(d.dtype)
            predicted = (1 / sizes).mean().sqrt().item()
            assert abs(projected - predicted) < 0.03, (case, name, projected, predicted)
            assert predicted < 0.9  # the test tells the two rules apart
        else:  # lowrank: rank-r truncation of a random matrix
            assert projected < 0.75, (case, name, projected)


@pytest.mark.parametrize("case,factory,options", [c for c in CASES if c[0] in TYING],
                         ids=[c[0] for c in CASES if c[0] in TYING])
def test_variance_init_is_exact_entry_by_entry_for_tyings(case, factory, options):
    """Each free value is one dense entry of its orbit (the representative): every entry of the symmetric weight is a
    dense draw, so each class of entries (grouped by orbit size m, e.g. the diagonal vs the rest) has the dense std;
    projection gives that class std/√m."""
    variance, dense = build(factory, options, "variance")
    project, _ = build(factory, options, "project")
    for (name, w, d, param), (_, wp, _, _) in zip(symmetric_tensors(variance, dense), symmetric_tensors(project,
                                                                                                         dense)):
        layout = param.layout
        assert torch.equal(w.reshape(-1), d.reshape(-1)[layout.rep[layout.index]])  # exact construction
        sizes = layout.counts[layout.index]
        sigma = d.std().item()
        checked = 0
        for m in sizes.unique().tolist():
            members = sizes == m
            if members.sum() / m < 1500:  # too few distinct values for a 3% statement
                continue
            checked += 1
            assert abs(w.reshape(-1)[members].std().item() / sigma - 1) < 0.04, (case, name, m)
            assert abs(wp.reshape(-1)[members].std().item() * m ** 0.5 / sigma - 1) < 0.05, (case, name, m)
        assert checked >= 1


def test_average_and_eigen_start_where_triangular_starts_and_keep_the_diagonal_scale():
    """average: W = (A + Aᵀ)/2 with A = T, the dense upper triangle mirrored, so W = T exactly: the triangular start.
    Projecting would give off-diagonal variance σ²/2."""
    weights = {}
    for channel in ("triangular", "average", "eigen"):
        model, dense = build(lambda: nn.Linear(128, 128), {"channel": channel}, "variance")
        weights[channel] = model["layer"].weight.detach()
    d = dense["layer"].weight.detach()
    t = torch.triu(d) + torch.triu(d, 1).T
    assert torch.equal(weights["triangular"], t)
    assert torch.equal(weights["average"], t)
    torch.testing.assert_close(weights["eigen"], t, atol=2e-5, rtol=0)
    eye = torch.eye(128, dtype=torch.bool)
    for part in (eye, ~eye):
        assert abs(t[part].std() / d.std() - 1) < 0.1
    projected, _ = build(lambda: nn.Linear(128, 128), {"channel": "average"}, "project")
    off = projected["layer"].weight.detach()[~eye]
    assert abs(off.std() / d.std() - 0.5 ** 0.5) < 0.02


@pytest.mark.parametrize("channel", ["lowrank", "lowrank:paper", "lowrank:0.5"])
def test_lowrank_variance_init_matches_the_dense_plane_norm(channel):
    """lowrank cannot have iid entries: the rule keeps each plane's Frobenius norm (the dense mean square), which
    puts the off-diagonal entries within 2% of the dense std at n = 256; the diagonal carries the rest."""
    model, dense = build(lambda: nn.Linear(256, 256), {"channel": channel}, "variance")
    w, d = model["layer"].weight.detach(), dense["layer"].weight.detach()
    t = torch.triu(d) + torch.triu(d, 1).T
    torch.testing.assert_close(w.norm(), t.norm(), rtol=1e-5, atol=0)
    eye = torch.eye(256, dtype=torch.bool)
    assert abs(w[~eye].pow(2).mean().sqrt() / d.pow(2).mean().sqrt() - 1) < 0.02
    param = symmetric_parametrization(model["layer"], "weight")
    assert param.symmetry.holds(w, atol=1e-5)  # still exactly rank r and symmetric


# sha256 (first 16 hex digits) of the symmetric weights produced by weightsym.symmetrize at commit 2162a34, before
# ``init`` existed: init="project" must reproduce them bit for bit.
GOLDEN = {
    "linear64:triangular": "0807cbe4be394fb3",
    "linear64:centrosymmetric": "1b6b88be97c054a0",
    "linear64:bisymmetric": "f9907808553bbd27",
    "linear64:block": "ab6a6cbc483f6892",
    "linear64:eighth": "ba1bb69f0ae28479",
    "linear64:repeat:2:out": "7f008744714f26e8",
    "linear64:repeat:4:in": "fe6f632dfc9eacfa",
    "linear64:average": "0807cbe4be394fb3",
    "conv16:triangular+transpose": "5a5186eade2eeaa7",
    "conv16:eighth+dihedral": "2a67ebcdb53188b7",
    "conv16:block+hflip": "9312e9c786e94444",
    "conv16:average+rot180": "615c970cbdba42e5",
    "conv16:None+dihedral": "4a74299a31c09605",
    "lstm32:triangular": "4069055b5456a05a2641220f4d918e68",
    "lstm32:average": "98df6dc4c8e4edb99ffa1bf0b0e41cf6",
}


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()[:16]


def test_project_init_reproduces_the_old_weights_bit_for_bit():
    got = {}
    for name in ["triangular", "centrosymmetric", "bisymmetric", "block", "eighth", "repeat:2:out", "repeat:4:in",
                 "average"]:
        torch.manual_seed(0)
        m = nn.Linear(64, 64)
        ws.symmetrize(m, channel=name, include=[""], init="project")
        got[f"linear64:{name}"] = _digest(m.weight)
    for ch, sp in [("triangular", "transpose"), ("eighth", "dihedral"), ("block", "hflip"), ("average", "rot180"),
                   (None, "dihedral")]:
        torch.manual_seed(1)
        m = nn.Conv2d(16, 16, 3)
        ws.symmetrize(m, channel=ch, spatial=sp, include=[""], init="project")
        got[f"conv16:{ch}+{sp}"] = _digest(m.weight)
    for ch in ["triangular", "average"]:
        torch.manual_seed(2)
        m = nn.LSTM(32, 32)
        ws.symmetrize(nn.ModuleDict({"rnn": m}), channel=ch, hh_gates="1101", ih_gates="1111", include=["rnn"],
                      init="project")
        got[f"lstm32:{ch}"] = _digest(m.weight_hh_l0) + _digest(m.weight_ih_l0)
    assert got == GOLDEN


@pytest.mark.parametrize("spec", ["eigen", "lowrank:paper", "lowrank:0.25+transpose"])
def test_project_init_is_the_projection_for_matrix_maps(spec):
    torch.manual_seed(3)
    conv = nn.Conv2d(16, 16, 3)
    dense = conv.weight.detach().clone()
    sym = ws.get_symmetry(spec)
    attach(conv, "weight", sym, init="project")
    assert torch.equal(conv.parametrizations.weight.original.detach(), sym.project(dense))


def test_attach_defaults_to_project_and_symmetrize_to_variance():
    torch.manual_seed(4)
    a = nn.Linear(32, 32)
    dense = a.weight.detach().clone()
    b, c = copy.deepcopy(a), copy.deepcopy(a)
    attach(a, "weight", "triangular")
    ws.symmetrize(host(b), channel="triangular", include=["layer"])
    attach(c, "weight", "triangular", init="variance")
    assert torch.equal(a.weight, ws.get_symmetry("tri").expand(ws.get_symmetry("tri").project(dense), (32, 32)))
    assert torch.equal(b.weight, torch.triu(dense) + torch.triu(dense, 1).T)
    assert torch.equal(b.weight, c.weight)


@pytest.mark.parametrize("init", ["variance", "project"])
def test_loading_a_dense_state_dict_projects(init):
    """Whatever the init, a dense state dict (and an assignment ``layer.weight = W``) lands on the nearest symmetric
    weight, never on a representative."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 64), nn.Linear(64, 64), nn.LSTM(64, 64))
    ws.symmetrize(model, channel="eighth", include=["1", "2"], hh_gates="1111", init=init)
    other = nn.Sequential(nn.Linear(4, 64), nn.Linear(64, 64), nn.LSTM(64, 64))
    model.load_state_dict(other.state_dict())
    sym = ws.get_symmetry("eighth")
    w = other[1].weight.detach()
    assert torch.equal(model[1].weight, sym.expand(sym.project(w), w.shape))
    hh = other[2].weight_hh_l0.detach()
    assert torch.equal(model[2].weight_hh_l0, sym.expand(sym.project(hh, 4), hh.shape, 4))
    mean4 = (w + w.flip(0) + w.flip(1) + w.flip(0, 1) + w.T + w.flip(0).T + w.flip(1).T + w.flip(0, 1).T) / 8
    torch.testing.assert_close(model[1].weight.detach(), mean4, atol=1e-6, rtol=0)  # the orbit mean over D4
    fresh = torch.randn(64, 64)
    model[1].weight = fresh
    assert torch.equal(model[1].weight, sym.expand(sym.project(fresh), fresh.shape))


def test_variance_init_draws_no_random_numbers_and_keeps_a_symmetric_weight():
    torch.manual_seed(6)
    layer = nn.Linear(16, 16)
    with torch.no_grad():
        layer.weight.copy_(layer.weight + layer.weight.T)  # already triangular-symmetric
    before = layer.weight.detach().clone()
    state = torch.get_rng_state()
    ws.symmetrize(host(layer), channel="triangular", include=["layer"])
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(layer.weight, before)
    const = nn.Conv2d(8, 8, 3)
    nn.init.constant_(const.weight, 0.25)
    ws.symmetrize(host(const), channel="eighth", spatial="dihedral", include=["layer"])
    assert bool((const.weight == 0.25).all())


def test_init_is_checked_by_name():
    with pytest.raises(ValueError, match=r"init='xavier'.*'variance'.*'project'"):
        ws.symmetrize(host(nn.Linear(8, 8)), channel="triangular", include=["layer"], init="xavier")
    with pytest.raises(ValueError, match=r"init='orbit'.*'variance'.*'project'"):
        attach(nn.Linear(8, 8), "weight", "triangular", init="orbit")


# the measurement of issue 13 (WRN-16-4-bottleneck group 3, n = 64, the paper's placement '*conv2'): std of the
# projected conv2 weights relative to the dense init
WRN_PROJECT = {"triangular": 0.71, "transpose": 0.81, "tri+spa": 0.58, "bisymmetric": 0.50, "block": 0.50,
               "eighth": 0.36, "average": 0.71}
GUIDE = Path(__file__).resolve().parents[1] / "docs" / "training.md"


def test_training_guide_init_section_runs_and_its_table_is_what_its_code_prints(capsys):
    text = GUIDE.read_text()
    section = text[text.index("## Initialising symmetric layers"):text.index("## Checkpoint format")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    exec(compile(blocks[0], "docs/training.md (example)", "exec"), {})
    capsys.readouterr()
    exec(compile(blocks[1], "docs/training.md (table)", "exec"), {})
    table = section[section.index("| symmetry |"):section.index("*Made by the code below")].strip()
    assert capsys.readouterr().out.strip() == table
    rows = {cells[1].strip(" `"): (float(cells[2].strip(" ×")), float(cells[3].strip(" ×")))
            for cells in (line.split("|") for line in table.splitlines()[2:])}
    for spec, expected in WRN_PROJECT.items():
        assert abs(rows[spec][0] - expected) < 0.015, (spec, rows[spec])
    assert all(abs(variance - 1) < 0.015 for _, variance in rows.values()), rows
