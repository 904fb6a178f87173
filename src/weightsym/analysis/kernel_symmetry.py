"""How symmetric are a network's conv kernels? (Alsallakh et al. 2025, arXiv 2503.19215; docs/science.md §2.)

For a 2-D conv weight W of shape (N out, C in, kh, kw) the **mean kernel** is

    K = (1 / NC) Σₙ Σ_c W[n, c]                                   (shape kh × kw)

and its **D4 symmetry score**, with K̂ = K / ‖K‖_F and 𝒯 the non-identity elements of the dihedral group D4
acting on the kernel as on a square image, is

    S(K) = 1 − (1 / (2|𝒯|)) Σ_{T∈𝒯} ‖T(K̂) − K̂‖_F   ∈ [0, 1]   (1 = invariant under all of D4).

Because ‖T(K̂)‖_F = ‖K̂‖_F = 1, each term ‖T(K̂) − K̂‖_F lies in [0, 2], so S is an average of the **per-transform
scores** s_T(K) = 1 − ‖T(K̂) − K̂‖_F / 2, each in [0, 1]: S(K) = mean_T s_T(K).

The seven non-identity elements of D4 (row 0 at the top, as ``imshow`` draws a kernel):

=============  ===========================================  ============================
name           action on K (k × k)                          index map (i, j) ↦ …
=============  ===========================================  ============================
hflip          mirror left-right, K J                       (i, k−1−j)
vflip          mirror top-bottom, J K                       (k−1−i, j)
transpose      reflect about the main diagonal, Kᵀ          (j, i)
antitranspose  reflect about the anti-diagonal, J Kᵀ J      (k−1−j, k−1−i)
rot90          rotate 90° counter-clockwise (``np.rot90``)
rot180         rotate 180°, J K J                           (k−1−i, k−1−j)
rot270         rotate 90° clockwise
=============  ===========================================  ============================

**Non-square kernels** (kh ≠ kw) are not mapped onto themselves by transposes and quarter turns; for them 𝒯 is the
subgroup that applies, {hflip, vflip, rot180} (the Klein four-group minus the identity), and ``transform_scores``
holds only those three. For a 1 × k kernel ``vflip`` is trivially the identity (score 1).

**Zero kernels** have no direction: S is NaN for K = 0, and all-zero individual kernels are left out of
``kernel_score`` (NaN when every kernel is zero).

Example (a 3 × 3 kernel with a single off-centre 1 is fixed only by ``hflip``; each of the six other transforms
moves the 1, so ‖T(K̂) − K̂‖_F = √2 and S = 1 − 6√2 / 14):

>>> import math, torch
>>> from weightsym.analysis import symmetry_score
>>> K = torch.zeros(3, 3); K[0, 1] = 1.0
>>> round(symmetry_score(K), 6) == round(1 - 3 * math.sqrt(2) / 7, 6)
True
>>> symmetry_score(torch.ones(3, 3))
1.0
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from weightsym.symmetry import d4

__all__ = [
    "D4_TRANSFORMS",
    "LayerSymmetry",
    "applicable_transforms",
    "kernel_scores",
    "kernel_symmetry",
    "mean_kernel",
    "symmetry_residuals",
    "symmetry_score",
    "transform_scores",
]

# The seven non-identity elements of D4, each acting on the last two axes (rows, columns) of a tensor: the group is
# defined once, in weightsym.symmetry.d4 (the same elements generate the spatial tyings of the same names).
D4_TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    name: functools.partial(d4.apply, name) for name in d4.ELEMENTS}

# The transforms that map a non-square (kh ≠ kw) kernel onto the same shape.
_RECTANGULAR_TRANSFORMS = d4.RECTANGULAR



def applicable_transforms(shape: tuple[int, int] | torch.Size) -> tuple[str, ...]:
    """Names of the D4 elements that map a (kh, kw) kernel onto itself: all seven if kh == kw, else
    hflip, vflip and rot180.

    >>> applicable_transforms((3, 3))[:3], applicable_transforms((1, 3))
    (('hflip', 'vflip', 'transpose'), ('hflip', 'vflip', 'rot180'))
    """
    kh, kw = int(shape[-2]), int(shape[-1])
    return tuple(D4_TRANSFORMS) if kh == kw else _RECTANGULAR_TRANSFORMS


def mean_kernel(weight: torch.Tensor) -> torch.Tensor:
    """Mean kernel K = (1/NC) Σₙ Σ_c W[n, c] of a conv weight (N, C, kh, kw), in float64.

    >>> W = torch.arange(16.0).reshape(2, 2, 2, 2)
    >>> mean_kernel(W).tolist()
    [[6.0, 7.0], [8.0, 9.0]]
    """
    if weight.ndim != 4:
        raise ValueError(f"mean_kernel needs a 2-D conv weight (out, in, kh, kw); got shape {tuple(weight.shape)}")
    return weight.detach().to(torch.float64).mean(dim=(0, 1))


def _per_transform(kernels: torch.Tensor) -> dict[str, torch.Tensor]:
    """s_T for each applicable T, batched over the leading axes of ``kernels`` (..., kh, kw); NaN for zero kernels."""
    kernels = kernels.detach().to(torch.float64)
    norms = torch.linalg.vector_norm(kernels, dim=(-2, -1), keepdim=True)
    unit = kernels / norms  # NaN where the kernel is zero, and that NaN propagates to every score
    scores = {}
    for name in applicable_transforms(kernels.shape):
        distance = torch.linalg.vector_norm(D4_TRANSFORMS[name](unit) - unit, dim=(-2, -1))
        scores[name] = 1.0 - distance / 2.0
    return scores


def transform_scores(kernel: torch.Tensor) -> dict[str, float]:
    """Per-transform scores s_T(K) = 1 − ‖T(K̂) − K̂‖_F / 2 of one kernel (kh, kw), for each applicable T.

    A kernel symmetric under hflip only:

    >>> K = torch.tensor([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    >>> s = transform_scores(K)
    >>> s["hflip"], s["vflip"] < 1, s["transpose"] < 1
    (1.0, True, True)
    """
    if kernel.ndim != 2:
        raise ValueError(f"transform_scores takes one kernel (kh, kw); got shape {tuple(kernel.shape)}")
    return {name: float(score) for name, score in _per_transform(kernel).items()}


def symmetry_score(kernel: torch.Tensor) -> float:
    """D4 symmetry score S(K) = mean over applicable T of s_T(K) (see module docstring); NaN for K = 0.

    >>> K = torch.zeros(3, 3); K[1, 1] = 1.0; K[0, 1] = 1.0   # centre + top edge: each moved term is 1
    >>> abs(symmetry_score(K) - 4 / 7) < 1e-12
    True
    """
    if kernel.ndim != 2:
        raise ValueError(f"symmetry_score takes one kernel (kh, kw); got shape {tuple(kernel.shape)}")
    scores = _per_transform(kernel)
    return float(torch.stack(list(scores.values())).mean())


def kernel_scores(weight: torch.Tensor) -> torch.Tensor:
    """S(W[n, c]) for every individual kernel of a conv weight (N, C, kh, kw): a float64 tensor (N, C), NaN where
    the kernel is all zero.

    >>> W = torch.ones(2, 3, 3, 3)
    >>> kernel_scores(W).shape, bool((kernel_scores(W) == 1).all())
    (torch.Size([2, 3]), True)
    """
    if weight.ndim != 4:
        raise ValueError(f"kernel_scores needs a 2-D conv weight (out, in, kh, kw); got shape {tuple(weight.shape)}")
    return torch.stack(list(_per_transform(weight).values())).mean(dim=0)


def symmetry_residuals(weight: torch.Tensor) -> dict[str, float]:
    """Relative distance of a weight to each symmetry's subspace: ‖W − expand(project(W))‖_F / ‖W‖_F.

    ``project`` is the orbit average, i.e. the orthogonal projection onto the tied weights, so the residual is 0
    exactly when W obeys the symmetry and at most 1. Every orbit tying of the registry that applies to W's shape is
    reported (channel symmetries need out == in); the matrix parameterizations (``ChannelMap``: ``average`` spans the
    same subspace as ``triangular``, ``eigen`` and ``lowrank`` are not fixed linear subspaces) are skipped;
    ``repeat`` is the registry default (``get_symmetry("repeat")``: 2 copies along out). NaN entries for W = 0.

    >>> import weightsym as ws
    >>> sym = ws.get_symmetry("transpose")
    >>> W = sym.expand(torch.randn(sym.free_count((4, 4, 3, 3))), (4, 4, 3, 3))
    >>> symmetry_residuals(W)["transpose"] < 1e-6
    True
    """
    from weightsym.symmetry import ChannelMap, available_symmetries, get_symmetry

    weight = weight.detach()
    shape = tuple(weight.shape)
    norm = float(torch.linalg.vector_norm(weight.to(torch.float64)))
    residuals: dict[str, float] = {}
    for plane in ("channel", "spatial"):
        for name in available_symmetries(plane):
            symmetry = get_symmetry(name, plane)
            if isinstance(symmetry, ChannelMap):
                continue
            applies, _reason = symmetry.applies_to(shape)
            if not applies:
                continue
            with torch.no_grad():
                tied = symmetry.expand(symmetry.project(weight), shape)
            distance = float(torch.linalg.vector_norm((weight - tied).to(torch.float64)))
            residuals[name] = distance / norm if norm > 0 else math.nan
    return residuals


@dataclass
class LayerSymmetry:
    """Symmetry of one conv layer's kernels (see the module docstring for the definitions).

    Attributes:
        name: module name (``layer1.0.conv2``); for a state dict, the key without its ``.weight`` suffix.
        shape: weight shape (out, in, kh, kw).
        mean_kernel: K, float64 (kh, kw).
        score: S(K), the D4 score of the mean kernel (subgroup {hflip, vflip, rot180} for kh ≠ kw).
        transform_scores: s_T(K) for each applicable T.
        kernel_score: mean of S(W[n, c]) over the non-zero individual kernels.
        stride, padding, padding_mode: from the module; None when only a state dict was given.
        residuals: symmetry name → ‖W − expand(project(W))‖ / ‖W‖ (see ``symmetry_residuals``).
        symmetry: name of the symmetry the layer is constrained with (``ws.symmetric_layers``), else None.
        chance: S(K)'s chance level, when asked for (:func:`weightsym.analysis.chance.attach_chance`): ``{"score",
            "mean", "std", "z", "percentile", "draws"}`` over random tap orders of the same kernels.
    """

    name: str
    shape: tuple[int, ...]
    mean_kernel: torch.Tensor
    score: float
    transform_scores: dict[str, float]
    kernel_score: float
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | str | None = None
    padding_mode: str | None = None
    residuals: dict[str, float] = field(default_factory=dict)
    symmetry: str | None = None
    chance: dict[str, float] | None = None

    @property
    def strided(self) -> bool | None:
        """True if any stride > 1, None if the stride is unknown (state dict)."""
        return None if self.stride is None else any(s > 1 for s in self.stride)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: tensors become nested lists, tuples lists, NaN stays float('nan')."""
        out = asdict(self)
        out["mean_kernel"] = self.mean_kernel.tolist()
        out["shape"] = list(self.shape)
        out["stride"] = None if self.stride is None else list(self.stride)
        out["padding"] = list(self.padding) if isinstance(self.padding, tuple) else self.padding
        out["strided"] = self.strided
        return out


def _layer_record(
    name: str, weight: torch.Tensor, module: nn.Module | None, symmetry: str | None, residuals: bool
) -> LayerSymmetry:
    K = mean_kernel(weight)
    per_kernel = kernel_scores(weight)
    finite = per_kernel[~per_kernel.isnan()]
    return LayerSymmetry(
        name=name,
        shape=tuple(weight.shape),
        mean_kernel=K,
        score=symmetry_score(K),
        transform_scores=transform_scores(K),
        kernel_score=float(finite.mean()) if finite.numel() else math.nan,
        stride=None if module is None else tuple(module.stride),
        padding=None if module is None else (module.padding if isinstance(module.padding, str) else tuple(module.padding)),
        padding_mode=None if module is None else module.padding_mode,
        residuals=symmetry_residuals(weight) if residuals else {},
        symmetry=symmetry,
    )


def _constrained_layers(model: nn.Module) -> dict[int, str]:
    """id(module) → symmetry spec for symmetrized layers."""
    from weightsym.nn import symmetric_layers

    return {id(module): symmetry.spec for param_name, module, symmetry in symmetric_layers(model)
            if param_name == "weight" or param_name.endswith(".weight")}


def _is_kernel(tensor: torch.Tensor) -> bool:
    return tensor.ndim == 4 and tensor.shape[-1] * tensor.shape[-2] > 1


def kernel_symmetry(
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor], residuals: bool = True
) -> list[LayerSymmetry]:
    """One ``LayerSymmetry`` per 2-D conv layer with a kernel larger than 1 × 1, in network order.

    ``residuals=False`` leaves ``LayerSymmetry.residuals`` empty (skips one projection per symmetry and layer).

    *Module*: every layer whose kind has 2-D conv kernels to analyse (the ``kernel_analysis`` column of the table of
    layer kinds, :mod:`weightsym.nn.layers`: ``nn.Conv2d``, subclasses included) in ``named_modules()`` order —
    registration order, which is network order for sequentially defined models — using ``module.weight``, which for a
    symmetrized layer is the dense expanded weight; stride, padding and padding mode come from the module. 1-D/3-D
    convs, transposed convs and 1 × 1 convs are skipped.

    *State dict* (e.g. ``safetensors.torch.load_file(path)``): every 4-D floating tensor with kh·kw > 1, in key order;
    stride/padding are unknown (None). Keys inside ``parametrizations.`` (the stored free parameters of symmetrized
    layers) are skipped: read weightsym weight files with ``weightsym.analysis.load_state_dict``, which expands them
    to dense weights, or load the checkpoint into its model and pass the model.

    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.Conv2d(8, 4, 1))
    >>> layers = kernel_symmetry(net)
    >>> [(r.name, r.stride, r.strided) for r in layers]
    [('0', (1, 1), False), ('2', (2, 2), True)]
    >>> [r.name for r in kernel_symmetry(net.state_dict())]
    ['0', '2']
    """
    if isinstance(model_or_state_dict, nn.Module):
        from weightsym.nn.layers import layer_kind

        model = model_or_state_dict
        constrained = _constrained_layers(model)
        records = []
        with torch.no_grad():
            for name, module in model.named_modules():
                kind = layer_kind(module)
                if kind is None or not kind.kernel_analysis:
                    continue
                weight = module.weight
                if isinstance(weight, nn.parameter.UninitializedParameter):
                    raise ValueError(
                        f"conv `{name}` is lazy and not initialised yet; run one forward pass before kernel_symmetry"
                    )
                if not _is_kernel(weight):
                    continue
                records.append(_layer_record(name, weight, module, constrained.get(id(module)), residuals))
        return records
    if isinstance(model_or_state_dict, Mapping):
        records = []
        for key, tensor in model_or_state_dict.items():
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or not _is_kernel(tensor):
                continue
            if "parametrizations." in key:
                continue
            name = key[: -len(".weight")] if key.endswith(".weight") else key
            records.append(_layer_record(name, tensor, None, None, residuals))
        return records
    raise TypeError(
        f"kernel_symmetry takes an nn.Module or a state dict (name -> tensor); got {type(model_or_state_dict).__name__}"
    )
