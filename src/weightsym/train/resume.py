"""Resume semantics, defined once for every task: which options a resumed run takes from its checkpoint and which
from the caller (the command line or a library call), and the one read of the checkpoint.

Every config (:class:`~weightsym.train.config.TrainConfig`, :class:`~weightsym.lm.config.LMConfig`) declares a
:class:`ResumePolicy`, and :func:`resume_config` applies it:

* **training options** (everything not in ``run_control``: model, data, symmetry, optimizer, schedule, seed, ...)
  come from the checkpoint: they define the run.  When the caller says which options it *gave* (the command line
  does), giving one that differs from the checkpoint's is an error (:class:`ResumeConflict`: start a new ``--out``);
  a library call that does not say is taken to give none of them;
* **run control** (``run_control``: where to write, when to stop, which device, threads, ...) comes from the caller;
* except the options in ``kept`` (how the run computed: compiled, folded, threads; a language model's length): when
  the caller says what it gave, the ones it did not give keep the checkpoint's value.

The checkpoint is read once per resume (:func:`read_checkpoint`, or the :class:`~weightsym.files.ModelFile` the
command line already validated): the config comes from it here, and the engine loads model, optimizer, schedule, RNG
and run state from the same read (:func:`weightsym.train.checkpoint.load_checkpoint` accepts a ``ModelFile``).

Example:
    >>> from weightsym.train.config import RESUME, TrainConfig
    >>> stored = TrainConfig(lr=0.05, compile=True, max_steps=10).to_dict()
    >>> caller = TrainConfig(lr=0.1, max_steps=20, resume=True)
    >>> merged = RESUME.merge(stored, caller, given={"lr", "max_steps", "resume"})
    Traceback (most recent call last):
    ...
    weightsym.train.resume.ResumeConflict: --resume continues the same run, but --lr 0.1 (checkpoint: 0.05) differ; use a new --out to change them
    >>> merged = RESUME.merge(stored, caller, given={"max_steps", "resume"})
    >>> merged.lr, merged.max_steps, merged.compile   # training option stored; run control given; compile kept
    (0.05, 20, True)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weightsym.files import ModelFile, ModelFileError
from weightsym.train.checkpoint import checkpoint_info

__all__ = ["ResumeConflict", "ResumePolicy", "check_position", "last_checkpoint", "read_checkpoint"]


class ResumeConflict(ValueError):
    """A resumed run was given a training option that differs from its checkpoint's."""


@dataclass(frozen=True)
class ResumePolicy:
    """The resume semantics of one config class (see the module): ``run_control`` comes from the caller, ``kept``
    (a subset) from the checkpoint unless given again; ``flags`` names an option's command-line flag where it is not
    ``--<option>``."""

    config: type
    run_control: frozenset
    kept: frozenset
    flags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        names = {f.name for f in dataclasses.fields(self.config)}
        unknown = (self.run_control | self.kept) - names
        if unknown or not self.kept <= self.run_control:
            raise ValueError(f"ResumePolicy of {self.config.__name__}: {sorted(unknown)} are not options, or kept "
                             "options are not run control")

    def read(self, path, values: dict[str, Any]):
        """``config.from_dict(values)``; a bad stored value is a :class:`~weightsym.files.ModelFileError` naming the
        checkpoint ``path``."""
        try:
            return self.config.from_dict(values)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ModelFileError(path, f"its run config cannot be used: {exc}") from None

    def merge(self, stored: dict[str, Any], caller, given: Iterable[str] | None = None, path="the checkpoint"):
        """The config of the resumed run: ``stored`` (the checkpoint's config) with the run control of ``caller``;
        ``given`` (the options the caller set explicitly; None: a library call, which sets only run control) keeps
        the ``kept`` options it leaves out and raises :class:`ResumeConflict` for a training option that differs."""
        merged = {**stored, **{k: getattr(caller, k) for k in self.run_control}}
        if given is not None:
            given = set(given)
            merged.update({k: stored[k] for k in self.kept if k not in given and k in stored})
        config = self.read(path, merged)
        if given:
            changed = [f"{self.flags.get(k, '--' + k.replace('_', '-'))} {getattr(caller, k)!r} "
                       f"(checkpoint: {getattr(config, k)!r})"
                       for k in sorted(given) if k not in self.run_control and hasattr(config, k)
                       and getattr(caller, k) != getattr(config, k)]
            if changed:
                raise ResumeConflict(f"--resume continues the same run, but {', '.join(changed)} differ; use a new "
                                     "--out to change them")
        return config

    def resume(self, checkpoint: ModelFile, caller, given: Iterable[str] | None = None):
        """:meth:`merge` with the config stored in ``checkpoint`` (a :class:`~weightsym.files.ModelFile` read once)."""
        stored = checkpoint_info(checkpoint)["state"].get("config")
        if not isinstance(stored, dict):
            raise ModelFileError(checkpoint.path, "holds no training config (not written by weightsym train or lm); "
                                                  "--resume needs the run's own checkpoint")
        return self.merge(stored, caller, given, checkpoint.path)


def read_checkpoint(path: str | os.PathLike) -> ModelFile:
    """The run's checkpoint at ``path``, read and validated once (tensors included), for :meth:`ResumePolicy.resume`
    and :func:`~weightsym.train.checkpoint.load_checkpoint`."""
    from weightsym.files import read_model_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}; start the run without --resume first")
    return read_model_file(path)


def check_position(path, saved: dict, steps_per_epoch: int, total_steps: int, sums: int) -> None:
    """The position a run resumes at is one the run can have written, checked against the batches it builds (the
    fields' types and ranges were checked when the checkpoint was read, :mod:`weightsym.files.runstate`):
    ``state.loader`` inside an epoch of ``steps_per_epoch`` batches, ``state.step`` the steps to that point (or, for
    a finished run that stopped inside its last epoch, at least ``total_steps``), and ``state.epoch_sums`` one entry
    per statistic the task sums (``sums``).  A :class:`~weightsym.files.ModelFileError` naming the field otherwise."""
    if "epoch_sums" in saved and len(saved["epoch_sums"]) != sums:
        raise ModelFileError(path, f"metadata `state.epoch_sums`: holds {len(saved['epoch_sums'])} sums but this run "
                                   f"keeps {sums} (a damaged or edited file)")
    if "loader" not in saved:  # a language-model checkpoint written before the engine: its position is `epoch`
        return
    epoch, batch, step = saved["loader"]["epoch"], saved["loader"].get("batch", 0), saved.get("step", 0)
    if batch > steps_per_epoch:
        raise ModelFileError(path, f"metadata `state.loader.batch`: {batch} is past the {steps_per_epoch} batches of "
                                   "an epoch (a damaged or edited file, or the training data changed)")
    expected = epoch * steps_per_epoch + batch
    finished = batch == 0 and step >= total_steps and expected - steps_per_epoch < step < expected
    if step != expected and not finished:
        raise ModelFileError(path, f"metadata `state.step`: {step} does not match the loader's position (epoch "
                                   f"{epoch}, batch {batch}, {steps_per_epoch} batches per epoch: step {expected}); a "
                                   "damaged or edited file, or the training data changed")


def last_checkpoint(path: str | os.PathLike) -> str:
    """Which checkpoint a ``--resume`` would continue from, in words (for messages after a run stopped)."""
    try:
        state = checkpoint_info(path)["state"]
        where = f"step {state['step']}" if "step" in state else f"epoch {state['epoch']}"
        return f"the last good checkpoint {path} ({where}) was kept"
    except (OSError, ValueError, KeyError):
        return "no checkpoint had been written yet"
