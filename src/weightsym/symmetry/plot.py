"""Pictures of which weight entries each symmetry ties together (the ``weightsym plot-structure`` command).

Each panel is one plane (an 8x8 channel plane or a 5x5 kernel); entries with the same colour and number are one
free value.  The matrix parameterizations (average, eigen, lowrank) are not tyings: their panels show the symmetric
pattern W = Wᵀ they produce, titled accordingly.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from weightsym.atomic import save_figure
from weightsym.symmetry.base import ChannelMap, Composite, Repeat
from weightsym.symmetry.catalog import get_symmetry
from weightsym.symmetry.orbits import plane_orbits


DEFAULT_KERNEL = 5


def kernel_sizes(sym, sizes=range(1, 10)) -> list[int]:
    """The kernel sizes k (k x k) in ``sizes`` that the spatial symmetry ``sym`` can act on (``repeat:3:kw``
    needs a multiple of 3 columns: 3, 6, 9)."""
    valid = []
    for k in sizes:
        try:
            plane_orbits(sym.generators, k, k)
        except ValueError:
            continue
        valid.append(k)
    return valid


def kernel_size_for(name: str, k: int | None = None) -> int:
    """``k`` if the spatial symmetry ``name`` acts on a k x k kernel; with ``k=None`` the size nearest to
    :data:`DEFAULT_KERNEL` that it acts on.  A ``k`` it cannot act on is a ``ValueError`` listing the sizes that work."""
    sym = get_symmetry(name)
    valid = kernel_sizes(sym)
    if k is None:
        return min(valid, key=lambda size: (abs(size - DEFAULT_KERNEL), size))
    if k not in valid:
        raise ValueError(f"{name} cannot act on a {k}x{k} kernel; kernel sizes it acts on: "
                         f"{', '.join(map(str, valid))} (or leave the size out to get {kernel_size_for(name)})")
    return k


def orbit_grid(name: str, n: int = 8, k: int | None = None) -> tuple[np.ndarray, str]:
    """``(grid of orbit ids, caption)`` for one plane of symmetry ``name`` (``k=None``: see
    :func:`kernel_size_for`)."""
    sym = get_symmetry(name)
    if isinstance(sym, ChannelMap):
        ids = plane_orbits(("transpose",), n, n).reshape(n, n)
        return ids, f"{sym.name}: {sym.invariance}\n(symmetric, not tied: stores {sym.formula})"
    if sym.plane == "channel":
        gens = sym.generators_for(n, n) if isinstance(sym, Repeat) else sym.generators
        ids = plane_orbits(gens, n, n).reshape(n, n)
        label = sym.spec if isinstance(sym, Repeat) else sym.name  # repeat:2:out says how many copies, which way
        return ids, f"{label}: {sym.invariance}\n{int(ids.max()) + 1} free of {n * n} ({n}x{n} channel plane)"
    k = kernel_size_for(name, k)
    ids = plane_orbits(sym.generators, k, k).reshape(k, k)
    return ids, f"{sym.spec}: {sym.invariance}\n{int(ids.max()) + 1} free of {k * k} ({k}x{k} kernel)"


CAPTION_WIDTH = 46  # characters per caption line: a caption never gets wider than its panel


def _caption(text: str) -> str:
    return "\n".join(textwrap.fill(line, CAPTION_WIDTH, break_long_words=False, break_on_hyphens=False)
                     for line in text.splitlines())


def structure_figure(names: list[str], n: int = 8, k: int | None = None):
    """The matplotlib figure of :func:`plot_structure` (one panel per plane; captions wrapped to the panel width and
    laid out by matplotlib's constrained layout, so no caption overlaps a panel or leaves the figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for name in names:
        sym = get_symmetry(name)
        if isinstance(sym, Composite):
            panels += [orbit_grid(sym.channel.spec, n, k), orbit_grid(sym.spatial.spec, n, k)]
        else:
            panels.append(orbit_grid(name, n, k))
    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 4.0 * rows), squeeze=False, layout="constrained")
    rng = np.random.default_rng(0)
    palette = plt.get_cmap("tab20")(np.arange(20))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (ids, caption) in zip(axes.flat, panels):
        count = int(ids.max()) + 1
        colours = palette[rng.permutation(max(count, 20))[:count] % 20] if count > 1 else palette[:1]
        ax.imshow(colours[ids], interpolation="nearest")
        if ids.shape[0] <= 10:
            for (r, c), v in np.ndenumerate(ids):
                ax.text(c, r, str(v), ha="center", va="center", fontsize=7 if ids.shape[0] > 6 else 9)
        ax.set_title(_caption(caption), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("on")
    title = "weightsym: entries with the same number share one free value"
    fig.suptitle(title if cols > 1 else textwrap.fill(title, 34), fontsize=11)  # one panel: fit its width
    return fig


def plot_structure(names: list[str], path: str | Path, n: int = 8, k: int | None = None) -> Path:
    """Write a PNG with one panel per plane of each symmetry in ``names`` (composites give two panels); kernels are
    ``k`` x ``k``, or with ``k=None`` 5 x 5 unless a symmetry needs another size (:func:`kernel_size_for`)."""
    import matplotlib.pyplot as plt

    fig = structure_figure(names, n, k)
    path = save_figure(fig, path, dpi=110)  # whole or not at all (weightsym.atomic)
    plt.close(fig)
    return path
