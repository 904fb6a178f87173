"""Spatial-plane kernel: sum the input over each kernel orbit, then one 1x1 product (docs/science.md §1.4).

A conv whose every ``kh x kw`` kernel obeys a spatial tying has one value per kernel orbit, shared by the taps of
the orbit.  So ``y[o] = Σ_c Σ_s w[o, c, s] · (Σ_{t ∈ orbit s} shift_t(x_c))``: the orbit sums ("orbit maps") do not
depend on the output channel and are computed once, then a single product over ``F · Cin`` folded channels replaces
the ``kh · kw · Cin`` of the dense conv.  For ``dihedral`` 3x3: 3 maps (centre, 4 edges, 4 corners), a third of the
multiplies; ``transpose``/``hflip``/``vflip`` 3x3: 6 maps; ``rot180`` 3x3: 5 maps; ``dihedral`` 5x5: 6 maps.

The input is padded first with the layer's own padding mode (zeros, reflect, replicate, circular), then each tap is a
strided, dilated slice of the padded input, exactly as the dense conv reads it.  Grouped convs keep their groups: the
folded channels are ordered (group, orbit, channel) so the product is a grouped 1x1 conv.

>>> import torch, weightsym as ws
>>> conv = torch.nn.Conv2d(4, 6, 3, padding=1)
>>> _ = ws.nn.attach(conv, "weight", ws.get_symmetry("dihedral"))
>>> fold = SpatialFold.from_conv(conv)
>>> fold.orbits, fold(torch.randn(2, 4, 5, 5)).shape      # 3 orbit maps of 4 channels each
(3, torch.Size([2, 12, 5, 5]))
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def orbit_taps(orbit_ids: np.ndarray, kernel_size: tuple[int, ...]) -> list[list[tuple[int, ...]]]:
    """For each orbit id ``0..F-1`` the list of its kernel taps (as index tuples)."""
    ids = np.asarray(orbit_ids).reshape(-1)
    taps = [np.unravel_index(int(p), kernel_size) for p in range(ids.size)]
    out: list[list[tuple[int, ...]]] = [[] for _ in range(int(ids.max()) + 1)]
    for p, tap in enumerate(taps):
        out[int(ids[p])].append(tuple(int(t) for t in tap))
    return out


def orbit_representatives(orbit_ids: np.ndarray) -> torch.Tensor:
    """Flat kernel position of the first tap of each orbit."""
    ids = np.asarray(orbit_ids).reshape(-1)
    _, first = np.unique(ids, return_index=True)
    return torch.from_numpy(first.astype(np.int64))


def pair_axis(orbit_ids, kernel_size: tuple[int, ...]) -> int | None:
    """The kernel axis (0 rows, 1 columns) whose flip maps every orbit onto itself, or None.

    When the group contains that flip, taps come in mirror pairs along it, and the pair sums (one add over the whole
    padded width) are shared by every orbit: dihedral 3x3 then needs 4 adds instead of 6.
    """
    if len(kernel_size) == 1:
        ids = np.asarray(orbit_ids).reshape(1, -1)
        return 1 if kernel_size[0] > 1 and (ids == ids[:, ::-1]).all() else None
    ids = np.asarray(orbit_ids).reshape(kernel_size)
    if kernel_size[0] > 1 and (ids == ids[::-1, :]).all():
        return 0
    if kernel_size[1] > 1 and (ids == ids[:, ::-1]).all():
        return 1
    return None


class SpatialFold(nn.Module):
    """``(N, C, *S) -> (N, F·C, *S_out)``: the padded input summed over each of the ``F`` kernel orbits.

    Channel order is (group, orbit, channel-in-group).  When the symmetry contains a kernel flip along an axis
    (:func:`pair_axis`), mirror taps are summed first along that axis (shared pair maps), then each orbit adds a few
    slices of those.  The loops below run over the ``kh·kw`` taps of one kernel (constants, unrolled by tracing),
    never over channels or pixels.
    """

    def __init__(self, orbit_ids, kernel_size, stride, dilation, padding, padding_mode: str = "zeros",
                 groups: int = 1):
        super().__init__()
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.stride = tuple(int(s) for s in stride)
        self.dilation = tuple(int(d) for d in dilation)
        self.padding = tuple(int(p) for p in padding)  # F.pad order: last dim first, (left, right) pairs
        self.mode = "constant" if padding_mode == "zeros" else padding_mode
        self.groups = int(groups)
        self.taps = orbit_taps(orbit_ids, self.kernel_size)
        self.orbits = len(self.taps)
        # the fold as terms: per orbit a list of (pair index or -1, tap) along the pairing axis
        axis = pair_axis(orbit_ids, self.kernel_size)
        self.axis = None if axis is None else (axis if len(self.kernel_size) == 2 else 0)
        self.terms: list[list[tuple[int, tuple[int, ...]]]] = []
        pairs: set[int] = set()
        for taps in self.taps:
            terms = []
            for tap in taps:
                if self.axis is None:
                    terms.append((-1, tap))
                    continue
                k, i = self.kernel_size[self.axis], tap[self.axis]
                if i == k - 1 - i:
                    terms.append((-1, tap))
                elif i < k - 1 - i:
                    terms.append((i, tap))
                    pairs.add(i)
            self.terms.append(terms)
        self.pairs = sorted(pairs)

    @classmethod
    def from_conv(cls, conv: nn.Module, orbit_ids=None) -> SpatialFold:
        """The fold of ``conv`` (a Conv1d/Conv2d) over the orbits of its spatial symmetry (or ``orbit_ids``)."""
        if orbit_ids is None:
            from weightsym.nn import symmetric_parametrization
            from weightsym.symmetry import Composite, plane_orbits

            sym = symmetric_parametrization(conv, "weight").symmetry
            spatial = sym.spatial if isinstance(sym, Composite) else sym
            kh, kw = (1, *conv.kernel_size) if len(conv.kernel_size) == 1 else conv.kernel_size
            orbit_ids = plane_orbits(spatial.generators, kh, kw)
        return cls(orbit_ids, conv.kernel_size, conv.stride, conv.dilation, conv._reversed_padding_repeated_twice,
                   conv.padding_mode, conv.groups)

    def extra_repr(self) -> str:
        return (f"orbits={self.orbits}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"dilation={self.dilation}, padding={self.padding}, mode={self.mode!r}, groups={self.groups}, "
                f"pair_axis={self.axis}")

    def _slice(self, xp: torch.Tensor, tap: tuple[int, ...], out: list[int], axes=None) -> torch.Tensor:
        index = [slice(None), slice(None)]
        for a, (t, o, s, d) in enumerate(zip(tap, out, self.stride, self.dilation)):
            if axes is not None and a not in axes:
                index.append(slice(None))
                continue
            start = t * d
            index.append(slice(start, start + (o - 1) * s + 1, s))
        return xp[tuple(index)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            # training: the orbit maps with their adjoint as backward (one pass, no per-tap zero tensors); zero
            # padding happens inside, so the backward writes the unpadded gradient directly
            if self.mode == "constant":
                return _OrbitMaps.apply(x, self, True)
            return _OrbitMaps.apply(F.pad(x, self.padding, mode=self.mode), self, False)
        xp = F.pad(x, self.padding, mode=self.mode) if any(self.padding) else x
        return self.maps(xp)

    def maps(self, xp: torch.Tensor) -> torch.Tensor:
        """The orbit maps of the already padded input ``xp`` (differentiable through autograd's slicing)."""
        sizes = xp.shape[2:]
        out = [(n - d * (k - 1) - 1) // s + 1
               for n, k, s, d in zip(sizes, self.kernel_size, self.stride, self.dilation)]
        pair_maps = {}
        if self.axis is not None:
            k = self.kernel_size[self.axis]
            for i in self.pairs:  # x[row i] + x[row k-1-i], sliced along the pairing axis only
                lo = tuple(i if a == self.axis else 0 for a in range(len(out)))
                hi = tuple(k - 1 - i if a == self.axis else 0 for a in range(len(out)))
                pair_maps[i] = (self._slice(xp, lo, out, axes=(self.axis,))
                                + self._slice(xp, hi, out, axes=(self.axis,)))
        others = tuple(a for a in range(len(out)) if a != self.axis)
        if self.groups == 1 and not _tracing() and not (xp.requires_grad and torch.is_grad_enabled()):
            # eager: write every orbit map straight into its slice of the output (no concatenation pass)
            c = xp.shape[1]
            z = torch.empty((xp.shape[0], self.orbits * c, *out), dtype=xp.dtype, device=xp.device,
                            memory_format=_format_of(xp))
            for o, parts in enumerate(self._parts(xp, pair_maps, out, others)):
                dest = z.narrow(1, o * c, c)
                if len(parts) == 1:
                    dest.copy_(parts[0])
                else:
                    torch.add(parts[0], parts[1], out=dest)
                    for part in parts[2:]:
                        dest.add_(part)
            return z
        maps = []
        for parts in self._parts(xp, pair_maps, out, others):
            acc = parts[0]
            if len(parts) > 1:
                acc = acc + parts[1]
                for part in parts[2:]:
                    acc.add_(part)  # acc is a fresh tensor: safe in place
            maps.append(acc)
        if self.groups == 1:
            return torch.cat(maps, 1)
        n, c = xp.shape[0], xp.shape[1]
        stacked = torch.stack(maps, 1)  # (N, F, C, *S)
        stacked = stacked.unflatten(2, (self.groups, c // self.groups)).transpose(1, 2)  # (N, g, F, C/g, *S)
        return stacked.reshape(n, self.orbits * c, *out)

    def adjoint(self, dz: torch.Tensor, padded: tuple[int, ...], crop: bool = False) -> torch.Tensor:
        """The transpose of :meth:`maps`: the gradient of the padded input from that of the orbit maps.

        Forward, orbit ``s`` reads the padded input at offset ``t·d`` (every ``stride``-th position) for each of its
        taps ``t``; backward, each tap adds the orbit's gradient map back into that window of one zero buffer, in
        place.  Traced (``torch.compile``) with stride 1, the same sums are written as reads of the zero-padded
        gradient at offset ``(k-1-t)·d``: a gather form the compiler fuses into one loop.  ``crop``: return the gradient of the input
        before its (zero) padding, i.e. without the border the padding added.
        """
        n, channels = dz.shape[0], dz.shape[1] // self.orbits
        blocks = dz.unflatten(1, (self.groups, self.orbits, channels // self.groups))
        out_sizes = dz.shape[2:]
        axes = range(len(self.kernel_size))
        before = [self.padding[2 * (len(axes) - 1 - a)] for a in axes]  # leading padding per axis (F.pad order)
        sizes = [p - b - self.padding[2 * (len(axes) - 1 - a) + 1] for p, b, a in zip(padded, before, axes)]
        if not _tracing():
            grad = dz.new_zeros((n, channels, *padded))
            for s, taps in enumerate(self.taps):
                source = blocks[:, :, s].reshape(n, channels, *out_sizes)
                for tap in taps:
                    window = [slice(None), slice(None)] + [slice(t * d, t * d + (o - 1) * st + 1, st)
                                                           for t, d, o, st in zip(tap, self.dilation, out_sizes,
                                                                                  self.stride)]
                    grad[tuple(window)] += source
            if crop:
                return grad[(slice(None), slice(None), *[slice(b, b + m) for b, m in zip(before, sizes)])]
            return grad
        if any(st != 1 for st in self.stride):
            # stride s: the gradient maps spread onto every s-th position (zeros between), then the stride-1 sums
            spread = [(o - 1) * st + 1 for o, st in zip(out_sizes, self.stride)]
            holes = dz.new_zeros((*dz.shape[:2], *spread))
            holes[(slice(None), slice(None), *[slice(None, None, st) for st in self.stride])] = dz
            blocks = holes.unflatten(1, (self.groups, self.orbits, channels // self.groups))
            out_sizes = holes.shape[2:]
        pads: list[int] = []
        for k, d, o, p in zip(reversed(self.kernel_size), reversed(self.dilation), reversed(out_sizes),
                              reversed(padded)):
            # the windows below reach from (k-1)·d before the map to as far as the padded input extends
            pads += [(k - 1) * d, p - o]
        total = None
        for s, taps in enumerate(self.taps):
            source = F.pad(blocks[:, :, s].reshape(n, channels, *out_sizes), pads)
            for tap in taps:
                if crop:  # only the windows over the unpadded input
                    window = [slice(None), slice(None)] + [slice((k - 1 - t) * d + b, (k - 1 - t) * d + b + m)
                                                           for t, k, d, b, m in zip(tap, self.kernel_size,
                                                                                    self.dilation, before, sizes)]
                else:
                    window = [slice(None), slice(None)] + [slice((k - 1 - t) * d, (k - 1 - t) * d + p)
                                                           for t, k, d, p in zip(tap, self.kernel_size,
                                                                                 self.dilation, padded)]
                piece = source[tuple(window)]
                total = piece if total is None else total + piece
        return total

    def _parts(self, xp, pair_maps, out, others):
        """Per orbit, the slices whose sum is its orbit map."""
        for terms in self.terms:
            yield [self._slice(xp, tap, out) if p < 0 else self._slice(pair_maps[p], tap, out, axes=others)
                   for p, tap in terms]


class _OrbitMaps(torch.autograd.Function):
    """:meth:`SpatialFold.maps` with :meth:`SpatialFold.adjoint` as its backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, fold: SpatialFold, pad: bool) -> torch.Tensor:
        with torch.no_grad():
            xp = F.pad(x, fold.padding) if pad and any(fold.padding) else x
            ctx.fold, ctx.padded, ctx.crop = fold, tuple(xp.shape[2:]), pad
            return fold.maps(xp)

    @staticmethod
    def backward(ctx, dz: torch.Tensor):
        return ctx.fold.adjoint(dz.contiguous(), ctx.padded, crop=ctx.crop), None, None


def _tracing() -> bool:
    """True under torch.jit.trace / torch.export / torch.compile (they get the functional concatenation path)."""
    if torch.jit.is_tracing():
        return True
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and (compiler.is_compiling()
                                          or (hasattr(compiler, "is_exporting") and compiler.is_exporting())))


def _format_of(x: torch.Tensor):
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def fold_weight(weight: torch.Tensor, orbit_ids, groups: int = 1) -> torch.Tensor:
    """``(R, C/g, *k) -> (R, F·C/g)``: the orbit value of every (output, input) pair, columns ordered (orbit, channel).

    Exact for a weight that obeys the spatial symmetry: every tap of an orbit holds the same value.
    """
    rep = orbit_representatives(orbit_ids)
    per_orbit = weight.flatten(2).index_select(2, rep)  # (R, C/g, F)
    return per_orbit.transpose(1, 2).reshape(weight.shape[0], -1).contiguous()
