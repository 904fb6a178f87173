"""Benchmarks: one timing harness, one machine record, and the inference benchmark of ``weightsym bench``.

* :mod:`weightsym.bench.timing` — :func:`measure`: calls timed in interleaved rounds on the wall and the CPU clock,
  medians and per-round ratios (:class:`Timings`), and :func:`busy` (is the machine too busy to measure?).
* :mod:`weightsym.bench.noise` — how noisy a run was: per-round ratio spread, the noise floor, within/beyond noise.
* the machine record is :mod:`weightsym.machine` (``machine()``: CPU model, cores, torch and its threads, load,
  allocator, date), a leaf below ``train``: training summaries, study pages and every benchmark record it.
* :mod:`weightsym.bench.results` — :func:`write_json`, and a page with its JSON.
* :mod:`weightsym.bench.inference` (cases in :mod:`~weightsym.bench.cases`, memory in
  :mod:`~weightsym.bench.memory`, page in :mod:`~weightsym.bench.inference_report`) — ``weightsym.fast.optimize``
  against dense, per layer and whole model: ``weightsym bench``.

The scripts in ``benchmarks/`` time with :func:`measure` and record ``machine()``.  Layering: ``bench`` sits above
``fast`` (it may import ``fast``, ``nn``, ``symmetry`` and ``models``); ``fast`` never imports ``bench`` and has its
own one timing primitive for its decisions (:mod:`weightsym.fast.timing`).  Importing this package stays light (no
``fast`` kernels, no models) until the inference benchmark is used.

>>> from weightsym.bench import measure
>>> t = measure({"a": lambda: sum(range(500)), "b": lambda: sum(range(1000))}, rounds=3)
>>> len(t.wall["a"]), len(t.ratios("b", over="a"))
(3, 3)
"""

from weightsym.bench.results import write_json
from weightsym.bench.timing import Timings, busy, measure

__all__ = ["Timings", "busy", "measure", "write_json"]
