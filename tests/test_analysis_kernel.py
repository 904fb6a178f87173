"""Kernel symmetry scores: exact values on hand-built kernels, invariances, layer discovery and residuals."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from weightsym.analysis import (
    D4_TRANSFORMS,
    applicable_transforms,
    kernel_scores,
    kernel_symmetry,
    mean_kernel,
    symmetry_residuals,
    symmetry_score,
    transform_scores,
)

ALL = tuple(D4_TRANSFORMS)
MOVED = 1 - math.sqrt(2) / 2  # s_T when T moves a single 1 to another position: ‖e_p − e_q‖ = √2


def d4_average(kernel):
    """Orbit average over D4: a D4-symmetric kernel."""
    return (kernel + sum(t(kernel) for t in D4_TRANSFORMS.values())) / 8


def basis(k, i, j, dtype=torch.float64):
    kernel = torch.zeros(k, k, dtype=dtype)
    kernel[i, j] = 1.0
    return kernel


def test_transforms_are_the_seven_distinct_non_identity_elements_of_d4():
    kernel = torch.arange(9.0).reshape(3, 3)
    images = {name: t(kernel) for name, t in D4_TRANSFORMS.items()}
    assert len(images) == 7
    flat = [kernel.flatten().tolist()] + [img.flatten().tolist() for img in images.values()]
    assert len({tuple(f) for f in flat}) == 8  # the 7 images and the identity are all different
    assert images["hflip"].tolist() == [[2, 1, 0], [5, 4, 3], [8, 7, 6]]
    assert images["vflip"].tolist() == [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
    assert images["transpose"].tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert images["antitranspose"].tolist() == [[8, 5, 2], [7, 4, 1], [6, 3, 0]]
    assert images["rot180"].tolist() == [[8, 7, 6], [5, 4, 3], [2, 1, 0]]
    assert images["rot90"].tolist() == [[2, 5, 8], [1, 4, 7], [0, 3, 6]]  # counter-clockwise (np.rot90)
    assert images["rot270"].tolist() == [[6, 3, 0], [7, 4, 1], [8, 5, 2]]


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 7), seed=st.integers(0, 10_000))
def test_d4_symmetric_kernels_score_one(k, seed):
    kernel = d4_average(torch.randn(k, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    assert symmetry_score(kernel) == pytest.approx(1.0, abs=1e-12)
    assert all(s == pytest.approx(1.0, abs=1e-12) for s in transform_scores(kernel).values())


def test_d4_symmetric_3x3_with_centre_edge_corner_values():
    a, b, c = 2.0, -1.0, 0.5
    kernel = torch.tensor([[c, b, c], [b, a, b], [c, b, c]])
    assert symmetry_score(kernel) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    "position, fixed_by",
    [((0, 1), "hflip"), ((1, 0), "vflip"), ((0, 0), "transpose"), ((0, 2), "antitranspose")],
)
def test_single_off_centre_one_exact_values(position, fixed_by):
    # T(K̂) − K̂ is 0 for the one transform fixing the position and e_q − e_p (norm √2) for the six others:
    # S = 1 − 6√2 / 14 = 1 − 3√2/7 ≈ 0.39391.
    kernel = basis(3, *position)
    assert symmetry_score(kernel) == pytest.approx(1 - 3 * math.sqrt(2) / 7, abs=1e-12)
    assert symmetry_score(kernel) == pytest.approx(0.393908, abs=1e-6)
    scores = transform_scores(kernel)
    assert scores[fixed_by] == 1.0
    assert all(s == pytest.approx(MOVED, abs=1e-12) for name, s in scores.items() if name != fixed_by)


def test_centre_plus_edge_is_four_sevenths():
    # K̂ = (e_c + e_p)/√2; six transforms move e_p: ‖T(K̂) − K̂‖ = ‖e_q − e_p‖/√2 = 1, so S = 1 − 6/14 = 4/7.
    kernel = basis(3, 1, 1) + basis(3, 0, 1)
    assert symmetry_score(kernel) == pytest.approx(4 / 7, abs=1e-12)
    assert transform_scores(kernel)["vflip"] == pytest.approx(0.5, abs=1e-12)


def test_antisymmetric_kernel_scores_zero_for_that_transform():
    kernel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])  # Sobel-x: hflip(K) = −K
    scores = transform_scores(kernel)
    assert scores["hflip"] == pytest.approx(0.0, abs=1e-12)  # ‖−K̂ − K̂‖ = 2
    assert scores["vflip"] == pytest.approx(1.0, abs=1e-12)
    assert scores["rot180"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", ["hflip", "vflip", "transpose", "antitranspose", "rot180"])
def test_kernel_symmetric_under_one_reflection_only(name):
    kernel = torch.randn(5, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    kernel = kernel + D4_TRANSFORMS[name](kernel)
    scores = transform_scores(kernel)
    assert scores[name] == pytest.approx(1.0, abs=1e-12)
    assert all(s < 0.99 for other, s in scores.items() if other != name)
    assert symmetry_score(kernel) < 1


def test_rotation_invariant_kernel_has_rotation_scores_one_and_reflection_scores_below_one():
    # (on 3×3 every C4-invariant kernel is also D4-invariant, so use 5×5)
    kernel = torch.randn(5, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    kernel = sum(torch.rot90(kernel, r, dims=(0, 1)) for r in range(4))
    scores = transform_scores(kernel)
    for name in ("rot90", "rot180", "rot270"):
        assert scores[name] == pytest.approx(1.0, abs=1e-12)
    for name in ("hflip", "vflip", "transpose", "antitranspose"):
        assert scores[name] < 0.99


@settings(max_examples=50, deadline=None)
@given(kh=st.integers(1, 6), kw=st.integers(1, 6), scale=st.floats(-100, 100).filter(lambda s: abs(s) > 1e-3),
       seed=st.integers(0, 10_000))
def test_score_bounds_and_scale_invariance(kh, kw, scale, seed):
    kernel = torch.randn(kh, kw, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    score = symmetry_score(kernel)
    assert 0.0 <= score <= 1.0
    assert symmetry_score(scale * kernel) == pytest.approx(score, abs=1e-9)
    assert symmetry_score(D4_TRANSFORMS["hflip"](kernel)) == pytest.approx(score, abs=1e-9)  # S is a class function
    assert score == pytest.approx(sum(transform_scores(kernel).values()) / len(applicable_transforms((kh, kw))))


def test_non_square_kernels_use_the_klein_subgroup():
    assert applicable_transforms((3, 5)) == ("hflip", "vflip", "rot180")
    kernel = torch.tensor([[1.0, 2.0, 3.0, 2.0, 1.0]])  # 1×5, symmetric left-right
    scores = transform_scores(kernel)
    assert set(scores) == {"hflip", "vflip", "rot180"}
    assert symmetry_score(kernel) == pytest.approx(1.0)
    # (1, 0, 0): hflip and rot180 move the 1, vflip (a no-op on one row) does not → S = 1 − 2√2/6.
    assert symmetry_score(torch.tensor([[1.0, 0.0, 0.0]])) == pytest.approx(1 - math.sqrt(2) / 3)


def test_zero_kernel_is_nan():
    assert math.isnan(symmetry_score(torch.zeros(3, 3)))


def test_mean_kernel_and_per_kernel_scores_differ_as_in_the_paper():
    # Each single kernel is an off-centre 1 (score 1 − 3√2/7), but the four edge positions average to a
    # D4-symmetric mean kernel (score 1).
    weight = torch.zeros(4, 1, 3, 3)
    for n, (i, j) in enumerate([(0, 1), (1, 0), (1, 2), (2, 1)]):
        weight[n, 0, i, j] = 1.0
    assert mean_kernel(weight).tolist() == [[0, 0.25, 0], [0.25, 0, 0.25], [0, 0.25, 0]]
    assert symmetry_score(mean_kernel(weight)) == pytest.approx(1.0)
    assert kernel_scores(weight).flatten().tolist() == pytest.approx([1 - 3 * math.sqrt(2) / 7] * 4)
    conv = nn.Conv2d(1, 4, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(weight)
    (record,) = kernel_symmetry(conv)
    assert record.name == ""
    assert record.score == pytest.approx(1.0)
    assert record.kernel_score == pytest.approx(1 - 3 * math.sqrt(2) / 7)


def test_kernel_score_ignores_zero_kernels():
    weight = torch.zeros(2, 1, 3, 3)
    weight[0, 0] = basis(3, 1, 1, torch.float32)
    (record,) = kernel_symmetry({"w": weight})
    assert record.kernel_score == pytest.approx(1.0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 5, padding=2, padding_mode="reflect")
        self.pointwise = nn.Conv2d(8, 8, 1)
        self.temporal = nn.Conv1d(8, 8, 3)
        self.blocks = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1))
        self.wide = nn.Conv2d(16, 16, (1, 3), padding=(0, 1))
        self.fc = nn.Linear(16, 10)


def test_layers_found_in_network_order_with_module_metadata():
    net = Net()
    records = kernel_symmetry(net)
    assert [r.name for r in records] == ["stem", "blocks.0", "blocks.2", "wide"]
    stem, block0, block2, wide = records
    assert stem.shape == (8, 3, 5, 5) and stem.padding == (2, 2) and stem.padding_mode == "reflect"
    assert block0.stride == (1, 1) and block0.strided is False
    assert block2.stride == (2, 2) and block2.strided is True and block2.padding_mode == "zeros"
    assert set(wide.transform_scores) == {"hflip", "vflip", "rot180"}
    for record in records:
        assert record.score == pytest.approx(symmetry_score(mean_kernel(getattr_path(net, record.name).weight)))
        assert record.mean_kernel.dtype == torch.float64
    as_dict = block2.to_dict()
    assert as_dict["stride"] == [2, 2] and as_dict["strided"] is True and len(as_dict["mean_kernel"]) == 3


def getattr_path(module, path):
    for part in path.split("."):
        module = getattr(module, part)
    return module


def test_state_dict_gives_same_scores_without_module_metadata():
    net = Net()
    from_module = kernel_symmetry(net)
    state = net.state_dict()
    state["blocks.0.parametrizations.weight.original"] = torch.randn(8, 8, 3, 3)  # stored free params: skipped
    from_state = kernel_symmetry(state)
    assert [r.name for r in from_state] == [r.name for r in from_module]
    for a, b in zip(from_module, from_state):
        assert a.score == b.score and a.kernel_score == b.kernel_score
        assert b.stride is None and b.padding is None and b.padding_mode is None and b.strided is None


def test_rejects_other_inputs():
    with pytest.raises(TypeError, match="nn.Module or a state dict"):
        kernel_symmetry(torch.randn(3, 3, 3, 3))
    with pytest.raises(ValueError, match="one kernel"):
        symmetry_score(torch.randn(2, 3, 3))


# --- residuals against the core symmetry registry -------------------------------------------------------------------

import weightsym as ws  # noqa: E402  (the core is a dependency of the analysis: a broken core fails these tests)
from weightsym.symmetry import ChannelMap  # noqa: E402


def _orbit_symmetries():
    names = ws.available_symmetries("channel") + ws.available_symmetries("spatial")
    return [n for n in names if not isinstance(ws.get_symmetry(n), ChannelMap)]


def test_the_residual_symmetries_are_the_orbit_tyings_of_the_registry():
    assert set(_orbit_symmetries()) == set(ws.available_symmetries()) - {"average", "eigen", "lowrank"}
    assert len(_orbit_symmetries()) >= 10


@pytest.mark.parametrize("name", _orbit_symmetries())
def test_residual_is_zero_for_weights_built_by_expand(name):
    symmetry = ws.get_symmetry(name)
    shape = (8, 8, 3, 3)
    applies, reason = symmetry.applies_to(shape)
    assert applies, reason  # every orbit tying acts on an 8 x 8 x 3 x 3 weight
    generator = torch.Generator().manual_seed(0)
    weight = symmetry.expand(torch.randn(symmetry.free_count(shape), generator=generator), shape)
    residuals = symmetry_residuals(weight)
    assert residuals[name] < 1e-6
    dense = torch.randn(shape, generator=generator)
    assert 0.05 < symmetry_residuals(dense)[name] <= 1.0
    assert symmetry.holds(weight, atol=1e-6)


def test_residuals_skip_non_orbit_and_inapplicable_symmetries():
    residuals = symmetry_residuals(torch.randn(8, 4, 3, 3))  # out != in: square channel symmetries don't apply
    expected = {n for n in _orbit_symmetries() if ws.get_symmetry(n).applies_to((8, 4, 3, 3))[0]}
    assert set(residuals) == expected
    assert "triangular" not in expected and "transpose" in expected
    square = symmetry_residuals(torch.randn(8, 8, 3, 3))
    assert not {"average", "eigen", "lowrank"} & set(square)
    assert "triangular" in square


def test_symmetrized_model_reports_its_symmetry_and_zero_residual():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 4, 3))
    ws.symmetrize(net, channel="triangular", spatial="dihedral")  # stem and last layer stay dense
    records = {r.name: r for r in kernel_symmetry(net)}
    assert records["1"].residuals["triangular"] < 1e-6
    assert records["1"].residuals["dihedral"] < 1e-6
    assert records["1"].score == pytest.approx(1.0, abs=1e-6)  # spatially D4-symmetric kernels
    assert records["1"].symmetry is not None and records["0"].symmetry is None
    assert records["0"].residuals["dihedral"] > 0.05


def test_uninitialised_lazy_conv_gives_a_clear_error():
    net = nn.Sequential(nn.LazyConv2d(4, 3))
    with pytest.raises(ValueError, match=r"conv `0` is lazy"):
        kernel_symmetry(net)
    net(torch.randn(1, 2, 5, 5))
    assert [r.name for r in kernel_symmetry(net)] == ["0"]
