"""The transformer language model: causal, tied, trainable by the one LM loop (``weightsym lm --model transformer``)
with symmetric attention projections, and its checkpoints sample with ``lm-sample``."""

from __future__ import annotations

import json
import math

import pytest
import torch

import weightsym as ws
from weightsym.cli import main
from weightsym.data.text import batchify, load_corpus
from weightsym.lm.train import LMConfig, build_model, evaluate, fit, generate, load_language_model
from weightsym.models import TransformerLanguageModel, create_model, transformer_param_count
from weightsym.nn.parametrization import symmetric_parametrization


def small(**kwargs):
    options = dict(vocab_size=50, d_model=16, num_layers=2, heads=2, context=12, dropout=0.0)
    options.update(kwargs)
    return TransformerLanguageModel(**options)


def test_causal_mask_later_tokens_never_change_earlier_logits():
    model = small().eval()
    tokens = torch.randint(0, 50, (12, 3))
    changed = tokens.clone()
    changed[7] = (tokens[7] + 1) % 50
    with torch.no_grad():
        a, hidden = model(tokens)
        b, _ = model(changed)
    assert hidden is None and model.init_hidden(3) is None
    assert torch.equal(a[:7], b[:7])  # positions before the change see nothing of it
    assert not torch.allclose(a[7:], b[7:])  # the changed position and the later ones do
    with pytest.raises(ValueError, match="longer than the model's context of 12"):
        model(torch.zeros(13, 1, dtype=torch.int64))


@pytest.mark.parametrize("tie", [True, False])
def test_tied_embeddings_and_closed_form_count(tie):
    model = small(tie_weights=tie)
    assert (model.decoder.weight is model.encoder.weight) is tie
    assert ws.count_parameters(model).stored == transformer_param_count(50, 16, 2, 12, tie)
    if tie:  # one tensor, trained by both ends
        model(torch.randint(0, 50, (5, 2)))[0].sum().backward()
        assert model.encoder.weight.grad is not None
    registry = create_model("transformer-lm")
    assert registry.tie_weights and registry.d_model == 128 and registry.context == 64
    assert sum(p.numel() for p in registry.parameters()) == transformer_param_count(10_000, 128, 4, 64)


def test_lm_config_symmetry_options_for_the_transformer():
    config = LMConfig(rnn_type="transformer", emb=16, hidden=16, layers=2, heads=2, bptt=8, channel="triangular",
                      qkv="110")
    assert (config.optimizer, config.lr, config.clip, config.dropout, config.tie) == ("adamw", 1e-3, 1.0, 0.1, True)
    model, report = build_model(config, 30)
    assert {(r.name, r.tensor) for r in report.symmetric} == {
        (f"blocks.{i}.{n}", t) for i in range(2) for n, t in (("attn", "in_proj_weight"), ("attn.out_proj", "weight"))}
    assert all(symmetric_parametrization(block.attn, "in_proj_weight").block_mask == (True, True, False)
               for block in model.blocks)
    ff = LMConfig(rnn_type="transformer", emb=16, hidden=16, layers=2, heads=2, bptt=8, channel="block",
                  include=["*.ff.*"])
    _, report = build_model(ff, 30)
    assert sorted(r.name for r in report.symmetric) == ["blocks.0.ff.down", "blocks.0.ff.up", "blocks.1.ff.down",
                                                        "blocks.1.ff.up"]
    with pytest.raises(ValueError, match="blocks.0.ff.up.*square"):  # triangular cannot tie a 64x16 layer
        build_model(LMConfig(rnn_type="transformer", emb=16, hidden=16, heads=2, bptt=8, channel="triangular",
                             include=["*.ff.*"]), 30)
    with pytest.raises(ValueError, match="emb == hidden"):
        LMConfig(rnn_type="transformer", emb=16, hidden=24)
    assert LMConfig().optimizer == "sgd" and LMConfig().lr == 20.0 and LMConfig().tie is False  # LSTM unchanged


def ptb_root(shared_data):
    if not (shared_data / "text" / "ptb" / "ptb.train.txt").exists():
        pytest.skip(f"SKIPPED LOUDLY: PTB not found under {shared_data / 'text' / 'ptb'}; set WEIGHTSYM_DATA")
    return str(shared_data)


def test_transformer_trains_on_ptb_with_falling_loss(shared_data, tmp_path):
    config = LMConfig(corpus="ptb", data_dir=ptb_root(shared_data), rnn_type="transformer", emb=32, hidden=32,
                      layers=2, heads=2, bptt=16, batch_size=16, eval_batch_size=16, channel="triangular", qkv="110",
                      epochs=2, lr=3e-3, max_train_tokens=8_000, max_eval_tokens=2_000, seed=3, threads=1,
                      out=str(tmp_path / "run"))
    torch.manual_seed(config.seed)  # the untrained model fit() starts from
    untrained, _ = build_model(config, 10_000)
    corpus = load_corpus("ptb", config.data_dir)
    start_ppl = math.exp(evaluate(untrained, batchify(corpus.valid[:2_000], 16), 16))
    summary = fit(config, progress=False, log=lambda *a: None)
    history = summary["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert start_ppl > 5_000 and summary["valid_ppl"] < 0.3 * start_ppl  # from about uniform (10,000 words)
    assert summary["params"]["stored"] < summary["params"]["dense"]
    model, dictionary, loaded = load_language_model(tmp_path / "run" / "best.safetensors")
    assert loaded.rnn_type == "transformer" and len(ws.symmetric_layers(model)) == 4
    prompt = "the company said it expects to report a loss of about $ N million in the quarter".split()
    words = generate(model, dictionary, 20, seed=1, prompt=prompt)  # prompt longer than the context of 16
    assert len(words) == 20 and words == generate(model, dictionary, 20, seed=1, prompt=prompt)


def test_cli_transformer_run_sample_and_option_errors(shared_data, tmp_path, capsys):
    root = ptb_root(shared_data)
    out = tmp_path / "cli"
    common = ["lm", "--corpus", "ptb", "--data-dir", root, "--model", "transformer", "--emb", "16", "--hidden", "16",
              "--layers", "1", "--heads", "2", "--bptt", "8", "--threads", "1", "--no-progress"]
    assert main(common + ["--channel", "block", "--qkv", "011", "--include", "*.attn", "*.ff.*", "--epochs", "1",
                          "--max-train-tokens", "3000", "--max-eval-tokens", "1000", "--out", str(out),
                          "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["qkv"] == "011" and summary["config"]["include"] == ["*.attn", "*.ff.*"]
    # q dense (16x16), k and v block (16x16/4 each), ff up/down block (64x16/4 each), out_proj dense
    saved = (2 * (256 - 64)) + 2 * (1024 - 256)
    assert summary["params"]["dense"] - summary["params"]["stored"] == saved
    assert main(["lm-sample", str(out / "best.safetensors"), "--words", "5", "--seed", "2"]) == 0
    assert len(capsys.readouterr().out.split()) == 5
    for extra, expected in ((["--hh-gates", "1111"], "a transformer has no gates"),
                            (["--emb", "24"], "residual stream"),
                            (["--heads", "3"], "--heads 3 must divide"),
                            (["--qkv", "11"], "--qkv")):
        assert main(common + ["--channel", "triangular"] + extra + ["--out", str(tmp_path / "bad")]) == 2
        assert expected in capsys.readouterr().err
    assert main(["lm", "--qkv", "110", "--channel", "triangular", "--out", str(tmp_path / "bad")]) == 2
    assert "only a transformer" in capsys.readouterr().err


def test_the_lstm_recipe_and_the_transformer_defaults(tmp_path, capsys):
    """--recipe paper is the paper's LSTM recipe: with --model transformer it is refused in one line; without it the
    transformer takes its own defaults (AdamW, lr 1e-3, tied), the LSTM its own (SGD, lr 20, untied)."""
    assert main(["lm", "--model", "transformer", "--recipe", "paper", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--recipe paper" in err[0] and "transformer" in err[0]
    tf, lstm = LMConfig(rnn_type="transformer", emb=64, hidden=64), LMConfig()
    assert (tf.optimizer, tf.lr, tf.tie) == ("adamw", 1e-3, True)
    assert (lstm.optimizer, lstm.lr, lstm.tie) == ("sgd", 20.0, False)
    assert LMConfig(rnn_type="transformer", emb=64, hidden=64, init="project").symmetry_options() is None
    opts = LMConfig(rnn_type="transformer", emb=64, hidden=64, channel="triangular", init="project").symmetry_options()
    assert opts["init"] == "project" and opts["qkv"] == "111"


def test_fold_measure_times_the_feed_forward_layers_once_and_resume_replays(shared_data, tmp_path, monkeypatch):
    """`weightsym lm --fold measure`: the block-tied feed-forward layers of a transformer are timed on a token batch of
    the training shape (the global RNG untouched: the run equals an `--fold never` run up to float rounding); the
    choice is kept in the checkpoint and a resumed run replays it without timing."""
    from weightsym.fast import timing, training
    from weightsym.train.checkpoint import checkpoint_info

    root = ptb_root(shared_data)
    options = dict(corpus="ptb", data_dir=root, rnn_type="transformer", emb=32, hidden=32, layers=1, heads=2,
                   bptt=16, batch_size=16, eval_batch_size=16, channel="block", include=["*.ff.*"], lr=3e-3,
                   max_train_tokens=4_000, max_eval_tokens=1_000, seed=3, threads=1)
    ratios = iter([3.0, 0.5])  # ff.up faster folded, ff.down slower

    def fake(steps, rounds=5, budget=2.0):
        for step in steps.values():
            step()
        return {"gather": next(ratios), "fold": 1.0}

    monkeypatch.setattr(timing, "time_calls", fake)
    quiet = dict(progress=False, log=lambda *a: None)
    first = fit(LMConfig(**options, epochs=1, fold="measure", out=str(tmp_path / "m")), **quiet)
    assert [(r["name"], r["path"]) for r in first["fold_training"]] == [("blocks.0.ff.up", "fold"),
                                                                         ("blocks.0.ff.down", "gather")]
    assert checkpoint_info(tmp_path / "m" / "last.safetensors")["state"]["fold_layers"] == ["blocks.0.ff.up"]
    monkeypatch.setattr(training, "_measure", lambda *a: pytest.fail("a resumed run must not measure again"))
    resumed = fit(LMConfig(**options, epochs=2, fold="measure", out=str(tmp_path / "m")), resume=True, **quiet)
    assert [r["why"] for r in resumed["fold_training"]] == ["replayed", "replayed: not among the folded layers"]
    never = fit(LMConfig(**options, epochs=2, fold="never", out=str(tmp_path / "n")), **quiet)
    assert resumed["valid_ppl"] == pytest.approx(never["valid_ppl"], rel=1e-4)
