"""Per-layer choice between kernels: time each candidate on the layer's own input, or apply the size rule.

Calibration (``optimize(model, example_input=x)``): a forward pre-hook records the input each symmetric layer sees
on the sample batch; every candidate kernel (the materialised dense layer, the structured kernel and its variants)
is then run on that input in interleaved rounds and the fastest by *best-of-rounds* **process CPU time** wins
(:func:`weightsym.fast.timing.time_calls`: time slices taken by other processes on a shared machine do not inflate
it, and the minimum over rounds is the estimate least disturbed by interference).  A structured kernel must beat the
dense layer by ``margin`` (default 3 %), otherwise the dense layer is kept: ``optimize`` never picks a kernel it
measured as slower.

Size rule (no sample input, or ``calibrate=False``), from the benchmarks in ``docs/results/inference.md``:
the structured kernel is used when the product it shrinks is large enough to dominate the folding overhead —
Linear: both sizes ≥ :data:`LINEAR_MIN`; conv channel folding: ≥ :data:`CONV_CHANNEL_MIN` channels; spatial fold:
≥ :data:`FOLD_MIN_OUT` output channels per product.  Otherwise the layer is materialised.
"""

from __future__ import annotations

import torch
from torch import nn

from weightsym.fast import timing

LINEAR_MIN = 256
CONV_CHANNEL_MIN = 32
FOLD_MIN_OUT = 64


def record_inputs(model: nn.Module, modules: dict[str, nn.Module], example_input) -> dict[str, tuple]:
    """Run ``model`` once on ``example_input`` and return the first positional inputs each module received."""
    seen: dict[str, tuple] = {}
    handles = []
    for name, module in modules.items():
        def hook(mod, args, name=name):
            if name not in seen:
                seen[name] = tuple(a.detach() if torch.is_tensor(a) else a for a in args)
        handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(*example_input) if isinstance(example_input, (tuple, list)) else model(example_input)
    finally:
        for h in handles:
            h.remove()
    return seen


def time_candidates(candidates: dict[str, nn.Module], args: tuple, rounds: int = 5,
                    budget: float = 2.0) -> dict[str, float]:
    """Best-of-``rounds`` process CPU seconds per call of each candidate on ``args``, in interleaved rounds
    (:func:`weightsym.fast.timing.time_calls`).

    Stops early once ``budget`` wall seconds have been spent (after at least 2 rounds).
    """
    with torch.no_grad():
        return timing.time_calls({name: (lambda m=module: m(*args)) for name, module in candidates.items()},
                                 rounds, budget)


def pick(times: dict[str, float], margin: float = 0.03) -> str:
    """The fastest candidate; ``"dense"`` unless a structured one is at least ``margin`` faster."""
    fastest = min(times, key=times.get)
    if "dense" in times and times[fastest] > times["dense"] * (1 - margin):
        return "dense"
    return fastest


def size_rule(layer, module: nn.Module) -> bool:
    """True if the structured kernel ``layer`` (a StructuredLayer) should replace ``module`` without timing."""
    if layer.kind == "linear":
        return min(layer.n_in, layer.n_out) >= LINEAR_MIN
    if layer.plan != "dense" and min(layer.n_in, layer.n_out) < CONV_CHANNEL_MIN:
        return False
    if layer.spatial is not None:
        rows = layer.weight0.shape[0]
        return rows >= FOLD_MIN_OUT
    return True
