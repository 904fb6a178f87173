"""Channel-plane kernels: fold the inputs, mirror or tile the outputs, block-diagonalise (docs/science.md §1.4).

A channel symmetry ties the ``(out, in)`` plane of a weight.  Whenever its group contains a flip, the product
``y = W x`` needs fewer multiplies (``J`` reverses indices, ``h = n // 2``, an odd ``n`` keeps its middle entry):

* column flip ``W = W J``: ``y = W[:, :⌈n/2⌉] (x₁ + J x₂)`` (fold the input, half-width product);
* row flip ``W = J W``: compute the first ``⌈n/2⌉`` outputs and mirror them;
* ``block`` and ``eighth`` (both flips): both of the above, a quarter of the multiplies;
* ``centrosymmetric`` and ``bisymmetric`` (``W = J W J``): ``W`` commutes with ``J``, so it maps the symmetric
  vectors ``u = x₁ + J x₂`` and the antisymmetric ones ``v = x₁ − J x₂`` to themselves: ``y_s = M_s u``,
  ``y_a = M_a v`` with two half-size matrices, ``y₁ = y_s + y_a``, ``y₂ = J (y_s − y_a)``;
* ``repeat`` with ``c`` copies along out: compute one copy and tile it; along in: sum the ``c`` input chunks.

Which case applies is read off the orbits: a flip belongs to the group exactly when it maps every orbit onto itself.
The functions here act along one tensor dimension (``-1`` for Linear, ``1`` for convs) and are traceable.

>>> import torch
>>> x = torch.arange(5.)
>>> pair_fold(x, -1, fold_index(5)).tolist()          # x0+x4, x1+x3, 2·x2 (the middle weight column is halved)
[4.0, 4.0, 4.0]
>>> mirror(torch.tensor([1., 2., 3.]), -1, mirror_index(5)).tolist()
[1.0, 2.0, 3.0, 2.0, 1.0]
"""

from __future__ import annotations

import torch

from weightsym.symmetry import ChannelTying, Repeat, plane_orbits

# channel plans: (input transform, output transform)
PLANS = {
    "block": ("pair", "mirror"),
    "centro": ("centro", "centro"),
    "colflip": ("pair", "none"),
    "rowflip": ("none", "mirror"),
    "repeat_out": ("none", "tile"),
    "repeat_in": ("chunks", "none"),
}


def channel_plan(symmetry, rows: int, cols: int) -> tuple[str, int] | None:
    """The cheapest channel kernel for an orbit tying of a ``rows x cols`` plane: ``(plan, copies)`` or None.

    ``plan`` is a key of :data:`PLANS`; None means the group has no flip to exploit (``triangular``, maps).
    """
    if isinstance(symmetry, Repeat):
        return ("repeat_out" if symmetry.axis == "out" else "repeat_in"), symmetry.copies
    if not isinstance(symmetry, ChannelTying):
        return None
    ids = plane_orbits(symmetry.generators_for(rows, cols), rows, cols).reshape(rows, cols)
    row = bool((ids == ids[::-1, :]).all())
    col = bool((ids == ids[:, ::-1]).all())
    if row and col:
        return "block", 1
    if rows == cols and bool((ids == ids[::-1, ::-1]).all()):
        return "centro", 1
    if col:
        return "colflip", 1
    if row:
        return "rowflip", 1
    return None


# -- runtime transforms (traceable; one gather per fold/mirror, no loops over channels) ---------------------------
def fold_index(n: int) -> torch.Tensor:
    """``[n-1, n-2, ..., n-h]`` (+ ``[h]`` for odd ``n``): the partner of each of the first ``⌈n/2⌉`` entries.

    An odd middle entry is its own partner, so the fold holds ``2 x_h`` there; the reduced weight's middle column
    is halved to match (:func:`reduce_weight`), which keeps the fold a single gather plus a single add.
    """
    h = n // 2
    idx = list(range(n - 1, n - h - 1, -1)) + ([h] if n % 2 else [])
    return torch.tensor(idx, dtype=torch.long)


def mirror_index(n: int) -> torch.Tensor:
    """``[0, 1, ..., ⌈n/2⌉-1, ⌊n/2⌋-1, ..., 1, 0]``: the outputs of a row-flip-symmetric product from its first half."""
    hc, h = (n + 1) // 2, n // 2
    return torch.tensor(list(range(hc)) + list(range(h - 1, -1, -1)), dtype=torch.long)


def pair_fold(x: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """``x₁ + J x₂`` (``2 x_h`` in the middle for odd sizes): ``⌈n/2⌉`` entries along ``dim``."""
    return x.narrow(dim, 0, index.numel()) + x.index_select(dim, index)


def pair_fold_diff(x: torch.Tensor, dim: int, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x₁ + J x₂, x₁ − J x₂)``, both ``⌈n/2⌉`` wide (the difference is 0 at an odd middle)."""
    head, tail = x.narrow(dim, 0, index.numel()), x.index_select(dim, index)
    return head + tail, head - tail


def pair_fold_flip(x: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """:func:`pair_fold` from slices and one flip (autograd's adjoint is then slices and flips too, no scatter)."""
    h = n // 2
    folded = x.narrow(dim, 0, h) + x.narrow(dim, n - h, h).flip(dim)
    return torch.cat([folded, x.narrow(dim, h, 1) * 2], dim) if n % 2 else folded


def pair_fold_diff_flip(x: torch.Tensor, dim: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pair_fold_diff` from slices and one flip."""
    h = n // 2
    head, tail = x.narrow(dim, 0, h), x.narrow(dim, n - h, h).flip(dim)
    total, diff = head + tail, head - tail
    if n % 2:
        total = torch.cat([total, x.narrow(dim, h, 1) * 2], dim)
        diff = torch.cat([diff, torch.zeros_like(x.narrow(dim, h, 1))], dim)
    return total, diff


def mirror_flip(half: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """:func:`mirror` from one flip and a concatenation."""
    return torch.cat([half, half.narrow(dim, 0, n // 2).flip(dim)], dim)


def mirror(half: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """The ``n`` outputs of a row-flip-symmetric product from its first ``⌈n/2⌉`` (``index = mirror_index(n)``)."""
    return half.index_select(dim, index)


def centro_combine(sym: torch.Tensor, anti: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """``y₁ = y_s + y_a``, middle ``= y_s[h]``, ``y₂ = J (y_s − y_a)`` (``anti`` has ``⌊n/2⌋`` entries)."""
    h = n // 2
    head = sym.narrow(dim, 0, h)
    parts = [head + anti]
    if n % 2:
        parts.append(sym.narrow(dim, h, 1))
    parts.append((head - anti).flip(dim))
    return torch.cat(parts, dim)


def chunk_sum(x: torch.Tensor, dim: int, copies: int, n: int) -> torch.Tensor:
    """Sum of the ``copies`` equal chunks of ``x`` (``n`` entries) along ``dim`` (input fold of ``repeat`` along in)."""
    dim = dim % x.dim()
    return x.unflatten(dim, (copies, n // copies)).sum(dim)


def tile(y: torch.Tensor, dim: int, copies: int) -> torch.Tensor:
    """``copies`` copies of ``y`` along ``dim`` (output of ``repeat`` along out)."""
    return torch.cat([y] * copies, dim)


# -- weights ------------------------------------------------------------------------------------------------------
def block_shape(plan: str, rows: int, cols: int, copies: int = 1) -> tuple[int, int]:
    """The leading ``rows' x cols'`` sub-block ``W[:rows', :cols']`` that determines the plan's reduced weights.

    Every reduced weight is a cheap function of this block (:func:`reduce_block`): for the flips it holds one entry
    per channel orbit, so training through the fold gathers only it from the free values, never the dense weight.
    """
    up = lambda n: (n + 1) // 2  # noqa: E731
    return {
        "dense": (rows, cols),
        "block": (up(rows), up(cols)),
        "colflip": (rows, up(cols)),
        "rowflip": (up(rows), cols),
        "centro": (up(rows), cols),
        "repeat_out": (rows // copies, cols),
        "repeat_in": (rows, cols // copies),
    }[plan]


def _halve_last_column(w: torch.Tensor) -> torch.Tensor:
    """The fold doubles an odd middle input (``2 x_h``, the last column of a half-width block): halve its weight."""
    return torch.cat([w[:, :-1], w[:, -1:] * 0.5], 1)


def reduce_block(block: torch.Tensor, plan: str, n_in: int) -> list[torch.Tensor]:
    """The reduced weight(s) from the sub-block of :func:`block_shape` (channel dims 0 and 1, any kernel dims after).

    ``block``/``colflip``: the block itself (the ``⌈C/2⌉`` left columns), its odd middle column halved;
    ``rowflip``/``repeat``: the block itself; ``centro`` (``W = J W J``, top ``⌈n/2⌉`` rows ``T``):
    ``M_s = ½ (T + T J)[:, :⌈n/2⌉]`` (odd middle column halved) acting on ``x₁ + J x₂``, and
    ``M_a = ½ (T − T J)[:⌊n/2⌋, :⌊n/2⌋]`` (a zero column appended for odd ``n``) acting on ``x₁ − J x₂``.  These are
    ``Sᵀ W S`` and ``Aᵀ W A`` for the ±pair bases ``S``, ``A`` with columns ``(e_i ± e_{n-1-i})/2``.  Only slices,
    flips and adds: differentiable, and exact.
    """
    odd = n_in % 2 == 1
    if plan in ("block", "colflip"):
        return [_halve_last_column(block) if odd else block]
    if plan in ("rowflip", "repeat_out", "repeat_in", "dense"):
        return [block]
    if plan == "centro":
        h, hc = n_in // 2, (n_in + 1) // 2
        mirrored = block.flip(1)
        m_sym = (block + mirrored)[:, :hc] * 0.5
        m_anti = (block - mirrored)[:h, :h] * 0.5
        if odd:
            m_sym = _halve_last_column(m_sym)
            m_anti = torch.cat([m_anti, torch.zeros_like(m_anti[:, :1])], 1)
        return [m_sym, m_anti]
    raise ValueError(f"unknown channel plan {plan!r}")


def reduce_weight(weight: torch.Tensor, plan: str, copies: int = 1) -> list[torch.Tensor]:
    """The reduced weight(s) the plan multiplies with, from the dense symmetric ``weight`` (see :func:`reduce_block`).

    ``block``: the top-left ``⌈R/2⌉ x ⌈C/2⌉`` quarter; ``colflip``/``rowflip``: the left/top half; ``repeat``: one
    copy; ``centro``: ``[M_s, M_a]``.  Input folds double an odd middle entry, so the matching weight column is
    halved (``M_a`` gets a zero column there: the difference is 0).
    """
    R, C = weight.shape[:2]
    rows, cols = block_shape(plan, R, C, copies)
    return [w.contiguous() for w in reduce_block(weight[:rows, :cols], plan, C)]


def plan_transforms(plan: str) -> tuple[str, str]:
    return PLANS[plan]
