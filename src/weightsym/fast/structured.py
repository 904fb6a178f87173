"""``StructuredLayer``: one symmetric layer with fold kernels (Linear/Conv1d/Conv2d: the ``fold`` column of
:mod:`weightsym.nn.layers`) replaced by its structure-exploiting inference kernel.

The pipeline is ``channel fold of the input -> product(s) -> channel unfold of the output -> + bias``, where each
product is either a plain conv/linear with the *reduced* weight, or (for spatial symmetries) the orbit fold of
:mod:`weightsym.fast.spatial_fold` followed by a 1x1 product.  Everything is precomputed from the dense symmetric
weight at build time; the forward pass holds no gather and no expansion.

>>> import torch, weightsym as ws
>>> lin = torch.nn.Linear(8, 8)
>>> _ = ws.nn.attach(lin, "weight", ws.get_symmetry("block"))
>>> fast = StructuredLayer.build(lin)
>>> fast.multiply_fraction                     # a quarter of the dense multiplies
0.25
>>> x = torch.randn(3, 8)
>>> torch.allclose(fast(x), lin(x), atol=1e-6)
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from weightsym.fast import channel_fold as cf
from weightsym.fast.spatial_fold import SpatialFold, fold_weight
from weightsym.nn.layers import layer_kind
from weightsym.symmetry import ChannelMap, Composite, SpatialTying, plane_orbits


def fold_of(module: nn.Module) -> str | None:
    """Which fold kernels the table of layer kinds gives ``module``: ``"linear"``, ``"conv"`` or None (gather path
    only, or not a layer of the table)."""
    kind = layer_kind(module)
    return None if kind is None else kind.fold


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    if compiler is None:
        return False
    return bool(compiler.is_compiling() or (hasattr(compiler, "is_exporting") and compiler.is_exporting()))


def split_symmetry(symmetry):
    """``(channel part or None, spatial part or None)`` of a layer's symmetry."""
    if isinstance(symmetry, Composite):
        return symmetry.channel, symmetry.spatial
    if isinstance(symmetry, SpatialTying):
        return None, symmetry
    return symmetry, None


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The module's current (dense, symmetric) weight, detached: the one expansion done at build time."""
    with torch.no_grad():
        return module.weight.detach().clone()


def layer_structure(module: nn.Module, use_channel: bool = True, use_spatial: bool = True):
    """``(plan, copies, spatial orbit ids or None)`` of a symmetric Linear/Conv1d/Conv2d, or None if it has no
    structure that saves multiplies.

    The channel plan comes from the orbits of the channel symmetry (:func:`~weightsym.fast.channel_fold.channel_plan`;
    only for ungrouped layers without a gate mask), the spatial fold from the orbits of the spatial symmetry (when
    they are fewer than the kernel taps).
    """
    from weightsym.nn import symmetric_parametrization

    param = symmetric_parametrization(module, "weight")
    if param is None or fold_of(module) is None:
        return None
    channel, spatial = split_symmetry(param.symmetry)
    R, C = param.shape[:2]
    plan, copies = "dense", 1
    if use_channel and channel is not None and not isinstance(channel, ChannelMap) \
            and param.row_blocks == 1 and param.block_mask is None:
        found = cf.channel_plan(channel, R, C)
        if found is not None:
            plan, copies = found
    ids = None
    if use_spatial and spatial is not None and fold_of(module) == "conv":
        kh, kw = (1, *module.kernel_size) if len(module.kernel_size) == 1 else module.kernel_size
        orbit_ids = plane_orbits(spatial.generators, kh, kw)
        if int(orbit_ids.max()) + 1 < kh * kw:
            ids = orbit_ids
    if plan == "dense" and ids is None:
        return None
    return plan, copies, ids


def conv_options(module: nn.Module) -> dict | None:
    """The convolution settings a structured product needs (None for a Linear)."""
    if fold_of(module) != "conv":
        return None
    zeros = module.padding_mode == "zeros"
    return {
        "stride": module.stride, "dilation": module.dilation, "groups": module.groups,
        "padding": module.padding if zeros else 0,
        "pad": None if zeros else module._reversed_padding_repeated_twice,
        "mode": module.padding_mode, "ndim": len(module.kernel_size),
    }


class StructuredKernel(nn.Module):
    """The structure-exploiting pipeline of one symmetric Linear/Conv1d/Conv2d, with the weights given per call.

    ``run(x, weights, bias)``: channel fold of the input -> product(s) with the reduced ``weights`` -> channel unfold
    of the output -> + ``bias``.  :class:`StructuredLayer` (inference) calls it with weights precomputed once;
    :class:`weightsym.fast.training.FoldKernel` (training) with weights gathered from the free values at every step,
    so both paths run the same code.

    Attributes: ``plan`` (channel kernel or ``"dense"``), ``spatial`` (a :class:`SpatialFold` or None),
    ``product`` (``"conv"``, ``"matmul"``, ``"mkldnn"`` or ``"mkldnn-cl"`` for the 1x1 product after a spatial fold),
    ``multiply_fraction`` (multiplies per output position relative to the dense layer).
    """

    # channel folds as gathers (one pass each; what inference and export use) or as slices and flips (whose adjoints
    # are slices and flips too: what training uses, where a gather's adjoint would be a scatter)
    flips = False

    def __init__(self, kind: str, plan: str, copies: int, n_in: int, n_out: int, conv: dict | None,
                 spatial: SpatialFold | None, product: str, multiply_fraction: float, spatial_taps: int = 1):
        super().__init__()
        self.kind, self.plan, self.copies = kind, plan, int(copies)
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.in_mode, self.out_mode = cf.PLANS.get(plan, ("none", "none"))
        self.conv = conv or {}
        self.spatial = spatial
        self.product = product
        self.dim = -1 if kind == "linear" else 1
        # gathers of the channel folds (non-persistent: derived from the sizes)
        self.register_buffer("fold_idx", cf.fold_index(self.n_in), persistent=False)
        self.register_buffer("mirror_idx", cf.mirror_index(self.n_out), persistent=False)
        # a bias is added by the product itself when no output transform follows (one fused op)
        self.fuses_bias = self.out_mode in ("none", "centro")
        self.multiply_fraction = float(multiply_fraction)
        self.spatial_taps = spatial_taps

    def extra_repr(self) -> str:
        return (f"{self.kind}, {self.n_in}->{self.n_out}, plan={self.plan}, spatial_fold={self.spatial is not None}, "
                f"product={self.product}, multiplies={self.multiply_fraction:.3f}")

    def _branch_biases(self, bias: torch.Tensor) -> list[torch.Tensor]:
        """Biases added inside the products: ``b`` itself, or for ``centro`` (``y₁ = y_s + y_a``,
        ``y₂ = J (y_s − y_a)``) ``(b₁ + J b₂)/2`` (``b_mid`` in the middle) on ``y_s`` and ``(b₁ − J b₂)/2`` on ``y_a``,
        so the combined output carries exactly ``b``."""
        if self.out_mode != "centro":
            return [bias]
        n, h = self.n_out, self.n_out // 2
        head, tail = bias[:h], bias[n - h:].flip(0)
        return [torch.cat([(head + tail) * 0.5, bias[h:h + n % 2]]), (head - tail) * 0.5]

    def _product(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "linear":
            return F.linear(x, weight, bias)
        conv = self.conv
        if self.spatial is not None:
            if self.product == "mkldnn-cl" and x.dim() == 4:
                # fold in channels-last layout: oneDNN then reads the folded maps without a reorder
                x = x.contiguous(memory_format=torch.channels_last)
            z = self.spatial(x)
            if weight.dim() == 2 and self.product != "matmul":
                weight = weight.view(*weight.shape, *([1] * conv["ndim"]))
            if self.product.startswith("mkldnn") and z.dtype == torch.float32 and z.device.type == "cpu" \
                    and conv["ndim"] == 2 and not _compiling() and not (torch.is_grad_enabled() and
                                                                        (weight.requires_grad or z.requires_grad)):
                # oneDNN's 1x1 conv: torch routes NCHW 1x1 convs to a BLAS GEMM, which is far slower on some CPUs
                # (MKL on AMD); torch.export/compile cannot trace this op, so they take F.conv2d below
                return torch.mkldnn_convolution(z, weight, bias, [0, 0], [1, 1], [1, 1], conv["groups"])
            if self.product == "matmul":
                y = torch.matmul(weight, z.flatten(2))
                if bias is not None:
                    y = y + bias.unsqueeze(-1)
                return y.view(z.shape[0], weight.shape[0], *z.shape[2:])
            if conv["ndim"] == 1:
                return F.conv1d(z, weight, bias, groups=conv["groups"])
            return F.conv2d(z, weight, bias, groups=conv["groups"])
        if conv["pad"] is not None:
            x = F.pad(x, conv["pad"], mode=conv["mode"])
        op = F.conv1d if conv["ndim"] == 1 else F.conv2d
        return op(x, weight, bias, conv["stride"], conv["padding"], conv["dilation"], conv["groups"])

    def run(self, x: torch.Tensor, weights: list[torch.Tensor], bias: torch.Tensor | None) -> torch.Tensor:
        """The layer's output for input ``x`` from its reduced ``weights`` and its (dense) ``bias``."""
        if self.kind == "conv" and x.dim() == self.conv["ndim"] + 1:  # unbatched input, as nn.Conv accepts
            return self.run(x.unsqueeze(0), weights, bias).squeeze(0)
        d = self.dim
        if self.in_mode == "pair":
            inputs = [cf.pair_fold_flip(x, d, self.n_in) if self.flips else cf.pair_fold(x, d, self.fold_idx)]
        elif self.in_mode == "centro":
            inputs = list(cf.pair_fold_diff_flip(x, d, self.n_in) if self.flips else
                          cf.pair_fold_diff(x, d, self.fold_idx))
        elif self.in_mode == "chunks":
            inputs = [cf.chunk_sum(x, d, self.copies, self.n_in)]
        else:
            inputs = [x]
        biases = self._branch_biases(bias) if bias is not None and self.fuses_bias else [None] * len(inputs)
        outs = [self._product(t, w, b) for t, w, b in zip(inputs, weights, biases)]
        if self.out_mode == "mirror":
            y = cf.mirror_flip(outs[0], d, self.n_out) if self.flips else cf.mirror(outs[0], d, self.mirror_idx)
        elif self.out_mode == "centro":
            y = cf.centro_combine(outs[0], outs[1], d, self.n_out)
        elif self.out_mode == "tile":
            y = cf.tile(outs[0], d, self.copies)
        else:
            y = outs[0]
        if bias is not None and not self.fuses_bias:
            y = y + (bias if self.kind == "linear" else bias.view(-1, *([1] * (y.dim() - 2))))
        if self.product == "mkldnn-cl" and not x.is_contiguous(memory_format=torch.channels_last):
            y = y.contiguous()  # hand back the caller's layout
        return y


def build_kernel(module: nn.Module, cls=StructuredKernel, use_channel: bool = True, use_spatial: bool = True,
                 product: str = "mkldnn", **extra) -> StructuredKernel | None:
    """``cls(...)`` for a symmetric ``module`` (None if its structure saves no multiplies); see
    :meth:`StructuredLayer.build` for the options.  ``extra`` goes to ``cls``."""
    found = layer_structure(module, use_channel, use_spatial)
    if found is None:
        return None
    plan, copies, ids = found
    shape = tuple(module.weight.shape) if not hasattr(module, "parametrizations") else \
        module.parametrizations.weight[0].shape
    R, C = shape[:2]
    fold = None
    if ids is not None:
        fold = SpatialFold(ids, module.kernel_size, module.stride, module.dilation,
                           module._reversed_padding_repeated_twice, module.padding_mode, module.groups)
    groups = getattr(module, "groups", 1)
    if fold is None:
        product = "conv"  # the product is the layer's own op with the reduced weight
    elif product == "matmul" and groups != 1:
        product = "conv"
    rows, cols = cf.block_shape(plan, R, C, copies)
    taps = int(torch.Size(shape[2:]).numel())
    reduced = rows * cols * (fold.orbits if fold is not None else taps) * (2 if plan == "centro" else 1)
    if plan == "centro":  # two half-size products: ⌈n/2⌉² + ⌊n/2⌋·⌈n/2⌉ entries
        reduced = ((R + 1) // 2 * ((C + 1) // 2) + (R // 2) * ((C + 1) // 2)) * (fold.orbits if fold else taps)
    kind = fold_of(module)
    return cls(kind, plan, copies, C * groups if kind == "conv" else C, R, conv_options(module), fold, product,
               reduced / (R * C * taps), taps, **extra)


class StructuredLayer(StructuredKernel):
    """Inference-only replacement of a symmetric Linear/Conv1d/Conv2d: the pipeline of :class:`StructuredKernel`
    with its reduced weights computed once, at build time, from the dense symmetric weight (buffers ``weight0``,
    ``weight1``, ``bias``); the forward pass holds no gather and no expansion.
    """

    def __init__(self, kind, plan, copies, n_in, n_out, conv, spatial, product, multiply_fraction, spatial_taps,
                 weights: list[torch.Tensor], bias: torch.Tensor | None):
        super().__init__(kind, plan, copies, n_in, n_out, conv, spatial, product, multiply_fraction, spatial_taps)
        for i, w in enumerate(weights):
            self.register_buffer(f"weight{i}", w.contiguous())
        self.branches = len(weights)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, module: nn.Module, use_channel: bool = True, use_spatial: bool = True,
              product: str = "mkldnn") -> StructuredLayer | None:
        """The structured kernel of a symmetric ``module`` (None if its structure saves no multiplies).

        ``use_channel``/``use_spatial`` switch the channel or the spatial part off (that part then stays a dense
        product with the reduced weight); ``product`` picks the 1x1 product after a spatial fold: ``"mkldnn"``
        (oneDNN, eager float32 CPU; falls back to ``"conv"`` otherwise), ``"mkldnn-cl"`` (the same after moving the
        input to channels-last), ``"conv"`` (``F.conv2d``) or ``"matmul"``.
        """
        found = layer_structure(module, use_channel, use_spatial)
        if found is None:
            return None
        plan, copies, ids = found
        weight = dense_weight(module)
        weights = [weight] if plan == "dense" else cf.reduce_weight(weight, plan, copies)
        if ids is not None:
            weights = [fold_weight(w, ids, module.groups) for w in weights]
            if product != "matmul" or module.groups != 1:
                weights = [w.view(*w.shape, *([1] * len(module.kernel_size))) for w in weights]
        return build_kernel(module, cls, use_channel, use_spatial, product, weights=weights, bias=module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, [getattr(self, f"weight{i}") for i in range(self.branches)], self.bias)
