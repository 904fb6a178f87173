"""Symmetries attached to real modules: storage, training invariance, round trips, errors."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

import weightsym as ws
from weightsym.symmetry import SymmetryError


def convnet(c=8, groups=1):
    return nn.Sequential(
        nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=1, groups=groups), nn.BatchNorm2d(c), nn.ReLU(),
        nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * c, 2 * c), nn.ReLU(), nn.Linear(2 * c, 10),
    )


SYMS = [("triangular", None), ("block", None), ("eighth", None), ("average", None), ("eigen", None),
        ("lowrank:2", None), ("repeat:2", None), ("centrosymmetric", None), ("bisymmetric", None),
        (None, "dihedral"), (None, "transpose"), (None, "hflip"), (None, "rot180"), ("triangular", "transpose")]


def symmetric_tensors_hold(model):
    layers = ws.symmetric_layers(model)
    assert layers, "no symmetric layer"
    for qualified, module, sym in layers:
        tensor = qualified.rsplit(".", 1)[-1]
        p = ws.nn.symmetric_parametrization(module, tensor)
        w = getattr(module, tensor)
        if not sym.holds(w, atol=0.0, row_blocks=p.row_blocks, block_mask=p.block_mask):
            return False
    return True


def test_default_skips_stem_and_classifier_and_reports():
    model = convnet()
    report = ws.symmetrize(model, channel="triangular", spatial="dihedral")
    by_name = {r.name: r for r in report.rows}
    assert by_name["0"].symmetry is None and "stem" in by_name["0"].note
    assert by_name["14"].symmetry is None and "classifier" in by_name["14"].note
    assert by_name["3"].symmetry == "triangular+dihedral"
    assert by_name["6"].symmetry == "triangular+dihedral"
    # 8 -> 16 conv: not square, still takes the spatial part, with the reason recorded
    assert by_name["8"].symmetry == "dihedral" and "square" in by_name["8"].note
    assert by_name["12"].symmetry == "triangular"  # square Linear: channel only, spatial noted
    assert by_name["3"].stored == 8 * 9 // 2 * 3
    text = str(report)
    assert "triangular+dihedral" in text and "classifier" in text


def test_include_exclude_globs():
    model = convnet()
    report = ws.symmetrize(model, channel="triangular", include=["3", "1*"])
    assert [r.name for r in report.symmetric] == ["3", "12"]
    model = convnet()
    report = ws.symmetrize(model, channel="triangular", exclude=["6"])
    assert [r.name for r in report.symmetric] == ["3", "12"]
    assert {r.name: r.note for r in report.rows}["6"] == "excluded"


def test_storage_is_compact_everywhere():
    model = convnet(16)
    dense = sum(p.numel() for p in model.parameters())
    ws.symmetrize(model, channel="block", spatial="dihedral")
    counts = ws.count_parameters(model)
    stored = sum(p.numel() for p in model.parameters())
    assert counts.dense == dense and counts.stored == stored < dense
    assert sum(t.numel() for t in model.state_dict().values() if t.is_floating_point()) < dense + 200
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    assert sum(s["exp_avg"].numel() for s in opt.state.values()) == stored
    # closed form for the 16x16 3x3 layers: block 16²/4 orbits x dihedral 3 orbits
    row = [r for r in ws.symmetrize(convnet(16), channel="block", spatial="dihedral").rows if r.name == "3"][0]
    assert row.stored == 64 * 3


@pytest.mark.parametrize("channel,spatial", SYMS, ids=[f"{c}-{s}" for c, s in SYMS])
@pytest.mark.parametrize("optim", ["sgd", "adamw"])
def test_symmetry_holds_bit_exactly_after_training(channel, spatial, optim):
    model = convnet(8)
    ws.symmetrize(model, channel=channel, spatial=spatial)
    if optim == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert symmetric_tensors_hold(model)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_state_dict_round_trip_across_modes():
    torch.manual_seed(1)
    a = convnet(); ws.symmetrize(a, channel="triangular", spatial="transpose")
    b = convnet(); ws.symmetrize(b, channel="triangular", spatial="transpose")
    a.train(); a(torch.randn(4, 3, 8, 8))  # update BN statistics
    a.eval(); b.train()
    b.load_state_dict(a.state_dict())
    b.eval()
    x = torch.randn(3, 3, 8, 8)
    assert torch.equal(a(x), b(x))


def test_dense_state_dict_loads_by_projection():
    dense = convnet()
    sym = convnet(); ws.symmetrize(sym, channel="triangular")
    sym.load_state_dict(dense.state_dict())
    w = dense[3].weight.detach()
    torch.testing.assert_close(sym[3].weight, (w + w.transpose(0, 1)) / 2)


def test_unsymmetrize_gives_identical_outputs_and_plain_state_dict():
    model = convnet(); ws.symmetrize(model, channel="eighth", spatial="dihedral")
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    y = model(x)
    ws.unsymmetrize(model)
    assert ws.symmetric_layers(model) == []
    assert torch.equal(model(x), y)
    plain = convnet(); plain.eval()
    plain.load_state_dict(model.state_dict())
    assert torch.equal(plain(x), y)


def test_save_load_file_and_mismatch_errors(tmp_path):
    model = convnet(); ws.symmetrize(model, channel="triangular", spatial="dihedral")
    path = ws.save(model, tmp_path / "w.safetensors", metadata={"note": "hi"})
    stored_bytes = 4 * sum(t.numel() for t in model.state_dict().values() if t.dtype == torch.float32)
    assert path.stat().st_size < stored_bytes + 4096
    twin = convnet(); ws.symmetrize(twin, channel="triangular", spatial="dihedral")
    assert ws.load(path, twin) == {"note": "hi"}
    model.eval(); twin.eval()
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(model(x), twin(x))
    other = convnet(); ws.symmetrize(other, channel="block")
    with pytest.raises(ValueError, match=r"layer `3\.weight`.*triangular\+dihedral.*block"):
        ws.load(path, other)
    with pytest.raises(ValueError, match="layer `3.weight`.*dense"):
        ws.load(path, convnet())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ws.load(tmp_path / "missing.safetensors", twin)
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a safetensors file"):
        ws.load(tmp_path / "junk.safetensors", twin)


def test_strict_raises_naming_the_layer():
    model = convnet()
    with pytest.raises(SymmetryError, match=r"Conv2d `8`.*16 out x 8 in"):
        ws.symmetrize(model, channel="triangular", strict=True)


def test_bad_names_and_double_application():
    with pytest.raises(ValueError, match="valid names"):
        ws.symmetrize(convnet(), channel="triangle")
    with pytest.raises(ValueError, match="needs a channel and/or a spatial"):
        ws.symmetrize(convnet())
    model = convnet(); ws.symmetrize(model, channel="tri")
    with pytest.raises(ValueError, match="already symmetric"):
        ws.symmetrize(model, channel="tri")
    with pytest.raises(ValueError, match="hh_gates='11'.*4 characters"):
        ws.symmetrize(nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4), nn.Linear(4, 4)), channel="tri", hh_gates="11",
                      include=["1"])


def test_grouped_conv_symmetric_per_group():
    model = convnet(8, groups=2)
    report = ws.symmetrize(model, channel="triangular", include=["3"])
    assert report.symmetric[0].stored == 2 * (4 * 5 // 2) * 9
    w = model[3].weight.detach()
    for g in range(2):
        block = w[4 * g:4 * g + 4]
        assert torch.equal(block, block.transpose(0, 1))


def test_deepcopy_dtype_and_compile():
    model = convnet(); ws.symmetrize(model, channel="triangular", spatial="dihedral"); model.eval()
    x = torch.randn(2, 3, 8, 8)
    clone = copy.deepcopy(model)
    assert torch.equal(clone(x), model(x))
    clone.parametrizations if hasattr(clone, "parametrizations") else None
    d = copy.deepcopy(model).to(torch.float64)
    assert d[3].weight.dtype == torch.float64
    torch.testing.assert_close(d(x.double()).float(), model(x), atol=1e-5, rtol=1e-4)
    assert symmetric_tensors_hold(d)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    model = convnet(); ws.symmetrize(model, channel="triangular", spatial="dihedral"); model.eval()
    x = torch.randn(2, 3, 8, 8)
    try:
        compiled = torch.compile(model)
        y = compiled(x)
    except Exception as exc:  # pragma: no cover - no compiler on the machine
        pytest.skip(f"torch.compile unavailable here: {type(exc).__name__}: {str(exc)[:200]}")
    torch.testing.assert_close(y, model(x), atol=1e-5, rtol=1e-5)


def _ddp_steps(model, steps=3):
    """Train ``model`` under a one-process DDP wrapper; every DDP object is gone when this returns."""
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(steps):
        opt.zero_grad()
        ddp(torch.randn(4, 3, 8, 8)).sum().backward()
        opt.step()


def test_ddp_single_process_gloo_keeps_symmetry(tmp_path):
    import gc

    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(29500 + os.getpid() % 1000)
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        model = convnet(); ws.symmetrize(model, channel="block", spatial="dihedral")
        _ddp_steps(model)
        assert symmetric_tensors_hold(model)
    finally:
        # Free the DDP wrapper (and its reducer, which holds the process group) *before* destroying the group, as
        # weightsym.train.distributed.DistContext.cleanup does: a wrapper freed afterwards, while this thread holds
        # the GIL, waits for gloo's worker thread, which needs the GIL (a deadlock seen once in three suite runs).
        gc.collect()
        dist.destroy_process_group()


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("channel", ["triangular", "average", "block", "eigen", "lowrank:3", "bisymmetric"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_matches_stock_module(cls, channel, bidirectional):
    H = 8
    gates = 4 if cls is nn.LSTM else 3
    rnn = cls(H, H, num_layers=2, bidirectional=bidirectional, batch_first=True)
    host = nn.Sequential(nn.Linear(H, H), rnn, nn.Linear(H, H))
    mask = "1011" if gates == 4 else "101"
    report = ws.symmetrize(host, channel=channel, hh_gates=mask, ih_gates="1" * gates)
    hh = [r for r in report.symmetric if "hh" in r.tensor]
    assert len(hh) == 2 * (2 if bidirectional else 1)
    stock = cls(H, H, num_layers=2, bidirectional=bidirectional, batch_first=True)
    stock.load_state_dict({k: getattr(rnn, k).detach() for k in rnn._flat_weights_names})
    x = torch.randn(3, 5, H)
    torch.testing.assert_close(rnn(x)[0], stock(x)[0], atol=1e-6, rtol=1e-6)
    w = rnn.weight_hh_l0.detach().view(gates, H, H)
    assert torch.equal(w[0], w[0].T) or channel not in ("triangular", "average", "eigen", "lowrank:3")
    # gradients flow to the free parameters
    rnn(x)[0].sum().backward()
    free = rnn.parametrizations.weight_hh_l0.original
    assert free.grad is not None and free.grad.abs().sum() > 0
    # a gate left dense (mask 0) is untouched by symmetry: its block differs from its transpose
    assert not torch.equal(w[1], w[1].T)


def test_recurrent_packed_sequences():
    rnn = nn.LSTM(6, 6, batch_first=True)
    host = nn.Sequential(nn.Linear(6, 6), rnn, nn.Linear(6, 6))
    ws.symmetrize(host, channel="average")
    x = torch.randn(3, 5, 6)
    packed = nn.utils.rnn.pack_padded_sequence(x, [5, 3, 2], batch_first=True)
    out, _ = rnn(packed)
    padded, lengths = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
    assert padded.shape == (3, 5, 6) and lengths.tolist() == [5, 3, 2]
    torch.testing.assert_close(padded[0], rnn(x[:1])[0][0])


def test_count_parameters_shared_tensors_once():
    emb = nn.Embedding(10, 6)
    dec = nn.Linear(6, 10)
    dec.weight = emb.weight
    model = nn.ModuleDict({"emb": emb, "mid": nn.Linear(6, 6, bias=False), "dec": dec})
    counts = ws.count_parameters(model)
    assert counts.stored == 60 + 36 + 10 and counts.dense == counts.stored
    ws.symmetrize(model, channel="average", include=["mid"])
    counts = ws.count_parameters(model)
    assert (counts.dense, counts.stored, counts.free) == (106, 106, 106 - 36 + 21)


def test_impossible_repeat_factor_names_the_layer():
    with pytest.raises(SymmetryError, match=r"Conv2d `3` weight \(8, 8, 3, 3\): repeat with 3 copies"):
        ws.symmetrize(convnet(), channel="repeat:3", strict=True)
    report = ws.symmetrize(convnet(), channel="repeat:4")
    assert {r.name: r.symmetry for r in report.rows}["3"] == "repeat:4:out"
