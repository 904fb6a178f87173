"""The expansion's backward (weightsym.symmetry.layout.OrbitGather) is the orbit sum of the dense gradient, for every
symmetry: equal to autograd's own backward of the gather, twice differentiable, and compiled."""

from __future__ import annotations

import pytest
import torch

import weightsym as ws
from weightsym.symmetry.layout import OrbitGather

CASES = [("triangular", (12, 6), 2), ("triangular", (7, 7), 1), ("tri+spa", (6, 6, 3, 3), 1),
         ("eighth+dihedral", (8, 8, 3, 3), 1), ("repeat:3:in", (6, 9), 1), ("average", (6, 6), 1),
         ("block", (7, 5), 1), ("bisymmetric+rot180", (6, 6, 5), 1), ("dihedral", (4, 3, 5, 5), 1),
         ("centrosymmetric", (9, 9), 1), ("lowrank:2", (8, 8), 1)]


@pytest.mark.parametrize("spec,shape,row_blocks", CASES)
def test_backward_is_the_orbit_sum(spec, shape, row_blocks):
    layout = ws.get_symmetry(spec).layout(shape, row_blocks)
    core = torch.randn(layout.core_size, dtype=torch.float64, requires_grad=True)
    g = torch.randn(layout.index.numel(), dtype=torch.float64)
    (reference,) = torch.autograd.grad(core.index_select(0, layout.index), core, g)
    (scatter,) = torch.autograd.grad(OrbitGather.apply(core, layout.index), core, g)
    torch.testing.assert_close(scatter, reference, atol=1e-12, rtol=0)
    # each orbit's gradient is the sum over its members: check one orbit by hand
    members = (layout.index == 0).nonzero().squeeze(1)
    assert scatter[0].item() == pytest.approx(g[members].sum().item(), abs=1e-12)


def test_double_backward():
    layout = ws.get_symmetry("bisymmetric").layout((6, 6))
    core = torch.randn(layout.core_size, dtype=torch.float64, requires_grad=True)
    fn = lambda c: OrbitGather.apply(c, layout.index).square().sum()  # noqa: E731
    assert torch.autograd.gradcheck(fn, (core,))
    assert torch.autograd.gradgradcheck(fn, (core,))


@pytest.mark.slow
def test_compiled_expansion_gradient_matches_eager():
    lin = torch.nn.Linear(10, 10)
    ws.nn.attach(lin, "weight", ws.get_symmetry("triangular"))
    x = torch.randn(4, 10)
    lin(x).square().sum().backward()
    expected = lin.parametrizations.weight.original.grad.clone()
    lin.zero_grad()
    torch.compile(lin)(x).square().sum().backward()
    torch.testing.assert_close(lin.parametrizations.weight.original.grad, expected, atol=1e-5, rtol=1e-5)
