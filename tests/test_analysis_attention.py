"""The query-key symmetry score (weightsym.analysis.attention) on constructed symmetric, skew and random forms, on
PyTorch's attention layers and on q/k projection modules, and in `analyze`'s report."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from weightsym.analysis import analyze, attention_symmetry, qk_symmetry
from weightsym.analysis.attention import score_of


def test_a_symmetric_form_scores_one_and_a_skew_form_minus_one():
    w = torch.randn(12, 24)
    assert qk_symmetry(w, w, heads=3).head_scores == pytest.approx([1.0] * 3)
    q = torch.eye(4)
    k = torch.tensor([[0.0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 2], [0, 0, -2, 0]])  # W_qᵀ W_k = k: skew
    result = qk_symmetry(q, k)
    assert result.score == pytest.approx(-1.0) and result.symmetric_norm == pytest.approx(0.0)
    assert result.skew_norm == pytest.approx(float(k.norm()))
    diag = torch.diag(torch.tensor([1.0, -2.0, 3.0]))  # symmetric but indefinite: still 1
    assert score_of(diag) == 1.0 and score_of(torch.zeros(3, 3)) == 0.0


def test_random_forms_score_near_chance():
    torch.manual_seed(0)
    d = 64
    iid = [score_of(torch.randn(d, d)) for _ in range(50)]
    assert abs(sum(iid) / len(iid) - 1 / d) < 0.01  # the expectation is 1/d
    products = [qk_symmetry(torch.randn(d, d), torch.randn(d, d), heads=4).score for _ in range(20)]
    assert all(abs(s) < 0.15 for s in products) and abs(sum(products) / 20) < 0.03


def test_a_mix_scores_by_its_parts():
    torch.manual_seed(1)
    a = torch.randn(8, 8)
    sym, skew = a + a.T, a - a.T
    m = sym + 0.5 * skew
    expected = (float(sym.pow(2).sum()) - 0.25 * float(skew.pow(2).sum())) / float(m.pow(2).sum())
    assert score_of(m) == pytest.approx(expected)  # the two parts are orthogonal


def test_heads_are_scored_one_by_one():
    torch.manual_seed(2)
    w = torch.randn(8, 16)
    k = torch.cat([w[:4], torch.randn(4, 16)])  # head 0 tied, head 1 not
    result = qk_symmetry(w, k, heads=2)
    assert result.head_scores[0] == pytest.approx(1.0) and abs(result.head_scores[1]) < 0.5
    with pytest.raises(ValueError, match="do not split into 3 heads"):
        qk_symmetry(w, k, heads=3)
    with pytest.raises(ValueError, match="grouped-query"):
        qk_symmetry(w, k[:4])
    with pytest.raises(ValueError, match="not square"):
        qk_symmetry(w, k[:, :8])


class Block(nn.Module):  # the layout of BERT/Llama-style attention: separate projections, heads on the module
    def __init__(self, d=16, heads=4, tied=False):
        super().__init__()
        self.num_heads = heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        if tied:
            self.k_proj.weight = self.q_proj.weight


def test_attention_layers_of_a_model_are_found():
    model = nn.Sequential(nn.MultiheadAttention(16, 4), Block(tied=True), nn.Linear(16, 16),
                          nn.MultiheadAttention(16, 2, kdim=8, vdim=8))
    found = attention_symmetry(model)
    assert [(a.layer, a.heads) for a in found] == [("0", 4), ("1", 4)]  # "3": kdim 8, no square form
    assert found[1].score == pytest.approx(1.0)
    mha = model[0]
    w = mha.in_proj_weight.detach()
    assert found[0].score == pytest.approx(qk_symmetry(w[:16], w[16:32], 4).score)


def test_analyze_reports_the_attention_layers(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), Block(tied=True))
    result = analyze(model, tmp_path, chance_draws=10)
    assert result["attention"][0]["layer"] == "1" and result["attention"][0]["score"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "analysis.json").read_text())["attention"][0]["heads"] == 4
    assert "## Query-key symmetry of the attention layers" in (tmp_path / "report.md").read_text()
    plain = analyze(nn.Sequential(nn.Conv2d(1, 4, 3)), tmp_path / "plain", chance_draws=10)
    assert plain["attention"] == [] and "Query-key" not in (tmp_path / "plain" / "report.md").read_text()


def test_symmetric_qk_init_starts_every_head_symmetric_and_ties_nothing():
    from weightsym.lm.config import LMConfig, build_model
    from weightsym.nn.qk_init import symmetric_qk_

    config = LMConfig(rnn_type="transformer", emb=16, hidden=16, layers=2, heads=4, qk_init="symmetric")
    model, _ = build_model(config, vocab_size=20)
    scores = attention_symmetry(model)
    assert len(scores) == 2 and all(a.head_scores == pytest.approx([1.0] * 4) for a in scores)
    plain, _ = build_model(LMConfig(rnn_type="transformer", emb=16, hidden=16, layers=2, heads=4), vocab_size=20)
    assert all(abs(a.score) < 0.5 for a in attention_symmetry(plain))
    attn = model.blocks[0].attn  # not tied: a gradient step moves W_q and W_k apart
    w = attn.in_proj_weight
    (w[:16].sum() * 2 + w[16:32].sum()).backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(w[:16], w[16:32])
    with pytest.raises(ValueError, match="no attention layer"):
        build_model(LMConfig(rnn_type="lstm", emb=8, hidden=8, layers=1, qk_init="symmetric"), vocab_size=20)
    import weightsym as ws

    tied = Block()
    ws.symmetrize(tied, channel="triangular", include=["q_proj"])
    with pytest.raises(ValueError, match="`` is already symmetric|already symmetric"):
        symmetric_qk_(tied)
    with pytest.raises(ValueError, match="qk_init"):
        LMConfig(rnn_type="transformer", emb=16, hidden=16, qk_init="skew")
