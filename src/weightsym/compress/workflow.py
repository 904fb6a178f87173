"""Compress a trained dense model with weight symmetry: plan, project, fine-tune, report.

``compress(path, out, budget=0.6)`` runs the whole workflow on a ``weightsym train`` classifier checkpoint or a
``weightsym lm`` language-model checkpoint:

1. read the model (:func:`weightsym.load_model`) and measure, for every layer and every catalog symmetry, the relative
   projection residual and the saving (:func:`weightsym.analysis.compression.candidates`);
2. choose a plan: greedily under the stored-parameter ``budget``
   (:func:`~weightsym.analysis.compression.plan_for_budget`, the rule is in that module), or take ``plan``
   ({module glob: symmetry}, as ``weightsym train --plan``);
3. project: ``weightsym.symmetrize(model, plan=..., init="project")`` (the nearest symmetric weights) and write
   ``projected.safetensors``;
4. optionally fine-tune for ``steps`` optimizer steps: classifiers through the training loop itself
   (:func:`weightsym.train.train` with ``init_from`` the projected file and, with ``distill``, the dense file as
   teacher); language models through :func:`weightsym.lm.train.train_epoch` on the first ``steps`` BPTT windows;
5. write ``compressed.safetensors`` (the final model, a checkpoint every command reads: ``eval``, ``describe``,
   ``analyze``, ``export``, ``lm-sample``), ``plan.json`` (for ``weightsym train --plan out/plan.json``),
   ``report.json``, ``report.md`` and ``compress.png`` (accuracy or perplexity against stored parameters: dense,
   projected, fine-tuned).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

import weightsym as ws
from weightsym.analysis.compression import candidates, plan_for_budget
from weightsym.atomic import write_json
from weightsym.compress.report import write_report
from weightsym.train.checkpoint import save_checkpoint

__all__ = ["compress", "existing_plan"]


def existing_plan(model) -> dict[str, str]:
    """``{module name: symmetry}`` of the layers of ``model`` that are already symmetric."""
    plan = {}
    for qualified, _module, symmetry in ws.symmetric_layers(model):
        plan.setdefault(qualified.rpartition(".")[0], symmetry.spec)
    return plan


def compress(path, out, budget: float | None = None, plan: dict[str, str] | None = None, steps: int = 0,
             lr: float | None = None, distill: tuple[float, float] | None = None, symmetries: list[str] | None = None,
             exclude: list[str] | None = None, keep_edges: bool = True, hh_gates: str | None = None,
             ih_gates: str | None = None, qkv: str | None = None, data_dir: str | None = None,
             threads: int | None = None, compile: bool = False, progress: bool = False, dry_run: bool = False,
             log=print) -> dict:
    """Run the workflow of the module docstring on model file ``path``, writing into folder ``out``; returns the
    report dict (also ``out/report.json``).

    Exactly one of ``budget`` (fraction of the dense model's stored parameters, in (0, 1]) and ``plan`` is given.
    ``lr``: fine-tuning learning rate (default: the run's own lr / 10 for classifiers, / 4 for language models);
    classifiers fine-tune with the run's optimizer and a cosine schedule over ``ceil(steps / steps per epoch)``
    epochs, stopped after ``steps``.  ``distill=(temperature, weight)`` adds the KL term of
    :func:`weightsym.train.distill.distillation_loss` with the dense model as teacher (classifiers: per image;
    language models: per token, against the teacher's next-token distribution).  ``hh_gates``/``ih_gates``
    (recurrent layers: which gate blocks a channel symmetry ties; default: the source run's, else ``"1111"`` and
    none; ``"0000"`` ties none) and ``qkv`` (attention layers of a transformer language model: which of the query,
    key and value projections a symmetry ties, e.g. ``"110"``; default: the source run's, else all three) apply to
    every layer of the plan, as in ``symmetrize``, and are recorded in the written files' run config, which must
    describe the layers the source run made symmetric too (a resumed or retrained run rebuilds them from it).  ``dry_run``
    stops after the table and the plan (nothing is projected or written but ``report.json``/``report.md``).
    """
    if (budget is None) == (plan is None):
        raise ValueError("give exactly one of budget (e.g. 0.6) and plan (e.g. {'*conv2': 'tri+spa'})")
    if steps < 0:
        raise ValueError(f"steps={steps} must be >= 0")
    model, description = ws.load_model(path)  # path: a file name or a ModelFile already read and validated
    kind = description.kind
    if kind not in ("classifier", "language-model") or description.config is None:
        raise ValueError(f"{description.path}: compress needs a `weightsym train` or `weightsym lm` checkpoint (it holds the run "
                         f"config: data and training options), not a {kind} file")
    if hh_gates is None:
        hh_gates = description.config.get("hh_gates") or "1111"
    if ih_gates is None:
        ih_gates = description.config.get("ih_gates")
    if qkv is None:
        qkv = (description.config.get("qkv") if kind == "language-model" else None) or "111"
    elif kind == "classifier" and qkv != "111":
        raise ValueError(f"qkv={qkv!r}: {description.path} is a classifier, it has no attention layers (qkv chooses "
                         "the query/key/value projections of a transformer language model)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    task = _Classifier(description, data_dir) if kind == "classifier" else _LanguageModel(description, data_dir, qkv)
    counts = ws.count_parameters(model)
    report = {"source": description.path, "kind": kind, "model": description.architecture["name"],
              "metric": task.metric, "dense": {"params": counts.to_dict()}}

    tic = time.perf_counter()
    table = candidates(model, symmetries, hh_gates=hh_gates, ih_gates=ih_gates, exclude=exclude,
                       keep_edges=keep_edges, qkv=qkv, progress=progress)
    log(f"candidates: {len(table)} (layer, symmetry) pairs on {len({c.layer for c in table})} layers in "
        f"{time.perf_counter() - tic:.1f} s")
    if budget is not None:
        chosen = plan_for_budget(table, counts.dense, budget, stored=counts.stored)
        new_plan = chosen.as_plan()
    else:
        chosen, new_plan = None, dict(plan)
    full_plan = {**existing_plan(model), **new_plan}
    report.update({"budget": budget, "plan": full_plan, "qkv": qkv, "hh_gates": hh_gates, "ih_gates": ih_gates, "candidates": [c.to_dict() for c in table],
                   "greedy": chosen.to_dict() if chosen else None})
    if dry_run:
        return write_report(out, report, log)

    report["dense"].update(task.evaluate_file(path))
    log(f"dense: {task.metric} {report['dense'][task.metric]:.4f}, stored {counts.stored:,}")
    if new_plan:  # empty when the model already meets the budget
        symmetric = ws.symmetrize(model, plan=new_plan, exclude=exclude, hh_gates=hh_gates, ih_gates=ih_gates,
                                  qkv=qkv, init="project")
        if not any(row.symmetry and row.note != "already symmetric" for row in symmetric.rows):
            raise ValueError(f"plan {new_plan} makes no layer symmetric: {symmetric.skipped[0].note}")
    projected = out / "projected.safetensors"
    task.save(projected, model, full_plan, hh_gates, ih_gates)
    report["projected"] = {"params": ws.count_parameters(model).to_dict(), **task.evaluate_file(projected),
                           "file": str(projected)}
    log(f"projected: {task.metric} {report['projected'][task.metric]:.4f}, stored "
        f"{report['projected']['params']['stored']:,} ({report['projected']['params']['stored'] / counts.dense:.3f} "
        "of dense)")
    final = projected
    if steps:
        tic = time.perf_counter()
        final = task.finetune(projected, description.path, out / "finetune", steps, lr, distill, full_plan,
                              hh_gates, ih_gates, threads, compile, progress, log)
    final_model, final_description = ws.load_model(final)
    if steps:
        report["finetuned"] = {"params": ws.count_parameters(final_model).to_dict(), **task.evaluate_file(final),
                               "steps": steps, "distill": distill, "lr": task.last_lr,
                               "seconds": time.perf_counter() - tic, "file": str(final)}
        log(f"fine-tuned {steps} steps: {task.metric} {report['finetuned'][task.metric]:.4f}")
    compressed = out / "compressed.safetensors"
    task.save(compressed, final_model, full_plan, hh_gates, ih_gates, state=final_description.state)
    report["file"] = str(compressed)
    write_json(out / "plan.json", full_plan)
    return write_report(out, report, log)


# ------------------------------------------------------------------------------------------------------ the tasks
class _Classifier:
    """Evaluation, saving and fine-tuning of a ``weightsym train`` checkpoint."""

    metric = "accuracy"

    def __init__(self, description, data_dir):
        self.config = dict(description.config)
        self.data_dir = data_dir
        self.last_lr = None

    def evaluate_file(self, path) -> dict:
        from weightsym.train.classification import evaluate_checkpoint

        result = evaluate_checkpoint(path, self.data_dir)
        return {"accuracy": result["accuracy"], "loss": result["loss"]}

    def _config(self, plan, hh_gates, ih_gates, **changes):
        from weightsym.train.config import TrainConfig

        base = {**self.config, "channel": None, "spatial": None, "include": None, "plan": plan,
                "hh_gates": hh_gates, "ih_gates": ih_gates, "resume": False, "max_steps": None,
                "init_from": None, "distill": None}
        if self.data_dir is not None:
            base["data_dir"] = self.data_dir
        return TrainConfig.from_dict({**base, **changes})

    def save(self, path, model, plan, hh_gates, ih_gates, state=None):
        config = self._config(plan, hh_gates, ih_gates, out=str(Path(path).parent))
        kept = {k: v for k, v in (state or {}).items() if k in ("step", "epochs_done")}
        save_checkpoint(path, model, state={**kept, "config": config.to_dict()})

    def finetune(self, projected, dense, out, steps, lr, distill, plan, hh_gates, ih_gates, threads, compile,
                 progress, log):
        from weightsym.train.data import make_train_loader, training_data_info
        from weightsym.train.distributed import DistContext
        from weightsym.train.classification import train

        probe = self._config(plan, hh_gates, ih_gates)
        from weightsym.models import model_info

        data = training_data_info(probe.dataset or model_info(probe.model)["dataset"], probe.data_dir,
                                  probe.image_size)
        size = probe.train_subset or data.get("train_size")  # in-memory datasets: no need to load the images
        per_epoch = math.ceil(size / probe.batch_size) if size else len(make_train_loader(probe, data, DistContext()))
        epochs = math.ceil(steps / per_epoch)
        self.last_lr = lr if lr is not None else self.config.get("lr", 0.1) / 10
        config = self._config(
            plan, hh_gates, ih_gates, out=str(out), epochs=epochs, max_steps=None if steps % per_epoch == 0 else steps,
            lr=self.last_lr, schedule="cosine", init_from=str(projected),
            distill=None if distill is None else {"teacher": str(dense), "temperature": distill[0],
                                                  "weight": distill[1]},
            threads=threads, compile=compile, progress=progress, checkpoint_every=None)
        log(f"fine-tuning: {steps} steps ({epochs} epoch(s) of {per_epoch} steps, cosine from lr {self.last_lr:g})"
            + (f", distilling at T={distill[0]:g}, weight {distill[1]:g}" if distill else ""))
        train(config)
        return Path(out) / "checkpoint.safetensors"


class _LanguageModel:
    """Evaluation, saving and fine-tuning of a ``weightsym lm`` checkpoint (validation perplexity)."""

    metric = "perplexity"

    def __init__(self, description, data_dir, qkv="111"):
        from weightsym.data.text import batchify, load_corpus
        from weightsym.lm.config import LMConfig

        self.config = LMConfig.from_dict(description.config)
        self.qkv = qkv
        self.vocab = description.state.get("vocab")
        corpus = load_corpus(self.config.corpus, data_dir or self.config.data_dir)
        self.corpus = corpus
        valid = corpus.valid[: self.config.max_eval_tokens] if self.config.max_eval_tokens else corpus.valid
        self.valid = batchify(valid, self.config.eval_batch_size)
        self.vocab = self.vocab or corpus.dictionary.idx2word
        self.last_lr = None

    def evaluate_file(self, path) -> dict:
        from weightsym.lm.train import evaluate, load_language_model

        model, _dictionary, config = load_language_model(path)
        loss = evaluate(model, self.valid, config.bptt)
        return {"perplexity": math.exp(min(loss, 700.0)), "loss": loss}

    def save(self, path, model, plan, hh_gates, ih_gates, state=None):
        config = asdict(self.config)
        config.update({"channel": None, "plan": plan, "hh_gates": hh_gates, "ih_gates": ih_gates, "qkv": self.qkv,
                       "out": str(Path(path).parent)})
        kept = {k: v for k, v in (state or {}).items() if k in ("epoch", "valid_loss")}
        save_checkpoint(path, model, state={**kept, "config": config, "vocab": list(self.vocab)})

    def finetune(self, projected, dense, out, steps, lr, distill, plan, hh_gates, ih_gates, threads, compile,
                 progress, log):
        from weightsym.data.text import batchify
        from weightsym.lm.train import load_language_model, train_epoch

        model, _dictionary, config = load_language_model(projected)
        torch.manual_seed(config.seed)
        train_ids = self.corpus.train[: config.max_train_tokens] if config.max_train_tokens else self.corpus.train
        data = batchify(train_ids, config.batch_size)[: steps * config.bptt + 1]
        self.last_lr = lr if lr is not None else config.lr / 4
        optimizer = torch.optim.SGD(model.parameters(), lr=self.last_lr)
        windows = (data.size(0) - 1 + config.bptt - 1) // config.bptt
        teacher = None
        if distill is not None:
            teacher, _, _ = load_language_model(dense)
            teacher.requires_grad_(False)
        log(f"fine-tuning: {windows} BPTT windows of {config.bptt} (SGD lr {self.last_lr:g}, clip {config.clip:g})"
            + (f", distilling at T={distill[0]:g}, weight {distill[1]:g}" if distill else ""))
        stats = train_epoch(model, data, optimizer, config.bptt, config.clip, teacher=teacher, distill=distill)
        log(f"fine-tuning: train loss {stats['loss']:.4f} over {stats['tokens']:,} tokens")
        Path(out).mkdir(parents=True, exist_ok=True)
        path = Path(out) / "last.safetensors"
        self.save(path, model, plan, hh_gates, ih_gates)
        return path
