"""ExpandInput: every original value on its grid position, the fill everywhere else."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from weightsym.data.input_expansion import ExpandInput


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 7), w=st.integers(1, 7), factor=st.integers(1, 5), batch=st.sampled_from([(), (1,), (3,), (2, 2)]),
       channels=st.integers(1, 3), fill=st.floats(-10, 10, allow_nan=False))
def test_images_keep_pixels_on_grid_and_fill_elsewhere(h, w, factor, batch, channels, fill):
    x = torch.rand(*batch, channels, h, w) + 20.0  # never equal to the fill
    out = ExpandInput(factor, fill=fill)(x)
    assert out.shape == (*batch, channels, h * factor, w * factor)
    offset = factor // 2
    rows = torch.arange(h) * factor + offset
    cols = torch.arange(w) * factor + offset
    assert torch.equal(out[..., rows[:, None], cols[None, :]], x)  # pixel (i, j) at (iK + K//2, jK + K//2)
    on_grid = torch.zeros(h * factor, w * factor, dtype=torch.bool)
    on_grid[rows[:, None], cols[None, :]] = True
    assert bool((out[..., ~on_grid] == torch.tensor(fill, dtype=x.dtype)).all())
    assert int(on_grid.sum()) == h * w


@settings(max_examples=40, deadline=None)
@given(length=st.integers(1, 12), factor=st.integers(1, 6), batch=st.sampled_from([(), (4,)]))
def test_signals_expand_along_the_last_axis(length, factor, batch):
    x = torch.rand(*batch, 2, length) + 5.0
    out = ExpandInput(factor, fill=-1.0, spatial_dims=1)(x)
    assert out.shape == (*batch, 2, length * factor)
    assert torch.equal(out[..., factor // 2 :: factor], x)
    assert int((out == -1.0).sum()) == x.numel() * (factor - 1)


def test_pi_pattern_of_the_follow_up():
    out = ExpandInput(5, fill=math.pi, spatial_dims=1)(torch.tensor([[1.0, 2.0]]))
    p = math.pi
    assert out[0].tolist() == pytest.approx([p, p, 1.0, p, p, p, p, 2.0, p, p])


def test_factor_one_is_identity_and_dtype_device_are_kept():
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    assert ExpandInput(1)(x) is x
    out = ExpandInput(2)(x)
    assert out.dtype == torch.float64 and out.device == x.device
    e = ExpandInput(3)
    assert torch.equal(e(x)[(..., *e.grid())], x)


def test_even_factor_offset_and_errors():
    out = ExpandInput(2, fill=0.0)(torch.ones(1, 1, 1))
    assert out.tolist() == [[[0.0, 0.0], [0.0, 1.0]]]  # offset K//2 = 1
    with pytest.raises(ValueError, match="integer >= 1"):
        ExpandInput(0)
    with pytest.raises(TypeError, match="floating-point"):
        ExpandInput(2)(torch.ones(1, 2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="needs"):
        ExpandInput(2)(torch.ones(4, 4))


def test_usable_as_first_layer_with_gradients():
    x = torch.rand(2, 1, 3, 3, requires_grad=True)
    model = torch.nn.Sequential(ExpandInput(3), torch.nn.Conv2d(1, 2, 3))
    model(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
