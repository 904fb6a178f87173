"""Compression planning for a trained dense model: what each symmetry would cost and save, layer by layer, and a plan
under a stored-parameter budget.

For a layer with dense weight W (all its weight tensors together: ``weight_hh``/``weight_ih`` of a recurrent layer,
``in_proj_weight`` of attention, whatever :func:`weightsym.symmetrize` touches) and a symmetry with projection P
(``symmetrize(..., init="project")``: the nearest symmetric weight, orbit means for the tyings), the table holds

* the **relative residual** r = ‖W − P(W)‖_F / ‖W‖_F ∈ [0, 1] (0 exactly when W already obeys the symmetry), and
* the **saving** s = dense − stored parameters of the layer under that symmetry.

Candidates are every symmetry of the catalog (``weightsym.available_symmetries()``, default options) and every
channel+spatial product, tried on each layer by symmetrizing a copy of it, so a layer type ``symmetrize`` learns
later (attention) is covered without a change here.  A symmetry that stores as many values as it ties (``average``)
saves nothing and is left out.

**The greedy plan** (:func:`plan_for_budget`).  The budget b is a fraction of the dense model's stored parameters
(every parameter: biases, normalisation and embeddings count too).  Each layer holds at most one symmetry; a choice
costs r², the fraction of the layer's weight energy the projection removes.  (For weights without structure, iid
entries, E[r²] is exactly the saved fraction of the layer, whatever the symmetry: the projection is orthogonal onto a
subspace of dimension *stored*; so the cost per saved parameter is the same for every symmetry on noise, and lower
where the trained weights already lean towards the symmetry.)  Starting from the dense model, repeat: among all
*upgrades* (a layer moves from its current choice, dense = (r² 0, s 0), to a candidate that saves more), take the
one with the smallest added cost per added saved parameter, (r'² − r²) / (s' − s), ties to the larger saving; stop as
soon as stored / dense ≤ b.  A layer's first move is "the smallest residual per saved parameter"; later moves let a
layer trade up to a stronger symmetry.  Then one **trim** pass, in network order: each chosen layer takes the
option (dense included) with the smallest residual that still keeps stored / dense ≤ b, so the last, possibly large
step does not overshoot the budget needlessly.  If every layer holds its strongest symmetry and the model is still
above the budget, :class:`BudgetError` says the smallest fraction reachable.

>>> import torch, weightsym as ws
>>> torch.manual_seed(0) and None
>>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3), torch.nn.Conv2d(8, 8, 3),
...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 2))
>>> table = candidates(net)                         # stem and classifier stay dense (keep_edges=True)
>>> sorted({c.layer for c in table}), min(c.residual for c in table) > 0
(['1', '2'], True)
>>> plan = plan_for_budget(table, ws.count_parameters(net).stored, budget=0.6)
>>> plan.fraction <= 0.6, sorted(plan.choices)
(True, ['1', '2'])
"""

from __future__ import annotations

import copy
import fnmatch
import math
import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from weightsym.nn import symmetric_parametrization, symmetrize, weight_layers
from weightsym.nn.layers import stem_order
from weightsym.nn.symmetrize import weight_tensors
from weightsym.symmetry import SymmetryError, available_symmetries, get_symmetry

__all__ = ["BudgetError", "Candidate", "CompressionPlan", "candidates", "catalog_symmetries", "layer_residual",
           "plan_for_budget", "tensors_of"]


class BudgetError(ValueError):
    """The stored-parameter budget cannot be met with the candidates given (the message says what can)."""


@dataclass(frozen=True)
class Candidate:
    """One (layer, symmetry) choice: relative residual of the projection and the parameters it would save."""

    layer: str  # module name
    kind: str  # "Conv2d", "LSTM", ...
    shape: tuple  # shape of the layer's (first) weight tensor
    symmetry: str  # spec, e.g. "triangular+transpose"
    residual: float  # ‖W − P(W)‖ / ‖W‖ over the layer's weight tensors
    dense: int  # weight entries of the layer (all its weight tensors)
    stored: int  # stored values of those tensors under the symmetry

    @property
    def saved(self) -> int:
        return self.dense - self.stored

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape), "saved": self.saved}


@dataclass
class CompressionPlan:
    """The greedy choice under a budget: ``choices`` maps layer name to :class:`Candidate`."""

    choices: dict[str, Candidate]
    dense_total: int  # dense-equivalent parameters of the model (the budget's denominator)
    budget: float | None = None
    base_stored: int | None = None  # stored parameters before the plan (default: dense_total)
    steps: list[str] = field(default_factory=list)  # the upgrades in the order taken, for the report

    @property
    def saved(self) -> int:
        return sum(c.saved for c in self.choices.values())

    @property
    def stored_total(self) -> int:
        return (self.dense_total if self.base_stored is None else self.base_stored) - self.saved

    @property
    def fraction(self) -> float:
        return self.stored_total / self.dense_total

    def as_plan(self) -> dict[str, str]:
        """``{layer name: symmetry}`` for ``weightsym.symmetrize(plan=...)`` / ``weightsym train --plan``, in network
        order (a layer name without glob characters matches only that layer)."""
        return {name: c.symmetry for name, c in self.choices.items()}

    def to_dict(self) -> dict:
        return {"budget": self.budget, "dense_total": self.dense_total, "base_stored": self.base_stored,
                "stored_total": self.stored_total,
                "fraction": self.fraction, "plan": self.as_plan(),
                "choices": [c.to_dict() for c in self.choices.values()], "steps": list(self.steps)}


def catalog_symmetries() -> list[str]:
    """Every catalog name (channel plane, then spatial plane, default options) and every channel+spatial product."""
    channel, spatial = available_symmetries("channel"), available_symmetries("spatial")
    return channel + spatial + [f"{c}+{s}" for c in channel for s in spatial]


def tensors_of(module: nn.Module) -> list[str]:
    """Names of the weight tensors of a layer in the order ``symmetrize`` visits them (``weight``, the
    ``weight_ih_l0`` ... of a recurrent layer, ``in_proj_weight`` of an attention layer), whether or not they are
    parametrized already (:func:`weightsym.nn.symmetrize.weight_tensors`)."""
    return weight_tensors(module)


def _dense_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: getattr(module, name).detach() for name in tensors_of(module)}


def layer_residual(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> float:
    """‖W − P(W)‖_F / ‖W‖_F over all tensors of a layer, in float64 (NaN for an all-zero layer).

    >>> w = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    >>> round(layer_residual({"weight": w}, {"weight": (w + w.T) / 2}), 6) == round(2 ** 0.5 / 6 ** 0.5, 6)
    True
    """
    num = sum(float(torch.linalg.vector_norm((before[k] - after[k]).double()) ** 2) for k in before)
    den = sum(float(torch.linalg.vector_norm(before[k].double()) ** 2) for k in before)
    return math.sqrt(num / den) if den > 0 else math.nan


def _considered_layers(model: nn.Module, keep_edges: bool, exclude) -> list[tuple[str, nn.Module]]:
    """The weight layers a plan may change: not already symmetric, not excluded, not stem/classifier if asked."""
    layers = weight_layers(model)
    ordered = stem_order(model)
    edges = {ordered[0], layers[-1][0]} if keep_edges and layers else set()
    out = []
    for name, module in layers:
        if name in edges or any(fnmatch.fnmatchcase(name, g) for g in (exclude or [])):
            continue
        if any(symmetric_parametrization(module, t) is not None for t in tensors_of(module)):
            continue
        out.append((name, module))
    return out


def _try(module: nn.Module, names: list[str], spec: str, hh_gates: str, ih_gates: str | None, qkv: str = "111"):
    """``(stored, projected weights)`` of ``module`` (weight tensors ``names``) under ``spec``, or None if the
    symmetry does not apply to it as a whole."""
    trial = copy.deepcopy(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "?*" matches no child of a plain layer
        try:
            report = symmetrize(trial, plan={"*": spec}, exclude=["?*"], hh_gates=hh_gates, ih_gates=ih_gates,
                                qkv=qkv, init="project")
        except (SymmetryError, ValueError, RuntimeError, NotImplementedError, TypeError):
            return None  # a symmetry this layer type cannot take is simply not a candidate
    own = [r for r in report.rows if r.name in ("", type(module).__name__)]
    applied = [r for r in own if r.symmetry]
    if not applied or any(r.symmetry != get_symmetry(spec).spec for r in applied):
        return None  # nothing tied, or only part of a product applied (that part is its own candidate)
    if any(r.note and r.note not in ("no gate selected", "no projection selected (qkv)") for r in own):
        return None
    stored = sum(r.stored for r in own)
    with torch.no_grad():
        projected = {name: getattr(trial, name).detach() for name in names}
    return stored, projected


def candidates(model: nn.Module, symmetries: list[str] | None = None, hh_gates: str = "1111",
               ih_gates: str | None = None, exclude: list[str] | None = None,
               keep_edges: bool = True, qkv: str = "111", progress: bool = False) -> list[Candidate]:
    """Every (layer, symmetry) pair that saves parameters, with its relative projection residual.

    ``symmetries`` defaults to :func:`catalog_symmetries`; ``hh_gates``/``ih_gates`` as in ``symmetrize`` (which
    gate blocks of recurrent layers a channel symmetry ties), ``qkv`` likewise for attention layers (which of the
    query, key and value projections it ties); ``exclude`` module globs; ``keep_edges`` leaves the first
    and last weight layers (stem and classifier; an embedding in front counts as the stem) out, as ``symmetrize``
    does by default.  Layers that are already symmetric are left out.  The model is not changed.  ``progress``: a
    bar over the layers on stderr (terminals only).
    """
    specs = symmetries if symmetries is not None else catalog_symmetries()
    for spec in specs:
        get_symmetry(spec)  # an unknown name is an error naming it, before any work
    table = []
    layers = list(_considered_layers(model, keep_edges, exclude))
    if progress:
        import sys

        from tqdm.auto import tqdm

        layers = tqdm(layers, desc="scanning candidates", leave=False, dynamic_ncols=True, file=sys.stderr,
                      disable=None)
    for name, module in layers:
        dense = _dense_weights(module)
        n_dense = sum(t.numel() for t in dense.values())
        kind = type(module).__name__.removeprefix("Parametrized")
        for spec in specs:
            tried = _try(module, list(dense), spec, hh_gates, ih_gates, qkv)
            if tried is None:
                continue
            stored, projected = tried
            if stored >= n_dense:
                continue
            table.append(Candidate(name, kind, tuple(next(iter(dense.values())).shape), get_symmetry(spec).spec,
                                   layer_residual(dense, projected), n_dense, stored))
    return table


def plan_for_budget(table: list[Candidate], dense_total: int, budget: float,
                    stored: int | None = None) -> CompressionPlan:
    """The greedy plan (module docstring) meeting ``stored / dense_total <= budget``; :class:`BudgetError` if even
    the strongest candidate of every layer cannot.  ``dense_total`` is the model's dense-equivalent parameter count,
    ``stored`` what it stores now (less than ``dense_total`` if some layers are symmetric already; default equal)."""
    if not 0 < budget <= 1:
        raise ValueError(f"budget={budget}: a fraction of the dense model's stored parameters in (0, 1], e.g. 0.7")
    plan = CompressionPlan({}, dense_total, budget, stored)
    by_layer: dict[str, list[Candidate]] = {}
    for c in table:
        if math.isfinite(c.residual) and c.saved > 0:
            by_layer.setdefault(c.layer, []).append(c)
    while plan.stored_total > budget * dense_total:
        best, best_key = None, None
        for layer, options in by_layer.items():
            current = plan.choices.get(layer)
            r0, s0 = (current.residual, current.saved) if current else (0.0, 0)
            for c in options:
                if c.saved <= s0:
                    continue
                key = ((c.residual ** 2 - r0 ** 2) / (c.saved - s0), -c.saved)
                if best_key is None or key < best_key:
                    best, best_key = c, key
        if best is None:
            strongest = plan.stored_total + plan.saved - sum(max(c.saved for c in o) for o in by_layer.values())
            raise BudgetError(f"budget {budget:g} cannot be met: with the strongest symmetry on every one of the "
                              f"{len(by_layer)} layers considered the model stores {strongest:,} of {dense_total:,} "
                              f"parameters ({strongest / dense_total:.3f}); use a budget >= "
                              f"{math.ceil(strongest / dense_total * 1000) / 1000:g} or let more layers in")
        plan.choices[best.layer] = best
        plan.steps.append(f"{best.layer}={best.symmetry}")
    for layer in [name for name in by_layer if name in plan.choices]:  # trim, network order
        current = plan.choices.pop(layer)
        need = plan.stored_total - budget * dense_total  # what this layer must save for the budget to hold
        if need <= 0:
            plan.steps.append(f"{layer}=dense (trim)")
            continue
        pick = min((c for c in by_layer[layer] if c.saved >= need), key=lambda c: (c.residual, -c.saved))
        plan.choices[layer] = pick
        if pick is not current:
            plan.steps.append(f"{layer}={pick.symmetry} (trim)")
    order = {c.layer: i for i, c in enumerate(table)}
    plan.choices = dict(sorted(plan.choices.items(), key=lambda kv: order[kv[0]]))
    return plan
