"""How symmetric the query-key product of attention layers is (Saponati et al., ICML 2025).

An attention head scores token i against token j with ``q_i · k_j = x_i W_q,hᵀ W_k,h x_jᵀ``: the bilinear form
``M_h = W_q,hᵀ W_k,h`` (d × d, d the model width; ``W_q,h`` the head's ``d_h`` rows of the query projection, PyTorch
layout ``(out, in)``). Its symmetric part ``(M + Mᵀ)/2`` scores i against j as j against i; its skew part
``(M − Mᵀ)/2`` is directional. The **symmetry score**

    s(M) = (‖sym M‖² − ‖skew M‖²) / ‖M‖²   (Frobenius norms; ‖M‖² = ‖sym M‖² + ‖skew M‖²)

is 1 for a symmetric M (W_q = W_k makes every head's M symmetric and positive semi-definite), −1 for a skew one, and
close to 0 by chance: for a d × d matrix of i.i.d. entries its expectation is 1/d, and for the product of two
independent random projections it is near 0 as well (the test suite checks both). Saponati et al. report encoders
learning s well above 0 and decoders near it or below.

Layers read: every ``nn.MultiheadAttention`` (``in_proj_weight`` or ``q_proj_weight``/``k_proj_weight``) and any module
with ``query``/``key`` or ``q_proj``/``k_proj`` linear children (BERT, Llama-style blocks, grouped-query attention
included) or a q/k/v-slices child (GPT-2's ``c_attn``), where the number of heads is read from the module
(``num_heads``, ``num_attention_heads``, a Hugging Face ``config.num_attention_heads``, or ``head_dim``) or given.

Example:
    >>> import torch
    >>> w = torch.randn(8, 16)
    >>> round(qk_symmetry(w, w, heads=2).score, 6)    # W_q = W_k: symmetric in every head
    1.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from weightsym.nn.layers import query_key

__all__ = ["QKSymmetry", "attention_symmetry", "qk_symmetry", "score_of"]


@dataclass
class QKSymmetry:
    """The symmetry of one layer's query-key forms: per head and over the layer (norms summed over heads)."""

    layer: str
    heads: int
    score: float                 # s over the whole layer: (Σ‖sym‖² − Σ‖skew‖²) / Σ‖M‖²
    head_scores: list[float]     # s per head
    symmetric_norm: float        # √Σ‖sym M_h‖²
    skew_norm: float             # √Σ‖skew M_h‖²

    def to_dict(self) -> dict:
        return asdict(self)


def score_of(m: torch.Tensor) -> float:
    """s(M) for one square matrix (0 for a zero matrix)."""
    m = m.double()
    sym, skew = (m + m.T) / 2, (m - m.T) / 2
    total = float((m * m).sum())
    return 0.0 if total == 0 else (float((sym * sym).sum()) - float((skew * skew).sum())) / total


def qk_symmetry(w_q: torch.Tensor, w_k: torch.Tensor, heads: int = 1, layer: str = "") -> QKSymmetry:
    """The symmetry of ``M_h = W_q,hᵀ W_k,h`` for each of ``heads`` equal row blocks of ``w_q`` and ``w_k``
    (``(heads · d_h, d)`` each, PyTorch's ``(out, in)`` layout)."""
    if w_q.dim() == 2 and w_k.dim() == 2 and w_q.shape[1] != w_k.shape[1]:
        raise ValueError(f"{layer or 'attention'}: queries read inputs of width {w_q.shape[1]}, keys of width "
                         f"{w_k.shape[1]} (cross-attention with kdim != embed_dim): W_qᵀ W_k is not square, so it has "
                         "no symmetric part")
    if w_q.shape != w_k.shape or w_q.dim() != 2:
        raise ValueError(f"{layer or 'attention'}: query and key projections must be matrices of one shape (got "
                         f"{tuple(w_q.shape)} and {tuple(w_k.shape)}); grouped-query attention with fewer key heads "
                         "is not read yet")
    if heads < 1 or w_q.shape[0] % heads:
        raise ValueError(f"{layer or 'attention'}: {w_q.shape[0]} projection rows do not split into {heads} heads")
    size = w_q.shape[0] // heads
    scores, sym_total, skew_total = [], 0.0, 0.0
    with torch.no_grad():
        for h in range(heads):
            m = w_q[h * size:(h + 1) * size].double().T @ w_k[h * size:(h + 1) * size].double()
            sym, skew = (m + m.T) / 2, (m - m.T) / 2
            sym_total += float((sym * sym).sum())
            skew_total += float((skew * skew).sum())
            scores.append(score_of(m))
    total = sym_total + skew_total
    return QKSymmetry(layer, heads, 0.0 if total == 0 else (sym_total - skew_total) / total, scores,
                      sym_total ** 0.5, skew_total ** 0.5)


def attention_symmetry(model: nn.Module) -> list[QKSymmetry]:
    """:func:`qk_symmetry` of every attention layer of ``model`` (see the module), in ``named_modules`` order.
    Grouped-query attention (Llama-style: ``W_k`` has one block of ``d_h`` rows per key head, fewer than the query
    heads) is read as it computes: query head ``h`` against key head ``h // (heads / key heads)``.  Layers whose
    queries and keys read inputs of other widths (cross-attention with ``kdim != embed_dim``) have no square form per
    head and are left out."""
    out = []
    for name, module in model.named_modules():
        found = query_key(module)
        if found is None:
            continue
        w_q, w_k, heads = found
        if w_q.shape[1] != w_k.shape[1] or w_q.shape[0] % heads:
            continue
        size = w_q.shape[0] // heads
        if w_k.shape[0] != w_q.shape[0]:  # grouped-query attention: each key head serves a group of query heads
            if w_k.shape[0] % size or heads % (w_k.shape[0] // size):
                continue
            groups = heads // (w_k.shape[0] // size)
            w_k = w_k.reshape(-1, size, w_k.shape[1]).repeat_interleave(groups, 0).reshape(w_q.shape)
        out.append(qk_symmetry(w_q, w_k, heads, layer=name))
    return out
