"""Models people load: Hugging Face ``transformers`` GPT-2, BERT and a Llama-style decoder (grouped-query attention),
each built from a tiny config with random weights (no download): symmetrize, counts against the closed form, one
training step, save/load, unsymmetrize, and the W_qk symmetry score."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import weightsym as ws
from weightsym.analysis import attention_symmetry
from weightsym.analysis.attention import qk_symmetry
from weightsym.nn import symmetric_parametrization
from weightsym.nn.layers import layer_kind
from weightsym.nn.qk_init import symmetric_qk_

transformers = pytest.importorskip(
    "transformers", reason="SKIPPED LOUDLY: transformers not installed (pip install 'weightsym[hf]'); the Hugging "
                           "Face model tests did not run")

D, LAYERS, HEADS, KV_HEADS, VOCAB = 32, 2, 4, 2, 100


def gpt2():
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=LAYERS, n_embd=D, n_head=HEADS, vocab_size=VOCAB, n_positions=64, bos_token_id=0, eos_token_id=0,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))


def bert():
    return transformers.BertForMaskedLM(transformers.BertConfig(
        num_hidden_layers=LAYERS, hidden_size=D, num_attention_heads=HEADS, intermediate_size=2 * D, vocab_size=VOCAB,
        max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))


def llama():
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        num_hidden_layers=LAYERS, hidden_size=D, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
        intermediate_size=2 * D, vocab_size=VOCAB, max_position_embeddings=64, bos_token_id=0, eos_token_id=0))


# family: (build, include globs, qkv, square planes made triangular per block, the attention modules)
FAMILIES = {
    # c_attn: the q, k, v slices of Conv1D(3d, d), each a square plane; c_proj d x d; the MLP (d <-> 4d) is not square
    "gpt2": (gpt2, ["*.c_attn", "*.attn.c_proj", "*.mlp.*"], "111", 4, "transformer.h.{}.attn"),
    # query, key, value, attention.output.dense: d x d each
    "bert": (bert, ["*.query", "*.key", "*.value", "*.attention.output.dense"], "111", 4,
             "bert.encoder.layer.{}.attention.self"),
    # grouped-query attention: q_proj and o_proj are d x d, k_proj and v_proj (KV_HEADS * d_h) x d are not square
    "llama": (llama, ["*.q_proj", "*.k_proj", "*.v_proj", "*.o_proj"], "111", 2, "model.layers.{}.self_attn"),
}
SAVED = D * (D - 1) // 2  # triangular keeps d(d+1)/2 of d² values per square plane


def build(family: str, seed: int = 0):
    torch.manual_seed(seed)
    return FAMILIES[family][0]().double()


def tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(seed))


def symmetrize(model, family: str):
    _, include, qkv, _, _ = FAMILIES[family]
    return ws.symmetrize(model, channel="triangular", include=include, qkv=qkv)


def outputs(model, x) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x).logits


def symmetric_weights(model):
    return [(name, module) for name, module, _ in ws.symmetric_layers(model)]


def test_weightsym_never_imports_transformers():
    code = ("import sys, torch, weightsym as ws, weightsym.analysis\n"
            "net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))\n"
            "ws.symmetrize(net, channel='triangular')\n"
            "assert 'transformers' not in sys.modules, 'weightsym imported transformers'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gpt2_conv1d_is_a_transposed_row_of_the_table():
    conv = transformers.pytorch_utils.Conv1D(6, 4)              # weight (in, out) = (4, 6): y = x W + b
    kind = layer_kind(conv)
    assert (kind.name, kind.transposed, kind.fold) == ("Conv1D", True, None)
    assert kind.planes((4, 6)).canonical == (6, 4)              # the (out, in) channel plane, as nn.Linear's
    square = transformers.pytorch_utils.Conv1D(4, 4)
    ws.nn.attach(square, "weight", "repeat:2:out")
    w = square.weight                                           # (in, out): repeating the outputs repeats columns
    assert torch.equal(w[:, :2], w[:, 2:]) and not torch.equal(w[:2], w[2:])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_symmetrize_count_train_save_load_unsymmetrize(tmp_path, family):
    model = build(family)
    dense = sum(p.numel() for p in model.parameters())          # tied embeddings counted once
    report = symmetrize(model, family)
    planes = FAMILIES[family][3] * LAYERS
    assert ws.count_parameters(model).stored == dense - planes * SAVED
    assert report.totals()["dense"] - report.totals()["stored"] == planes * SAVED
    if family == "gpt2":  # the q, k, v slices of c_attn are each symmetric: W[:, i·d:(i+1)·d] = its transpose
        w = model.transformer.h[0].attn.c_attn.weight
        assert all(torch.equal(w[:, i * D:(i + 1) * D], w[:, i * D:(i + 1) * D].T) for i in range(3))
        assert model.transformer.h[0].attn.c_attn.parametrizations.weight.original.numel() == 3 * D * (D + 1) // 2
    skipped = {row.name for row in report.skipped}
    if family == "llama":  # grouped-query attention: k_proj and v_proj are (2·8) x 32, left dense, said why
        rows = {row.name: row for row in report.rows}
        for name in ("model.layers.0.self_attn.k_proj", "model.layers.1.self_attn.v_proj"):
            assert name in skipped and "square" in rows[name].note and rows[name].shape == (KV_HEADS * D // HEADS, D)

    # one training step: loss finite, the free values move, the symmetric weights stay symmetric
    x = tokens()
    model.train()
    loss = model(x, labels=x).loss
    assert torch.isfinite(loss)
    loss.backward()
    before = {name: module.weight.detach().clone() for name, module in symmetric_weights(model)}
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    for name, module in symmetric_weights(model):
        weight = module.weight
        assert not torch.equal(weight, before[name]), name
        assert symmetric_parametrization(module, "weight").holds(weight, 0.0), name
    y = outputs(model, x)

    # save, then load into a freshly symmetrized model of the same config: identical outputs
    path = ws.save(model, tmp_path / f"{family}.safetensors")
    again = build(family, seed=7)
    symmetrize(again, family)
    assert not torch.equal(outputs(again, x), y)
    ws.load(path, again)
    assert torch.equal(outputs(again, x), y)

    # unsymmetrize: plain transformers modules, identical outputs, a state dict the plain model loads
    ws.unsymmetrize(model)
    assert ws.symmetric_layers(model) == [] and torch.equal(outputs(model, x), y)
    plain = build(family, seed=3)
    plain.load_state_dict(model.state_dict())
    assert torch.equal(outputs(plain, x), y)


def test_grouped_query_projections_are_refused_by_name_under_strict():
    model = build("llama")
    with pytest.raises(ws.SymmetryError, match=r"Linear `model\.layers\.0\.self_attn\.k_proj` weight \(16, 32\)"):
        ws.symmetrize(model, channel="triangular", include=["*.k_proj"], strict=True)
    # the non-square tyings apply to them: block keeps a quarter of each (out, in) plane
    report = ws.symmetrize(model, channel="block", include=["*.k_proj"], strict=True)
    assert [row.stored for row in report.symmetric] == [16 * 32 // 4] * LAYERS


def test_gpt2_qkv_mask_and_what_is_refused():
    model = build("gpt2")
    report = ws.symmetrize(model, channel="triangular", include=["*.c_attn"], qkv="110")
    assert [row.stored for row in report.symmetric] == [2 * D * (D + 1) // 2 + D * D] * LAYERS
    w = model.transformer.h[1].attn.c_attn.weight
    assert torch.equal(w[:, D:2 * D], w[:, D:2 * D].T) and not torch.equal(w[:, 2 * D:], w[:, 2 * D:].T)
    # spatial symmetries need a kernel; qk-tie needs nn.MultiheadAttention's in_proj_weight: one line each
    with pytest.raises(ws.SymmetryError, match=r"Conv1D `transformer\.h\.0\.attn\.c_attn`.*\n?") as error:
        ws.symmetrize(build("gpt2"), channel="qk-tie", include=["*.c_attn"], strict=True)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="qkv='11' for attention layer `transformer.h.0.attn.c_attn`"):
        ws.symmetrize(build("gpt2"), channel="triangular", include=["*.c_attn"], qkv="11")


def test_attention_symmetry_reads_the_three_families():
    for family in FAMILIES:
        model = build(family)
        found = attention_symmetry(model)
        where = FAMILIES[family][4]
        assert [(r.layer, r.heads) for r in found] == [(where.format(i), HEADS) for i in range(LAYERS)], family
    # grouped-query attention as it computes: query head h against key head h // (HEADS / KV_HEADS)
    model = build("llama")
    attn = model.model.layers[0].self_attn
    size = D // HEADS
    w_q, w_k = attn.q_proj.weight.detach(), attn.k_proj.weight.detach()
    by_hand = [w_q[h * size:(h + 1) * size].T @ w_k[(h // (HEADS // KV_HEADS)) * size:][:size] for h in range(HEADS)]
    from weightsym.analysis.attention import score_of
    assert attention_symmetry(model)[0].head_scores == pytest.approx([score_of(m) for m in by_hand], abs=1e-12)
    # W_k = W_q makes every head symmetric: symmetric_qk_ writes through GPT-2's c_attn and BERT's query/key
    for family in ("gpt2", "bert"):
        model = build(family)
        assert symmetric_qk_(model) == LAYERS
        assert all(r.score == pytest.approx(1.0) for r in attention_symmetry(model)), family
    gpt = build("gpt2")
    symmetric_qk_(gpt)
    bias = gpt.transformer.h[0].attn.c_attn.bias
    assert torch.equal(bias[:D], bias[D:2 * D])
    assert qk_symmetry(*attention_symmetry_inputs(gpt)).score == pytest.approx(1.0)


def attention_symmetry_inputs(model):
    w = model.transformer.h[0].attn.c_attn.weight.detach()
    return w[:, :D].T, w[:, D:2 * D].T, HEADS


def test_gpt2_files_rebuild_export_and_stay_on_the_gather_path(tmp_path):
    from weightsym.fast import export_dense, fold_training, optimize
    from weightsym.fast.export import load_dense
    from weightsym.files import attach_from_metadata, read_model_file

    model = build("gpt2")
    symmetrize(model, "gpt2")
    x = tokens()
    y = outputs(model, x)
    mf = read_model_file(ws.save(model, tmp_path / "m.safetensors"))
    assert mf.layers["transformer.h.0.attn.c_attn.weight"]["kind"] == "Conv1D"
    assert mf.layers["transformer.h.0.attn.c_attn.weight"]["row_blocks"] == 3
    rebuilt = attach_from_metadata(build("gpt2", seed=5), mf.layers)     # the records alone rebuild the layers
    rebuilt.load_state_dict(mf.model_state(), strict=False)             # lm_head is an alias of the embedding
    assert torch.equal(outputs(rebuilt, x), y)
    export_dense(model, tmp_path / "dense.safetensors")
    plain = build("gpt2", seed=9)
    load_dense(tmp_path / "dense.safetensors", plain)
    assert torch.equal(outputs(plain, x), y)
    report = fold_training(model, policy="always")                      # Conv1D has no fold kernels
    assert {r.path for r in report.rows} == {"gather"} and report.folded == []
    fast = optimize(model)
    assert {r.chosen for r in fast.optimize_report.rows} == {"dense"} and torch.equal(outputs(fast, x), y)
