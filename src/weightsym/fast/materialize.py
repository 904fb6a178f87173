"""The fallback kernel: materialise the symmetric weight once into a plain module.

Every symmetric layer can be run as the plain layer holding its dense weight: exact, and as fast as the dense
model (it *is* the dense model).  This is what ``optimize`` uses for structures that save no multiplies
(``triangular``, ``average``, ``eigen``, ``lowrank``), for recurrent layers, and wherever the calibration finds the
structured kernel slower.  The gather runs once here, never at call time.

:func:`plain_copy` builds the plain copy in one pass without unsymmetrizing anything (``unsymmetrize(deepcopy(m))``
gives the same model: :func:`weightsym.nn.detach` gives a deep copy its own parametrized class before changing it).

>>> import torch, weightsym as ws
>>> lin = torch.nn.Linear(6, 6)
>>> _ = ws.nn.attach(lin, "weight", ws.get_symmetry("tri"))
>>> plain = materialize(lin)
>>> type(plain).__name__, torch.equal(plain.weight, lin.weight), type(lin).__name__
('Linear', True, 'ParametrizedLinear')
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn
from torch.nn.utils import parametrize


def read_directly(model: nn.Module) -> dict[str, str]:
    """``{layer name: owner name}`` of the layers whose weight a fused kernel of their owner reads directly, without
    calling the layer, at inference (:func:`weightsym.nn.layers.read_directly`: the ``out_proj`` of every
    ``nn.MultiheadAttention``, ``linear1`` / ``linear2`` of every ``nn.TransformerEncoderLayer``).  Such a layer keeps
    its class and a ``.weight``: materialised, never swapped for a structured kernel."""
    from weightsym.nn.layers import read_directly as readers

    return readers(model, inference=True)


def _strip(module: nn.Module, values: dict[str, torch.Tensor], requires_grad: dict[str, bool]) -> None:
    """Turn the parametrized ``module`` (a private copy) into its plain class holding ``values``."""
    from weightsym.nn.layers import refresh
    from weightsym.nn.parametrization import clear_kernel

    clear_kernel(module)  # a fold-training kernel reads the free values, which a plain module no longer has
    module.__class__ = module.__class__.__bases__[0]  # the class torch.parametrize derived from
    del module._modules["parametrizations"]
    for tensor, value in values.items():
        module._parameters[tensor] = nn.Parameter(value, requires_grad=requires_grad[tensor])
    hooks = module._load_state_dict_pre_hooks
    for key in [k for k, h in hooks.items() if isinstance(getattr(h, "hook", None), functools.partial)
                and getattr(h.hook.func, "__name__", "") == "_load_dense_hook"]:
        del hooks[key]
    refresh(module)  # what the layer's kind needs once its tensors are plain again (recurrent: flat weights)


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in which every parametrized tensor is a plain parameter holding its current value.

    ``model`` is left untouched (unlike ``unsymmetrize(copy.deepcopy(model))``, see the module note).
    """
    values = {}
    with torch.no_grad():
        for name, module in model.named_modules(remove_duplicate=False):
            if parametrize.is_parametrized(module):
                values[name] = ({t: getattr(module, t).detach().clone() for t in module.parametrizations.keys()},
                                {t: module.parametrizations[t].original.requires_grad
                                 for t in module.parametrizations.keys()})
    plain = copy.deepcopy(model)
    done = set()
    for name, module in plain.named_modules(remove_duplicate=False):
        if name in values and id(module) not in done:
            done.add(id(module))
            _strip(module, *values[name])
    return plain


def materialize(module: nn.Module) -> nn.Module:
    """A plain copy of ``module`` whose symmetric tensors hold their dense values, with ``requires_grad=False``."""
    plain = plain_copy(module)
    for p in plain.parameters():
        p.requires_grad_(False)
    return plain
