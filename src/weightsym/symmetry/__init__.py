"""Symmetries as groups of index permutations on a plane; see :mod:`weightsym.symmetry.catalog` for the list."""

from weightsym.symmetry.base import (
    ChannelMap,
    ChannelTying,
    Composite,
    KernelRepeat,
    Repeat,
    SpatialTying,
    Symmetry,
    SymmetryError,
)
from weightsym.symmetry.catalog import CHANNEL, SPATIAL, TIES, available_symmetries, combine, get_symmetry
from weightsym.symmetry.layout import INIT_RULES, Layout, build_layout, check_init
from weightsym.symmetry.matrix import Average, Eigen, LowRank
from weightsym.symmetry.orbits import orbit_count, plane_orbits
from weightsym.symmetry.tie import QueryKeyTie

__all__ = [
    "Average", "CHANNEL", "ChannelMap", "ChannelTying", "Composite", "Eigen", "INIT_RULES", "KernelRepeat", "Layout",
    "LowRank", "QueryKeyTie", "Repeat", "SPATIAL", "SpatialTying", "Symmetry", "SymmetryError", "TIES",
    "available_symmetries", "build_layout", "check_init", "combine", "get_symmetry", "orbit_count", "plane_orbits",
]
