"""``StructuredLayer``: one symmetric Linear/Conv1d/Conv2d replaced by its structure-exploiting inference kernel.

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
from weightsym.symmetry import ChannelMap, Composite, SpatialTying, plane_orbits

CONV_TYPES = (nn.Conv1d, nn.Conv2d)


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


class StructuredLayer(nn.Module):
    """Inference-only replacement of a symmetric Linear/Conv1d/Conv2d.

    Attributes: ``plan`` (channel kernel or ``"dense"``), ``spatial`` (a :class:`SpatialFold` or None),
    ``product`` (``"conv"`` or ``"matmul"`` for the 1x1 product after a spatial fold), ``multiply_fraction``
    (multiplies per output position relative to the dense layer).
    """

    def __init__(self, kind: str, plan: str, copies: int, weights: list[torch.Tensor], bias: torch.Tensor | None,
                 n_in: int, n_out: int, conv: dict | None, spatial: SpatialFold | None, product: str,
                 dense_numel: int):
        super().__init__()
        self.kind, self.plan, self.copies = kind, plan, int(copies)
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.in_mode, self.out_mode = cf.PLANS.get(plan, ("none", "none"))
        self.conv = conv or {}
        self.spatial = spatial
        self.product = product
        self.dim = -1 if kind == "linear" else 1
        for i, w in enumerate(weights):
            self.register_buffer(f"weight{i}", w.contiguous())
        self.branches = len(weights)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        # gathers of the channel folds (non-persistent: derived from the sizes)
        self.register_buffer("fold_idx", cf.fold_index(self.n_in), persistent=False)
        self.register_buffer("mirror_idx", cf.mirror_index(self.n_out), persistent=False)
        # a bias is added by the product itself when no output transform follows (one fused op)
        self.fused_bias = self.out_mode in ("none", "centro") and bias is not None
        if self.out_mode == "centro" and bias is not None:
            # y₁ = y_s + y_a and y₂ = J (y_s − y_a): biases (b₁ + J b₂)/2 on y_s (b_mid in the middle) and
            # (b₁ − J b₂)/2 on y_a make the combined output carry exactly b, inside the two products
            b = bias.detach().to(torch.float64)
            h, n = self.n_out // 2, self.n_out
            head, tail = b[:h], b[n - h:].flip(0)
            sym = torch.cat([(head + tail) / 2, b[h:h + n % 2]])
            self.register_buffer("bias0", sym.to(bias.dtype))
            self.register_buffer("bias1", ((head - tail) / 2).to(bias.dtype))
        self.multiply_fraction = sum(w.numel() for w in weights) / dense_numel

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
        from weightsym.nn import symmetric_parametrization

        param = symmetric_parametrization(module, "weight")
        if param is None or not isinstance(module, (nn.Linear, *CONV_TYPES)):
            return None
        channel, spatial = split_symmetry(param.symmetry)
        weight = dense_weight(module)
        R, C = weight.shape[:2]
        plan, copies = "dense", 1
        if use_channel and channel is not None and not isinstance(channel, ChannelMap) \
                and param.row_blocks == 1 and param.block_mask is None:
            found = cf.channel_plan(channel, R, C)
            if found is not None:
                plan, copies = found
        fold = None
        if use_spatial and spatial is not None and isinstance(module, CONV_TYPES):
            kh, kw = (1, *module.kernel_size) if len(module.kernel_size) == 1 else module.kernel_size
            ids = plane_orbits(spatial.generators, kh, kw)
            if int(ids.max()) + 1 < kh * kw:
                fold = SpatialFold(ids, module.kernel_size, module.stride, module.dilation,
                                   module._reversed_padding_repeated_twice, module.padding_mode, module.groups)
        if plan == "dense" and fold is None:
            return None
        weights = [weight] if plan == "dense" else cf.reduce_weight(weight, plan, copies)
        if fold is not None:
            weights = [fold_weight(w, ids, module.groups) for w in weights]
            if product != "matmul":
                weights = [w.view(*w.shape, *([1] * len(module.kernel_size))) for w in weights]
        groups = getattr(module, "groups", 1)
        if fold is None:
            product = "conv"  # the product is the layer's own op with the reduced weight
        elif product == "matmul" and groups != 1:
            product = "conv"
            weights = [w.view(*w.shape[:2], *([1] * len(module.kernel_size))) if w.dim() == 2 else w
                       for w in weights]
        conv = None
        if isinstance(module, CONV_TYPES):
            zeros = module.padding_mode == "zeros"
            conv = {
                "stride": module.stride, "dilation": module.dilation, "groups": module.groups,
                "padding": module.padding if zeros else 0,
                "pad": None if zeros else module._reversed_padding_repeated_twice,
                "mode": module.padding_mode, "ndim": len(module.kernel_size),
            }
        kind = "linear" if isinstance(module, nn.Linear) else "conv"
        return cls(kind, plan, copies, weights, module.bias, C * module.groups if kind == "conv" else C, R, conv,
                   fold, product, weight.numel())

    def extra_repr(self) -> str:
        return (f"{self.kind}, {self.n_in}->{self.n_out}, plan={self.plan}, spatial_fold={self.spatial is not None}, "
                f"product={self.product}, multiplies={self.multiply_fraction:.3f}")

    # -- forward --------------------------------------------------------------------------------------------------
    def _product(self, x: torch.Tensor, weight: torch.Tensor, branch: int = 0) -> torch.Tensor:
        bias = None
        if self.fused_bias:
            bias = getattr(self, f"bias{branch}") if self.out_mode == "centro" else self.bias
        if self.kind == "linear":
            return F.linear(x, weight, bias)
        conv = self.conv
        if self.spatial is not None:
            if self.product == "mkldnn-cl" and x.dim() == 4:
                # fold in channels-last layout: oneDNN then reads the folded maps without a reorder
                x = x.contiguous(memory_format=torch.channels_last)
            z = self.spatial(x)
            if self.product.startswith("mkldnn") and z.dtype == torch.float32 and z.device.type == "cpu" \
                    and conv["ndim"] == 2 and not _compiling():
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "conv" and x.dim() == self.conv["ndim"] + 1:  # unbatched input, as nn.Conv accepts
            return self.forward(x.unsqueeze(0)).squeeze(0)
        d = self.dim
        if self.in_mode == "pair":
            inputs = [cf.pair_fold(x, d, self.fold_idx)]
        elif self.in_mode == "centro":
            inputs = list(cf.pair_fold_diff(x, d, self.fold_idx))
        elif self.in_mode == "chunks":
            inputs = [cf.chunk_sum(x, d, self.copies, self.n_in)]
        else:
            inputs = [x]
        outs = [self._product(t, getattr(self, f"weight{i}"), i) for i, t in enumerate(inputs)]
        if self.out_mode == "mirror":
            y = cf.mirror(outs[0], d, self.mirror_idx)
        elif self.out_mode == "centro":
            y = cf.centro_combine(outs[0], outs[1], d, self.n_out)
        elif self.out_mode == "tile":
            y = cf.tile(outs[0], d, self.copies)
        else:
            y = outs[0]
        if self.bias is not None and not self.fused_bias:
            y = y + (self.bias if self.kind == "linear" else self.bias.view(-1, *([1] * (y.dim() - 2))))
        if self.product == "mkldnn-cl" and not x.is_contiguous(memory_format=torch.channels_last):
            y = y.contiguous()  # hand back the caller's layout
        return y
