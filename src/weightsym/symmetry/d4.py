"""The dihedral group D4 acting on the last two axes (rows, columns) of an array, as on a square image: the one
definition of its elements, used by the tyings (the plane generators of :mod:`weightsym.symmetry.orbits`) and by the
analysis of trained kernels (:mod:`weightsym.analysis.kernel_symmetry`).

Each non-identity element is a short sequence of three primitive steps: ``rows`` (reverse the rows, ``J K``),
``cols`` (reverse the columns, ``K J``) and ``T`` (transpose), applied left to right.  Row 0 is at the top, as
``imshow`` draws a kernel.

=============  =====================================  ==============  ======================
name           action on K (k × k)                    steps           index map (i, j) ↦ …
=============  =====================================  ==============  ======================
hflip          mirror left-right, K J                 cols            (i, k−1−j)
vflip          mirror top-bottom, J K                 rows            (k−1−i, j)
transpose      reflect about the main diagonal, Kᵀ    T               (j, i)
antitranspose  reflect about the anti-diagonal, JKᵀJ  rows cols T     (k−1−j, k−1−i)
rot90          rotate 90° counter-clockwise           T rows          (``np.rot90``)
rot180         rotate 180°, J K J                     rows cols       (k−1−i, k−1−j)
rot270         rotate 90° clockwise                   rows T
=============  =====================================  ==============  ======================

On a channel plane (rows = outputs, columns = inputs) the flips are called ``rowflip`` (= ``vflip``) and ``colflip``
(= ``hflip``): :data:`ALIASES`.  The elements without ``T`` map a non-square plane onto itself (:data:`RECTANGULAR`).

>>> import numpy as np, torch
>>> grid = np.arange(6).reshape(2, 3)
>>> apply("hflip", grid).tolist(), apply("rowflip", grid).tolist()
([[2, 1, 0], [5, 4, 3]], [[3, 4, 5], [0, 1, 2]])
>>> bool((apply("rot90", torch.arange(9).view(3, 3)) == torch.rot90(torch.arange(9).view(3, 3))).all())
True
"""

from __future__ import annotations

import numpy as np

ELEMENTS: dict[str, tuple[str, ...]] = {
    "hflip": ("cols",),
    "vflip": ("rows",),
    "transpose": ("T",),
    "antitranspose": ("rows", "cols", "T"),
    "rot90": ("T", "rows"),
    "rot180": ("rows", "cols"),
    "rot270": ("rows", "T"),
}
ALIASES = {"rowflip": "vflip", "colflip": "hflip"}
RECTANGULAR = tuple(name for name, steps in ELEMENTS.items() if "T" not in steps)  # hflip, vflip, rot180


def canonical(name: str) -> str:
    """The D4 element a name or alias stands for; ``ValueError`` for anything else."""
    name = ALIASES.get(name, name)
    if name not in ELEMENTS:
        raise ValueError(f"{name!r} is not an element of D4; elements: {', '.join(ELEMENTS)} (aliases "
                         f"{', '.join(f'{a}={b}' for a, b in ALIASES.items())})")
    return name


def apply(name: str, array):
    """Element ``name`` (or an alias) applied to the last two axes of a numpy array or a torch tensor."""
    out = array
    for step in ELEMENTS[canonical(name)]:
        if isinstance(out, np.ndarray):
            out = (out[..., ::-1, :] if step == "rows" else out[..., ::-1] if step == "cols"
                   else np.swapaxes(out, -1, -2))
        else:
            out = out.flip(-2) if step == "rows" else out.flip(-1) if step == "cols" else out.transpose(-2, -1)
    return out
