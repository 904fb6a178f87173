"""benchmarks/cifar_accuracy.py (issue 13 item 6): every planned command is a valid `weightsym train` configuration
with the schedule it claims, finished runs are recognised, and the page summarises seeds as mean ± std."""

import importlib.util
import json
import shlex
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "cifar_accuracy.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("cifar_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_planned_run_is_a_valid_train_config(script, tmp_path, capsys):
    from weightsym.cli import build_parser
    from weightsym.cli.train import config_from_args

    assert script.main(["plan", "--root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(script.RUNS) == 9
    configs = {}
    for line in lines:
        argv = shlex.split(line)
        assert argv[:2] == ["weightsym", "train"]
        configs[Path(argv[-1]).name] = config_from_args(build_parser().parse_args(argv[1:]))
    for name, c in configs.items():
        assert (c.epochs, c.schedule, c.lr, c.batch_size, c.nesterov, c.label_smoothing) == (40, "cosine", 0.1, 128,
                                                                                           True, 0.1), name
        assert c.model == "wrn-16-4-bottleneck" and c.compile and c.augment == "crop-flip"
    assert configs["triangular.s1"].seed == 1 and configs["triangular.s1"].channel == "triangular"
    assert configs["triangular.s0"].include == ["*conv2"] and configs["dihedral.s0"].spatial == "dihedral"
    assert configs["tri-spa.s0"].channel == "triangular" and configs["tri-spa.s0"].spatial == "transpose"
    assert configs["dense.s0"].channel is None and configs["dense.s0"].include is None
    assert configs["dense-at-triangular.s0"].model_args == {"width": 3.5625}  # 173,942 stored vs 172,106


def _fake_run(folder: Path, accuracy: float, epochs_done: int, stored: int, seconds=(130.0, 100.0, 110.0), cpus=None):
    folder.mkdir(parents=True)
    seconds = list(seconds)
    cpus = list(cpus or [None] * len(seconds))
    summary = {"params": {"stored": stored, "dense": 219482, "free": stored, "saved": 1 - stored / 219482},
               "test_accuracy": accuracy, "best_test_accuracy": accuracy + 0.001, "epochs_completed": epochs_done,
               "config": {"epochs": 3, "model_args": {}, "threads": 1}}
    (folder / "summary.json").write_text(json.dumps(summary))
    lines = [{"epoch": i + 1, "seconds": s, "test_accuracy": accuracy, **({"cpu": c} if c else {})}
             for i, (s, c) in enumerate(zip(seconds, cpus))]
    (folder / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_page_summarises_finished_runs_and_lists_the_rest(script, tmp_path, capsys):
    root, out = tmp_path / "runs", tmp_path / "page"
    _fake_run(root / "dense.s0", 0.90, 3, 219482)
    _fake_run(root / "dense.s1", 0.92, 3, 219482, seconds=(130.0, 100.0, 150.0))    # epoch 3 shared the cores
    _fake_run(root / "triangular.s0", 0.89, 2, 172106)      # still running: not on the page
    _fake_run(root / "bisymmetric.s0", 0.88, 3, 147466,     # one seed: no spread; resumed on another VM type
              cpus=["AMD EPYC", "AMD EPYC", "Intel Xeon"])
    assert script.finished(root / "dense.s0") and not script.finished(root / "triangular.s0")
    assert script.main(["page", "--root", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| dense | 0, 1 | 219,482 | 0.0% | 91.00% ± 1.41 (90.00, 92.00) | — |" in printed
    assert "| bisymmetric | 0 | 147,466 | 32.8% | 88.00% | \u22123.00 | 88.10 |" in printed  # 88 - mean(90, 92)
    assert "dense.s1: epoch 3 took over 1.15x its median epoch" in printed and "dense.s0: epoch" not in printed
    assert "not finished yet: triangular.s0, dense-at-triangular.s0" in printed
    saved = json.loads((out / "runs.json").read_text())
    assert [r["run"] for r in saved["runs"]] == ["dense.s0", "dense.s1", "bisymmetric.s0"]
    assert saved["runs"][0]["seconds_per_epoch"] == 105.0 and saved["runs"][0]["hours"] == pytest.approx(340 / 3600)
    assert [r["slow_epochs"] for r in saved["runs"]] == [[], [3], []]
    assert [r["cpus"] for r in saved["runs"]] == [[], [], ["AMD EPYC", "Intel Xeon"]]
    assert "bisymmetric.s0: trained on AMD EPYC then Intel Xeon" in printed
    assert "dense.s0: trained on a CPU not recorded in its files" in printed
    assert sorted(p.name for p in out.iterdir()) == ["bisymmetric.s0.log.jsonl", "bisymmetric.s0.summary.json",
                                                     "curves.png", "dense.s0.log.jsonl", "dense.s0.summary.json",
                                                     "dense.s1.log.jsonl", "dense.s1.summary.json", "runs.json"]
    from PIL import Image

    with Image.open(out / "curves.png") as image:
        assert image.size[0] > 1000
    with pytest.raises(SystemExit, match="unknown run 'dense.s7'"):
        script.selected(["dense.s7"])


def test_run_skips_finished_resumes_started_and_starts_the_rest(script, tmp_path, monkeypatch, capsys):
    from weightsym.cli import build_parser

    root = tmp_path / "runs"
    _fake_run(root / "dense.s0", 0.90, 3, 219482)                   # finished: skipped
    _fake_run(root / "triangular.s0", 0.89, 2, 172106)              # started: resumed from its checkpoint
    (root / "triangular.s0" / "checkpoint.safetensors").write_bytes(b"")
    launched = []

    class Done:
        returncode = 0

        def __init__(self, argv, **kwargs):
            launched.append(argv[3:])      # drop `python -m weightsym`, keep `train ...`
            kwargs["stdout"].close()

        def poll(self):
            return 0

    monkeypatch.setattr(script.subprocess, "Popen", Done)
    monkeypatch.setattr(script.time, "sleep", lambda s: None)
    assert script.run(root, parallel=2, threads=1, only=["dense.s0", "triangular.s0", "dense.s1"]) == 0
    assert "finished: dense.s0" in capsys.readouterr().out
    resumed, started = launched
    assert resumed == ["train", "--resume", "--no-progress", "--threads", "1", "--out", str(root / "triangular.s0")]
    assert started[:2] == ["train", "--model"] and started[-1] == str(root / "dense.s1") and "--no-progress" in started
    for argv in launched:
        build_parser().parse_args(argv)


def test_restore_brings_back_the_finished_runs_page_copied(script, tmp_path, capsys):
    root, out, fresh = tmp_path / "runs", tmp_path / "page", tmp_path / "fresh"
    _fake_run(root / "dense.s0", 0.90, 3, 219482)
    _fake_run(root / "bisymmetric.s0", 0.88, 3, 147466)
    assert script.main(["page", "--root", str(root), "--out", str(out)]) == 0
    _fake_run(fresh / "dense.s0", 0.50, 1, 219482)                  # started here: left alone
    assert script.main(["restore", "--root", str(fresh), "--from", str(out)]) == 0
    assert "restored 1 finished run(s)" in capsys.readouterr().out
    assert script.finished(fresh / "bisymmetric.s0")["test_accuracy"] == 0.88
    assert (fresh / "bisymmetric.s0" / "log.jsonl").read_text() == (root / "bisymmetric.s0" / "log.jsonl").read_text()
    assert script.finished(fresh / "dense.s0") is None                # not overwritten by the finished copy
    # a copied summary that is not a finished run is refused and leaves no folder behind
    summary = json.loads((out / "dense.s0.summary.json").read_text())
    (out / "dense.s0.summary.json").write_text(json.dumps({**summary, "epochs_completed": 2}))
    with pytest.raises(SystemExit, match="not a finished run"):
        script.restore(tmp_path / "other", out)
    assert not (tmp_path / "other" / "dense.s0").exists()
