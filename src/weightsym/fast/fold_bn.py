"""Fold an eval-mode BatchNorm into the conv that feeds it, keeping as much of the conv's symmetry as survives.

``BN(conv(x)) = s ⊙ (W * x + b − μ) + β`` with ``s = γ / √(σ² + ε)``: the folded conv has weight ``diag(s) W`` and
bias ``s (b − μ) + β``.  Scaling output rows keeps every spatial symmetry and the channel symmetries that only tie
columns (column flip, ``repeat`` along in); it breaks row ties (``block``, centrosymmetric, ...) unless ``s`` happens
to be tied the same way.  The folded layer is re-attached with the part of the symmetry that still holds exactly, so
``optimize`` then picks its kernel as usual.  Pairs are found with ``torch.fx``: a Conv whose only user is a BatchNorm
(each called once); models that ``torch.fx`` cannot trace are left as they are, with a warning.
"""

from __future__ import annotations

import warnings

import torch
from torch import fx, nn

from weightsym.fast.materialize import plain_copy
from weightsym.nn.layers import layer_kind

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def _folds_bn(module: nn.Module) -> bool:
    """The table of layer kinds lets a BatchNorm fold into ``module`` (Conv1d, Conv2d: its ``bn_fold`` column)."""
    kind = layer_kind(module)
    return kind is not None and kind.bn_fold


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _folds_bn(m) or isinstance(m, _BN) or super().is_leaf_module(m, qualname)


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(conv name, bn name)`` for every conv whose output feeds only an eval-mode BatchNorm, each used once."""
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx cannot trace data-dependent control flow: folding is optional
        warnings.warn(f"fold_bn: torch.fx could not trace {type(model).__name__} ({type(exc).__name__}); "
                      "BatchNorm left unfolded", RuntimeWarning, stacklevel=3)
        return []
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1:
            continue
        bn = model.get_submodule(node.target)
        if not isinstance(bn, _BN) or bn.training or bn.running_mean is None or not node.args:
            continue
        src = node.args[0]
        if not isinstance(src, fx.Node) or src.op != "call_module" or calls[src.target] != 1 or len(src.users) != 1:
            continue
        if _folds_bn(model.get_submodule(src.target)):
            pairs.append((src.target, node.target))
    return pairs


def fold_conv_bn(conv: nn.Module, bn: nn.Module) -> nn.Module:
    """A new conv computing ``bn(conv(x))``: symmetric with the surviving part of ``conv``'s symmetry, else plain."""
    from weightsym.nn import attach, symmetric_parametrization
    from weightsym.symmetry import Composite, SpatialTying

    param = symmetric_parametrization(conv, "weight")
    folded = plain_copy(conv)
    with torch.no_grad():
        scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        weight = folded.weight * scale.view(-1, *([1] * (folded.weight.dim() - 1)))
        bias = (folded.bias if folded.bias is not None else torch.zeros_like(bn.running_mean)) - bn.running_mean
        folded.weight = nn.Parameter(weight, requires_grad=False)
        folded.bias = nn.Parameter(bias * scale + shift, requires_grad=False)
    if param is None:
        return folded
    sym = param.symmetry
    keep = [sym]
    if isinstance(sym, Composite):
        keep.append(sym.spatial)
    elif not isinstance(sym, SpatialTying):
        keep = [sym] if param.row_blocks == 1 else []
    tol = 1e-6 * float(weight.abs().max().clamp_min(1e-30))
    for candidate in keep:
        if candidate.holds(weight, atol=tol, row_blocks=param.row_blocks, block_mask=param.block_mask):
            attach(folded, "weight", candidate, param.row_blocks, param.block_mask)
            break
    return folded


def fold_batchnorm(model: nn.Module) -> list[tuple[str, str]]:
    """Fold every conv → BatchNorm pair of ``model`` in place (BN becomes ``nn.Identity``); returns the pairs."""
    pairs = conv_bn_pairs(model)
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        _set(model, conv_name, fold_conv_bn(conv, bn))
        _set(model, bn_name, nn.Identity())
    return pairs


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)
