"""The symmetry objects users hold: named, shape-agnostic, bound to a weight shape on demand.

A :class:`Symmetry` knows how to tie (or parameterize) a weight of any shape it applies to.  All work goes through
:func:`weightsym.symmetry.layout.build_layout`, cached per shape, so ``expand`` is a single gather.

>>> import torch, weightsym as ws
>>> tri = ws.get_symmetry("tri")
>>> shape = (64, 64, 3, 3)
>>> tri.free_count(shape) == 64 * 65 // 2 * 9
True
>>> w = tri.expand(torch.randn(tri.stored_count(shape)), shape)
>>> bool((w == w.transpose(0, 1)).all()), tri.holds(w)
(True, True)
"""

from __future__ import annotations

import torch

from weightsym.symmetry.layout import Layout, _as_4d, build_layout


class SymmetryError(ValueError):
    """A symmetry cannot be applied to a weight (the message says why and what would work)."""


class Symmetry:
    """Base class.  Subclasses define ``_layout(shape, row_blocks, block_mask)`` and ``_check(shape, row_blocks)``.

    Parameters taken by the methods:
      shape: the dense weight shape, ``(out, in)``, ``(out, in, k)`` or ``(out, in, kh, kw)``;
      row_blocks: rows are cut into this many equal blocks that each carry the channel symmetry on their own
        (``groups`` of a conv, gates of an RNN);
      block_mask: which row blocks carry the channel symmetry (RNN gate masks such as ``1101``).
    """

    name = "symmetry"
    plane = "none"  # "channel" | "spatial" | "composite"
    aliases = ()  # type: tuple[str, ...]
    invariance = ""
    formula = ""  # free values per plane, as text
    block_kind = None  # type: str | None  # the row blocks it ties to each other ("qkv": weightsym.symmetry.tie)
    needs = ""  # with block_kind: where it applies, as text for errors

    # -- subclass hooks -------------------------------------------------------------------------------------------
    def _check(self, shape4: tuple[int, int, int, int], row_blocks: int) -> str | None:
        raise NotImplementedError

    def _layout(self, shape: tuple[int, ...], row_blocks: int, block_mask: tuple[bool, ...] | None) -> Layout:
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------------------------------------
    def applies_to(self, shape, row_blocks: int = 1) -> tuple[bool, str]:
        """``(True, "")`` if the symmetry can act on a weight of ``shape`` and ties something, else ``(False, why)``."""
        try:
            shape4 = _as_4d(tuple(shape))
        except ValueError as exc:
            return False, str(exc)
        if shape4[0] % row_blocks:
            return False, f"{shape4[0]} output channels are not divisible into {row_blocks} groups"
        reason = self._check(shape4, row_blocks)
        if reason:
            return False, reason
        lay = self._layout(tuple(shape), row_blocks, None)
        if lay.free_count >= _numel(shape) and lay.map is None:
            return False, f"{self.name} ties nothing on a weight of shape {tuple(shape)}"
        return True, ""

    def layout(self, shape, row_blocks: int = 1, block_mask=None) -> Layout:
        """The cached :class:`Layout` for ``shape``; raises :class:`SymmetryError` if the symmetry cannot apply."""
        shape = tuple(int(s) for s in shape)
        ok, why = self.applies_to(shape, row_blocks)
        if not ok:
            raise SymmetryError(why)
        mask = None if block_mask is None else tuple(bool(x) for x in block_mask)
        return self._layout(shape, row_blocks, mask)

    def free_count(self, shape, row_blocks: int = 1, block_mask=None) -> int:
        """Number of free values (the dimension of the set of symmetric weights of this shape)."""
        return self.layout(shape, row_blocks, block_mask).free_count

    def stored_count(self, shape, row_blocks: int = 1, block_mask=None) -> int:
        """Number of values the parametrization stores (equals ``free_count`` except for ``average``/``lowrank``)."""
        return self.layout(shape, row_blocks, block_mask).stored_count

    def expand(self, free: torch.Tensor, shape, row_blocks: int = 1, block_mask=None) -> torch.Tensor:
        """The symmetric weight of ``shape`` given its free vector."""
        return self.layout(shape, row_blocks, block_mask).expand(free)

    def project(self, weight: torch.Tensor, row_blocks: int = 1, block_mask=None) -> torch.Tensor:
        """Free vector of the nearest symmetric weight (orbit averages for tyings)."""
        return self.layout(weight.shape, row_blocks, block_mask).project(weight)

    def variance_preserving(self, weight: torch.Tensor, row_blocks: int = 1, block_mask=None) -> torch.Tensor:
        """Free vector for a freshly initialised ``weight`` whose expansion keeps the dense variance entry by entry
        (one representative entry per orbit; :meth:`weightsym.symmetry.layout.Layout.variance_preserving`)."""
        return self.layout(weight.shape, row_blocks, block_mask).variance_preserving(weight)

    def holds(self, weight: torch.Tensor, atol: float = 0.0, row_blocks: int = 1, block_mask=None) -> bool:
        """True if ``weight`` obeys the symmetry (bit for bit when ``atol=0``)."""
        ok, _ = self.applies_to(weight.shape, row_blocks)
        if not ok:
            return False
        return self.layout(weight.shape, row_blocks, block_mask).holds(weight, atol)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @property
    def spec(self) -> str:
        """Canonical text that ``get_symmetry`` turns back into this symmetry (name plus options)."""
        return self.name

    def __eq__(self, other) -> bool:
        return isinstance(other, Symmetry) and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(self.spec)


def upper_mirror(planes: torch.Tensor) -> torch.Tensor:
    """The upper triangle (diagonal included) of each ``(..., n, n)`` plane mirrored below the diagonal."""
    upper = torch.triu(planes)
    return upper + torch.triu(planes, diagonal=1).transpose(-1, -2)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


class ChannelTying(Symmetry):
    """A tying on the channel plane ``(out, in)`` of each row block, given by permutation generators."""

    plane = "channel"

    def __init__(self, name, generators, aliases=(), invariance="", formula="", square=True):
        self.name, self.generators, self.aliases = name, tuple(generators), tuple(aliases)
        self.invariance, self.formula, self.square = invariance, formula, square

    def generators_for(self, rows: int, cols: int) -> tuple[str, ...]:
        return self.generators

    def _check(self, shape4, row_blocks):
        R, C, _, _ = shape4
        m = R // row_blocks
        if self.square and m != C:
            per = " per group/gate" if row_blocks > 1 else ""
            return (f"{self.name} needs as many inputs as outputs{per} (square channel plane), "
                    f"got {m} out x {C} in{per}")
        return None

    def _layout(self, shape, row_blocks, block_mask):
        R, C, _, _ = _as_4d(shape)
        gens = self.generators_for(R // row_blocks, C)
        return build_layout(shape, gens, None, row_blocks, block_mask)


class Repeat(ChannelTying):
    """``copies`` identical copies along ``axis`` ("out" or "in"): W[o, i] = W[o + n/c, i] (paper: ``chunk``)."""

    def __init__(self, copies: int = 2, axis: str = "out"):
        super().__init__("repeat", (), ("chunk",), "c copies along out (or in)", "n²/c", square=False)
        self.copies, self.axis = int(copies), axis

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.copies}:{self.axis}"

    def generators_for(self, rows, cols):
        if self.axis == "out":
            return (f"rowshift:{rows // self.copies}",)
        return (f"colshift:{cols // self.copies}",)

    def _check(self, shape4, row_blocks):
        R, C, _, _ = shape4
        n = R // row_blocks if self.axis == "out" else C
        if self.copies < 2 or n % self.copies:
            what = "output" if self.axis == "out" else "input"
            return (f"repeat with {self.copies} copies along {self.axis} needs the {what} size ({n}) to be a multiple "
                    f"of the number of copies (>= 2); pick copies from the divisors of {n}")
        return None


class ChannelMap(Symmetry):
    """A matrix parameterization of each symmetric block's square channel plane (not an orbit tying).

    Subclasses implement the batched map ``expand_planes(params (B, p), n) -> planes (B, n, n)``, its nearest-point
    ``project_planes(planes (B, n, n)) -> params (B, p)``, ``params_per_plane(n)`` (stored) and ``dimension(n)`` (free).
    Composed with a spatial tying, one plane is produced per spatial orbit.  These methods are the
    :class:`~weightsym.symmetry.layout.PlaneMap` a layout asks for (layout.py does not import this module).
    """

    plane = "channel"

    def params_per_plane(self, n: int) -> int:
        raise NotImplementedError

    def dimension(self, n: int) -> int:
        raise NotImplementedError

    def holds_planes(self, planes: torch.Tensor, atol: float) -> bool:
        return bool(((planes - planes.transpose(-1, -2)).abs() <= atol).all())

    def variance_preserving_planes(self, planes: torch.Tensor) -> torch.Tensor:
        """Stored values for freshly initialised dense ``planes`` (B, n, n) that keep the dense variance.

        Default (``average``, ``eigen``): the stored values of ``T``, the upper triangle of each plane mirrored below
        the diagonal, so the expanded plane is ``T`` (exactly for ``average``, up to rounding for ``eigen``): every
        entry is one dense draw, variance σ² on and off the diagonal.  (Projecting instead gives ``(A + Aᵀ)/2``,
        whose off-diagonal entries have variance σ²/2; ``T`` is also the plane ``triangular`` starts from, so the
        same seed starts ``average`` and ``triangular`` at the same weight.)
        """
        return self.project_planes(upper_mirror(planes))

    def _check(self, shape4, row_blocks):
        R, C, _, _ = shape4
        m = R // row_blocks
        if m != C:
            per = " per group/gate" if row_blocks > 1 else ""
            return (f"{self.name} needs as many inputs as outputs{per} (square channel plane), "
                    f"got {m} out x {C} in{per}")
        return None

    def _layout(self, shape, row_blocks, block_mask):
        return build_layout(shape, None, None, row_blocks, block_mask, channel_map=self)


class SpatialTying(Symmetry):
    """A tying on the spatial plane ``(kh, kw)`` of every kernel, given by permutation generators."""

    plane = "spatial"

    def __init__(self, name, generators, aliases=(), invariance="", formula="", square=False):
        self.name, self.generators, self.aliases = name, tuple(generators), tuple(aliases)
        self.invariance, self.formula, self.square = invariance, formula, square

    def _check(self, shape4, row_blocks):
        _, _, kh, kw = shape4
        if kh * kw == 1:
            return f"{self.name} is a spatial symmetry and a 1x1 (or Linear) weight has no kernel to tie"
        if self.square and kh != kw:
            return f"{self.name} needs a square kernel, got {kh}x{kw}"
        return None

    def _layout(self, shape, row_blocks, block_mask):
        return build_layout(shape, None, self.generators, row_blocks, block_mask)


class KernelRepeat(SpatialTying):
    """``copies`` identical copies of each kernel along its rows (``kh``) or columns (``kw``) (paper: ``chunk_c``).

    ``repeat:c:kh``: ``K[h, w] = K[h + kh/c, w]`` (the kernel is ``c`` stacked copies of a ``kh/c x kw`` block);
    ``repeat:c:kw``: ``K[h, w] = K[h, w + kw/c]``.  The group is the cyclic shift by ``k/c`` along that axis, the
    spatial-plane twin of the channel :class:`Repeat`; free values per kernel: ``kh·kw/c`` (3 of 9 for ``repeat:3:kw``
    on a 3x3 kernel: every column the same).  ``c`` must divide the kernel size along the axis; 1x1 kernels and
    Linear weights have nothing to tie.  A Conv1d kernel runs along ``kw``.

    >>> import torch
    >>> from weightsym.symmetry import get_symmetry
    >>> sym = get_symmetry("repeat:3:kw")
    >>> sym.free_count((8, 8, 3, 3)) == 8 * 8 * 3
    True
    >>> k = sym.expand(torch.arange(3.0), (1, 1, 3, 3))[0, 0]
    >>> k.tolist()
    [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
    """

    def __init__(self, copies: int = 2, axis: str = "kh"):
        if axis not in ("kh", "kw"):
            raise ValueError(f"kernel repeat axis must be 'kh' (kernel rows) or 'kw' (kernel columns), got {axis!r}")
        generator = f"{'row' if axis == 'kh' else 'col'}copies:{int(copies)}"
        invariance = "K[h, w] = K[h + kh/c, w]" if axis == "kh" else "K[h, w] = K[h, w + kw/c]"
        super().__init__("repeat", (generator,), ("chunk",), invariance, "kh·kw/c")
        self.copies, self.axis = int(copies), axis

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.copies}:{self.axis}"

    def _check(self, shape4, row_blocks):
        reason = super()._check(shape4, row_blocks)
        if reason:
            return reason
        k = shape4[2] if self.axis == "kh" else shape4[3]
        if self.copies < 2 or k % self.copies:
            line, other = ("row", "kw") if self.axis == "kh" else ("column", "kh")
            what = f"{line}s ({self.axis})"
            divisors = [d for d in range(2, k + 1) if k % d == 0]
            hint = (f"pick copies from {divisors}" if divisors else
                    f"the kernel has a single {line} here; use repeat:c:{other}"
                    + (" (a Conv1d kernel runs along kw)" if self.axis == "kh" and shape4[2] == 1 else ""))
            return (f"repeat with {self.copies} copies along {self.axis} needs the kernel's {what} ({k}) to be a "
                    f"multiple of the number of copies (>= 2); {hint}")
        return None


class Composite(Symmetry):
    """A channel symmetry and a spatial symmetry on one layer (the paper's ``tri+spa``)."""

    plane = "composite"

    def __init__(self, channel: Symmetry, spatial: SpatialTying):
        if channel.block_kind is not None:
            raise SymmetryError(f"{channel.name} does not compose with a spatial symmetry: it {channel.needs}, which "
                                "has no kernel")
        self.channel, self.spatial = channel, spatial

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.channel.name}+{self.spatial.name}"

    @property
    def spec(self) -> str:
        return f"{self.channel.spec}+{self.spatial.spec}"

    @property
    def invariance(self) -> str:  # type: ignore[override]
        return f"{self.channel.invariance}; {self.spatial.invariance}"

    def _check(self, shape4, row_blocks):
        return self.channel._check(shape4, row_blocks) or self.spatial._check(shape4, row_blocks)

    def _layout(self, shape, row_blocks, block_mask):
        R, C, _, _ = _as_4d(shape)
        if isinstance(self.channel, ChannelMap):
            return build_layout(shape, None, self.spatial.generators, row_blocks, block_mask, channel_map=self.channel)
        gens = self.channel.generators_for(R // row_blocks, C)  # type: ignore[attr-defined]
        return build_layout(shape, gens, self.spatial.generators, row_blocks, block_mask)
