"""Symmetric ``nn.MultiheadAttention`` and the stock transformer layers.

The symmetric attention equals attention computed by hand from the expanded q/k/v weights (float64), in training
mode and in eval mode through the fused fast path; ``qkv`` masks pick exactly the chosen blocks; counts are closed
forms; weight files, ``unsymmetrize``, ``fast.optimize``, fold training and ONNX export keep the function.
"""

from __future__ import annotations

import copy
import importlib.util
import math

import pytest
import torch
from torch import nn

import weightsym as ws
from weightsym.nn.parametrization import symmetric_parametrization

D, HEADS = 8, 2


def by_hand(mha: nn.MultiheadAttention, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """Multi-head self-attention of ``x`` (batch, time, d) from the module's expanded weights, written out."""
    w = mha.in_proj_weight.detach()
    b = mha.in_proj_bias.detach()
    (wq, wk, wv), (bq, bk, bv) = w.split(D), b.split(D)
    batch, steps, _ = x.shape
    heads = mha.num_heads
    dh = D // heads

    def split(t):  # (batch, time, d) -> (batch, heads, time, dh)
        return t.view(batch, steps, heads, dh).transpose(1, 2)

    q, k, v = split(x @ wq.T + bq), split(x @ wk.T + bk), split(x @ wv.T + bv)
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)
    if causal:
        scores = scores.masked_fill(torch.ones(steps, steps, dtype=torch.bool).triu(1), float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, steps, D)
    return out @ mha.out_proj.weight.detach().T + mha.out_proj.bias.detach()


def symmetric_mha(channel="triangular", qkv="110", batch_first=True, dtype=torch.float64, **kwargs):
    mha = nn.MultiheadAttention(D, HEADS, batch_first=batch_first, dtype=dtype)
    report = ws.symmetrize(mha, channel=channel, qkv=qkv, **kwargs)
    with torch.no_grad():  # move the free values away from their start so nothing holds by accident
        for _, module, _ in ws.symmetric_layers(mha):
            for tensor in module.parametrizations.keys():
                module.parametrizations[tensor].original.normal_(0, 0.3)
        mha.in_proj_bias.normal_(0, 0.1)
        mha.out_proj.bias.normal_(0, 0.1)
    return mha, report


def test_symmetric_qk_equals_hand_built_attention_train_and_eval_fast_path(monkeypatch):
    mha, report = symmetric_mha()
    assert [(r.name, r.tensor, r.symmetry) for r in report.rows] == [
        ("MultiheadAttention", "in_proj_weight", "triangular"), ("out_proj", "weight", "triangular")]
    wq, wk, wv = mha.in_proj_weight.detach().split(D)
    assert torch.equal(wq, wq.T) and torch.equal(wk, wk.T) and not torch.equal(wv, wv.T)
    x = torch.randn(3, 5, D, dtype=torch.float64)
    mha.train()  # training mode: the composite path (F.multi_head_attention_forward)
    out, weights = mha(x, x, x)
    torch.testing.assert_close(out, by_hand(mha, x), rtol=1e-10, atol=1e-12)
    assert weights.shape == (3, 5, 5)
    causal, _ = mha(x, x, x, attn_mask=nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64),
                    need_weights=False)
    torch.testing.assert_close(causal, by_hand(mha, x, causal=True), rtol=1e-10, atol=1e-12)

    calls = []  # eval mode, no grad, need_weights=False: the fused kernel reads in_proj_weight itself
    native = torch._native_multi_head_attention
    monkeypatch.setattr(torch, "_native_multi_head_attention", lambda *a, **k: calls.append(a[5]) or native(*a, **k))
    mha.eval()
    with torch.no_grad():
        fast, _ = mha(x, x, x, need_weights=False)
    assert len(calls) == 1 and torch.equal(calls[0], mha.in_proj_weight)  # the expanded symmetric weight
    torch.testing.assert_close(fast, by_hand(mha, x), rtol=1e-10, atol=1e-12)


def test_gradients_reach_free_values_and_symmetry_holds_after_steps():
    mha, _ = symmetric_mha(dtype=torch.float32)
    opt = torch.optim.SGD(mha.parameters(), lr=0.1)
    x = torch.randn(2, 4, D)
    for _ in range(3):
        opt.zero_grad()
        mha(x, x, x)[0].square().sum().backward()
        opt.step()
    free = mha.parametrizations.in_proj_weight.original
    assert free.grad is not None and free.grad.abs().sum() > 0
    wq, wk, wv = mha.in_proj_weight.detach().split(D)
    assert torch.equal(wq, wq.T) and torch.equal(wk, wk.T)
    assert torch.equal(mha.out_proj.weight, mha.out_proj.weight.T)


@pytest.mark.parametrize("qkv", ["100", "010", "001", "110", "101", "011", "111"])
def test_qkv_mask_picks_exactly_the_chosen_blocks(qkv):
    mha = nn.MultiheadAttention(D, HEADS)
    before = mha.in_proj_weight.detach().clone().split(D)
    ws.symmetrize(mha, channel="triangular", qkv=qkv, init="project", include=[""])  # the attention layer only
    assert symmetric_parametrization(mha.out_proj, "weight") is None
    param = symmetric_parametrization(mha, "in_proj_weight")
    assert param.block_mask == tuple(c == "1" for c in qkv) and param.row_blocks == 3
    chosen = qkv.count("1")
    assert param.layout.stored_count == chosen * D * (D + 1) // 2 + (3 - chosen) * D * D
    after = mha.in_proj_weight.detach().split(D)
    for bit, old, new in zip(qkv, before, after):
        if bit == "1":
            assert torch.equal(new, new.T)
            torch.testing.assert_close(new, (old + old.T) / 2)  # init="project": the nearest symmetric block
        else:
            assert torch.equal(new, old) and not torch.equal(new, new.T)  # free: left exactly as it was


def test_qkv_all_zero_leaves_attention_dense_and_bad_mask_names_the_layer():
    host = nn.ModuleDict({"attn": nn.MultiheadAttention(D, HEADS)})
    report = ws.symmetrize(host, channel="triangular", qkv="000", include=["attn"])
    assert not report.symmetric and report.rows[0].note == "no projection selected (qkv)"
    with pytest.raises(ValueError, match=r"qkv='11' for attention layer `attn` must be 3 characters.*q k v"):
        ws.symmetrize(host, channel="triangular", qkv="11", include=["attn"])


def test_separate_kv_sizes_take_one_bit_per_projection():
    mha = nn.MultiheadAttention(D, HEADS, kdim=4, vdim=D)
    report = ws.symmetrize(mha, channel="block", qkv="101")
    rows = {r.tensor: r for r in report.rows}
    assert rows["q_proj_weight"].stored == D * D // 4 and rows["v_proj_weight"].stored == D * D // 4
    assert rows["k_proj_weight"].symmetry is None and rows["k_proj_weight"].note == "no projection selected (qkv)"
    x, kv = torch.randn(3, 2, D), torch.randn(6, 2, 4)
    plain = nn.MultiheadAttention(D, HEADS, kdim=4, vdim=D)
    plain.load_state_dict(ws.fast.materialize(mha).state_dict())
    v = torch.randn(6, 2, D)
    torch.testing.assert_close(mha(x, kv, v)[0], plain(x, kv, v)[0])


def test_separate_qkv_linears_are_chosen_by_name():
    class Attention(nn.Module):  # the hand-written layout: q, k, v and o as Linears
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))

    net = nn.Sequential(nn.Linear(3, D), Attention(), Attention(), nn.Linear(D, 2))
    report = ws.symmetrize(net, channel="triangular", include=["*.q", "*.k"])
    assert sorted(r.name for r in report.symmetric) == ["1.k", "1.q", "2.k", "2.q"]
    assert ws.count_parameters(net).stored == sum(p.numel() for p in nn.Sequential(
        nn.Linear(3, D), Attention(), Attention(), nn.Linear(D, 2)).parameters()) - 4 * (D * D - D * (D + 1) // 2)


def test_closed_form_counts_of_a_symmetric_transformer_encoder_layer():
    d, ff = D, 4 * D
    layer = nn.TransformerEncoderLayer(d, HEADS, dim_feedforward=ff)
    dense = ws.count_parameters(layer).dense
    assert dense == 4 * d * d + 4 * d + 2 * d * ff + ff + d + 4 * d
    report = ws.symmetrize(layer, plan={"self_attn": "triangular", "self_attn.out_proj": "bisymmetric",
                                        "linear*": "block"})
    assert [r.symmetry for r in report.rows] == ["triangular", "bisymmetric", "block", "block"]
    tri, bis = d * (d + 1) // 2, d * (d + 2) // 4
    counts = ws.count_parameters(layer)
    assert counts.dense == dense
    assert counts.stored == counts.free == 3 * tri + 3 * d + bis + d + (ff * d // 4 + ff) + (d * ff // 4 + d) + 4 * d


def test_default_rule_never_takes_attention_for_stem_or_classifier():
    layer = nn.TransformerEncoderLayer(D, HEADS, dim_feedforward=4 * D)
    report = ws.symmetrize(layer, channel="block")
    notes = {r.name: (r.symmetry, r.note) for r in report.rows}
    assert notes["self_attn"][0] == "block" and notes["self_attn.out_proj"][0] == "block"
    assert notes["linear1"][0] == "block" and notes["linear2"] == (None, "last weight layer (classifier)")


def _plain_copy(module, cls, *args, **kwargs):
    plain = cls(*args, **kwargs)
    plain.load_state_dict(ws.fast.materialize(module).state_dict())
    assert not any(n.startswith("parametrizations") for n, _ in plain.named_parameters())
    return plain


def test_transformer_encoder_layer_end_to_end(monkeypatch):
    kwargs = dict(dim_feedforward=4 * D, dropout=0.0, batch_first=True)
    layer = nn.TransformerEncoderLayer(D, HEADS, **kwargs)
    report = ws.symmetrize(layer, channel="block", include=["*"])
    assert len(report.symmetric) == 4 and not report.skipped
    plain = _plain_copy(layer, nn.TransformerEncoderLayer, D, HEADS, **kwargs)
    x = torch.randn(2, 6, D)
    mask = nn.Transformer.generate_square_subsequent_mask(6)
    torch.testing.assert_close(layer(x, src_mask=mask, is_causal=True), plain(x, src_mask=mask, is_causal=True))
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)  # train a few steps: the symmetry holds, outputs follow
    for _ in range(3):
        opt.zero_grad()
        layer(x).square().mean().backward()
        opt.step()
    for _, module, symmetry in ws.symmetric_layers(layer):
        for tensor in module.parametrizations.keys():
            assert symmetric_parametrization(module, tensor).layout.holds(getattr(module, tensor))
    plain = _plain_copy(layer, nn.TransformerEncoderLayer, D, HEADS, **kwargs)
    calls = []  # eval + no grad: the encoder layer's own fused kernel reads the expanded weights
    native = torch._transformer_encoder_layer_fwd
    monkeypatch.setattr(torch, "_transformer_encoder_layer_fwd", lambda *a, **k: calls.append(1) or native(*a, **k))
    layer.eval(), plain.eval()
    with torch.no_grad():
        got, want = layer(x), plain(x)
    assert len(calls) == 2  # both models took the fast path
    torch.testing.assert_close(got, want)


def test_transformer_decoder_layer_matches_plain_copy():
    kwargs = dict(dim_feedforward=4 * D, dropout=0.0)
    layer = nn.TransformerDecoderLayer(D, HEADS, **kwargs)
    report = ws.symmetrize(layer, channel="repeat:2", include=["*"])
    assert {r.name for r in report.symmetric} == {"self_attn", "self_attn.out_proj", "multihead_attn",
                                                  "multihead_attn.out_proj", "linear1", "linear2"}
    plain = _plain_copy(layer, nn.TransformerDecoderLayer, D, HEADS, **kwargs)
    tgt, memory = torch.randn(5, 2, D), torch.randn(7, 2, D)
    torch.testing.assert_close(layer(tgt, memory), plain(tgt, memory))


def test_save_load_round_trip_and_unsymmetrize(tmp_path):
    def build():
        return nn.Sequential(nn.Linear(3, D), nn.TransformerEncoderLayer(D, HEADS, 4 * D, dropout=0.0),
                             nn.Linear(D, 2))

    model = build()
    ws.symmetrize(model, plan={"1.self_attn": "triangular", "1.self_attn.out_proj": "centrosymmetric",
                               "1.linear1": "repeat:4"}, qkv="011")
    with torch.no_grad():
        model[1].self_attn.parametrizations.in_proj_weight.original.normal_()
    path = ws.save(model, tmp_path / "attn.safetensors")
    meta = ws.read_metadata(path)["layers"]["1.self_attn.in_proj_weight"]
    assert meta["block_mask"] == "011" and meta["row_blocks"] == 3 and meta["symmetry"] == "triangular"
    other = build()
    ws.symmetrize(other, plan={"1.self_attn": "triangular", "1.self_attn.out_proj": "centrosymmetric",
                               "1.linear1": "repeat:4"}, qkv="011")
    ws.load(path, other)
    x = torch.randn(4, 5, 3)
    model.eval(), other.eval()
    assert torch.equal(model(x), other(x))
    wrong = build()
    ws.symmetrize(wrong, plan={"1.self_attn": "triangular"}, qkv="110")
    with pytest.raises(ValueError, match="1.self_attn.in_proj_weight"):
        ws.load(path, wrong)
    expected = model(x)
    ws.unsymmetrize(model)
    assert not ws.symmetric_layers(model) and type(model[1].self_attn) is nn.MultiheadAttention
    assert torch.equal(model(x), expected)
    plain = build().eval()
    plain.load_state_dict(model.state_dict())
    assert torch.equal(plain(x), expected)


def test_dense_state_dict_loads_projected():
    mha = nn.MultiheadAttention(D, HEADS)
    dense = {k: v.clone() for k, v in mha.state_dict().items()}
    ws.symmetrize(mha, channel="triangular", qkv="100", include=[""])
    mha.load_state_dict(dense)
    q, k, _ = mha.in_proj_weight.detach().split(D)
    dq, dk, _ = dense["in_proj_weight"].split(D)
    torch.testing.assert_close(q, (dq + dq.T) / 2)
    assert torch.equal(k, dk)


def _lm(**kwargs):
    from weightsym.models import create_model

    return create_model("transformer-lm", num_classes=40, emb_size=16, hidden_size=16, num_layers=2, heads=2,
                        context=8, dropout=0.0, **kwargs)


def test_registry_transformer_load_model_round_trip(tmp_path):
    model = _lm()
    ws.symmetrize(model, channel="block", qkv="110", include=["*.attn", "*.ff.*"])
    with torch.no_grad():
        for _, module, _ in ws.symmetric_layers(model):
            for t in module.parametrizations.keys():
                module.parametrizations[t].original.normal_(0, 0.1)
    path = ws.save(model, tmp_path / "tf.safetensors")
    loaded, description = ws.load_model(path)
    assert description.architecture["name"] == "transformer-lm"
    assert ws.count_parameters(loaded) == ws.count_parameters(model)
    tokens = torch.randint(0, 40, (8, 3))
    model.eval()
    assert torch.equal(loaded(tokens)[0], model(tokens)[0])


def test_optimize_materialises_attention_and_keeps_outputs():
    model = nn.Sequential(nn.Linear(3, 64), nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0, batch_first=True),
                          nn.Linear(64, 2)).eval()
    ws.symmetrize(model, channel="block", include=["1.*"])
    x = torch.randn(2, 5, 3)
    fast = ws.fast.optimize(model)  # size rule; block would pick a structured kernel for a plain Linear
    rows = {r.name: r for r in fast.optimize_report.rows}
    assert rows["1.self_attn.out_proj"].chosen == "dense" and "read directly" in rows["1.self_attn.out_proj"].how
    assert rows["1.linear1"].chosen == "dense" and "read directly" in rows["1.linear1"].how
    assert not ws.symmetric_layers(fast) and isinstance(fast[1].linear1, nn.Linear)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x))


def test_fold_training_leaves_attention_out_proj_on_the_gather_path():
    from weightsym.fast.training import fold_training

    model = nn.Sequential(nn.Linear(3, 64), nn.MultiheadAttention(64, 4), nn.Linear(64, 2))
    host = nn.ModuleDict({"attn": model[1]})
    ws.symmetrize(host, channel="block", include=["attn", "attn.out_proj"])
    report = fold_training(host, policy="always")
    row = next(r for r in report.rows if r.name == "attn.out_proj")
    assert row.path == "gather" and "attention" in row.why
    x = torch.randn(5, 2, 64)
    assert torch.isfinite(host["attn"](x, x, x)[0]).all()


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None,
                    reason="SKIPPED LOUDLY: onnx/onnxscript not installed (pip install 'weightsym[onnx]')")
def test_onnx_export_of_symmetric_attention(tmp_path):
    import onnx
    from onnx.reference import ReferenceEvaluator

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(3, D)
            self.attn = nn.MultiheadAttention(D, HEADS, batch_first=True)
            self.out = nn.Linear(D, 2)

        def forward(self, x):
            h = self.inp(x)
            return self.out(self.attn(h, h, h, need_weights=False)[0])

    model = Net().eval()
    ws.symmetrize(model, channel="triangular", qkv="110")
    x = torch.randn(2, 5, 3)
    path = ws.fast.export_onnx(model, tmp_path / "attn.onnx", x)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    got = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-4, atol=1e-5)


def test_deepcopy_keeps_the_original_intact():
    mha, _ = symmetric_mha(dtype=torch.float32)
    twin = copy.deepcopy(mha)
    ws.unsymmetrize(twin)
    assert symmetric_parametrization(mha, "in_proj_weight") is not None
    x = torch.randn(2, 3, D)
    torch.testing.assert_close(twin(x, x, x)[0], mha(x, x, x)[0])
