"""Every named symmetry, its paper alias, and ``get_symmetry`` which turns a name (or ``a+b``) into an object.

Channel plane (needs a square ``n x n`` plane per group/gate unless noted):

=================  ========  ===========================  ==============================
name               alias     invariance                   free values per n x n plane
=================  ========  ===========================  ==============================
triangular         tri       W = Wᵀ                       n(n+1)/2
centrosymmetric    centro    W = J W J                    n²/2 (even n), (n²+1)/2 (odd)
bisymmetric        quar      W = Wᵀ = J Wᵀ J              n(n+2)/4 (even n)
block              block4    W = J W = W J                n²/4 (even n); any rectangle
eighth             eight     all of D4                    n(n+2)/8 (n ≡ 0 mod 4)
repeat:c[:out|in]  chunk     c copies along out (or in)   n²/c; any rectangle
average            wwt       W = (A + Aᵀ)/2               n² stored, n(n+1)/2 free
eigen              evd       W = V diag(e) Vᵀ             n(n+1)/2
lowrank[:rule]     pdpt      W = P diag(d) Pᵀ, P: n×r     n·r + r stored
=================  ========  ===========================  ==============================

``lowrank`` rank rules: ``lowrank`` (r = n/4), ``lowrank:8`` (fixed r), ``lowrank:0.5`` (r = ⌊0.5·n⌋, at least 1),
``lowrank:paper`` (the original code's r = n − ⌈n/2⌉ − 1: 7, 15, 31 for n = 16, 32, 64).

Spatial plane (every k x k kernel): transpose (``spa``) k(k+1)/2; hflip / vflip k(k+1)/2 for odd k;
rot180 (k²+1)/2; dihedral (all of D4) 3 of 9 for 3x3, 6 of 25 for 5x5; ``repeat:c:kh`` / ``repeat:c:kw``
(``chunk``, the original's ``chunk_c``) c copies along the kernel rows / columns, kh·kw/c (3 of 9 for
``repeat:3:kw``; c must divide the kernel size along the axis).  The ``repeat:c:kh|kw`` and ``lowrank:...`` option
strings are not separate registry names: ``available_symmetries()`` lists ``repeat`` and ``lowrank`` once.

Ties between row blocks (``available_symmetries("tie")``, :mod:`weightsym.symmetry.tie`): ``qk-tie`` (``qktie``),
W_k = W_q in attention's fused q/k/v weight (``in_proj_weight``, 3d x d), W_v free: 2d² of 3d².

A channel and a spatial symmetry compose with ``+``: ``get_symmetry("tri+spa")``, ``get_symmetry("tri+repeat:3:kw")``.
Every symmetry's ``spec`` turns back into it: ``get_symmetry(sym.spec) == sym`` (weight files store the spec).

>>> get_symmetry("lowrank:paper").stored_count((64, 64, 3, 3)) == 9 * (64 * 31 + 31)
True
>>> get_symmetry("repeat:3:kw").free_count((16, 16, 3, 3)) == 16 * 16 * 3
True
"""

from __future__ import annotations

from weightsym.suggest import did_you_mean
from weightsym.symmetry.base import ChannelTying, Composite, KernelRepeat, Repeat, SpatialTying, Symmetry
from weightsym.symmetry.matrix import Average, Eigen, LowRank
from weightsym.symmetry.tie import QueryKeyTie

CHANNEL: dict[str, Symmetry] = {
    s.name: s
    for s in [
        ChannelTying("triangular", ("transpose",), ("tri", "symmetric"), "W = Wᵀ", "n(n+1)/2"),
        ChannelTying("centrosymmetric", ("rot180",), ("centro",), "W = J W J", "⌈n²/2⌉"),
        ChannelTying("bisymmetric", ("transpose", "antitranspose"), ("quar",), "W = Wᵀ = J Wᵀ J", "n(n+2)/4"),
        ChannelTying("block", ("rowflip", "colflip"), ("block4",), "W = J W = W J", "⌈n/2⌉·⌈m/2⌉", square=False),
        ChannelTying("eighth", ("transpose", "rowflip", "colflip"), ("eight",), "all of D4", "n(n+2)/8"),
        Repeat(),
        Average(),
        Eigen(),
        LowRank(),
    ]
}

SPATIAL: dict[str, Symmetry] = {
    s.name: s
    for s in [
        SpatialTying("transpose", ("transpose",), ("spa",), "K = Kᵀ", "k(k+1)/2", square=True),
        SpatialTying("hflip", ("colflip",), (), "K = K J", "k⌈k/2⌉"),
        SpatialTying("vflip", ("rowflip",), (), "K = J K", "k⌈k/2⌉"),
        SpatialTying("rot180", ("rot180",), (), "K = J K J", "⌈k²/2⌉"),
        SpatialTying("dihedral", ("transpose", "rowflip", "colflip"), ("d4",), "all of D4", "3 of 9 (3×3)",
                     square=True),
    ]
}


# Ties between whole row blocks of one layer kind's weight (weightsym.symmetry.tie): channel-plane tyings of the
# whole tensor that apply only where the layer's row blocks are what they tie (``block_kind``), so they are not among
# the plane symmetries every square plane takes (``available_symmetries()``); ``available_symmetries("tie")`` lists
# them and ``get_symmetry`` (with plane "channel" or None) finds them.
TIES: dict[str, Symmetry] = {s.name: s for s in [QueryKeyTie()]}


def available_symmetries(plane: str | None = None) -> list[str]:
    """Canonical names of the plane symmetries, channel plane first.  ``plane`` in {None, "channel", "spatial"}, or
    ``"tie"`` for the ties between row blocks of a layer kind (``qk-tie``), which None does not include."""
    if plane not in (None, "channel", "spatial", "tie"):
        raise ValueError(f"plane must be 'channel', 'spatial', 'tie' or None, got {plane!r}")
    if plane == "tie":
        return list(TIES)
    names = []
    if plane in (None, "channel"):
        names += list(CHANNEL)
    if plane in (None, "spatial"):
        names += list(SPATIAL)
    return names


def _alias_table() -> dict[str, tuple[str, str]]:
    table = {}
    for plane, reg in (("channel", CHANNEL), ("spatial", SPATIAL), ("channel", TIES)):
        for name, sym in reg.items():
            for key in (name, *sym.aliases):
                table.setdefault(key, (plane, name))
    return table


def _one(text: str, plane: str | None) -> Symmetry:
    head, *opts = text.strip().lower().split(":")
    table = _alias_table()
    if plane == "spatial" and head in ("transpose", "spa"):
        return SPATIAL["transpose"]
    if head not in table:
        valid = ", ".join(f"{n} ({'/'.join(s.aliases)})" if s.aliases else n
                          for n, s in {**CHANNEL, **SPATIAL, **TIES}.items())
        raise ValueError(f"unknown symmetry {text!r}{did_you_mean(head, {k: v[1] for k, v in table.items()})}; valid names (aliases): {valid}; "
                         "compose a channel and a spatial one with '+', e.g. 'tri+spa'")
    found_plane, name = table[head]
    if name == "repeat" and len(opts) > 1 and opts[1] in ("kh", "kw"):
        found_plane = "spatial"  # repeat along kernel rows/columns ties the spatial plane
    if plane is not None and found_plane != plane:
        extra = {"channel": ", repeat:c:out|in", "spatial": ", repeat:c:kh|kw"}[plane] if name == "repeat" else ""
        raise ValueError(f"{text!r} is a {found_plane} symmetry, but a {plane} symmetry was asked for; "
                         f"{plane} symmetries: {', '.join(available_symmetries(plane))}{extra}")
    if name == "repeat":
        if len(opts) > 2 or (opts and not opts[0].strip().isdigit()):
            raise ValueError(f"repeat takes a number of copies and an axis, 'repeat:c[:out|in|kh|kw]' "
                             f"(e.g. 'repeat:4:in', 'repeat:3:kw'), got {text!r}")
        copies = int(opts[0]) if opts else 2
        axis = opts[1].strip() if len(opts) > 1 else "out"
        if axis in ("kh", "kw"):
            return KernelRepeat(copies, axis)
        if axis not in ("out", "in"):
            raise ValueError(f"repeat axis must be 'out' or 'in' (channel plane) or 'kh' or 'kw' (kernel rows or "
                             f"columns), got {axis!r} (e.g. 'repeat:4:in', 'repeat:3:kw')")
        return Repeat(copies, axis)
    if name == "lowrank" and opts:
        if len(opts) > 1:
            raise ValueError(f"lowrank takes one rank rule, 'lowrank:8', 'lowrank:0.25' or 'lowrank:paper'; "
                             f"got {text!r}")
        return LowRank.from_option(opts[0])
    if opts:
        raise ValueError(f"symmetry {name!r} takes no options, got {text!r}")
    if name in TIES:
        return TIES[name]
    return (CHANNEL if found_plane == "channel" else SPATIAL)[name]


def get_symmetry(name: str | Symmetry, plane: str | None = None) -> Symmetry:
    """Turn a name, alias, option string or ``channel+spatial`` into a symmetry; ``get_symmetry(sym.spec) == sym``.

    Option strings: ``repeat:4:in`` (channel copies along out or in), ``repeat:3:kw`` (a *spatial* symmetry: copies
    along kernel rows ``kh`` or columns ``kw``), ``lowrank:8`` / ``lowrank:0.25`` / ``lowrank:paper`` (rank rules).
    ``plane`` restricts the lookup ("channel" or "spatial"); ``transpose`` means the spatial transpose unless the
    plane is channel (where the channel transpose symmetry is called ``triangular``).

    >>> get_symmetry("pdpt:paper").spec, get_symmetry("chunk:3:kw").spec, get_symmetry("tri+repeat:3:kh").spec
    ('lowrank:paper', 'repeat:3:kw', 'triangular+repeat:3:kh')
    """
    if isinstance(name, Symmetry):
        return name
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a symmetry name must be a non-empty string, got {name!r}")
    parts = name.split("+")
    if len(parts) == 1:
        if plane is None and name.strip().lower() in ("transpose", "spa"):
            return SPATIAL["transpose"]
        return _one(name, plane)
    if len(parts) != 2:
        raise ValueError(f"compose exactly one channel and one spatial symmetry, e.g. 'tri+spa'; got {name!r}")
    return Composite(_one(parts[0], "channel"), _one(parts[1], "spatial"))  # type: ignore[arg-type]


def combine(channel: str | Symmetry | None, spatial: str | Symmetry | None) -> Symmetry | None:
    """The symmetry for a layer asked to carry ``channel`` and/or ``spatial`` (None if neither)."""
    c = get_symmetry(channel, "channel") if channel else None
    s = get_symmetry(spatial, "spatial") if spatial else None
    if c is not None and s is not None:
        return Composite(c, s)  # type: ignore[arg-type]
    return c or s
