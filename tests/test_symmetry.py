"""Every symmetry over a grid of shapes: invariance, projection, free counts, gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import weightsym as ws
from weightsym.symmetry import SymmetryError, get_symmetry

CHANNEL = ws.available_symmetries("channel")
SPATIAL = ws.available_symmetries("spatial")
COMPOSITES = ["tri+spa", "block+dihedral", "average+hflip", "eigen+rot180", "eighth+vflip", "repeat+transpose"]
# option strings beyond the registry names: rank rules, repeat along kernel rows/columns (tests/test_symmetry_rules.py)
OPTIONS = ["lowrank:paper", "lowrank:0.5", "repeat:2:in", "repeat:2:kh", "repeat:3:kw", "tri+repeat:3:kw",
           "lowrank:paper+repeat:3:kh"]
ALL = CHANNEL + SPATIAL + COMPOSITES + OPTIONS

# (shape, row_blocks): Linear, Conv1d, Conv2d 1x1/3x3/5x5, odd sizes, grouped conv
SHAPES = [((6, 6), 1), ((7, 7), 1), ((8, 8, 3), 1), ((5, 5, 5), 1), ((6, 6, 3, 3), 1), ((7, 7, 3, 3), 1),
          ((4, 4, 5, 5), 1), ((8, 8, 1, 1), 1), ((12, 6, 3, 3), 2), ((9, 3, 3, 3), 3), ((4, 6, 3, 3), 1)]


def applicable():
    for name in ALL:
        sym = get_symmetry(name)
        for shape, blocks in SHAPES:
            if sym.applies_to(shape, blocks)[0]:
                yield pytest.param(name, shape, blocks, id=f"{name}-{'x'.join(map(str, shape))}-g{blocks}")


def random_free(sym, shape, blocks, dtype=torch.float64):
    return torch.randn(sym.stored_count(shape, blocks), dtype=dtype)


@pytest.mark.parametrize("name,shape,blocks", list(applicable()))
def test_expand_holds_and_project_is_exact(name, shape, blocks):
    sym = get_symmetry(name)
    w = sym.expand(random_free(sym, shape, blocks), shape, blocks)
    assert w.shape == torch.Size(shape)
    assert sym.holds(w, row_blocks=blocks)
    exact = sym.layout(shape, blocks).map is None
    p = sym.project(w, blocks)
    w2 = sym.expand(p, shape, blocks)
    if exact:  # orbit tyings: bit for bit on symmetric input
        assert torch.equal(w2, w)
        assert torch.equal(sym.project(w2, blocks), p)
    else:
        torch.testing.assert_close(w2, w, atol=1e-9, rtol=1e-9)
    # projection is idempotent on arbitrary input and lands on the symmetric set
    q = sym.project(torch.randn(shape, dtype=torch.float64), blocks)
    wq = sym.expand(q, shape, blocks)
    assert sym.holds(wq, atol=1e-12, row_blocks=blocks)
    torch.testing.assert_close(sym.expand(sym.project(wq, blocks), shape, blocks), wq, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name,shape,blocks", list(applicable()))
def test_projection_is_least_squares(name, shape, blocks):
    """For linear symmetries the residual of the projection is orthogonal to every symmetric weight."""
    sym = get_symmetry(name)
    if sym.layout(shape, blocks).map is not None and not name.startswith("average"):
        pytest.skip("eigen/lowrank sets are not linear subspaces")
    w = torch.randn(shape, dtype=torch.float64)
    residual = w - sym.expand(sym.project(w, blocks), shape, blocks)
    for _ in range(3):
        v = sym.expand(random_free(sym, shape, blocks), shape, blocks)
        assert abs(float((residual * v).sum())) < 1e-9 * float(w.norm() * v.norm())


def numerical_rank(sym, shape, blocks):
    """Rank of the Jacobian of expand at a random point (= rank of the map for linear symmetries)."""
    free = random_free(sym, shape, blocks)
    jac = torch.autograd.functional.jacobian(lambda f: sym.expand(f, shape, blocks).reshape(-1), free)
    return int(torch.linalg.matrix_rank(jac, rtol=1e-9))


@pytest.mark.parametrize("name,shape,blocks", [p for p in applicable()
                                               if torch.Size(p.values[1]).numel() <= 400])
def test_free_count_is_rank_of_expansion(name, shape, blocks):
    sym = get_symmetry(name)
    assert sym.free_count(shape, blocks) == numerical_rank(sym, shape, blocks)


@pytest.mark.parametrize("name,shape,blocks", [p for p in applicable()
                                               if torch.Size(p.values[1]).numel() <= 150])
def test_gradient_matches_finite_differences(name, shape, blocks):
    sym = get_symmetry(name)
    free = (0.5 * random_free(sym, shape, blocks)).requires_grad_(True)
    probe = torch.randn(shape, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: (sym.expand(f, shape, blocks) * probe).sum(), (free,))


# closed forms of docs/science.md §1.1 (per plane; n even where the table says so)
CLOSED_FORMS = {
    "triangular": lambda n: n * (n + 1) // 2,
    "centrosymmetric": lambda n: n * n // 2,
    "bisymmetric": lambda n: n * (n + 2) // 4,
    "block": lambda n: n * n // 4,
    "eighth": lambda n: n * (n + 2) // 8,
    "repeat": lambda n: n * n // 2,
    "average": lambda n: n * (n + 1) // 2,
    "eigen": lambda n: n * (n + 1) // 2,
}


@pytest.mark.parametrize("name", list(CLOSED_FORMS))
@pytest.mark.parametrize("n", [4, 8, 64])
def test_channel_free_counts_match_closed_forms(name, n):
    sym = get_symmetry(name)
    assert sym.free_count((n, n)) == CLOSED_FORMS[name](n)
    assert sym.free_count((n, n, 3, 3)) == 9 * CLOSED_FORMS[name](n)


def test_stored_counts_of_matrix_parameterizations():
    assert get_symmetry("average").stored_count((10, 10)) == 100
    assert get_symmetry("lowrank:3").stored_count((10, 10)) == 10 * 3 + 3
    assert get_symmetry("lowrank:3").free_count((10, 10)) == 10 * 3 - 3
    assert get_symmetry("repeat:4").free_count((8, 8)) == 16


@pytest.mark.parametrize("name,k,expected", [("transpose", 3, 6), ("hflip", 3, 6), ("vflip", 3, 6), ("rot180", 3, 5),
                                             ("dihedral", 3, 3), ("dihedral", 5, 6), ("transpose", 5, 15),
                                             ("rot180", 5, 13), ("hflip", 4, 8), ("repeat:3:kw", 3, 3),
                                             ("repeat:3:kh", 3, 3), ("repeat:2:kh", 4, 8), ("repeat:5:kw", 5, 5)])
def test_spatial_free_counts(name, k, expected):
    assert get_symmetry(name).free_count((1, 1, k, k)) == expected


def test_paper_example_tri_and_tri_spa():
    assert get_symmetry("tri").free_count((64, 64, 3, 3)) == 64 * 65 // 2 * 9
    assert get_symmetry("tri+spa").free_count((64, 64, 3, 3)) == 64 * 65 // 2 * 6


def test_invariances_explicitly():
    n = 6
    J = torch.eye(n, dtype=torch.float64).flip(0)

    def plane(name):
        s = get_symmetry(name)
        return s.expand(torch.randn(s.stored_count((n, n)), dtype=torch.float64), (n, n))

    w = plane("triangular"); assert torch.equal(w, w.T)
    w = plane("centrosymmetric"); assert torch.equal(w, J @ w @ J)
    w = plane("bisymmetric"); assert torch.equal(w, w.T) and torch.equal(w, J @ w.T @ J)
    w = plane("block"); assert torch.equal(w, J @ w) and torch.equal(w, w @ J)
    w = plane("eighth"); assert torch.equal(w, w.T) and torch.equal(w, J @ w) and torch.equal(w, w @ J)
    w = plane("repeat:3"); assert torch.equal(w[:2], w[2:4]) and torch.equal(w[:2], w[4:])
    w = plane("repeat:2:in"); assert torch.equal(w[:, :3], w[:, 3:])
    k = get_symmetry("dihedral").expand(torch.randn(3 * 4), (2, 2, 3, 3))
    for t in (k.transpose(-1, -2), k.flip(-1), k.flip(-2), k.rot90(1, (-2, -1))):
        assert torch.equal(t, k)


def test_expansion_is_a_cached_gather():
    sym = get_symmetry("tri+spa")
    assert sym.layout((16, 16, 3, 3)) is sym.layout((16, 16, 3, 3))  # computed once per shape


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(ALL), out=st.integers(1, 9), inp=st.integers(1, 9), k=st.sampled_from([1, 2, 3, 4, 5]))
def test_property_holds_and_idempotent(name, out, inp, k):
    sym = get_symmetry(name)
    shape = (out, inp, k, k)
    if not sym.applies_to(shape)[0]:
        with pytest.raises(SymmetryError):
            sym.layout(shape)
        return
    w = torch.randn(shape, dtype=torch.float64)
    p = sym.project(w)
    s = sym.expand(p, shape)
    assert sym.holds(s, atol=1e-10)
    torch.testing.assert_close(sym.expand(sym.project(s), shape), s, atol=1e-8, rtol=1e-8)
    # projection never increases the distance to a symmetric point beyond the original distance
    v = sym.expand(torch.randn(p.numel(), dtype=torch.float64), shape)
    assert float((s - v).norm()) <= float((w - v).norm()) + 1e-9


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="valid names.*triangular.*tri"):
        get_symmetry("triangle")
    with pytest.raises(ValueError, match="channel symmetry"):
        get_symmetry("triangular", plane="spatial")


def test_impossible_repeat_factor_is_explained():
    with pytest.raises(SymmetryError, match="multiple of the number of copies"):
        get_symmetry("repeat:3").layout((8, 8))


def test_aliases_resolve():
    for alias, name in [("tri", "triangular"), ("quar", "bisymmetric"), ("block4", "block"), ("eight", "eighth"),
                        ("chunk", "repeat"), ("wwt", "average"), ("evd", "eigen"), ("pdpt", "lowrank"),
                        ("spa", "transpose")]:
        assert get_symmetry(alias).name == name
    assert get_symmetry("tri+spa").name == "triangular+transpose"
