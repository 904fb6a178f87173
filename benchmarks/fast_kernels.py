"""Kernel symmetry in trained fast CIFAR-10 networks (issue 27 items 2-5): analysis of the ``kernels`` study's runs
and its page.

The runs are trained by ``python benchmarks/fast_cifar.py run kernels --commit`` (dense ``airbench-64-128-128`` with
its weights kept at the start and after every epoch, the same without flip augmentation and with reflect padding, and
the 94% width; 3 seeds each).  This script measures them and writes the page:

    python benchmarks/fast_kernels.py analyze [--root runs/fast] [--commit]   # per run: kernels JSON beside the page
    python benchmarks/fast_kernels.py page                                      # the page, from the committed JSON

``analyze`` reads each finished run's snapshots and final checkpoint (never committed) and writes
``docs/results/fast-kernels/NAME.kernels.json``: for every snapshot and the final model, every 3x3 conv's mean-kernel
score S (Alsallakh et al.'s D4 score, ``weightsym.analysis.kernel_symmetry``) with its chance level (the same kernels
with their taps permuted, 200 draws: ``weightsym.analysis.chance``), and for the final model its flip and shift
consistency on the 10,000 test images.  ``page`` needs only those files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fast_cifar import PAGES, REPO, RESULTS, STUDIES, finished  # noqa: E402

import weightsym as ws  # noqa: E402
from weightsym.analysis.chance import attach_chance  # noqa: E402
from weightsym.analysis.consistency import flip_consistency, shift_consistency  # noqa: E402
from weightsym.analysis.kernel_symmetry import kernel_symmetry  # noqa: E402

STUDY = "kernels"
OUT = RESULTS / PAGES[STUDY]
DRAWS = 200


def layer_rows(model) -> list[dict]:
    """S, its chance mean/std/z/percentile, and the layer's shape and padding, per 3x3 conv in network order."""
    layers = attach_chance(model, kernel_symmetry(model, residuals=False), draws=DRAWS)
    return [{"layer": r.name, "shape": list(r.shape), "padding_mode": r.padding_mode, "strided": r.strided,
             "S": r.score, **{f"chance_{k}": v for k, v in r.chance.items() if k != "score"}} for r in layers]


def test_loader(summary: dict):
    from weightsym.train import TrainConfig
    from weightsym.train.data import make_test_loader, training_data_info
    from weightsym.train.distributed import DistContext

    config = TrainConfig.from_dict({**summary["config"], "resume": False})
    data = training_data_info(config.dataset or "cifar10", config.data_dir, config.image_size,
                              source=config.data_source)
    return make_test_loader(config, data, DistContext())


def analyze_run(folder: Path, summary: dict) -> dict:
    snapshots = sorted((folder / "snapshots").glob("epoch-*.safetensors"))
    out = {"run": folder.name, "group": None, "seed": summary["config"]["seed"], "model": summary["config"]["model"],
           "test_accuracy": summary["test_accuracy"], "test_accuracy_tta": summary.get("test_accuracy_tta"),
           "expand_input": summary["config"].get("expand_input", 1), "snapshots": {},
           "date": time.strftime("%Y-%m-%d")}
    for path in snapshots:
        model, _ = ws.load_model(path)
        out["snapshots"][int(path.stem.split("-")[1])] = layer_rows(model)
    model, _ = ws.load_model(folder / "checkpoint.safetensors")
    out["final"] = layer_rows(model)
    loader = test_loader(summary)
    model.eval()
    factor = out["expand_input"]
    if factor > 1:  # consistency in the space of the original images: flip or shift first, then expand
        from weightsym.data import ExpandInput

        model = torch.nn.Sequential(ExpandInput(factor, fill=summary["config"].get("expand_fill", 0.0)), model)
    with torch.autocast("cpu", torch.bfloat16):  # the precision the run evaluated in (bf16 recipe)
        out["flip_consistency"] = flip_consistency(model, loader)
        out["shift_consistency"] = shift_consistency(model, loader, max_shift=4, seed=0)
    out["machine"] = summary.get("machine", {}).get("cpu")
    return out


def analyze(root: Path, do_commit: bool) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for run in STUDIES[STUDY]():
        folder, target = root / STUDY / run.name, OUT / f"{run.name}.kernels.json"
        summary = finished(folder)
        if target.exists() or summary is None or not (folder / "checkpoint.safetensors").exists():
            continue
        tic = time.perf_counter()
        result = analyze_run(folder, summary)
        result["group"], result["seconds"] = run.group, round(time.perf_counter() - tic, 1)
        target.write_text(json.dumps(result, indent=1) + "\n")
        print(f"{run.name}: {len(result['snapshots'])} snapshots, flip {result['flip_consistency']:.4f}, "
              f"shift {result['shift_consistency']:.4f} ({result['seconds']:.0f} s)", flush=True)
        if do_commit:
            rel = str(target.relative_to(REPO))
            subprocess.run(["git", "add", rel], cwd=REPO, check=False)
            subprocess.run(["git", "commit", "-q", "-m", f"fast-kernels: {run.name} analysed", "--", rel], cwd=REPO,
                           check=False)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("analyze")
    a.add_argument("--root", type=Path, default=Path("runs/fast"))
    a.add_argument("--commit", action="store_true")
    sub.add_parser("page")
    args = ap.parse_args(argv)
    if args.what == "analyze":
        return analyze(args.root, args.commit)
    from fast_kernels_page import write_page

    return write_page(OUT)


if __name__ == "__main__":
    sys.exit(main())
