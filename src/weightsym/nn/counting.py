"""Honest parameter accounting.

``count_parameters(model)`` returns three numbers, each counting every *distinct* parameter tensor once (tensors
shared between modules, e.g. tied embedding/decoder weights, are counted once; buffers such as BatchNorm running
statistics are not parameters and are not counted):

* ``dense``: the dense-equivalent count: every symmetric tensor counted at its full dense size (what the model
  would have without symmetry), every other parameter at its size;
* ``stored``: ``sum(p.numel() for p in model.parameters())``, what the optimizer, ``state_dict()`` and weight
  files hold;
* ``free``: the dimension of the set of weights the model can express: ``stored`` minus redundancy inside the
  matrix parameterizations (``average`` stores n² values for n(n+1)/2 degrees of freedom; ``lowrank`` stores
  n·r + r for n·r − r(r−1)/2).  For orbit tyings (triangular, block, dihedral, ...) and ``eigen``, free == stored.

>>> import torch, weightsym as ws
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 8, bias=False), torch.nn.Linear(8, 2))
>>> _ = ws.symmetrize(net, channel="triangular")
>>> ws.count_parameters(net)
ParameterCount(dense=122, stored=94, free=94)
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torch.nn.utils import parametrize

from weightsym.nn.parametrization import symmetric_parametrization


@dataclass(frozen=True)
class ParameterCount:
    dense: int
    stored: int
    free: int

    @property
    def saved(self) -> float:
        """Fraction of the dense-equivalent count that is not stored."""
        return 1.0 - self.stored / self.dense if self.dense else 0.0

    def to_dict(self) -> dict:
        return {"dense": self.dense, "stored": self.stored, "free": self.free, "saved": self.saved}


def count_parameters(model: nn.Module) -> ParameterCount:
    """Dense-equivalent, stored and free parameter counts of ``model`` (see the module docstring)."""
    symmetric = {}  # id(original free tensor) -> parametrization
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for tensor in module.parametrizations.keys():
                p = symmetric_parametrization(module, tensor)
                if p is not None:
                    symmetric[id(module.parametrizations[tensor].original)] = p
    dense = stored = free = 0
    for param in model.parameters():  # parameters() already yields each shared tensor once
        n = param.numel()
        stored += n
        p = symmetric.get(id(param))
        if p is None:
            dense += n
            free += n
        else:
            dense += p.layout.index.numel()
            free += p.layout.free_count
    return ParameterCount(dense=dense, stored=stored, free=free)


def layer_report(model: nn.Module):
    """A :class:`~weightsym.nn.symmetrize.SymmetrizeReport` of a model as it is now (symmetric or not): one row per
    weight tensor of every layer of the table of layer kinds (:mod:`weightsym.nn.layers`), with its symmetry and
    dense, stored and free counts.  What ``weightsym describe FILE`` prints for a model rebuilt from a file (a model may mix symmetries per layer)."""
    from weightsym.nn.symmetrize import LayerReport, SymmetrizeReport, weight_layers, weight_tensors

    report = SymmetrizeReport()
    for name, module in weight_layers(model):
        kind = parametrize.type_before_parametrizations(module).__name__
        for tensor in weight_tensors(module):
            p = symmetric_parametrization(module, tensor)
            value = getattr(module, tensor)
            n = value.numel()
            if p is None:
                report.rows.append(LayerReport(name, tensor, kind, tuple(value.shape), None, n, n, n))
            else:
                report.rows.append(LayerReport(name, tensor, kind, tuple(value.shape), p.symmetry.spec, n,
                                               p.layout.stored_count, p.layout.free_count))
    return report
