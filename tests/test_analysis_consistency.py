"""Flip and shift consistency: exact values for models built to be (non-)invariant, and the shift itself."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from weightsym.analysis import flip_consistency, random_shift, shift_consistency


class FlipAveraged(nn.Module):
    """Logits of x and of its mirror image, averaged: flip-invariant by construction."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return (self.inner(x) + self.inner(x.flip(-1))) / 2


class LeftVsRight(nn.Module):
    """Class 0 if the left half is brighter, class 1 otherwise: a flip swaps the classes (unless the halves tie)."""

    def forward(self, x):
        half = x.shape[-1] // 2
        left, right = x[..., :half].sum(dim=(-3, -2, -1)), x[..., -half:].sum(dim=(-3, -2, -1))
        return torch.stack([left - right, right - left], dim=-1)


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, stride=2), nn.ReLU(),
                         nn.Flatten(), nn.LazyLinear(5))


def loader(n=64, batch=16, shape=(1, 10, 10), seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=generator)
    return [(x[i : i + batch], torch.zeros(batch, dtype=torch.long)) for i in range(0, n, batch)]


def test_flip_invariant_model_is_fully_consistent_and_a_generic_one_is_not():
    data = loader()
    net = cnn()
    net(data[0][0])  # materialise the lazy layer
    assert flip_consistency(FlipAveraged(net), data) == 1.0
    assert flip_consistency(net, data) < 1.0


def test_exact_fraction_with_half_mirror_symmetric_inputs():
    x = torch.randn(8, 1, 4, 6, generator=torch.Generator().manual_seed(1))
    x[::2] = 0.0  # mirror-symmetric (exactly): logits tie at 0, argmax 0 for x and flip(x)
    assert flip_consistency(LeftVsRight(), [(x, None)]) == 0.5
    assert flip_consistency(LeftVsRight(), [(x[1::2], None)]) == 0.0


def test_one_dimensional_signals_flip_the_last_axis():
    x = torch.randn(10, 1, 40, generator=torch.Generator().manual_seed(2))
    model = nn.Sequential(nn.Flatten(), nn.Linear(40, 3))
    assert flip_consistency(FlipAveraged(model), [(x, None)]) == 1.0


def test_training_flags_are_restored_per_module_and_no_grad_is_used():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    net.train()
    net[1].eval()  # e.g. frozen batch norm
    before = [m.training for m in net.modules()]
    seen = []
    net.register_forward_hook(lambda m, i, o: seen.append((m.training, torch.is_grad_enabled())))
    flip_consistency(net, loader())
    shift_consistency(net, loader(), max_shift=2)
    assert [m.training for m in net.modules()] == before
    assert set(seen) == {(False, False)}


def test_max_batches_and_plain_tensor_batches():
    data = loader(n=64, batch=16)
    assert flip_consistency(FlipAveraged(LeftVsRight()), [x for x, _ in data], max_batches=1) == 1.0
    with pytest.raises(ValueError, match="no inputs"):
        flip_consistency(LeftVsRight(), [])


class MeanClassifier(nn.Module):
    """Class from the sign of the image mean: a circular shift permutes pixels, so it never changes the class."""

    def forward(self, x):
        mean = x.mean(dim=(-3, -2, -1))
        return torch.stack([mean, -mean], dim=-1)


class CornerClassifier(nn.Module):
    """Class from the sign of the top-left pixel: not shift invariant at all."""

    def forward(self, x):
        return torch.stack([x[:, 0, 0, 0], -x[:, 0, 0, 0]], dim=-1)


def test_shift_consistency_is_one_for_a_circularly_invariant_model_and_low_for_a_pixel_model():
    x = torch.randn(200, 1, 12, 12, generator=torch.Generator().manual_seed(3)) + 0.5  # means well away from 0
    data = [(x[i : i + 50], None) for i in range(0, 200, 50)]
    assert shift_consistency(MeanClassifier(), data, max_shift=3, padding="circular") == 1.0
    corner = shift_consistency(CornerClassifier(), data, max_shift=3)
    assert 0.3 < corner < 0.95
    assert shift_consistency(CornerClassifier(), data, max_shift=3) == corner  # seeded
    assert shift_consistency(CornerClassifier(), data, max_shift=0) == 1.0  # no shift: same input twice


def test_random_shift_is_a_crop_of_the_padded_input_within_range():
    s = 2
    x = torch.randn(16, 2, 6, 7, generator=torch.Generator().manual_seed(4))
    shifted = random_shift(x, s, torch.Generator().manual_seed(0))
    padded = F.pad(x, [s] * 4, mode="reflect")
    assert shifted.shape == x.shape
    seen = set()
    for b in range(16):
        matches = [(i, j) for i in range(2 * s + 1) for j in range(2 * s + 1)
                   if torch.equal(shifted[b], padded[b, :, i : i + 6, j : j + 7])]
        assert matches, f"sample {b} is not a crop of the padded input"
        seen.add(matches[0])
    assert len(seen) > 1  # offsets differ between samples


def test_random_shift_circular_equals_roll_and_works_in_1d():
    x = torch.arange(10.0).reshape(1, 1, 10).repeat(8, 1, 1)
    shifted = random_shift(x, 3, torch.Generator().manual_seed(0), padding="circular")
    for b in range(8):
        assert any(torch.equal(shifted[b], x[b].roll(-o, dims=-1)) for o in range(-3, 4))
    with pytest.raises(ValueError, match="max_shift < spatial size"):
        random_shift(torch.randn(1, 1, 3, 3), 3)
    with pytest.raises(ValueError, match="padding must be one of"):
        random_shift(x, 1, padding="mirror")
