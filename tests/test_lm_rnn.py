"""Symmetric nn.LSTM / nn.GRU: same function as a stock module holding the expanded weights, on the fused kernel.

Every channel symmetry that applies to square gate blocks is checked, with gate masks, several layers, both
directions, batch_first, inter-layer dropout and packed sequences; gradients of the free values are the adjoint of
the expansion applied to the stock module's weight gradients.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import weightsym as ws
from weightsym.nn.parametrization import SymmetricParametrization, symmetric_parametrization

H = 8  # divisible by 4: every channel symmetry (eighth needs n = 0 mod 4) applies
SQUARE_SYMMETRIES = ["triangular", "centrosymmetric", "bisymmetric", "block", "eighth", "repeat:2", "repeat:2:in",
                     "average", "eigen", "lowrank:3"]
GATES = {nn.LSTM: 4, nn.GRU: 3}


def make(cls, channel, hh, ih, **kwargs):
    """A symmetric ``cls(H, H, ...)`` (via a host so the layer is neither stem nor classifier) and its report."""
    rnn = cls(H, H, **kwargs)
    report = ws.symmetrize(nn.ModuleDict({"rnn": rnn}), channel=channel, hh_gates=hh, ih_gates=ih, include=["rnn"])
    return rnn, report


def stock_copy(rnn, cls, **kwargs):
    """A plain ``cls`` loaded with the symmetric module's expanded weights."""
    stock = cls(H, H, **kwargs)
    stock.load_state_dict({name: getattr(rnn, name).detach().clone() for name in rnn._flat_weights_names})
    assert type(stock) is cls
    return stock


def outputs(module, x, seed=0):
    torch.manual_seed(seed)
    out, hidden = module(x)
    hidden = hidden if isinstance(hidden, tuple) else (hidden,)
    return out, hidden


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("channel", SQUARE_SYMMETRIES)
def test_matches_stock_module_every_symmetry(cls, channel):
    gates = GATES[cls]
    hh, ih = ("1011", "0110") if gates == 4 else ("101", "011")
    kwargs = dict(num_layers=3, bidirectional=True, batch_first=True, dropout=0.3)  # 3 layers: dropout twice
    rnn, report = make(cls, channel, hh, ih, **kwargs)
    # hh: 3 layers x 2 directions; ih: only layer 0 is square (layers 1, 2 read both directions: 2H inputs), except
    # for block and repeat, which also tie rectangular blocks
    if channel in ("block", "repeat:2", "repeat:2:in"):
        assert len(report.symmetric) == 12
    else:
        assert len(report.symmetric) == 3 * 2 + 2
        assert {r.tensor for r in report.skipped} == {"weight_ih_l1", "weight_ih_l1_reverse", "weight_ih_l2",
                                                      "weight_ih_l2_reverse"}
    stock = stock_copy(rnn, cls, **kwargs)
    x = torch.randn(3, 7, H)
    for train in (False, True):  # eval, and train mode with inter-layer dropout (same RNG seed)
        rnn.train(train), stock.train(train)
        (out, hid), (ref, ref_hid) = outputs(rnn, x), outputs(stock, x)
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
        for a, b in zip(hid, ref_hid):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    # every selected gate block obeys the symmetry, every other block is left alone
    for name, mask in (("weight_hh_l1_reverse", hh), ("weight_ih_l0_reverse", ih)):
        param = symmetric_parametrization(rnn, name)
        assert param is not None and param.block_mask == tuple(c == "1" for c in mask)
        assert param.layout.holds(getattr(rnn, name))
    blocks = rnn.weight_hh_l0.detach().view(gates, H, H)
    assert not torch.equal(blocks[1], blocks[1].T)  # gate 1 is dense in the hh mask


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("channel", ["triangular", "average", "block", "eigen"])
def test_free_gradients_are_the_adjoint_of_stock_gradients(cls, channel):
    gates = GATES[cls]
    kwargs = dict(num_layers=2, bidirectional=True)
    rnn, _ = make(cls, channel, "1" * gates, "1" * gates, **kwargs)
    stock = stock_copy(rnn, cls, **kwargs)
    x = torch.randn(6, 4, H)
    target = torch.randn(6, 4, 2 * H)
    for module in (rnn, stock):
        ((module(x)[0] - target) ** 2).mean().backward()
    for name in rnn._flat_weights_names:
        param = symmetric_parametrization(rnn, name)
        if param is None:  # biases: plain parameters, identical gradients
            torch.testing.assert_close(rnn._parameters[name].grad,
                                       getattr(stock, name).grad, atol=1e-6, rtol=1e-5)
            continue
        free = rnn.parametrizations[name].original
        assert free.grad is not None and free.grad.abs().sum() > 0
        leaf = free.detach().requires_grad_()
        (expected,) = torch.autograd.grad(param(leaf), leaf, getattr(stock, name).grad)
        torch.testing.assert_close(free.grad, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("hh", ["1111", "1000", "0101", "0000"])
@pytest.mark.parametrize("ih", [None, "0000", "0010", "1111"])
def test_gate_masks(hh, ih):
    rnn, report = make(nn.LSTM, "triangular", hh, ih, num_layers=2)
    expected = 2 * ("1" in hh) + 2 * (ih is not None and "1" in ih)
    assert len(report.symmetric) == expected
    per_block = H * (H + 1) // 2
    for row in report.rows:
        mask = hh if "hh" in row.tensor else (ih or "0000")
        ones = mask.count("1")
        assert row.stored == ones * per_block + (4 - ones) * H * H, row
    for layer in range(2):
        w = getattr(rnn, f"weight_hh_l{layer}").detach().view(4, H, H)
        for g, bit in enumerate(hh):
            assert torch.equal(w[g], w[g].T) == (bit == "1")
    stock = stock_copy(rnn, nn.LSTM, num_layers=2)
    x = torch.randn(5, 2, H)
    torch.testing.assert_close(rnn(x)[0], stock(x)[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_packed_sequences_match_stock(cls):
    gates = GATES[cls]
    kwargs = dict(num_layers=2, bidirectional=True, batch_first=True)
    rnn, _ = make(cls, "average", "1" * gates, "1" * gates, **kwargs)
    stock = stock_copy(rnn, cls, **kwargs)
    x = torch.randn(4, 6, H)
    lengths = [3, 6, 1, 4]  # unsorted: enforce_sorted=False
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, hid = rnn(packed)
    ref, ref_hid = stock(packed)
    torch.testing.assert_close(out.data, ref.data, atol=1e-6, rtol=1e-5)
    for a, b in zip(hid if isinstance(hid, tuple) else (hid,), ref_hid if isinstance(ref_hid, tuple) else (ref_hid,)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    padded, got_lengths = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
    assert got_lengths.tolist() == lengths
    # one sequence alone gives the same outputs as inside the packed batch
    torch.testing.assert_close(padded[2, :1], rnn(x[2:3, :1])[0][0], atol=1e-6, rtol=1e-5)


def test_each_weight_expanded_once_per_forward_call(monkeypatch):
    rnn, report = make(nn.LSTM, "triangular", "1111", "1111", num_layers=2, bidirectional=True)
    calls = []
    original = SymmetricParametrization.forward

    def counting(self, free):
        calls.append(id(self))
        return original(self, free)

    monkeypatch.setattr(SymmetricParametrization, "forward", counting)
    x = torch.randn(35, 3, H)  # 35 time steps: still one expansion per weight, not one per step
    rnn(x)
    n = len(report.symmetric)
    assert n == 6  # hh: 2 layers x 2 directions; ih: layer 0 only (layer 1 reads 2H inputs)
    assert len(calls) == n and len(set(calls)) == n
    calls.clear()
    rnn(x)[0].sum().backward()
    assert len(calls) == n


@pytest.mark.parametrize("channel", ["triangular", "average", "eighth"])
def test_loads_dense_state_dict_by_projection(channel):
    dense = nn.LSTM(H, H, num_layers=2)
    rnn, _ = make(nn.LSTM, channel, "1111", "1111", num_layers=2)
    rnn.load_state_dict(dense.state_dict())
    for name in rnn._flat_weights_names:
        param = symmetric_parametrization(rnn, name)
        target = getattr(dense, name).detach()
        if param is None:
            assert torch.equal(getattr(rnn, name), target)
            continue
        expected = param.layout.expand(param.layout.project(target))
        torch.testing.assert_close(getattr(rnn, name).detach(), expected)
        assert param.layout.holds(getattr(rnn, name), atol=1e-6)
    if channel in ("triangular", "average"):  # nearest symmetric matrix: (W + Wᵀ) / 2 per gate block
        w = dense.weight_hh_l1.detach().view(4, H, H)
        torch.testing.assert_close(rnn.weight_hh_l1.detach().view(4, H, H), (w + w.transpose(1, 2)) / 2)


def test_unsymmetrize_restores_the_stock_class_and_function():
    rnn, _ = make(nn.LSTM, "average", "1111", None, num_layers=2)
    x = torch.randn(5, 2, H)
    before = rnn(x)[0].detach()
    clone = copy.deepcopy(rnn)
    torch.testing.assert_close(clone(x)[0], before)
    ws.unsymmetrize(nn.ModuleDict({"rnn": rnn}))
    assert type(rnn) is nn.LSTM and type(rnn).forward is nn.LSTM.forward
    torch.testing.assert_close(rnn(x)[0], before)
    assert set(rnn.state_dict()) == set(nn.LSTM(H, H, num_layers=2).state_dict())


def test_training_keeps_symmetry_and_changes_free_values():
    rnn, _ = make(nn.LSTM, "triangular", "1111", None, num_layers=2)
    opt = torch.optim.SGD(rnn.parameters(), lr=0.5)
    free = rnn.parametrizations.weight_hh_l0.original
    before = free.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        rnn(torch.randn(5, 2, H))[0].pow(2).mean().backward()
        opt.step()
    assert not torch.equal(free.detach(), before)
    w = rnn.weight_hh_l0.detach().view(4, H, H)
    assert torch.equal(w, w.transpose(1, 2))


def test_symmetric_ih_needs_square_input_blocks():
    rnn = nn.LSTM(6, H)
    host = nn.ModuleDict({"rnn": rnn})
    report = ws.symmetrize(host, channel="triangular", hh_gates="1111", ih_gates="1111", include=["rnn"])
    ih = next(r for r in report.rows if r.tensor == "weight_ih_l0")
    assert ih.symmetry is None and "8 out x 6 in" in ih.note
    with pytest.raises(ws.SymmetryError, match="weight_ih_l0"):
        ws.symmetrize(nn.ModuleDict({"rnn": nn.LSTM(6, H)}), channel="triangular", ih_gates="1111",
                      include=["rnn"], strict=True)
