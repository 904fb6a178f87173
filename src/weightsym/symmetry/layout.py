"""A symmetry bound to one weight shape: the precomputed gather that turns free values into a weight.

Every weight is viewed as a 4-D tensor ``(R, C, kh, kw)`` (a Linear weight is ``(out, in, 1, 1)``, a Conv1d weight
``(out, in, 1, k)``, an RNN's stacked gate matrix ``(G*H, I, 1, 1)``).  Its rows are cut into ``row_blocks`` equal
blocks (conv groups, or RNN gates); each block ``b`` is a channel plane ``(R/row_blocks, C)``, and each kernel
``W[r, c]`` is a spatial plane ``(kh, kw)``.

``build_layout`` combines, for every weight position, three ids:

* the spatial orbit ``s`` of ``(h, w)`` (identity if no spatial symmetry: ``kh*kw`` orbits),
* the channel orbit of ``(r mod m, c)`` within its block (identity for blocks left dense),
* the block ``b``,

into one position in a *core* vector.  The weight is ``core[index].view(shape)``: one gather.  For orbit tyings
the core *is* the free vector.  For the matrix parameterizations (``average``, ``eigen``, ``lowrank``) the head of
the core holds whole symmetric ``m x m`` planes produced from the free values by a small batched map, one plane per
(symmetric block, spatial orbit); the tail holds dense blocks as they are.

``project`` is the adjoint: orbit means (computed as representative + mean deviation, so a weight that already obeys
the symmetry projects to exactly its own values), then the map's own projection for matrix parameterizations.

``variance_preserving`` is the initialisation (``docs/science.md`` §5): instead of the mean of an orbit's ``m`` entries
(variance σ²/m for iid entries of variance σ²) each free value takes one entry of its orbit, the representative
``rep``, so every entry of the expanded weight is one draw of the dense initialisation: the same variance (and the
same distribution) entry by entry, for every tying, composite, gate mask and odd size.  Matrix maps then apply their
own rule to the representative planes (:meth:`ChannelMap.variance_preserving_planes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np
import torch


class PlaneMap(Protocol):
    """What a layout asks of a matrix parameterization of square channel planes (``average``, ``eigen``,
    ``lowrank``: the :class:`weightsym.symmetry.base.ChannelMap` subclasses).  Defined here, by the layout that uses
    it, so the mechanism does not import the symmetry classes built on top of it.

    ``expand_planes(params (B, p), n) -> planes (B, n, n)``; ``project_planes(planes) -> params (B, p)`` (the nearest
    point); ``variance_preserving_planes(planes) -> params`` (fresh initialisation); ``holds_planes(planes, atol)``;
    ``params_per_plane(n)`` values stored per plane and ``dimension(n)`` of them free.
    """

    def expand_planes(self, params: torch.Tensor, n: int) -> torch.Tensor: ...

    def project_planes(self, planes: torch.Tensor) -> torch.Tensor: ...

    def variance_preserving_planes(self, planes: torch.Tensor) -> torch.Tensor: ...

    def holds_planes(self, planes: torch.Tensor, atol: float) -> bool: ...

    def params_per_plane(self, n: int) -> int: ...

    def dimension(self, n: int) -> int: ...


@dataclass(frozen=True, eq=False)
class Layout:
    """The gather of one (symmetry, weight shape) pair.  Built once per shape and cached.

    Attributes
    ----------
    shape: the dense weight shape.
    index: int64 tensor, one entry per weight element (row-major): its position in the core vector.
    rep: int64 tensor, one entry per core position: the first weight element that maps to it.
    counts: float64 tensor, how many weight elements map to each core position.
    free_count: dimension of the symmetric weight set (the number of truly free values).
    stored_count: length of the free vector the parametrization stores.
    map: the matrix map for ``average``/``eigen``/``lowrank`` or None for pure tyings.
    map_batch, map_size: the map produces ``map_batch`` planes of ``map_size x map_size`` at the head of the core.
    """

    shape: tuple[int, ...]
    index: torch.Tensor
    rep: torch.Tensor
    counts: torch.Tensor
    free_count: int
    stored_count: int
    map: "PlaneMap | None" = None
    map_batch: int = 0
    map_size: int = 0

    @property
    def core_size(self) -> int:
        return int(self.rep.numel())

    @property
    def map_params(self) -> int:
        """Number of free values consumed by the matrix map (0 for pure tyings)."""
        return self.map_batch * self.map.params_per_plane(self.map_size) if self.map is not None else 0

    @property
    def map_core(self) -> int:
        return self.map_batch * self.map_size * self.map_size

    # -- the three operations -------------------------------------------------------------------------------------
    def core(self, free: torch.Tensor) -> torch.Tensor:
        if self.map is None:
            return free
        planes = self.map.expand_planes(free[: self.map_params].view(self.map_batch, -1), self.map_size)
        if free.numel() == self.map_params:  # every block symmetric: no dense tail to append
            return planes.reshape(-1)
        return torch.cat([planes.reshape(-1), free[self.map_params :]])

    def expand(self, free: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Dense weight from the free vector (one gather; ``index`` may be a device copy of ``self.index``)."""
        if free.dim() != 1 or free.numel() != self.stored_count:
            raise ValueError(
                f"expected a 1-D free vector of {self.stored_count} values for weight shape {tuple(self.shape)}, "
                f"got shape {tuple(free.shape)}"
            )
        idx = self.index if index is None else index
        if idx.device != free.device:
            idx = idx.to(free.device)
        return OrbitGather.apply(self.core(free), idx).view(self.shape)

    def project(self, weight: torch.Tensor) -> torch.Tensor:
        """Free vector of the nearest symmetric weight (least squares; orbit means for tyings)."""
        if tuple(weight.shape) != tuple(self.shape):
            raise ValueError(f"weight of shape {tuple(weight.shape)} does not match layout shape {tuple(self.shape)}")
        flat = weight.detach().reshape(-1)
        dev = flat.device
        index, rep = self.index.to(dev), self.rep.to(dev)
        representative = flat.index_select(0, rep)
        deviation = flat - representative.index_select(0, index)
        dev_sum = torch.zeros(self.core_size, dtype=flat.dtype, device=dev).index_add_(0, index, deviation)
        core = representative + dev_sum / self.counts.to(device=dev, dtype=flat.dtype)
        if self.map is None:
            return core.clone()
        planes = core[: self.map_core].view(self.map_batch, self.map_size, self.map_size)
        head = self.map.project_planes(planes).reshape(-1)
        return torch.cat([head, core[self.map_core :]])

    def variance_preserving(self, weight: torch.Tensor) -> torch.Tensor:
        """Free vector whose expansion keeps, entry by entry, the distribution of ``weight``'s iid entries.

        For a tying each free value is the orbit's representative entry, ``free[o] = weight.flat[rep[o]]``: the
        expanded weight repeats ``F`` of the dense entries, so each of its entries is one draw of the dense
        initialisation (variance σ², not the σ²/m of an orbit mean).  Entries of different orbits stay independent,
        a weight that already obeys the symmetry comes back bit for bit, and no random numbers are drawn.  For
        ``average``/``eigen``/``lowrank`` the head of the core holds the dense ``n x n`` planes at each spatial orbit's
        representative tap and the map turns them into stored values
        (:meth:`weightsym.symmetry.base.ChannelMap.variance_preserving_planes`).

        >>> import torch
        >>> from weightsym.symmetry import get_symmetry
        >>> w = torch.arange(9.0).view(3, 3)
        >>> lay = get_symmetry("triangular").layout((3, 3))
        >>> lay.expand(lay.variance_preserving(w)).tolist()   # the upper triangle, mirrored
        [[0.0, 1.0, 2.0], [1.0, 4.0, 5.0], [2.0, 5.0, 8.0]]
        >>> lay.expand(lay.project(w)).tolist()               # the orbit means
        [[0.0, 2.0, 4.0], [2.0, 4.0, 6.0], [4.0, 6.0, 8.0]]
        """
        if tuple(weight.shape) != tuple(self.shape):
            raise ValueError(f"weight of shape {tuple(weight.shape)} does not match layout shape {tuple(self.shape)}")
        flat = weight.detach().reshape(-1)
        core = flat.index_select(0, self.rep.to(flat.device))
        if self.map is None:
            return core
        planes = core[: self.map_core].view(self.map_batch, self.map_size, self.map_size)
        head = self.map.variance_preserving_planes(planes).reshape(-1).to(flat.dtype)
        return torch.cat([head, core[self.map_core :]])

    def initial(self, weight: torch.Tensor, init: str = "variance") -> torch.Tensor:
        """Free vector for a layer whose current (dense) value is ``weight``: :meth:`variance_preserving` for
        ``init="variance"`` (a fresh initialisation), :meth:`project` for ``init="project"`` (trained weights)."""
        check_init(init)
        return self.variance_preserving(weight) if init == "variance" else self.project(weight)

    def holds(self, weight: torch.Tensor, atol: float = 0.0) -> bool:
        """True if ``weight`` obeys the symmetry: tied entries agree within ``atol`` (exactly for ``atol=0``)."""
        if tuple(weight.shape) != tuple(self.shape):
            return False
        flat = weight.detach().reshape(-1)
        index, rep = self.index.to(flat.device), self.rep.to(flat.device)
        tied = flat.index_select(0, rep).index_select(0, index)
        if not bool(((flat - tied).abs() <= atol).all()):
            return False
        if self.map is None:
            return True
        planes = flat.index_select(0, rep[: self.map_core]).view(self.map_batch, self.map_size, self.map_size)
        return self.map.holds_planes(planes, atol)


class OrbitGather(torch.autograd.Function):
    """``core[index]``, the expansion, with the orbit sum of the gradient as its backward.

    The gradient of a free value is the sum of the dense gradient over its orbit (``docs/science.md`` §4).  Autograd's
    own backward of ``index_select`` is ``index_add_``; ``scatter_add_`` computes the same sums and was the fastest
    of the alternatives on a 2-core CPU for a 2600x650 triangular LSTM weight (``benchmarks/bench_orbit_sum.py``
    prints the comparison: scatter, index_add, the group sum ``(G + Gᵀ)[rep]``, one gather per orbit member).  Under
    ``torch.compile`` the same function is traced (a gather-form backward compiled worse, 3x slower on a 2048x2048
    weight).  The backward is built from differentiable ops, so double backward works.
    """

    @staticmethod
    def forward(ctx, core: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.core_size = core.numel()
        return core.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (index,) = ctx.saved_tensors
        return grad.new_zeros(ctx.core_size).scatter_add_(0, index, grad.reshape(-1)), None


INIT_RULES = {
    "variance": "keep the dense initialisation's variance entry by entry (for a fresh layer)",
    "project": "the nearest symmetric weight, orbit means (for trained weights; shrinks a random init)",
}


def check_init(init) -> str:
    """``init`` if it names an initialisation rule, else a ``ValueError`` listing the rules."""
    if init not in INIT_RULES:
        rules = "; ".join(f"{k!r}: {v}" for k, v in INIT_RULES.items())
        raise ValueError(f"init={init!r} is not an initialisation rule; use one of {rules}")
    return init


def _as_4d(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(shape) == 2:
        return shape[0], shape[1], 1, 1
    if len(shape) == 3:
        return shape[0], shape[1], 1, shape[2]
    if len(shape) == 4:
        return tuple(shape)  # type: ignore[return-value]
    raise ValueError(f"weights of shape {tuple(shape)} are not supported: a symmetry acts on (out, in), "
                     "(out, in, k) or (out, in, kh, kw) axes (weightsym.nn.layers maps each layer kind's weights "
                     "onto them)")


@lru_cache(maxsize=1024)
def build_layout(
    shape: tuple[int, ...],
    channel_generators: tuple[str, ...] | None,
    spatial_generators: tuple[str, ...] | None,
    row_blocks: int = 1,
    block_mask: tuple[bool, ...] | None = None,
    channel_map: "PlaneMap | None" = None,
) -> Layout:
    """Build (and cache) the layout of a weight of ``shape``.

    ``channel_generators`` tie entries of each symmetric block's channel plane (None: no channel tying);
    ``channel_map`` instead makes each symmetric block's plane the output of a matrix map (average/eigen/lowrank);
    ``spatial_generators`` tie entries of every kernel (None: no spatial tying).  ``block_mask[b]`` says whether
    row block ``b`` carries the channel symmetry (default: all blocks).
    """
    from weightsym.symmetry.orbits import plane_orbits

    R, C, kh, kw = _as_4d(shape)
    if R % row_blocks:
        raise ValueError(f"{R} rows cannot be cut into {row_blocks} equal blocks")
    m = R // row_blocks
    mask = np.ones(row_blocks, dtype=bool) if block_mask is None else np.asarray(block_mask, dtype=bool)
    if mask.shape != (row_blocks,):
        raise ValueError(f"block mask has {mask.size} entries, expected {row_blocks}")
    has_channel = channel_generators is not None or channel_map is not None
    if not has_channel:
        mask = np.zeros(row_blocks, dtype=bool)

    # spatial ids
    if spatial_generators is not None:
        sid = plane_orbits(spatial_generators, kh, kw)
    else:
        sid = np.arange(kh * kw, dtype=np.int64)
    Fs = int(sid.max()) + 1

    # channel ids within one block plane (m x C)
    local = (np.arange(m)[:, None] * C + np.arange(C)[None, :]).astype(np.int64)  # identity ids
    if channel_generators is not None:
        cid = plane_orbits(channel_generators, m, C).reshape(m, C)
        Fc = int(cid.max()) + 1
    else:
        cid, Fc = local, m * C

    r = np.arange(R)
    b, rl = r // m, r % m
    sym_rank = np.cumsum(mask) - mask  # rank of block among symmetric blocks
    dense_rank = np.cumsum(~mask) - (~mask)
    n_sym = int(mask.sum())

    if channel_map is None:
        # core = free: [(block offset + channel id) * Fs + s]
        chan_count = np.where(mask, Fc, m * C)
        offset = np.cumsum(chan_count) - chan_count
        ch = np.where(mask[b][:, None], cid[rl, :], local[rl, :])  # (R, C)
        base = (offset[b][:, None] + ch) * Fs  # (R, C)
        map_batch = map_size = 0
        dense_head = 0
    else:
        if m != C:
            raise ValueError(f"channel plane {m}x{C} is not square")
        map_batch, map_size = n_sym * Fs, m
        dense_head = map_batch * m * m
        # symmetric blocks: ((sym_rank * Fs + s) * m + r') * m + c ; dense blocks: head + (dense_rank*m*C + r'*C + c)*Fs + s
        sym_base = (sym_rank[b][:, None] * Fs) * m * m + local[rl, :]  # add s*m*m below
        dense_base = dense_head + (dense_rank[b][:, None] * m * C + local[rl, :]) * Fs
        base = np.where(mask[b][:, None], sym_base, dense_base)

    # combine with spatial ids: position (r, c, h, w)
    if channel_map is None:
        index = base[:, :, None] + sid[None, None, :]
    else:
        s_stride = np.where(mask[b][:, None, None], m * m, 1)
        index = base[:, :, None] + sid[None, None, :] * s_stride
    index = index.reshape(-1).astype(np.int64)

    core_size = int(index.max()) + 1
    counts = np.bincount(index, minlength=core_size)
    if (counts == 0).any():  # pragma: no cover - a bug in the construction above
        raise AssertionError("layout leaves core positions unused")
    rep = np.full(core_size, -1, dtype=np.int64)
    # first occurrence of each core position: iterate reversed so that the smallest position wins
    rep[index[::-1]] = np.arange(index.size - 1, -1, -1)

    if channel_map is None:
        stored = free = core_size
    else:
        dense_values = core_size - dense_head
        stored = map_batch * channel_map.params_per_plane(m) + dense_values
        free = map_batch * channel_map.dimension(m) + dense_values
    return Layout(
        shape=tuple(int(s) for s in shape),
        index=torch.from_numpy(index),
        rep=torch.from_numpy(rep),
        counts=torch.from_numpy(counts.astype(np.float64)),
        free_count=int(free),
        stored_count=int(stored),
        map=channel_map,
        map_batch=map_batch,
        map_size=map_size,
    )
