"""Word-level language modelling with (symmetric) LSTM/GRU layers or a small transformer: the language-modelling task
on the training engine (:mod:`weightsym.train.engine`), evaluation, checkpoints, sampling.

* :mod:`weightsym.lm.config` — :class:`LMConfig` (the ``weightsym lm`` options), resume policy, :func:`build_model`;
* :mod:`weightsym.lm.train` — the task (:class:`~weightsym.lm.train.LanguageModelling`), :func:`fit`,
  :func:`evaluate`, :func:`train_epoch`, :func:`load_language_model`, :func:`generate`.

See :mod:`weightsym.lm.train` for the recipe and ``docs/language_model.md`` for a walk-through.

Example:
    >>> from weightsym.lm import LMConfig, fit
    >>> summary = fit(LMConfig(corpus="ptb", channel="average", hh_gates="1111", epochs=1,
    ...                        max_train_tokens=100_000, out="runs/quick"))                     # doctest: +SKIP
"""

from weightsym.lm.config import LMConfig, build_model
from weightsym.lm.train import (
    evaluate,
    fit,
    format_summary,
    format_text,
    generate,
    load_language_model,
    train_epoch,
)

__all__ = ["LMConfig", "build_model", "evaluate", "fit", "format_summary", "format_text", "generate",
           "load_language_model", "train_epoch"]
