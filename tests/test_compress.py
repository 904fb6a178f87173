"""weightsym compress: per-layer residuals and savings, the greedy plan under a budget, projection, fine-tuning with
distillation, the compressed file and the command line (tiny models: MNIST-1D is generated offline)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import weightsym as ws
from weightsym.analysis.compression import BudgetError, Candidate, candidates, plan_for_budget
from weightsym.cli import main
from weightsym.compress import compress
from weightsym.train import TrainConfig, train
from weightsym.train.distill import distillation_loss


@pytest.fixture(autouse=True)
def _threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dense MNIST-1D CNN (width 16, three square convs) trained for one epoch: ~2 s."""
    out = tmp_path_factory.mktemp("dense")
    torch.set_num_threads(1)
    train(TrainConfig(model="mnist1d-cnn", model_args={"width": 16, "num_square": 3}, epochs=1, lr=0.05,
                      batch_size=64, out=str(out), progress=False))
    return out / "checkpoint.safetensors"


def quiet(*_args):
    pass


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


# ------------------------------------------------------------------------------------------------------ the table
def test_candidates_cover_the_catalog_and_products_with_exact_counts():
    net = _net()
    table = candidates(net)
    assert {c.layer for c in table} == {"2", "4"}  # stem and classifier stay dense by default
    specs = {c.symmetry for c in table if c.layer == "2"}
    assert {"triangular", "block", "dihedral", "transpose", "triangular+transpose", "eighth+dihedral"} <= specs
    assert "average" not in specs  # stores n^2: saves nothing
    by_spec = {c.symmetry: c for c in table if c.layer == "2"}
    assert by_spec["triangular"].stored == 8 * 9 // 2 * 9 and by_spec["triangular"].dense == 8 * 8 * 9
    assert by_spec["triangular+transpose"].stored == 36 * 6
    assert by_spec["dihedral"].saved == 64 * 6
    for c in table:  # residual of a projection onto a subspace: in [0, 1], never 0 on random weights
        assert 0 < c.residual < 1 and c.saved > 0
    # iid weights: E[r^2] is the saved fraction (orthogonal projection onto `stored` dimensions)
    tri = by_spec["triangular"]
    assert abs(tri.residual ** 2 - tri.saved / tri.dense) < 0.15
    # all layers when asked, never the model itself changed
    before = [p.clone() for p in net.parameters()]
    assert {c.layer for c in candidates(net, ["dihedral"], keep_edges=False)} == {"0", "2", "4"}
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert not ws.symmetric_layers(net)


def test_a_model_that_already_is_symmetric_has_residual_zero_and_keeps_its_outputs():
    net = _net()
    tri = ws.get_symmetry("triangular")
    with torch.no_grad():
        net[2].weight.copy_(tri.expand(tri.project(net[2].weight), net[2].weight.shape))
    table = {c.symmetry: c for c in candidates(net, ["triangular", "block"]) if c.layer == "2"}
    assert table["triangular"].residual == 0.0 and table["block"].residual > 0.1
    x = torch.randn(2, 3, 6, 6)
    expected = net(x)
    ws.symmetrize(net, plan={"2": "triangular"}, init="project")
    assert torch.equal(net(x), expected)  # the projection is the identity on it


def test_greedy_plan_takes_the_cheapest_upgrades_and_trims():
    def c(layer, sym, residual, saved):
        return Candidate(layer, "Conv2d", (10, 10), sym, residual, 100, 100 - saved)

    table = [c("a", "triangular", 0.1, 45), c("a", "eighth", 0.5, 80), c("b", "triangular", 0.6, 45)]
    # budget 0.8 of 200: a-tri costs 0.01/45, the cheapest; stored 155 <= 160
    plan = plan_for_budget(table, 200, 0.8)
    assert plan.as_plan() == {"a": "triangular"} and plan.stored_total == 155
    # budget 0.5: a-tri, then a-tri->eighth ((0.25-0.01)/35 < 0.36/45), then b-tri: stored 75
    plan = plan_for_budget(table, 200, 0.5)
    assert plan.as_plan() == {"a": "eighth", "b": "triangular"} and math.isclose(plan.fraction, 0.375)
    assert plan.steps[:3] == ["a=triangular", "a=eighth", "b=triangular"]
    # trim: after the large last step, a layer falls back to the least-residual option that still fits
    trim = [c("a", "triangular", 0.1, 45), c("b", "eighth", 0.2, 90), c("b", "triangular", 0.15, 50)]
    plan = plan_for_budget(trim, 200, 0.76)  # b-eighth is cheapest (0.04/90); then b-tri suffices alone
    assert plan.as_plan() == {"b": "triangular"} and plan.stored_total == 150
    assert plan_for_budget(table, 200, 1.0).as_plan() == {}
    with pytest.raises(BudgetError, match=r"0\.375"):
        plan_for_budget(table, 200, 0.3)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        plan_for_budget(table, 200, 0.0)


def test_distillation_loss_on_a_hand_example():
    student = torch.tensor([[0.0, 0.0], [2.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    targets = torch.tensor([0, 1])
    ce = (math.log(2) + (math.log(1 + math.exp(2.0)))) / 2  # -log softmax(0,0)[0], -log softmax(2,0)[1]
    t = 2.0  # at T = 2: student rows (1/2, 1/2) and softmax(1, 0); teacher rows softmax(ln3/2, 0) and (1/2, 1/2)
    p1 = [math.sqrt(3) / (1 + math.sqrt(3)), 1 / (1 + math.sqrt(3))]
    q2 = [math.e / (1 + math.e), 1 / (1 + math.e)]
    kl = (sum(p * math.log(p / 0.5) for p in p1) + sum(0.5 * math.log(0.5 / q) for q in q2)) / 2
    loss = distillation_loss(student, teacher, targets, temperature=t, weight=0.25)
    assert math.isclose(float(loss.detach()), 0.75 * ce + 0.25 * t * t * kl, rel_tol=1e-6)
    assert math.isclose(float(distillation_loss(student, teacher, targets, 3.0, 0.0).detach()), ce, rel_tol=1e-6)
    loss.backward()
    assert student.grad is not None and teacher.grad is None
    with pytest.raises(ValueError, match="temperature > 0"):
        distillation_loss(student, teacher, targets, 0.0, 0.5)


# ------------------------------------------------------------------------------------------------ the workflow
def test_compress_under_a_budget_writes_a_model_every_command_reads(trained, tmp_path):
    dense_model, _ = ws.load_model(trained)
    dense = ws.count_parameters(dense_model)
    report = compress(trained, tmp_path / "c", budget=0.6, log=quiet)
    stored = report["projected"]["params"]["stored"]
    assert stored <= 0.6 * dense.dense and stored < dense.stored  # the budget holds, nothing grows
    assert report["projected"]["params"]["dense"] == dense.dense
    model, description = ws.load_model(tmp_path / "c" / "compressed.safetensors")
    assert ws.count_parameters(model).stored == stored
    plan = json.loads((tmp_path / "c" / "plan.json").read_text())
    assert plan == report["plan"] and {n.rpartition(".")[0] for n, *_ in ws.symmetric_layers(model)} == set(plan)
    assert description.config["plan"] == plan  # `weightsym train --plan plan.json` trains the same model
    # the compressed model is the dense one projected: same outputs as projecting by hand
    ws.symmetrize(dense_model, plan=plan, init="project")
    x = torch.randn(5, 1, 40)
    assert torch.allclose(model(x), dense_model(x), atol=1e-6)
    for name in ("report.md", "report.json", "compress.png"):
        assert (tmp_path / "c" / name).stat().st_size > 0
    assert 0 <= report["projected"]["accuracy"] <= 1 and report["dense"]["accuracy"] > 0.15
    assert main(["eval", str(tmp_path / "c" / "compressed.safetensors")]) == 0
    assert main(["describe", str(tmp_path / "c" / "compressed.safetensors")]) == 0


def test_hand_plan_and_fine_tuning_with_distillation_lower_the_loss(trained, tmp_path):
    report = compress(trained, tmp_path / "c", plan={"conv*": "eighth"}, steps=60, lr=0.05,
                      distill=(2.0, 0.5), log=quiet)
    assert report["plan"] == {"conv*": "eighth"}
    assert report["finetuned"]["loss"] < report["projected"]["loss"]
    assert report["finetuned"]["params"] == report["projected"]["params"]
    model, _ = ws.load_model(tmp_path / "c" / "compressed.safetensors")
    assert sorted(s.spec for *_, s in ws.symmetric_layers(model)) == ["eighth"] * 3
    summary = json.loads((tmp_path / "c" / "finetune" / "summary.json").read_text())
    assert summary["steps"] == 60 and summary["config"]["distill"]["temperature"] == 2.0  # exactly `steps` steps


def test_unreachable_budget_is_an_error_naming_what_works(trained, tmp_path):
    with pytest.raises(BudgetError, match="use a budget >="):
        compress(trained, tmp_path / "c", budget=0.01, log=quiet)


# ------------------------------------------------------------------------------------------------ command line
def _cli(capsys, *argv):
    code = main(["compress", *map(str, argv)])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("argv, needle", [
    (["missing.safetensors", "--budget", "0.5"], "does not exist"),
    (["{ckpt}", "--budget", "0"], "--budget"),
    (["{ckpt}", "--budget", "1.5"], "--budget"),
    (["{ckpt}", "--plan", "conv*=nosuch"], "unknown symmetry"),
    (["{ckpt}", "--budget", "0.5", "--symmetries", "nosuch"], "unknown symmetry"),
    (["{ckpt}"], "exactly one of --budget"),
    (["{ckpt}", "--budget", "0.01", "--dry-run"], "cannot be met"),
    (["{ckpt}", "--budget", "0.5", "--qkv", "110"], "no attention layers"),
    (["{ckpt}", "--budget", "0.5", "--qkv", "12"], "--qkv"),
])
def test_bad_input_exits_2_with_one_line(trained, tmp_path, capsys, argv, needle):
    argv = [a.replace("{ckpt}", str(trained)) for a in argv] + ["--out", str(tmp_path / "o")]
    code, err = _cli(capsys, *argv)
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_cli_dry_run_prints_the_plan_and_writes_only_the_report(trained, tmp_path, capsys):
    code, _ = _cli(capsys, trained, "--budget", "0.7", "--dry-run", "--out", tmp_path / "o")
    assert code == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["greedy"]["fraction"] <= 0.7 and not (tmp_path / "o" / "compressed.safetensors").exists()
    assert "## Candidates" in (tmp_path / "o" / "report.md").read_text()


# ------------------------------------------------------------------------------------------------ language model
def test_language_model_compression_reports_perplexity(shared_data, tmp_path):
    from weightsym.lm.train import LMConfig, fit, load_language_model

    if not (shared_data / "text" / "ptb" / "ptb.train.txt").exists():
        pytest.skip(f"SKIPPED LOUDLY: PTB not found under {shared_data / 'text' / 'ptb'}; set WEIGHTSYM_DATA")
    config = LMConfig(corpus="ptb", data_dir=str(shared_data), emb=16, hidden=16, layers=1, dropout=0.0, tie=True,
                      epochs=1, bptt=10, batch_size=10, eval_batch_size=10, max_train_tokens=4_000,
                      max_eval_tokens=2_000, threads=1, out=str(tmp_path / "lm"))
    fit(config, progress=False, log=quiet)
    report = compress(tmp_path / "lm" / "best.safetensors", tmp_path / "c", budget=0.999, steps=5, log=quiet)
    assert report["metric"] == "perplexity" and report["plan"]  # the LSTM: the only layer between the edges
    assert set(report["plan"]) == {"rnn"}
    assert report["projected"]["params"]["stored"] < report["dense"]["params"]["stored"]
    for stage in ("dense", "projected", "finetuned"):
        assert 1 < report[stage]["perplexity"] < 1e5
    model, dictionary, saved = load_language_model(tmp_path / "c" / "compressed.safetensors")
    assert saved.plan == report["plan"] and len(dictionary) == model.vocab_size
    # distillation from the dense model, per token: same projection, a different fine-tune
    distilled = compress(tmp_path / "lm" / "best.safetensors", tmp_path / "d", budget=0.999, steps=5,
                         distill=(2.0, 0.5), log=quiet)
    assert distilled["plan"] == report["plan"]
    assert distilled["projected"]["perplexity"] == report["projected"]["perplexity"]
    assert 1 < distilled["finetuned"]["perplexity"] < 1e5
    assert distilled["finetuned"]["perplexity"] != report["finetuned"]["perplexity"]


def test_recurrent_gate_masks_default_to_the_source_runs(shared_data, tmp_path):
    """A run whose LSTM ties two gates (hh_gates=0011): compressing it without masks keeps 0011 in the written
    file's config, so a model rebuilt from that config has the same layers; explicit masks are recorded as given."""
    from weightsym.lm.train import LMConfig, build_model, fit, load_language_model

    if not (shared_data / "text" / "ptb" / "ptb.train.txt").exists():
        pytest.skip(f"SKIPPED LOUDLY: PTB not found under {shared_data / 'text' / 'ptb'}; set WEIGHTSYM_DATA")
    config = LMConfig(corpus="ptb", data_dir=str(shared_data), emb=16, hidden=16, layers=1, dropout=0.0, tie=True,
                      channel="triangular", hh_gates="0011", epochs=1, bptt=10, batch_size=10, eval_batch_size=10,
                      max_train_tokens=3_000, max_eval_tokens=1_000, threads=1, out=str(tmp_path / "lm"))
    fit(config, progress=False, log=quiet)
    source = tmp_path / "lm" / "best.safetensors"
    report = compress(source, tmp_path / "c", budget=0.9999, log=quiet)   # already within budget: nothing added
    assert report["plan"] == {"rnn": "triangular"}
    model, _dictionary, saved = load_language_model(tmp_path / "c" / "compressed.safetensors")
    assert saved.hh_gates == "0011" and saved.ih_gates is None
    rebuilt, _ = build_model(saved, model.vocab_size)
    assert ws.count_parameters(rebuilt).stored == ws.count_parameters(model).stored == \
        report["dense"]["params"]["stored"]                    # two of four gate blocks tied: 2 * (256 - 136) saved
    assert report["dense"]["params"]["dense"] - report["dense"]["params"]["stored"] == 2 * (16 * 16 - 16 * 17 // 2)
    assert (report["hh_gates"], report["ih_gates"]) == ("0011", None)
    assert "`hh_gates=0011` (order i f g o)" in (tmp_path / "c" / "report.md").read_text()
    explicit = compress(source, tmp_path / "e", budget=0.9999, hh_gates="0011", ih_gates="0000", dry_run=True,
                        log=quiet)
    assert (explicit["hh_gates"], explicit["ih_gates"]) == ("0011", "0000") and explicit["plan"] == {"rnn": "triangular"}


def test_attention_candidates_tie_the_projections_qkv_chooses():
    """An attention layer's in_proj_weight is three (d, d) blocks; qkv chooses which a symmetry ties: the stored
    count is exact per mask, the untied block keeps its dense count, and qkv='000' leaves nothing to tie."""
    from weightsym.models.transformer import TransformerLanguageModel

    torch.manual_seed(0)
    d = 8
    model = TransformerLanguageModel(50, d_model=d, num_layers=1, heads=2, context=8, dropout=0.0)
    tri = d * (d + 1) // 2
    stored = {}
    for mask in ("111", "110", "001"):
        table = {c.layer: c for c in candidates(model, ["triangular"], qkv=mask)}
        assert {"blocks.0.attn", "blocks.0.attn.out_proj"} <= set(table)
        stored[mask] = table["blocks.0.attn"].stored
        assert table["blocks.0.attn"].dense == 3 * d * d
        assert 0 < table["blocks.0.attn"].residual < 1
    assert stored == {"111": 3 * tri, "110": 2 * tri + d * d, "001": tri + 2 * d * d}
    assert "blocks.0.attn" not in {c.layer for c in candidates(model, ["triangular"], qkv="000")}
    assert not ws.symmetric_layers(model)  # the model itself is not changed


def test_transformer_compression_keeps_its_qkv_in_the_file(shared_data, tmp_path):
    from weightsym.lm.train import LMConfig, fit, load_language_model

    if not (shared_data / "text" / "ptb" / "ptb.train.txt").exists():
        pytest.skip(f"SKIPPED LOUDLY: PTB not found under {shared_data / 'text' / 'ptb'}; set WEIGHTSYM_DATA")
    config = LMConfig(corpus="ptb", data_dir=str(shared_data), rnn_type="transformer", emb=16, hidden=16, layers=1,
                      heads=2, bptt=8, batch_size=10, eval_batch_size=10, epochs=1, max_train_tokens=3_000,
                      max_eval_tokens=1_000, threads=1, out=str(tmp_path / "lm"))
    fit(config, progress=False, log=quiet)
    source = tmp_path / "lm" / "best.safetensors"
    report = compress(source, tmp_path / "c", plan={"*.attn": "triangular"}, qkv="110", steps=2, log=quiet)
    assert report["qkv"] == "110" and report["plan"] == {"*.attn": "triangular"}
    assert "`qkv=110`" in (tmp_path / "c" / "report.md").read_text()
    d, tri = 16, 16 * 17 // 2
    saved = report["dense"]["params"]["stored"] - report["projected"]["params"]["stored"]
    assert saved == 2 * (d * d - tri)  # query and key tied, value dense
    model, _dictionary, loaded = load_language_model(tmp_path / "c" / "compressed.safetensors")
    assert loaded.qkv == "110" and loaded.plan == {"*.attn": "triangular"}
    w = model.blocks[0].attn.in_proj_weight.detach()
    q, k, v = w[:d], w[d:2 * d], w[2 * d:]
    assert torch.allclose(q, q.T) and torch.allclose(k, k.T) and not torch.allclose(v, v.T)
    # a second pass over the compressed file keeps the source's qkv when none is given
    again = compress(tmp_path / "c" / "compressed.safetensors", tmp_path / "c2", plan={"*.attn.out_proj": "block"},
                     log=quiet)
    assert again["qkv"] == "110" and again["plan"] == {"blocks.0.attn": "triangular", "*.attn.out_proj": "block"}
    assert load_language_model(tmp_path / "c2" / "compressed.safetensors")[2].qkv == "110"


def test_language_model_distillation_loss_per_token():
    """train_epoch with a teacher: the loss it reports is (1 - A) CE + A T^2 KL per token, and a teacher identical to
    the student with A = 1 gives zero loss (nothing to learn from itself)."""
    import copy

    from weightsym.lm.train import train_epoch
    from weightsym.models.language import LSTMLanguageModel

    torch.manual_seed(0)
    student = LSTMLanguageModel(50, 8, 8, num_layers=1, dropout=0.0)
    teacher = copy.deepcopy(student)
    data = torch.randint(0, 50, (21, 4))
    sgd = torch.optim.SGD(student.parameters(), lr=0.0)
    stats = train_epoch(student, data, sgd, bptt=10, clip=0.0, teacher=teacher, distill=(3.0, 1.0))
    assert abs(stats["loss"]) < 1e-6
    plain = train_epoch(student, data, sgd, bptt=10, clip=0.0)["loss"]
    mixed = train_epoch(student, data, sgd, bptt=10, clip=0.0, teacher=teacher, distill=(3.0, 0.25))["loss"]
    assert mixed == pytest.approx(0.75 * plain, rel=1e-5)
    with pytest.raises(ValueError, match="both teacher and distill"):
        train_epoch(student, data, sgd, bptt=10, clip=0.0, teacher=teacher)


@pytest.mark.parametrize("name", ["weightsym.analysis.compression", "weightsym.train.distill"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
