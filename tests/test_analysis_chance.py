"""Chance levels of the mean-kernel symmetry score (issue 27 item 1): random weights score about what their own tap
permutations score; weights with real spatial symmetry score far above; the chance level keeps each layer's values."""

from __future__ import annotations

import math

import pytest
import torch

from weightsym.analysis import kernel_symmetry
from weightsym.analysis.chance import attach_chance, chance_level, chance_scores
from weightsym.analysis.kernel_symmetry import mean_kernel, symmetry_score


def _random(seed: int, shape=(64, 64, 3, 3)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_random_layers_sit_inside_their_chance_range_and_score_well_above_zero():
    percentiles, chance_means = [], []
    for seed in range(12):
        c = chance_level(_random(seed), draws=100, seed=seed)
        percentiles.append(c.percentile)
        chance_means.append(c.mean)
        assert abs(c.z) < 3.5, c
    # i.i.d. taps: the observed score is one more draw of the same distribution, so percentiles spread over (0, 1)
    assert 0.2 < sum(percentiles) / len(percentiles) < 0.8
    assert min(percentiles) < 0.5 < max(percentiles)
    # and that distribution is far from 0: a reader comparing S with 0 would be misled (about 0.4-0.5 for 3x3)
    assert 0.3 < sum(chance_means) / len(chance_means) < 0.7


def test_spatially_symmetric_kernels_score_far_above_chance():
    w = _random(0)
    d4 = sum(t for t in (w, w.flip(-1), w.flip(-2), w.flip(-1, -2)))
    d4 = d4 + d4.transpose(-1, -2)
    c = chance_level(d4, draws=100)
    assert c.score == pytest.approx(1.0) and c.percentile == 1.0 and c.z > 3
    # chance depends on the layer's values: a large value in every kernel lands on a random tap, so the shuffled
    # mean kernels are nearly uniform, hence nearly symmetric (chance about 0.96 here, not 0.4)
    centred = _random(1)
    centred[:, :, 1, 1] += 3.0
    c = chance_level(centred, draws=100)
    assert c.mean > 0.9 and c.score > c.mean and c.percentile == 1.0  # the centre is symmetric, the rest less so
    corner = _random(1)
    corner[:, :, 0, 0] += 3.0  # the same values in an asymmetric place: far below its (same) chance level
    c = chance_level(corner, draws=100)
    assert c.mean > 0.9 and c.score < 0.7 and c.percentile == 0.0 and c.z < -3


def test_chance_keeps_the_values_and_is_reproducible():
    w = _random(2, (8, 4, 3, 3))
    a, b = chance_scores(w, draws=20, seed=5), chance_scores(w, draws=20, seed=5)
    assert torch.equal(a, b) and a.shape == (20,) and a.dtype == torch.float64
    assert not torch.equal(a, chance_scores(w, draws=20, seed=6))
    # one draw by hand: the same permutation machinery, each kernel's taps a permutation of its own
    generator = torch.Generator().manual_seed(5)
    order = torch.rand(16, 32, 9, generator=generator).argsort(dim=-1)[0]
    permuted = torch.gather(w.reshape(32, 9).double(), 1, order)
    assert sorted(permuted[3].tolist()) == sorted(w.reshape(32, 9)[3].double().tolist())
    assert a[0] == pytest.approx(symmetry_score(mean_kernel(permuted.reshape(8, 4, 3, 3))))
    with pytest.raises(ValueError, match="out, in, kh, kw"):
        chance_scores(torch.zeros(3, 3))
    assert math.isnan(chance_level(torch.zeros(2, 2, 3, 3), draws=5).score)


def test_attach_chance_to_every_layer_of_a_model_and_a_state_dict():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3))
    layers = attach_chance(net, kernel_symmetry(net), draws=10)
    assert [set(layer.chance) for layer in layers] == [{"score", "mean", "std", "z", "percentile", "draws"}] * 2
    assert all(layer.chance["score"] == pytest.approx(layer.score) for layer in layers)
    from_state = attach_chance(net.state_dict(), kernel_symmetry(net.state_dict()), draws=10)
    assert [layer.chance["mean"] for layer in from_state] == [layer.chance["mean"] for layer in layers]
