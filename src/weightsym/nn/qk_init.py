"""Symmetric initialisation of attention's query-key form (Saponati et al., ICML 2025: a symmetric start speeds up
encoder training).

:func:`symmetric_qk_` copies each attention layer's query projection into its key projection, so every head's
``W_qᵀ W_k = W_qᵀ W_q`` starts symmetric (and positive semi-definite); nothing is tied, training moves them apart
freely.  A start, not a constraint: for W_q = W_k throughout, tie them (a symmetry) instead.

Example:
    >>> import torch
    >>> from torch import nn
    >>> attn = nn.MultiheadAttention(8, 2)
    >>> symmetric_qk_(attn)
    1
    >>> torch.equal(attn.in_proj_weight[:8], attn.in_proj_weight[8:16])
    True
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from weightsym.nn.layers import query_key, query_key_biases

__all__ = ["symmetric_qk_"]


def symmetric_qk_(model: nn.Module) -> int:
    """Copy W_q into W_k (and the query bias into the key bias where both exist) in every attention layer of
    ``model`` whose two projections have one shape (:func:`weightsym.nn.layers.query_key`); returns how many layers.
    Call it before ``symmetrize``: a symmetric (parametrized) projection is refused, naming the layer."""
    done = 0
    for name, module in model.named_modules():
        found = query_key(module)
        if found is None or found[0].shape != found[1].shape:
            continue
        if parametrize.is_parametrized(module) or any(parametrize.is_parametrized(m) for m in module.children()):
            raise ValueError(f"attention layer `{name}` is already symmetric: initialise W_k = W_q before "
                             "weightsym.symmetrize, not after")
        w_q, w_k, _ = found
        with torch.no_grad():
            w_k.copy_(w_q)
            biases = query_key_biases(module)
            if biases is not None:
                biases[1].copy_(biases[0])
        done += 1
    return done

