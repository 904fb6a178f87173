"""Train and evaluate a word-level LSTM/GRU or transformer language model, dense or with symmetric gate blocks
or attention projections.

The recipe is the pytorch/examples ``word_language_model`` one the paper's code (hushell/deep-symmetry, ``symmRNN``)
started from:

* truncated BPTT: the training stream is cut into ``batch_size`` columns (:func:`~weightsym.data.text.batchify`)
  and walked in windows of ``bptt`` steps; the hidden state is carried from one window to the next, detached
  (:func:`~weightsym.models.language.repackage_hidden`), and reset to zero at the start of every epoch;
* plain SGD (``lr`` 20), gradient-norm clipping (0.25);
* after each epoch the validation loss is computed; if it did not improve on the best so far, the learning rate is
  divided by ``anneal`` (4); the best model is kept (``best.safetensors``) and the test perplexity is computed with it.

Symmetry is applied from outside, as everywhere in weightsym: ``channel`` (e.g. ``average``, ``triangular``) on
the gate blocks chosen by ``hh_gates`` / ``ih_gates`` (gate order i, f, g, o for LSTM; r, z, n for GRU).  The
symmetric LSTM runs on the stock fused kernel (each symmetric weight is expanded once per forward call).

``rnn_type="transformer"`` trains :class:`~weightsym.models.transformer.TransformerLanguageModel` (``width`` =
``hidden`` = ``emb``, ``heads``, context = ``bptt``) with the same loop: it carries no state between windows (its
hidden state is ``None``), and its defaults differ where a transformer needs it (:data:`MODEL_DEFAULTS`: AdamW,
lr 1e-3, clip 1, dropout 0.1, tied embeddings).  ``channel`` then goes on the q/k/v blocks of every block's
``in_proj_weight`` chosen by ``qkv`` (order q k v) and on ``out_proj``; ``include`` (module globs) chooses other
layers, e.g. the feed-forward ``*.ff.*`` (d -> 4d: ``block`` or ``repeat:c``).

Files written to ``out``: ``log.jsonl`` (one JSON object per epoch), ``last.safetensors`` (model, optimizer, RNG and
run state after the last finished epoch: ``resume=True`` continues from it and gives the same result as an
uninterrupted run), ``best.safetensors`` (best validation model; its state holds the config and the vocabulary, so
:func:`load_language_model` / ``weightsym lm-sample`` need nothing else), ``summary.json``.

Example (the run needs the PTB corpus under ``data_dir`` and takes minutes on a CPU, so it is not run as a test):
    >>> config = LMConfig(corpus="ptb", data_dir="/work/shared/data", hidden=128, emb=128, tie=True,
    ...                   channel="average", epochs=1, max_train_tokens=100_000, out="runs/lm-avg")
    >>> summary = fit(config)                                                                          # doctest: +SKIP
    >>> summary["test_ppl"] < 10_000   # beats a uniform guess over the 10,000 words      # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

import weightsym as ws
from weightsym.data.text import Corpus, Dictionary, batchify, get_batch, load_corpus
from weightsym.fast.training import POLICIES as FOLD_POLICIES
from weightsym.machine import cpu_name, machine
from weightsym.models.language import repackage_hidden
from weightsym.symmetry import check_init
from weightsym.train.checkpoint import checkpoint_info, load_checkpoint, save_checkpoint
from weightsym.train.rundir import RunLock, TrainingInterrupted, truncate_log, write_guard


# Options whose default depends on the model (None in LMConfig means: this table's value for ``rnn_type``).
MODEL_DEFAULTS = {
    "lstm": {"optimizer": "sgd", "lr": 20.0, "clip": 0.25, "dropout": 0.5, "tie": False},
    "gru": {"optimizer": "sgd", "lr": 20.0, "clip": 0.25, "dropout": 0.5, "tie": False},
    "transformer": {"optimizer": "adamw", "lr": 1e-3, "clip": 1.0, "dropout": 0.1, "tie": True},
}
# where --channel goes when no include is given: the recurrent layer, or every attention layer and its out_proj
DEFAULT_INCLUDE = {"lstm": ["rnn"], "gru": ["rnn"], "transformer": ["*.attn", "*.attn.out_proj"]}


@dataclass
class LMConfig:
    """Every option of a language-model run (the ``weightsym lm`` flags map one to one).  ``rnn_type`` names the
    model: ``lstm``, ``gru`` or ``transformer`` (the field keeps its first name so older checkpoints load)."""

    corpus: str = "ptb"
    data_dir: str | None = None
    rnn_type: str = "lstm"
    emb: int = 256
    hidden: int = 256
    layers: int = 2
    dropout: float | None = None  # None: MODEL_DEFAULTS
    tie: bool | None = None  # None: MODEL_DEFAULTS
    heads: int = 4  # transformer only
    channel: str | None = None  # None: dense model
    plan: dict[str, str] | None = None  # per-layer symmetries {module glob: symmetry} instead of channel
    hh_gates: str = "1111"
    ih_gates: str | None = None  # None or all zeros: weight_ih stays dense
    init: str = "variance"  # how symmetric gate blocks start (weightsym.symmetrize init=); "project" before it existed
    recipe: str | None = None  # the named preset the options came from (weightsym.train.recipes.LM_RECIPES)
    qkv: str = "111"  # transformer: which of the q, k, v blocks of in_proj_weight take the channel symmetry
    include: list[str] | None = None  # module globs --channel goes on (None: DEFAULT_INCLUDE)
    epochs: int = 6
    bptt: int = 35
    batch_size: int = 20
    eval_batch_size: int = 10
    optimizer: str | None = None  # sgd or adamw; None: MODEL_DEFAULTS
    lr: float | None = None  # None: MODEL_DEFAULTS
    anneal: float = 4.0
    clip: float | None = None  # None: MODEL_DEFAULTS
    seed: int = 1111
    max_train_tokens: int | None = None  # first N training tokens only (quick runs)
    max_eval_tokens: int | None = None  # first N valid/test tokens only (quick runs; None: the full sets)
    threads: int | None = None
    out: str = "runs/lm"
    compile: bool = False  # training forward through torch.compile (run control: may change on resume)
    fold: str = "auto"  # symmetric Linear/Conv layers train through their folds (weightsym.fast.fold_training):
    # auto, measure (timed on this machine; the choice is kept in the checkpoint), always, never

    def __post_init__(self):
        if self.rnn_type not in MODEL_DEFAULTS:
            raise ValueError(f"LMConfig: rnn_type={self.rnn_type!r}; use {', '.join(map(repr, MODEL_DEFAULTS))}")
        for key, value in MODEL_DEFAULTS[self.rnn_type].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"LMConfig: optimizer={self.optimizer!r}; use 'sgd' or 'adamw'")
        if self.rnn_type == "transformer" and (self.emb != self.hidden or self.hidden % self.heads):
            raise ValueError(f"LMConfig: a transformer needs emb == hidden (its width; got {self.emb} and "
                             f"{self.hidden}) divisible by heads ({self.heads})")
        positive = {k: getattr(self, k) for k in ("emb", "hidden", "layers", "epochs", "bptt", "batch_size",
                                                   "eval_batch_size", "heads")}
        bad = [f"{k}={v}" for k, v in positive.items() if v < 1]
        if bad or not 0 <= self.dropout < 1 or self.lr <= 0 or self.clip < 0 or self.anneal < 1:
            raise ValueError(f"LMConfig: {', '.join(bad) or 'dropout/lr/clip/anneal'} out of range (sizes, epochs, "
                             "bptt and batch sizes >= 1; 0 <= dropout < 1; lr > 0; clip >= 0; anneal >= 1)")
        if self.fold not in FOLD_POLICIES:
            raise ValueError(f"LMConfig: fold={self.fold!r}; use one of {', '.join(map(repr, FOLD_POLICIES))}")
        check_init(self.init)

    @classmethod
    def from_dict(cls, data: dict) -> "LMConfig":
        """The config stored in a checkpoint (unknown keys ignored; a value of the wrong type is a ``ValueError``).
        A config written before ``init`` existed was trained with the projection, so it reads as ``init="project"``."""
        from weightsym.train.config import check_types

        known = {f.name for f in fields(cls)}
        data = {"init": "project", **{k: v for k, v in data.items() if k in known}}
        check_types(cls, data, "language-model option")
        return cls(**data)

    def symmetry_options(self) -> dict | None:
        """Keyword arguments for :func:`weightsym.symmetrize`, or None for a dense model.  ``channel`` goes on the
        layers ``include`` names (default: the gate blocks of ``rnn``; a transformer's attention layers, q/k/v
        blocks chosen by ``qkv``, and their ``out_proj``); a ``plan`` names the layers itself
        (``{"rnn": "average"}``), gates and projections as chosen."""
        include = list(self.include) if self.include else DEFAULT_INCLUDE[self.rnn_type]
        if self.rnn_type == "transformer":
            if self.plan:
                return {"plan": dict(self.plan), "qkv": self.qkv, "init": self.init}
            if not self.channel or self.channel == "none":
                return None
            return {"channel": self.channel, "qkv": self.qkv, "include": include, "init": self.init}
        ih = self.ih_gates if self.ih_gates and "1" in self.ih_gates else None
        hh = self.hh_gates if self.hh_gates and "1" in self.hh_gates else None
        gates = 4 if self.rnn_type == "lstm" else 3
        if self.plan:
            return {"plan": dict(self.plan), "hh_gates": hh or "0" * gates, "ih_gates": ih, "init": self.init}
        if not self.channel or self.channel == "none":
            return None
        if hh is None and ih is None:
            return None
        return {"channel": self.channel, "hh_gates": hh or "0" * gates, "ih_gates": ih, "include": include,
                "init": self.init}

    def model_args(self) -> dict:
        """Registry arguments of ``<rnn_type>-lm`` (besides the vocabulary size)."""
        args = {"emb_size": self.emb, "hidden_size": self.hidden, "num_layers": self.layers, "dropout": self.dropout,
                "tie_weights": self.tie}
        if self.rnn_type == "transformer":
            args.update(heads=self.heads, context=self.bptt)
        return args

    def make_optimizer(self, parameters) -> torch.optim.Optimizer:
        """Plain SGD (the LSTM recipe) or AdamW (torch's defaults besides ``lr``)."""
        if self.optimizer == "adamw":
            return torch.optim.AdamW(parameters, lr=self.lr)
        return torch.optim.SGD(parameters, lr=self.lr)


def build_model(config: LMConfig, vocab_size: int) -> tuple[nn.Module, "ws.SymmetrizeReport | None"]:
    """The (possibly symmetric) model of ``config`` and the symmetrize report (None if dense)."""
    from weightsym.models import create_model

    model = create_model(f"{config.rnn_type}-lm", num_classes=vocab_size, **config.model_args())
    options = config.symmetry_options()
    if options is not None and options.get("ih_gates") and config.emb != config.hidden:
        raise ValueError(f"--ih-gates {options['ih_gates']}: symmetric weight_ih blocks need --emb == --hidden "
                         f"(layer 0 maps {config.emb} -> {config.hidden}); use equal sizes or --ih-gates 0000")
    report = ws.symmetrize(model, **options) if options is not None else None
    if report is not None:
        skipped = ("no gate selected", "no projection selected (qkv)", "no plan entry", "not in include")
        refused = [r for r in report.skipped if r.note and r.note not in skipped]
        if refused or not report.symmetric:
            row = refused[0] if refused else report.rows[0]
            what = f"--channel {config.channel}" if not config.plan else "--plan"
            raise ValueError(f"{what}: cannot be applied to `{row.name}` {row.tensor} {tuple(row.shape)}: "
                             f"{row.note or 'no gate selected'}")
    return model, report


def evaluate(model: nn.Module, data: torch.Tensor, bptt: int) -> float:
    """Mean cross-entropy per token (nats) over the batchified ``data``, hidden state carried across windows."""
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    total, count = 0.0, 0
    hidden = model.init_hidden(data.size(1))
    with torch.no_grad():
        for i in range(0, data.size(0) - 1, bptt):
            x, y = get_batch(data, i, bptt)
            logits, hidden = model(x, hidden)
            total += criterion(logits.view(-1, logits.size(-1)), y.reshape(-1)).item()
            count += y.numel()
    return total / max(count, 1)


def train_epoch(model: nn.Module, data: torch.Tensor, optimizer: torch.optim.Optimizer, bptt: int, clip: float,
                progress=None, forward=None, teacher: nn.Module | None = None,
                distill: tuple[float, float] | None = None) -> dict:
    """One pass of truncated BPTT over the batchified ``data``; returns ``{"loss", "tokens", "seconds"}``.

    ``forward`` (default ``model``) computes the logits, e.g. ``torch.compile(model)``; ``model`` is used for the rest.
    ``teacher`` with ``distill=(temperature, weight)``: every token's loss is
    :func:`weightsym.train.distill.distillation_loss` against the teacher's next-token distribution (the teacher runs
    in eval mode over the same windows, its hidden state carried the same way, without gradients); the returned loss is
    then that mixed loss.
    """
    forward = model if forward is None else forward
    if (teacher is None) != (distill is None):
        raise ValueError("train_epoch: give both teacher and distill=(temperature, weight), or neither")
    model.train()
    criterion = nn.CrossEntropyLoss()
    hidden = model.init_hidden(data.size(1))
    if teacher is not None:
        from weightsym.train.distill import check_distill, distillation_loss

        check_distill(*distill)
        teacher.eval()
        teacher_hidden = teacher.init_hidden(data.size(1))
    total, tokens, start, cpu_start = 0.0, 0, time.perf_counter(), time.process_time()
    for i in range(0, data.size(0) - 1, bptt):
        x, y = get_batch(data, i, bptt)
        hidden = repackage_hidden(hidden)
        optimizer.zero_grad(set_to_none=True)
        logits, hidden = forward(x, hidden)
        if teacher is None:
            loss = criterion(logits.view(-1, logits.size(-1)), y.reshape(-1))
        else:
            with torch.no_grad():
                teacher_logits, teacher_hidden = teacher(x, teacher_hidden)
            loss = distillation_loss(logits.view(-1, logits.size(-1)), teacher_logits.view(-1, logits.size(-1)),
                                     y.reshape(-1), *distill)
        loss.backward()
        if clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        value = loss.item()
        if not math.isfinite(value):
            raise RuntimeError(f"training loss became {value} at window {i // bptt}; lower --lr or --clip")
        total += value * y.numel()
        tokens += y.numel()
        if progress is not None:
            elapsed = time.perf_counter() - start
            progress.update(1)
            progress.set_postfix(loss=f"{total / tokens:.3f}", ppl=f"{math.exp(min(total / tokens, 50)):.1f}",
                                 tok_s=f"{tokens / max(elapsed, 1e-9):,.0f}", refresh=False)
    return {"loss": total / max(tokens, 1), "tokens": tokens, "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu_start}


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def _ppl(loss: float) -> float:
    return math.exp(min(loss, 700.0))


def fit(config: LMConfig, resume: bool = False, progress: bool = True, log=print) -> dict:
    """Run (or with ``resume=True`` continue) the training described by ``config``; return the summary dict.

    ``config.out`` is locked for the run (:class:`~weightsym.train.rundir.RunLock`); Ctrl-C raises
    :class:`~weightsym.train.rundir.TrainingInterrupted` naming the checkpoint ``resume=True`` continues from; a failed
    write (full disk) raises :class:`~weightsym.train.rundir.RunWriteError` naming the last good checkpoint.

    Summary keys: ``config``, ``vocab``, ``params`` (dense-equivalent / stored / free), ``epochs_done``,
    ``best_epoch``, ``valid_ppl`` (best), ``test_ppl`` (of the best model), ``seconds_per_epoch`` (training only,
    wall clock, mean), ``cpu_seconds_per_epoch`` (process CPU time, meaningful on a shared machine),
    ``tokens_per_second``, ``history``.
    """
    if config.threads:
        torch.set_num_threads(int(config.threads))
    out = Path(config.out)
    last_path = out / "last.safetensors"
    with RunLock(out, note=log):
        try:
            return _fit(config, resume, progress, log)
        except KeyboardInterrupt:
            where = (f"the last checkpoint {last_path} (epoch {checkpoint_info(last_path)['state']['epoch']}) was kept"
                     if last_path.exists() else "no epoch had finished yet")
            raise TrainingInterrupted(f"{where}; continue with: weightsym lm --resume --out {out}") from None


def _fit(config: LMConfig, resume: bool, progress: bool, log) -> dict:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path, log_path = out / "last.safetensors", out / "best.safetensors", out / "log.jsonl"
    if resume:
        if not last_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint {last_path} (run without --resume first)")
        stored = checkpoint_info(last_path)["state"].get("config")
        try:
            saved = LMConfig.from_dict(stored)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{last_path}: its run config cannot be used: {exc}") from None
        saved.epochs = config.epochs  # may change on resume: train for longer
        saved.compile = config.compile  # run control
        saved.fold = config.fold
        config = saved
    elif last_path.exists():
        raise FileExistsError(f"{out} already holds a run (last.safetensors); pass --resume to continue it or choose "
                              "another --out")

    def kept() -> str:
        if not last_path.exists():
            return "no epoch had been saved yet"
        return f"the last good checkpoint {last_path} (epoch {checkpoint_info(last_path)['state']['epoch']}) was kept"

    torch.manual_seed(config.seed)
    corpus = load_corpus(config.corpus, config.data_dir)
    train_ids = corpus.train[: config.max_train_tokens] if config.max_train_tokens else corpus.train
    valid_ids = corpus.valid[: config.max_eval_tokens] if config.max_eval_tokens else corpus.valid
    test_ids = corpus.test[: config.max_eval_tokens] if config.max_eval_tokens else corpus.test
    train_data = batchify(train_ids, config.batch_size)
    valid_data = batchify(valid_ids, config.eval_batch_size)
    test_data = batchify(test_ids, config.eval_batch_size)

    model, report = build_model(config, len(corpus.dictionary))
    optimizer = config.make_optimizer(model.parameters())
    counts = ws.count_parameters(model)
    state = {"epoch": 0, "best_val": None, "best_epoch": None, "history": [], "config": asdict(config)}
    if resume:
        state = load_checkpoint(last_path, model, optimizer, restore_rng=True)
        done = state["epoch"]
        truncate_log(log_path, lambda record: record["epoch"] <= done, note=log)
        log(f"resumed {last_path} after epoch {state['epoch']} (lr {optimizer.param_groups[0]['lr']:g})")
    else:
        log_path.write_text("")
        if config.recipe:
            from weightsym.train.recipes import LM_RECIPES, describe_recipe

            log(describe_recipe(LM_RECIPES, config.recipe, asdict(config)))
        log(f"{corpus.name}: vocab {len(corpus.dictionary):,}, train {train_ids.numel():,} tokens, "
            f"valid {valid_ids.numel():,}, test {test_ids.numel():,}")
        if report is not None:
            log(str(report))
            log(f"symmetric blocks start with init={config.init}")
        log(f"parameters: dense-equivalent {counts.dense:,}, stored {counts.stored:,}, free {counts.free:,} "
            f"({100 * counts.saved:.2f}% saved)")

    steps = (train_data.size(0) - 1 + config.bptt - 1) // config.bptt
    folds = None
    if report is not None:  # recurrent layers keep the gather into the fused kernel; Linear/Conv layers may fold
        from weightsym.fast.training import fold_training

        if config.fold == "measure" and state.get("fold_layers") is None:  # resumed runs replay the choice
            log("fold training (measure): timing each foldable layer's training step, gathered and folded"
                f"{' and compiled' if config.compile else ''} ...")
            generator = torch.Generator().manual_seed(0)  # never the global RNG: the run stays the same
            x = torch.randint(len(corpus.dictionary), (config.bptt, config.batch_size), generator=generator)
            with warnings.catch_warnings():  # logged below instead
                warnings.simplefilter("ignore", UserWarning)
                folds = fold_training(model, policy="measure", compiled=config.compile,
                                      example_input=(x, model.init_hidden(config.batch_size)))
            state["fold_layers"], state["fold_note"] = folds.folded, folds.note
            if folds.note:
                log(f"fold training (measure): note: {folds.note}")
        elif config.fold == "measure":
            folds = fold_training(model, layers=state["fold_layers"])
            folds.note = state.get("fold_note") or ""  # the note of the measurement being replayed
        else:
            folds = fold_training(model, policy=config.fold, compiled=config.compile)
        if folds.folded:
            log(f"fold training ({config.fold}): {', '.join(folds.folded)} train through their folds")
    # the eager module keeps the state dict; dynamic=False: a shorter last window gets its own static graph
    forward = torch.compile(model, dynamic=False) if config.compile else model
    if config.compile:
        log("training forward compiled with torch.compile (the first windows include the compilation)")
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        bar = _progress(steps, f"epoch {epoch}/{config.epochs}", progress)
        try:
            stats = train_epoch(model, train_data, optimizer, config.bptt, config.clip, bar, forward)
        finally:
            if bar is not None:
                bar.close()
        eval_start = time.perf_counter()
        val_loss = evaluate(model, valid_data, config.bptt)
        lr = optimizer.param_groups[0]["lr"]
        improved = state["best_val"] is None or val_loss < state["best_val"]
        record = {"epoch": epoch, "lr": lr, "train_loss": stats["loss"], "train_ppl": _ppl(stats["loss"]),
                  "valid_loss": val_loss, "valid_ppl": _ppl(val_loss), "train_seconds": stats["seconds"],
                  "train_cpu_seconds": stats["cpu_seconds"],
                  "eval_seconds": time.perf_counter() - eval_start,
                  "tokens_per_second": stats["tokens"] / max(stats["seconds"], 1e-9), "improved": improved,
                  "compiled": config.compile, "cpu": cpu_name()}
        if improved:
            state["best_val"], state["best_epoch"] = val_loss, epoch
            with write_guard(best_path, kept):
                save_checkpoint(best_path, model, state={"config": asdict(config), "epoch": epoch,
                                                         "valid_loss": val_loss, "vocab": corpus.dictionary.idx2word})
        else:
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] / config.anneal
        state["epoch"] = epoch
        state["history"].append(record)
        # log first: a crash before the checkpoint leaves a line too many, which resuming drops and redoes
        with write_guard(log_path, kept), open(log_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        with write_guard(last_path, kept):
            save_checkpoint(last_path, model, optimizer, state=state)
        log(f"epoch {epoch:3d} | lr {lr:g} | {stats['seconds']:.1f} s | {record['tokens_per_second']:,.0f} tok/s | "
            f"train ppl {record['train_ppl']:.2f} | valid ppl {record['valid_ppl']:.2f}"
            + ("" if improved else f" | lr -> {optimizer.param_groups[0]['lr']:g}"))

    if state["best_epoch"] is None:
        raise RuntimeError("no epoch was trained (--epochs must be >= 1)")
    best_model, _ = build_model(config, len(corpus.dictionary))
    load_checkpoint(best_path, best_model)
    test_loss = evaluate(best_model, test_data, config.bptt)
    history = state["history"]
    summary = {
        "config": asdict(config),
        "corpus": corpus.summary(),
        "params": counts.to_dict(),
        "epochs_done": state["epoch"],
        "best_epoch": state["best_epoch"],
        "valid_ppl": _ppl(state["best_val"]),
        "test_ppl": _ppl(test_loss),
        "seconds_per_epoch": sum(h["train_seconds"] for h in history) / len(history),
        # CPU time of the process (all threads): the cost of an epoch when the machine is shared with other jobs
        "cpu_seconds_per_epoch": sum(h.get("train_cpu_seconds", 0.0) for h in history) / len(history),
        "tokens_per_second": sum(h["tokens_per_second"] for h in history) / len(history),
        "train_tokens": int(train_ids.numel()),
        "compiled": config.compile,
        "fold_training": folds.to_dict()["rows"] if folds is not None else [],
        "fold_note": folds.note if folds is not None else "",  # e.g. --fold measure ran on a busy machine  # which layers folded, and why
        "machine": machine(),       # where the run finished; each epoch of ``history`` names its own ``cpu``
        "history": history,
    }
    with write_guard(out / "summary.json", kept):
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(format_summary(summary))
    return summary


def format_summary(summary: dict) -> str:
    c, p = summary["config"], summary["params"]
    rnn_type = c.get("rnn_type", "lstm")
    blocks = (f" qkv={c.get('qkv', '111')}" + (f" include={','.join(c['include'])}" if c.get("include") else "")
              if rnn_type == "transformer" else f" hh={c['hh_gates']} ih={c.get('ih_gates') or '-'}")
    if c.get("plan"):
        sym = " ".join(f"{k}={v}" for k, v in c["plan"].items()) + blocks
    elif c.get("channel"):
        sym = c["channel"] + blocks
    else:
        sym = "dense"
    rows = [[f"{rnn_type} {c['layers']}x{c['hidden']}{' tied' if c['tie'] else ''}", sym, f"{p['stored']:,}",
             f"{p['dense']:,}", f"{summary['valid_ppl']:.2f}", f"{summary['test_ppl']:.2f}",
             f"{summary['seconds_per_epoch']:.1f}", f"{summary.get('cpu_seconds_per_epoch', 0.0):.1f}",
             f"{summary['epochs_done']}"]]
    return ws.nn.format_table(["model", "symmetry", "stored params", "dense-equivalent", "valid ppl", "test ppl",
                               "s/epoch", "CPU s/epoch", "epochs"], rows, numeric={2, 3, 4, 5, 6, 7, 8})


def load_language_model(path) -> tuple[nn.Module, Dictionary, LMConfig]:
    """Rebuild the model of a ``best.safetensors`` / ``last.safetensors`` written by :func:`fit` (symmetric layers
    included) and its vocabulary; returns ``(model in eval mode, dictionary, config)``.

    The file goes through :func:`weightsym.load_model` (validated, checksum verified; ``path`` may also be a
    :class:`weightsym.files.ModelFile` already read).  ``last.safetensors`` holds no vocabulary: it comes from the
    run's ``best.safetensors`` beside it, read the same way.
    """
    from weightsym.files import ModelFileError, load_model, read_model_file

    model, description = load_model(path)
    if description.kind != "language-model":
        raise ModelFileError(description.path, f"is a {description.kind} file, not a `weightsym lm` checkpoint")
    try:
        config = LMConfig.from_dict(description.config)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(description.path, f"its run config cannot be used: {exc}") from None
    vocab = description.state.get("vocab")
    if vocab is None:
        best = Path(description.path).with_name("best.safetensors")
        if not best.exists():
            raise ModelFileError(description.path, "holds no vocabulary; use the run's best.safetensors")
        vocab = read_model_file(best, tensors=False).state.get("vocab")
        if vocab is None:
            raise ModelFileError(best, "holds no vocabulary (not a best.safetensors written by weightsym lm)")
    if len(vocab) != model.vocab_size:
        raise ModelFileError(description.path, f"its vocabulary has {len(vocab):,} words but the model "
                                               f"{model.vocab_size:,} outputs")
    dictionary = Dictionary()
    for word in vocab:
        dictionary.add_word(word)
    return model, dictionary, config


def generate(model: nn.Module, dictionary: Dictionary, words: int = 50, temperature: float = 1.0,
             seed: int | None = None, prompt: list[str] | None = None) -> list[str]:
    """Sample ``words`` tokens from ``model`` (softmax of logits / ``temperature``).  Without ``prompt`` the first
    input word is drawn uniformly, as in pytorch/examples; ``<eos>`` tokens are returned as they are.  A model
    without recurrent state (``init_hidden`` gives ``None``: the transformer) reads the last ``model.context``
    tokens at every step."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    model.eval()
    hidden = model.init_hidden(1)
    window = torch.zeros(0, 1, dtype=torch.int64)  # the tokens a stateless model reads

    def step(ids: torch.Tensor) -> torch.Tensor:
        nonlocal hidden, window
        if hidden is None:
            window = torch.cat([window, ids])[-model.context:]
            logits, _ = model(window, None)
        else:
            logits, hidden = model(ids, hidden)
        return logits[-1, 0]

    with torch.no_grad():
        if prompt:
            logits = step(torch.tensor(dictionary.encode(prompt), dtype=torch.int64).view(-1, 1))
        else:
            logits = step(torch.randint(len(dictionary), (1, 1), generator=generator))
        out = []
        for _ in range(words):
            probs = torch.softmax(logits.double() / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=generator)
            out.append(dictionary.idx2word[int(token)])
            logits = step(token.view(1, 1))
    return out


def format_text(words: list[str]) -> str:
    """Words joined by spaces, a newline for every ``<eos>``."""
    return " ".join(words).replace(" <eos> ", "\n").replace("<eos> ", "\n").replace(" <eos>", "\n").strip("\n")


__all__ = ["Corpus", "LMConfig", "build_model", "evaluate", "fit", "format_summary", "format_text", "generate",
           "load_language_model", "train_epoch"]
