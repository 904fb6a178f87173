"""``qk-tie``: attention's key projection tied to its query projection (W_k = W_q, W_v free) through the orbit gather.

Counts are closed forms (2d² of 3d² stored); the expanded weight is [W_q; W_q; W_v] with the free vector laid out as
W_q then W_v; every head's score matrix is symmetric; gradients equal a hand-tied reference in float64; weight files
(validated), ``load_model``, ``unsymmetrize`` and the dense export keep the function; everything else is refused with
one line that says what works.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import weightsym as ws
from weightsym.fast.export import dense_state_dict, load_dense
from weightsym.files import ModelFileError
from weightsym.nn.parametrization import symmetric_parametrization
from weightsym.symmetry import SymmetryError, get_symmetry

D, HEADS = 8, 2

def tied_mha(d=D, heads=HEADS, dtype=torch.float64, init="variance", **kwargs):
    mha = nn.MultiheadAttention(d, heads, batch_first=True, dtype=dtype, **kwargs)
    report = ws.symmetrize(mha, channel="qk-tie", init=init, include=[""])  # the attention layer only
    return mha, report

# ------------------------------------------------------------------------------------------------- the symmetry itself
def test_registry_name_aliases_and_spec():
    tie = get_symmetry("qk-tie")
    assert tie.spec == "qk-tie" and get_symmetry(tie.spec) == tie
    assert get_symmetry("qktie", "channel") is tie and get_symmetry("tied-qk") is tie
    assert ws.available_symmetries("tie") == ["qk-tie"]
    assert "qk-tie" not in ws.available_symmetries()  # not a plane symmetry every square plane takes
    with pytest.raises(ValueError, match="is a channel symmetry, but a spatial symmetry was asked for"):
        get_symmetry("qk-tie", "spatial")

@pytest.mark.parametrize("d", [1, 3, 4, 8, 12])
def test_closed_form_counts_and_layout(d):
    tie = get_symmetry("qk-tie")
    shape = (3 * d, d)
    assert tie.free_count(shape, 3) == tie.stored_count(shape, 3) == 2 * d * d
    free = torch.randn(2 * d * d, dtype=torch.float64)
    w = tie.expand(free, shape, 3)
    wq, wk, wv = w.split(d)
    assert torch.equal(wq, wk) and torch.equal(wq.reshape(-1), free[:d * d]) and torch.equal(wv.reshape(-1),
                                                                                             free[d * d:])
    assert tie.holds(w, row_blocks=3)
    dense = torch.randn(shape, dtype=torch.float64)
    assert not tie.holds(dense, row_blocks=3)
    q, k, v = dense.split(d)
    torch.testing.assert_close(tie.expand(tie.project(dense, 3), shape, 3), torch.cat([(q + k) / 2, (q + k) / 2, v]))
    assert torch.equal(tie.project(w, 3), free)  # a tied weight projects to exactly its own values

def test_counts_of_symmetrized_attention_and_encoder_layer():
    mha, report = tied_mha()
    (row,) = report.symmetric
    assert (row.tensor, row.symmetry, row.dense, row.stored, row.free) == ("in_proj_weight", "qk-tie", 3 * D * D,
                                                                           2 * D * D, 2 * D * D)
    counts = ws.count_parameters(mha)
    assert counts.dense == 3 * D * D + 3 * D + D * D + D
    assert counts.stored == counts.free == 2 * D * D + 3 * D + D * D + D
    layer = nn.TransformerEncoderLayer(D, HEADS, dim_feedforward=4 * D)
    dense = ws.count_parameters(layer).dense
    report = ws.symmetrize(layer, channel="qk-tie", include=["*"])  # only the attention takes it; the rest say why
    assert [r.symmetry for r in report.rows] == ["qk-tie", None, None, None]
    assert all("applies only to nn.MultiheadAttention's in_proj_weight" in r.note for r in report.rows[1:])
    assert ws.count_parameters(layer).stored == dense - D * D

# --------------------------------------------------------------------------------------------------- what the model does
def test_init_variance_copies_q_into_k_and_project_averages():
    torch.manual_seed(0)
    plain = nn.MultiheadAttention(D, HEADS, batch_first=True, dtype=torch.float64)
    q, k, v = plain.in_proj_weight.detach().clone().split(D)
    for init, expected_q in (("variance", q), ("project", (q + k) / 2)):
        mha = nn.MultiheadAttention(D, HEADS, batch_first=True, dtype=torch.float64)
        mha.load_state_dict(plain.state_dict())
        ws.symmetrize(mha, channel="qk-tie", init=init, include=[""])
        wq, wk, wv = mha.in_proj_weight.detach().split(D)
        torch.testing.assert_close(wq, expected_q, rtol=0, atol=1e-15)
        assert torch.equal(wk, wq) and torch.equal(wv, v)

def test_score_matrix_is_symmetric_in_every_head():
    mha, _ = tied_mha(bias=False)
    x = torch.randn(5, D, dtype=torch.float64)
    wq, wk, _ = mha.in_proj_weight.detach().split(D)
    dh = D // HEADS
    for h in range(HEADS):
        rows = slice(h * dh, (h + 1) * dh)
        scores = (x @ wq[rows].T) @ (x @ wk[rows].T).T
        torch.testing.assert_close(scores, scores.T, rtol=0, atol=0)
    (measured,) = ws.analysis.attention_symmetry(mha)
    assert measured.score == pytest.approx(1.0, abs=1e-12)

def hand_tied_attention(x, wq, wv, bias, out_w, out_b, heads):
    """Attention whose key projection literally is the query projection ``wq`` (the reference the tie must equal)."""
    d = wq.shape[0]
    return F.multi_head_attention_forward(x, x, x, d, heads, torch.cat([wq, wq, wv]), bias, None, None, False, 0.0,
                                          out_w, out_b, training=True, need_weights=False)[0]

def test_gradient_of_free_values_is_the_q_plus_k_gradient_in_float64():
    torch.manual_seed(1)
    mha, _ = tied_mha()
    with torch.no_grad():
        mha.parametrizations.in_proj_weight.original.normal_(0, 0.3)
        mha.in_proj_bias.normal_(0, 0.1)
    x = torch.randn(3, 5, D, dtype=torch.float64)
    target = torch.randn(3, 5, D, dtype=torch.float64)
    ((mha(x, x, x)[0] - target) ** 2).sum().backward()
    grad = mha.parametrizations.in_proj_weight.original.grad

    # a dense copy of the same weights: the gradient of the free values is G_q + G_k (then G_v)
    dense = nn.MultiheadAttention(D, HEADS, batch_first=True, dtype=torch.float64)
    dense.load_state_dict(dense_state_dict(mha))
    ((dense(x, x, x)[0] - target) ** 2).sum().backward()
    gq, gk, gv = dense.in_proj_weight.grad.split(D)
    torch.testing.assert_close(grad, torch.cat([(gq + gk).reshape(-1), gv.reshape(-1)]), rtol=1e-12, atol=1e-12)

    # a module where W_k literally is W_q: the same gradients for W_q and W_v
    free = mha.parametrizations.in_proj_weight.original.detach()
    wq = free[:D * D].view(D, D).clone().requires_grad_()
    wv = free[D * D:].view(D, D).clone().requires_grad_()
    out = hand_tied_attention(x.transpose(0, 1), wq, wv, mha.in_proj_bias.detach(), mha.out_proj.weight.detach(),
                              mha.out_proj.bias.detach(), HEADS).transpose(0, 1)
    torch.testing.assert_close(out, mha(x, x, x)[0], rtol=1e-12, atol=1e-12)
    ((out - target) ** 2).sum().backward()
    torch.testing.assert_close(grad, torch.cat([wq.grad.reshape(-1), wv.grad.reshape(-1)]), rtol=1e-12, atol=1e-12)

def test_tie_holds_bit_for_bit_after_training_steps():
    mha, _ = tied_mha(dtype=torch.float32)
    opt = torch.optim.AdamW(mha.parameters(), lr=0.01, weight_decay=0.1)
    x = torch.randn(2, 4, D)
    for _ in range(3):
        opt.zero_grad()
        mha(x, x, x)[0].square().sum().backward()
        opt.step()
    wq, wk, wv = mha.in_proj_weight.detach().split(D)
    assert torch.equal(wq, wk) and not torch.equal(wq, wv)

def test_eval_fast_path_reads_the_tied_weight(monkeypatch):
    mha, _ = tied_mha(dtype=torch.float32)
    x = torch.randn(2, 4, D)
    mha.train()
    expected = mha(x, x, x, need_weights=False)[0].detach()
    calls = []
    native = torch._native_multi_head_attention
    monkeypatch.setattr(torch, "_native_multi_head_attention", lambda *a, **k: calls.append(a[5]) or native(*a, **k))
    mha.eval()
    with torch.no_grad():
        fast = mha(x, x, x, need_weights=False)[0]
    assert len(calls) == 1 and torch.equal(calls[0][:D], calls[0][D:2 * D])
    torch.testing.assert_close(fast, expected)

# ----------------------------------------------------------------------------------- files, unsymmetrize, dense export
def build_lm():
    from weightsym.models import create_model

    torch.manual_seed(0)
    model = create_model("transformer-lm", 30, emb_size=D, hidden_size=D, num_layers=2, heads=HEADS,
                         context=8, dropout=0.0)
    report = ws.symmetrize(model, channel="qk-tie", include=["*.attn"])
    assert [r.name for r in report.symmetric] == ["blocks.0.attn", "blocks.1.attn"]
    return model.eval()

def test_save_load_and_load_model_round_trip(tmp_path):
    model = build_lm()
    with torch.no_grad():
        for _, module, _ in ws.symmetric_layers(model):
            module.parametrizations.in_proj_weight.original.normal_(0, 0.3)
    tokens = torch.randint(0, 30, (8, 2))
    expected = model(tokens)[0]
    path = ws.save(model, tmp_path / "tied.safetensors")
    meta = ws.read_metadata(path)["layers"]["blocks.0.attn.in_proj_weight"]
    assert meta == {"symmetry": "qk-tie", "shape": [3 * D, D], "row_blocks": 3, "block_mask": None,
                    "stored": 2 * D * D, "kind": "MultiheadAttention"}
    other = build_lm()
    ws.load(path, other)
    assert torch.equal(other(tokens)[0], expected)
    rebuilt, _ = ws.load_model(path)
    assert torch.equal(rebuilt(tokens)[0], expected)
    assert symmetric_parametrization(rebuilt.blocks[1].attn, "in_proj_weight").symmetry.spec == "qk-tie"
    dense = ws.files.read_model_file(path).dense_state()["blocks.0.attn.in_proj_weight"]
    assert torch.equal(dense, model.blocks[0].attn.in_proj_weight)

@pytest.mark.parametrize("edit,message", [
    (("block_mask", "110"), "takes no block mask"),
    (("kind", None), "not to a weight of no known layer kind"),
    (("symmetry", "triangular"), "triangular on shape .* stores 108 values but the file holds 128"),
])
def test_file_validator_refuses_edited_entries(tmp_path, edit, message):
    from hostile_files import forge, setting

    path = ws.save(build_lm(), tmp_path / "tied.safetensors")
    field, value = edit
    change = setting(("layers", "blocks.0.attn.in_proj_weight", field), value, delete=value is None)
    forged = tmp_path / "forged.safetensors"
    forged.write_bytes(forge(path.read_bytes(), change))
    with pytest.raises(ModelFileError, match=message):
        ws.files.read_model_file(forged)

def test_unsymmetrize_and_dense_export_give_identical_outputs(tmp_path):
    model = build_lm()
    tokens = torch.randint(0, 30, (8, 2))
    expected = model(tokens)[0]
    path = ws.fast.export_dense(model, tmp_path / "dense.safetensors")
    from weightsym.models import create_model

    plain = create_model("transformer-lm", 30, emb_size=D, hidden_size=D, num_layers=2, heads=HEADS,
                         context=8, dropout=0.0).eval()
    load_dense(path, plain)
    assert torch.equal(plain(tokens)[0], expected)
    ws.unsymmetrize(model)
    assert not ws.symmetric_layers(model) and type(model.blocks[0].attn) is nn.MultiheadAttention
    assert torch.equal(model(tokens)[0], expected)
    wq, wk, _ = model.blocks[0].attn.in_proj_weight.detach().split(D)
    assert torch.equal(wq, wk)

# -------------------------------------------------------------------------------------------------------------- refusals
def test_refusals_say_what_works():
    where = "applies only to nn.MultiheadAttention's in_proj_weight"
    with pytest.raises(SymmetryError, match=f"Linear `0` weight .*{where}.*not to a Linear weight of shape"):
        ws.symmetrize(nn.Sequential(nn.Linear(D, 3 * D)), channel="qk-tie", include=["*"], strict=True)
    gru = nn.GRU(D, D)  # three gate blocks are not q, k, v
    with pytest.raises(SymmetryError, match=f"{where}.*not to a GRU weight"):
        ws.symmetrize(gru, channel="qk-tie", hh_gates="111", ih_gates="111", include=[""], strict=True)
    with pytest.raises(SymmetryError, match=f"{where}.*not to a GRU weight"):
        ws.nn.attach(gru, "weight_hh_l0", "qk-tie", row_blocks=3)
    with pytest.raises(SymmetryError, match=r"1 row block\(s\) \(separate q/k/v tensors are not tied\)"):
        ws.symmetrize(nn.MultiheadAttention(D, HEADS, kdim=4), channel="qk-tie", strict=True)
    with pytest.raises(SymmetryError, match=r"takes no qkv mask \(got qkv='110'; leave qkv at '111'\)"):
        ws.symmetrize(nn.MultiheadAttention(D, HEADS), channel="qk-tie", qkv="110")
    with pytest.raises(SymmetryError, match="takes no block mask"):
        ws.nn.attach(nn.MultiheadAttention(D, HEADS), "in_proj_weight", "qk-tie", row_blocks=3,
                     block_mask=(True, True, False))
    with pytest.raises(ValueError, match="qk-tie does not compose with a spatial symmetry"):
        get_symmetry("qk-tie+transpose")
    ok, why = get_symmetry("qk-tie").applies_to((3 * D, D), 1)
    assert not ok and why.startswith("qk-tie applies only to") and "\n" not in why
    # an all-ones mask means the same tie and is recorded as none
    param = ws.nn.attach(nn.MultiheadAttention(D, HEADS), "in_proj_weight", "qk-tie", row_blocks=3,
                         block_mask=(True, True, True))
    assert param.block_mask is None and param.layout.stored_count == 2 * D * D


def test_language_model_config_ties_every_attention_layer():
    from weightsym.lm.train import LMConfig, build_model

    config = LMConfig(rnn_type="transformer", emb=D, hidden=D, layers=2, heads=HEADS, bptt=8, channel="qk-tie",
                      include=["*.attn"])
    model, report = build_model(config, 30)
    assert [(r.name, r.symmetry, r.stored) for r in report.symmetric] == [
        (f"blocks.{i}.attn", "qk-tie", 2 * D * D) for i in range(2)]
    assert all(q.score == pytest.approx(1.0, abs=1e-6) for q in ws.analysis.attention_symmetry(model))
