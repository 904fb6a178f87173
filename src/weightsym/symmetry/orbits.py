"""Orbits of a group of index permutations on a 2-D plane: the one mechanism behind every tying symmetry.

A plane is an ``rows x cols`` grid of indices (the channel plane ``(out, in)`` of a weight, or the spatial plane
``(kh, kw)`` of a kernel).  A symmetry is a set of *generators*, each a permutation of the grid (transpose, row flip,
column flip, ...).  The group they generate splits the grid into orbits; a symmetric plane holds one value per orbit.

``plane_orbits(generators, rows, cols)`` returns, for every grid position (row-major), the id of its orbit, with ids
numbered ``0 .. F-1`` in order of first appearance.  It is computed once per shape (vectorised label propagation:
each pass replaces every label by the minimum over its images, until nothing changes) and cached.

Example
-------
>>> ids = plane_orbits(("transpose",), 3, 3)
>>> ids.reshape(3, 3).tolist()
[[0, 1, 2], [1, 3, 4], [2, 4, 5]]
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from weightsym.symmetry import d4

# Each generator maps a grid (rows, cols) of labels to the permuted grid. All are involutions or group elements of
# the dihedral group D4 acting on the plane as on a square image (transpose-like ones need rows == cols), plus the
# cyclic shifts used by ``repeat``: ``rowshift:s`` / ``colshift:s`` shift by a fixed ``s`` (the channel plane, whose
# size the symmetry knows), ``rowcopies:c`` / ``colcopies:c`` by ``rows/c`` / ``cols/c`` of whatever plane they meet
# (the spatial plane: one generator for every kernel size, so ``SpatialTying.generators`` stays shape-free), and
# ``blockswap:c:i:j``, which cuts the rows into ``c`` equal blocks and exchanges blocks ``i`` and ``j`` (``qk-tie``:
# the key block of a fused q/k/v weight tied to its query block).
# The D4 elements (transpose, antitranspose, rowflip = J W, colflip = W J, rot180, rot90, ...) are defined once, in
# weightsym.symmetry.d4; the ones that involve a transpose need a square plane.
_SQUARE_ONLY = {name for name in (*d4.ELEMENTS, *d4.ALIASES) if d4.canonical(name) not in d4.RECTANGULAR}


def _apply(name: str, grid: np.ndarray) -> np.ndarray:
    if name in d4.ELEMENTS or name in d4.ALIASES:
        return d4.apply(name, grid)
    if name.startswith("rowshift:"):  # W[o, i] = W[o + s, i]  (cyclic; ``repeat`` along out)
        return np.roll(grid, int(name.split(":")[1]), axis=0)
    if name.startswith("colshift:"):  # W[o, i] = W[o, i + s]  (cyclic; ``repeat`` along in)
        return np.roll(grid, int(name.split(":")[1]), axis=1)
    if name.startswith("rowcopies:") or name.startswith("colcopies:"):  # c equal copies: shift by size / c
        axis, copies = (0 if name[0] == "r" else 1), int(name.split(":")[1])
        size = grid.shape[axis]
        if copies < 1 or size % copies:
            raise ValueError(f"generator {name!r} needs a plane whose {'rows' if axis == 0 else 'columns'} ({size}) "
                             f"are a multiple of {copies}")
        return np.roll(grid, size // copies, axis=axis)
    if name.startswith("blockswap:"):  # rows cut into c equal blocks, blocks i and j exchanged (``qk-tie``)
        copies, i, j = (int(x) for x in name.split(":")[1:])
        rows = grid.shape[0]
        if copies < 2 or rows % copies or not (0 <= i < copies and 0 <= j < copies):
            raise ValueError(f"generator {name!r} needs a plane whose rows ({rows}) are a multiple of {copies} "
                             f"and block numbers below {copies}")
        order = np.arange(rows).reshape(copies, rows // copies)
        order[[i, j]] = order[[j, i]]
        return grid[order.reshape(-1)]
    raise ValueError(f"unknown plane generator {name!r}")


@lru_cache(maxsize=512)
def _plane_orbits_cached(generators: tuple[str, ...], rows: int, cols: int) -> np.ndarray:
    for g in generators:
        if g in _SQUARE_ONLY and rows != cols:
            raise ValueError(f"generator {g!r} needs a square plane, got {rows}x{cols}")
    labels = np.arange(rows * cols, dtype=np.int64).reshape(rows, cols)
    while True:
        new = labels
        for g in generators:
            new = np.minimum(new, _apply(g, new))
        if np.array_equal(new, labels):
            break
        labels = new
    # renumber orbits 0..F-1 in order of first appearance (row-major)
    flat = labels.ravel()
    _, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    ids = order[inverse].astype(np.int64)
    ids.setflags(write=False)
    return ids


def plane_orbits(generators: tuple[str, ...] | list[str], rows: int, cols: int) -> np.ndarray:
    """Orbit id (0..F-1) of every position of a ``rows x cols`` plane, row-major, as a read-only int64 array."""
    return _plane_orbits_cached(tuple(generators), int(rows), int(cols))


def orbit_count(generators: tuple[str, ...] | list[str], rows: int, cols: int) -> int:
    """Number of orbits F (the free values per plane)."""
    ids = plane_orbits(generators, rows, cols)
    return int(ids.max()) + 1 if ids.size else 0
