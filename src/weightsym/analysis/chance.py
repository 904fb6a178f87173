"""What a mean-kernel symmetry score would be by chance (issue 27 item 1).

A layer's mean kernel K = mean over (n, c) of W[n, c] scores S(K) (:func:`~weightsym.analysis.symmetry_score`).
Random kernels do not score 0: averaging many kernels whose taps carry different mean values (a layer's centre tap
is often larger) gives a mean kernel with structure of its own, and even i.i.d. taps score around 0.4 for 3x3. So a
score means something only against its **chance level**: the distribution of S over layers with the same shape and
the same values, but with each kernel's taps in a random order (every W[n, c] permuted independently, so the
per-layer value distribution is kept exactly and any spatial arrangement is destroyed).

:func:`chance_level` draws that distribution and returns the observed score with its chance mean, standard
deviation, z-score and percentile (the fraction of chance draws at or below the observed score).

Example:
    >>> import torch
    >>> w = torch.randn(32, 32, 3, 3, generator=torch.Generator().manual_seed(0))
    >>> c = chance_level(w, draws=100, seed=0)       # random weights: the observed score sits inside its chance range
    >>> 0.05 < c.percentile < 0.95, abs(c.z) < 2.5
    (True, True)
    >>> sym = w + w.flip(-1) + w.flip(-2) + w.flip(-1, -2)
    >>> sym = sym + sym.transpose(-1, -2)                    # every kernel invariant under all of D4: S = 1
    >>> c = chance_level(sym, draws=100, seed=0)
    >>> round(c.score, 6), c.percentile, c.mean < 0.99
    (1.0, 1.0, True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from weightsym.analysis.kernel_symmetry import _per_transform, mean_kernel, symmetry_score

DRAWS = 200
CHUNK = 16  # draws permuted at a time (memory: CHUNK x N x C x kh x kw)


@dataclass(frozen=True)
class ChanceLevel:
    """The observed mean-kernel score against its chance distribution (``draws`` tap permutations)."""

    score: float
    mean: float
    std: float
    z: float
    percentile: float
    draws: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"S = {self.score:.3f} against chance {self.mean:.3f} ± {self.std:.3f} (z = {self.z:+.1f}, "
                f"percentile {100 * self.percentile:.0f}, {self.draws} draws)")


def chance_scores(weight: torch.Tensor, draws: int = DRAWS, seed: int = 0) -> torch.Tensor:
    """S of the mean kernel of ``draws`` copies of ``weight`` (N, C, kh, kw), each with every kernel's taps permuted
    independently at random (float64, shape (draws,)); reproducible from ``seed``."""
    if weight.ndim != 4:
        raise ValueError(f"chance_scores needs a 2-D conv weight (out, in, kh, kw); got shape {tuple(weight.shape)}")
    if draws < 1:
        raise ValueError(f"chance_scores: draws={draws} must be >= 1")
    n, c, kh, kw = weight.shape
    taps = weight.detach().to(torch.float64).reshape(1, n * c, kh * kw)
    generator = torch.Generator().manual_seed(seed)
    scores = []
    for start in range(0, draws, CHUNK):
        count = min(CHUNK, draws - start)
        order = torch.rand(count, n * c, kh * kw, generator=generator).argsort(dim=-1)
        permuted = torch.gather(taps.expand(count, -1, -1), 2, order)
        kernels = permuted.mean(dim=1).reshape(count, kh, kw)
        scores.append(torch.stack(list(_per_transform(kernels).values())).mean(dim=0))
    return torch.cat(scores)


def chance_level(weight: torch.Tensor, draws: int = DRAWS, seed: int = 0) -> ChanceLevel:
    """The mean-kernel score of ``weight`` with its chance mean, std, z-score and percentile (see the module)."""
    observed = symmetry_score(mean_kernel(weight))
    chance = chance_scores(weight, draws, seed)
    chance = chance[~chance.isnan()]
    if chance.numel() == 0 or math.isnan(observed):
        return ChanceLevel(observed, math.nan, math.nan, math.nan, math.nan, draws)
    mean, std = float(chance.mean()), float(chance.std()) if chance.numel() > 1 else 0.0
    z = (observed - mean) / std if std > 0 else (math.inf if observed > mean else 0.0)
    percentile = float((chance <= observed).double().mean())
    return ChanceLevel(observed, mean, std, z, percentile, draws)


def attach_chance(source, layers: list, draws: int = DRAWS, seed: int = 0) -> list:
    """Set ``layer.chance`` on every :class:`~weightsym.analysis.kernel_symmetry.LayerSymmetry` of ``layers`` (from
    ``kernel_symmetry(source)``; ``source`` a module or a state dict) to its :func:`chance_level`; returns ``layers``."""
    import torch.nn as nn

    if isinstance(source, nn.Module):
        modules = dict(source.named_modules())
        weights = {layer.name: modules[layer.name].weight for layer in layers}
    else:
        weights = {layer.name: source.get(f"{layer.name}.weight", source.get(layer.name)) for layer in layers}
    with torch.no_grad():
        for layer in layers:
            layer.chance = chance_level(weights[layer.name], draws, seed).to_dict()
    return layers
