"""Word-level language modelling with (symmetric) LSTM/GRU layers: training, evaluation, checkpoints, sampling.

See :mod:`weightsym.lm.train` for the recipe and ``docs/language_model.md`` for a walk-through.

Example:
    >>> from weightsym.lm import LMConfig, fit
    >>> summary = fit(LMConfig(corpus="ptb", channel="average", hh_gates="1111", epochs=1,
    ...                        max_train_tokens=100_000, out="runs/quick"))                     # doctest: +SKIP
"""

from weightsym.lm.train import (
    LMConfig,
    build_model,
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
