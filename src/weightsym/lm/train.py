"""Train and evaluate a word-level LSTM/GRU or transformer language model, dense or with symmetric gate blocks
or attention projections: the language-modelling task on the training engine (:mod:`weightsym.train.engine`).

The recipe is the pytorch/examples ``word_language_model`` one the paper's code (hushell/deep-symmetry, ``symmRNN``)
started from:

* truncated BPTT: the training stream is cut into ``batch_size`` columns (:func:`~weightsym.data.text.batchify`)
  and walked in windows of ``bptt`` steps (:class:`Windows`: the task's batches); the hidden state is carried from
  one window to the next, detached (:func:`~weightsym.models.language.repackage_hidden`), and reset to zero at the
  start of every epoch (:class:`NextWordStep`: the task's step);
* plain SGD (``lr`` 20), gradient-norm clipping (0.25);
* after each epoch the validation loss is computed; if it did not improve on the best so far, the learning rate is
  divided by ``anneal`` (4); the best model is kept (``best.safetensors``) and the test perplexity is computed with it;
* a run that diverges (a NaN/inf loss, or a validation loss above 10 x ln(vocabulary) for three epochs in a row or
  at the end: :mod:`weightsym.train.divergence`) stops with one line, keeping the last good checkpoint.

Symmetry is applied from outside, as everywhere in weightsym: ``channel`` (e.g. ``average``, ``triangular``) on
the gate blocks chosen by ``hh_gates`` / ``ih_gates`` (gate order i, f, g, o for LSTM; r, z, n for GRU).  The
symmetric LSTM runs on the stock fused kernel (each symmetric weight is expanded once per forward call).

``rnn_type="transformer"`` trains :class:`~weightsym.models.transformer.TransformerLanguageModel` (``width`` =
``hidden`` = ``emb``, ``heads``, context = ``bptt``) with the same loop: it carries no state between windows (its
hidden state is ``None``), and its defaults differ where a transformer needs it (:data:`MODEL_DEFAULTS`: AdamW,
lr 1e-3, clip 1, dropout 0.1, tied embeddings).  ``channel`` then goes on the q/k/v blocks of every block's
``in_proj_weight`` chosen by ``qkv`` (order q k v) and on ``out_proj``; ``include`` (module globs) chooses other
layers, e.g. the feed-forward ``*.ff.*`` (d -> 4d: ``block`` or ``repeat:c``).

Files written to ``out`` (by the engine): ``log.jsonl`` (one JSON object per epoch), ``last.safetensors`` (model,
optimizer, RNG and run state after the last finished epoch: ``resume=True`` continues from it and gives the same
result as an uninterrupted run), ``best.safetensors`` (best validation model; its state holds the config and the
vocabulary, so :func:`load_language_model` / ``weightsym lm-sample`` need nothing else), ``summary.json``.

Example (the run needs the PTB corpus under ``data_dir`` and takes minutes on a CPU, so it is not run as a test):
    >>> config = LMConfig(corpus="ptb", data_dir="/work/shared/data", hidden=128, emb=128, tie=True,
    ...                   channel="average", epochs=1, max_train_tokens=100_000, out="runs/lm-avg")
    >>> summary = fit(config)                                                                          # doctest: +SKIP
    >>> summary["test_ppl"] < 10_000   # beats a uniform guess over the 10,000 words      # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

import weightsym as ws
from weightsym.data.text import Corpus, Dictionary, batchify, get_batch, load_corpus
from weightsym.lm.config import FOLD_POLICIES, MODEL_DEFAULTS, RESUME, LMConfig, build_model
from weightsym.machine import machine
from weightsym.models.language import repackage_hidden
from weightsym.train import engine
from weightsym.train.checkpoint import load_checkpoint
from weightsym.train.distill import check_distill, distillation_loss
from weightsym.train.divergence import chance_loss
from weightsym.train.step import Step, train_steps

__all__ = ["Corpus", "FOLD_POLICIES", "LMConfig", "LanguageModelling", "MODEL_DEFAULTS", "NextWordStep", "Windows",
           "build_model", "evaluate", "fit", "format_summary", "format_text", "generate", "load_language_model",
           "train_epoch"]


def fit(config: LMConfig, resume: bool = False, progress: bool = True, log=print, checkpoint=None) -> dict:
    """Run (or with ``resume=True`` continue) the training described by ``config``; return the summary dict.

    Through the engine (:func:`weightsym.train.engine.run`): ``config.out`` is locked for the run; Ctrl-C raises
    :class:`~weightsym.train.rundir.TrainingInterrupted` naming the checkpoint ``resume=True`` continues from; a failed
    write (full disk) raises :class:`~weightsym.train.rundir.RunWriteError` naming the last good checkpoint.  A
    resumed run takes its options from ``last.safetensors`` (``checkpoint``: that file already read, else it is read
    once) and ``out``, ``epochs``, ``compile``, ``fold``, ``threads``, ``data_dir`` from ``config``
    (:data:`weightsym.lm.config.RESUME`).

    Summary keys: ``config``, ``corpus``, ``params`` (dense-equivalent / stored / free), ``epochs_done``,
    ``best_epoch``, ``valid_ppl`` (best), ``test_ppl`` (of the best model), ``seconds_per_epoch`` (training only,
    wall clock, mean), ``cpu_seconds_per_epoch`` (process CPU time, meaningful on a shared machine),
    ``tokens_per_second``, ``history``.
    """
    return engine.run(LanguageModelling(config, resume, progress), checkpoint, log)


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


class Windows:
    """The batchified training stream in BPTT windows of ``bptt`` tokens (the last one shorter), as a resumable loader
    like :class:`weightsym.data.TensorLoader`: ``len()`` windows per epoch, ``epoch`` and ``batch`` (the next window),
    ``set_epoch``, ``state_dict``/``load_state_dict``."""

    def __init__(self, data: torch.Tensor, bptt: int):
        self.data, self.bptt = data, bptt
        self.epoch, self.batch = 0, 0

    def __len__(self) -> int:
        return (self.data.size(0) - 1 + self.bptt - 1) // self.bptt

    def set_epoch(self, epoch: int, batch: int = 0) -> None:
        self.epoch, self.batch = int(epoch), int(batch)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        self.set_epoch(state["epoch"], state["batch"])

    def __iter__(self):
        epoch = self.epoch
        for b in range(self.batch, len(self)):
            self.batch = b + 1
            yield get_batch(self.data, b * self.bptt, self.bptt)
        self.epoch, self.batch = epoch + 1, 0


class NextWordStep(Step):
    """One BPTT window: the hidden state carried from the previous window (detached; reset at every epoch start),
    cross-entropy per token (or, with ``teacher`` and ``distill=(temperature, weight)``,
    :func:`weightsym.train.distill.distillation_loss` against the teacher's next-token distribution, its hidden state
    carried the same way), ``[loss * tokens, tokens]``, the gradient norm clipped to ``clip`` (0: off)."""

    def __init__(self, model: nn.Module, batch_size: int, clip: float, teacher: nn.Module | None = None,
                 distill: tuple[float, float] | None = None):
        self.model, self.batch_size, self.clip, self.teacher, self.distill = model, batch_size, clip, teacher, distill
        self.criterion = nn.CrossEntropyLoss()
        self.hidden = self.teacher_hidden = None

    def start_epoch(self, epoch: int) -> None:
        self.hidden = self.model.init_hidden(self.batch_size)
        if self.teacher is not None:
            self.teacher_hidden = self.teacher.init_hidden(self.batch_size)

    def forward(self, forward, batch):
        self.hidden = repackage_hidden(self.hidden)
        logits, self.hidden = forward(batch[0], self.hidden)
        return logits

    def loss(self, logits, batch):
        x, y = batch
        logits = logits.view(-1, logits.size(-1))
        if self.teacher is None:
            return self.criterion(logits, y.reshape(-1))
        with torch.no_grad():
            teacher_logits, self.teacher_hidden = self.teacher(x, self.teacher_hidden)
        return distillation_loss(logits, teacher_logits.view(-1, logits.size(-1)), y.reshape(-1), *self.distill)

    def stats(self, value, logits, batch):
        tokens = batch[1].numel()
        return [value * tokens, tokens]

    def before_update(self) -> None:
        if self.clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)


def train_epoch(model: nn.Module, data: torch.Tensor, optimizer: torch.optim.Optimizer, bptt: int, clip: float,
                progress=None, forward=None, teacher: nn.Module | None = None,
                distill: tuple[float, float] | None = None) -> dict:
    """One pass of truncated BPTT over the batchified ``data`` without a run folder (the engine's step,
    :func:`weightsym.train.step.train_steps`); returns ``{"loss", "tokens", "seconds", "cpu_seconds"}``.

    ``forward`` (default ``model``) computes the logits, e.g. ``torch.compile(model)``; ``model`` is used for the rest.
    ``teacher`` with ``distill=(temperature, weight)``: every token's loss is
    :func:`weightsym.train.distill.distillation_loss` against the teacher's next-token distribution (the teacher runs
    in eval mode over the same windows, its hidden state carried the same way, without gradients); the returned loss is
    then that mixed loss.
    """
    if (teacher is None) != (distill is None):
        raise ValueError("train_epoch: give both teacher and distill=(temperature, weight), or neither")
    if teacher is not None:
        check_distill(*distill)
        teacher.eval()
    model.train()
    step = NextWordStep(model, data.size(1), clip, teacher, distill)
    step.start_epoch(0)
    total, tokens, start, cpu_start = 0.0, 0.0, time.perf_counter(), time.process_time()
    for result in train_steps(step, Windows(data, bptt), optimizer, model if forward is None else forward):
        total += result.sums[0]
        tokens += result.sums[1]
        if progress is not None:
            progress.update(1)
            progress.set_postfix(**_postfix(total, tokens, time.perf_counter() - start), refresh=False)
    return {"loss": total / max(tokens, 1), "tokens": int(tokens), "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu_start}


def _postfix(total: float, tokens: float, seconds: float) -> dict[str, str]:
    return {"loss": f"{total / tokens:.3f}", "ppl": f"{math.exp(min(total / tokens, 50)):.1f}",
            "tok_s": f"{tokens / max(seconds, 1e-9):,.0f}"}


def _ppl(loss: float) -> float:
    return math.exp(min(loss, 700.0))


class LanguageModelling(engine.Task):
    """The ``weightsym lm`` task (see the module): :class:`~weightsym.lm.config.LMConfig` in, the run's files and
    summary out, through :func:`weightsym.train.engine.run` (one process, on the CPU)."""

    policy = RESUME
    command = "lm"
    checkpoint_file = "last.safetensors"
    best_key = "best_val"
    maximize = False
    hint = "lower --lr or --clip"

    def __init__(self, config: LMConfig, resume: bool = False, progress: bool = True):
        self.config, self.resume, self.progress = config, resume, progress

    def build(self, run) -> None:
        config = self.config
        corpus = self.corpus = load_corpus(config.corpus, config.data_dir)
        train_ids = corpus.train[: config.max_train_tokens] if config.max_train_tokens else corpus.train
        valid_ids = corpus.valid[: config.max_eval_tokens] if config.max_eval_tokens else corpus.valid
        test_ids = corpus.test[: config.max_eval_tokens] if config.max_eval_tokens else corpus.test
        self.sizes = (int(train_ids.numel()), int(valid_ids.numel()), int(test_ids.numel()))
        self.batches = Windows(batchify(train_ids, config.batch_size), config.bptt)
        self.valid = batchify(valid_ids, config.eval_batch_size)
        self.test = batchify(test_ids, config.eval_batch_size)
        self.model, self.report = build_model(config, len(corpus.dictionary))
        self.chance = chance_loss(len(corpus.dictionary))  # the divergence rule's scale: ln(vocabulary)
        self.symmetric = self.report is not None  # recurrent layers keep the gather; Linear/Conv layers may fold
        self.optimizer = config.make_optimizer(self.model.parameters())
        self.counts = ws.count_parameters(self.model)
        self.total_steps = config.epochs * len(self.batches)
        self.step = NextWordStep(self.model, config.batch_size, config.clip)

    def initial_state(self) -> dict:
        return {"epoch": 0, "history": []}

    def restore(self, run, saved: dict) -> None:
        if "loader" not in saved:  # written before the engine: at the end of epoch ``epoch``
            self.batches.set_epoch(saved["epoch"])
            run.state["step"] = saved["epoch"] * len(self.batches)

    def example_input(self, run):
        generator = torch.Generator().manual_seed(0)  # never the global RNG: the run stays the same
        x = torch.randint(len(self.corpus.dictionary), (self.config.bptt, self.config.batch_size), generator=generator)
        return x, self.model.init_hidden(self.config.batch_size)

    def header(self, run) -> list[str]:
        config, counts = self.config, self.counts
        lines = []
        if config.recipe:
            from weightsym.train.recipes import LM_RECIPES, describe_recipe

            lines.append(describe_recipe(LM_RECIPES, config.recipe, config.to_dict()))
        lines.append(f"{self.corpus.name}: vocab {len(self.corpus.dictionary):,}, train {self.sizes[0]:,} tokens, "
                     f"valid {self.sizes[1]:,}, test {self.sizes[2]:,}")
        if self.report is not None:
            lines += [str(self.report), f"symmetric blocks start with init={config.init}"]
        lines.append(f"parameters: dense-equivalent {counts.dense:,}, stored {counts.stored:,}, free {counts.free:,} "
                     f"({100 * counts.saved:.2f}% saved)")
        return lines

    def postfix(self, sums):
        return _postfix(sums[0], sums[1], sums[2])

    def evaluate(self, run) -> dict:
        start = time.perf_counter()
        loss = evaluate(self.model, self.valid, self.config.bptt)
        return {"loss": loss, "seconds": time.perf_counter() - start}

    def score(self, evaluation: dict) -> float:
        return evaluation["loss"]

    def epoch_record(self, run, epoch, sums, evaluation, lr, improved, cpu_seconds) -> dict:
        train_loss, valid_loss = sums[0] / max(sums[1], 1), evaluation["loss"]
        return {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_ppl": _ppl(train_loss),
                "valid_loss": valid_loss, "valid_ppl": _ppl(valid_loss), "train_seconds": sums[2],
                "train_cpu_seconds": cpu_seconds, "eval_seconds": evaluation["seconds"],
                "tokens_per_second": sums[1] / max(sums[2], 1e-9), "improved": improved,
                "compiled": self.config.compile}

    def end_epoch(self, run, record: dict, improved: bool) -> None:
        if not improved:  # a plateau: anneal (the rate is in the optimizer state, saved with it)
            for group in self.optimizer.param_groups:
                group["lr"] = group["lr"] / self.config.anneal
        run.state["epoch"] = record["epoch"]
        run.state["history"].append(record)

    def epoch_line(self, record: dict) -> str:
        return (f"epoch {record['epoch']:3d} | lr {record['lr']:g} | {record['train_seconds']:.1f} s | "
                f"{record['tokens_per_second']:,.0f} tok/s | train ppl {record['train_ppl']:.2f} | valid ppl "
                f"{record['valid_ppl']:.2f}" + ("" if record["improved"] else
                                                f" | lr -> {self.optimizer.param_groups[0]['lr']:g}"))

    def best_state(self, run, record: dict) -> dict:
        return {"config": self.config.to_dict(), "epoch": record["epoch"], "valid_loss": record["valid_loss"],
                "vocab": self.corpus.dictionary.idx2word}

    def summary(self, run, evaluation) -> dict:
        config, state, folds = self.config, run.state, run.folds
        if state["best_epoch"] is None:
            raise RuntimeError("no epoch was trained (--epochs must be >= 1)")
        best_model, _ = build_model(config, len(self.corpus.dictionary))
        load_checkpoint(run.best_path, best_model)
        test_loss = evaluate(best_model, self.test, config.bptt)
        history = state["history"]
        return {
            "config": config.to_dict(),
            "corpus": self.corpus.summary(),
            "params": self.counts.to_dict(),
            "epochs_done": state["epoch"],
            "best_epoch": state["best_epoch"],
            "valid_ppl": _ppl(state["best_val"]),
            "test_ppl": _ppl(test_loss),
            "seconds_per_epoch": sum(h["train_seconds"] for h in history) / len(history),
            # CPU time of the process (all threads): the cost of an epoch when the machine is shared with other jobs
            "cpu_seconds_per_epoch": sum(h.get("train_cpu_seconds", 0.0) for h in history) / len(history),
            "tokens_per_second": sum(h["tokens_per_second"] for h in history) / len(history),
            "train_tokens": self.sizes[0],
            "compiled": config.compile,
            "fold_training": folds.to_dict()["rows"] if folds is not None else [],
            "fold_note": folds.note if folds is not None else "",  # e.g. --fold measure ran on a busy machine
            "machine": machine(),       # where the run finished; each epoch of ``history`` names its own ``cpu``
            "history": history,
        }

    def format_summary(self, summary: dict) -> str:
        return format_summary(summary)


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
