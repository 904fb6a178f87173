"""Pre-activation Wide ResNets (Zagoruyko & Komodakis 2016) with basic or bottleneck blocks, for 32x32 inputs.

Layout (docs/science.md §1.2): stem ``conv0`` 3x3 3→16; three groups ``group1..group3`` of widths 16w, 32w, 64w
with strides 1, 2, 2 and ``n = (depth - 4) / 6`` blocks each; then BN-ReLU, global average pool and the classifier ``fc``. Convs have
no bias. Every block is pre-activation:

* ``basic`` (ni→no): BN-ReLU-``conv1`` 3x3 (ni→no, carries the stride) - BN-ReLU-[dropout]-``conv2`` 3x3 (no→no).
* ``bottleneck`` (ni→no, m = no/4): BN-ReLU-``conv1`` 1x1 (ni→m) - BN-ReLU-``conv2`` 3x3 (m→m, carries the stride) -
  BN-ReLU-[dropout]-``conv3`` 1x1 (m→no).

When ni ≠ no or the stride is not 1, the shortcut is a 1x1 conv ``downsample`` applied to the *activated* input
(BN-ReLU is shared with the residual branch, as in the reference WRN code); otherwise the shortcut is the identity.

The square layers, where channel symmetries apply, are ``conv2`` of every bottleneck block and, in basic blocks,
``conv2`` always and ``conv1`` whenever ni == no. Symmetry is applied from outside (``weightsym.nn``); this file is plain
PyTorch.

Example:
    >>> import torch
    >>> model = wrn(16, 4, block="bottleneck")
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> sum(p.numel() for p in model.parameters()) == wrn_param_count(16, 4, "bottleneck")
    True
"""

from __future__ import annotations

import torch
from torch import nn

BLOCK_TYPES = ("basic", "bottleneck")


# How the weights start (``WideResNet(init_scheme=...)``).
INIT_SCHEMES = {
    "fan_out": "He-normal convs with fan_out (std sqrt(2/fan_out)), BatchNorm weight 1, PyTorch's default "
               "classifier weight (this library's default)",
    "paper": "Hu et al.'s code (from the WRN reference code): He-normal convs with fan_in (std sqrt(2/fan_in)), "
             "BatchNorm weight ~ U(0, 1), He-normal (fan_in) classifier weight",
}


def _check_args(depth: int, width: float, block: str) -> int:
    """Validate WRN arguments; return the number of blocks per group."""
    if block not in BLOCK_TYPES:
        raise ValueError(f"wrn: block={block!r} is not one of {BLOCK_TYPES}")
    if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6 != 0:
        raise ValueError(f"wrn: depth={depth!r} must be 6n+4 with n >= 1 (e.g. 10, 16, 22, 28, 40)")
    smallest = 0.25 if block == "bottleneck" else 1 / 16  # a bottleneck's middle conv needs 16w/4 >= 1 channel
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width >= smallest:
        raise ValueError(f"wrn: width={width!r} must be a number >= {smallest:g} (e.g. 1, 2, 4, 8, 10, or 3.5 for "
                         "a narrower net: group widths are int(16w), int(32w), int(64w))")
    return (depth - 4) // 6


def group_widths(width: float) -> tuple[int, int, int]:
    """Output channels of the three groups: (16w, 32w, 64w), truncated to integers for a fractional ``w`` (as the
    paper's code does: ``int(3.5 * 16) = 56``)."""
    return (int(16 * width), int(32 * width), int(64 * width))


class BasicBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3 (ni→no, stride) - BN-ReLU-[dropout]-conv3x3 (no→no)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.downsample = None
        if in_channels != out_channels or stride != 1:
            self.downsample = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = torch.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(activated)
        out = self.conv1(activated)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        return out + shortcut


class BottleneckBlock(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-conv1x1 (ni→m) - BN-ReLU-conv3x3 (m→m, stride) -
    BN-ReLU-[dropout]-conv1x1 (m→no), with m = no // 4 (rounded down, as in the paper's code)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        if out_channels < 4:
            raise ValueError(f"BottleneckBlock: out_channels={out_channels} must be >= 4 (the middle conv has "
                             "out_channels // 4 channels)")
        mid = out_channels // 4
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv3 = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.downsample = None
        if in_channels != out_channels or stride != 1:
            self.downsample = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = torch.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(activated)
        out = self.conv1(activated)
        out = self.conv2(torch.relu(self.bn2(out)))
        out = self.conv3(self.dropout(torch.relu(self.bn3(out))))
        return out + shortcut


class WideResNet(nn.Module):
    """Pre-activation Wide ResNet WRN-depth-width for 32x32 images; see the module docstring for the layout.

    Module names: ``conv0`` (stem), ``group{1,2,3}.{i}.conv{1,2[,3]}``, ``group{g}.{i}.downsample``, ``bn`` (final),
    ``fc``. Example: ``WideResNet(16, 4)(torch.zeros(1, 3, 32, 32)).shape == (1, 10)``.
    """

    def __init__(self, depth: int, width: float, block: str = "basic", num_classes: int = 10, dropout: float = 0.0,
                 in_channels: int = 3, init_scheme: str = "fan_out"):
        super().__init__()
        blocks_per_group = _check_args(depth, width, block)
        if init_scheme not in INIT_SCHEMES:
            raise ValueError(f"wrn: init_scheme={init_scheme!r}; use one of: "
                             + "; ".join(f"{k!r} ({v})" for k, v in INIT_SCHEMES.items()))
        self.init_scheme = init_scheme
        block_class = BasicBlock if block == "basic" else BottleneckBlock
        self.depth, self.width, self.block, self.num_classes = depth, width, block, num_classes
        self.conv0 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        channels = 16
        for index, (out_channels, stride) in enumerate(zip(group_widths(width), (1, 2, 2)), start=1):
            layers = []
            for i in range(blocks_per_group):
                layers.append(block_class(channels, out_channels, stride if i == 0 else 1, dropout))
                channels = out_channels
            self.add_module(f"group{index}", nn.Sequential(*layers))
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``init_scheme="fan_out"``: He-normal (fan_out) convs, BN weight 1 / bias 0, PyTorch's default classifier
        weight, zero classifier bias.  ``"paper"`` (Hu et al.'s code, ``models/utils.py``): He-normal (fan_in) convs
        and classifier weight, BN weight ~ U(0, 1) / bias 0, zero classifier bias."""
        paper = self.init_scheme == "paper"
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in" if paper else "fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                if paper:
                    nn.init.uniform_(module.weight, 0.0, 1.0)
                else:
                    nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                if paper:
                    nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv0(x)
        out = self.group3(self.group2(self.group1(out)))
        out = torch.relu(self.bn(out))
        out = torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)
        return self.fc(out)


def wrn(depth: int, width: float, block: str = "basic", num_classes: int = 10, dropout: float = 0.0,
        init_scheme: str = "fan_out") -> WideResNet:
    """WRN-depth-width with ``basic`` or ``bottleneck`` blocks. ``wrn(28, 10)`` is the classic WRN-28-10 (36.5M).
    ``init_scheme``: see :data:`INIT_SCHEMES`."""
    return WideResNet(depth, width, block=block, num_classes=num_classes, dropout=dropout, init_scheme=init_scheme)


def wrn_param_count(depth: int, width: float, block: str = "basic", num_classes: int = 10,
                    in_channels: int = 3) -> int:
    """Closed-form number of parameters of ``wrn(depth, width, block, num_classes)`` (weights, BN affine, fc bias).

    With n = (depth-4)/6 blocks per group, widths c_g = int(16w·2^(g-1)), a BN layer on c channels counts 2c:

    * stem: 9·3·16; final BN 2·64w; fc 64w·K + K.
    * basic block ni→no: 2ni + 9·ni·no + 2no + 9·no² (+ ni·no for ``downsample`` if ni ≠ no or stride ≠ 1).
    * bottleneck ni→no, m = no // 4: 2ni + ni·m + 2m + 9m² + 2m + m·no (+ ni·no for ``downsample``).

    The first block of group g has ni = c_{g-1} (c_0 = 16); the others have ni = no = c_g. Groups 2 and 3 have
    stride 2 in their first block, so they always have a ``downsample``. BN running statistics are buffers, not counted.

    Example: ``wrn_param_count(28, 10) == 36479194`` (WRN-28-10 on CIFAR-10).
    """
    n = _check_args(depth, width, block)
    total = 9 * in_channels * 16
    ni = 16
    for g, no in enumerate(group_widths(width)):
        for i in range(n):
            stride = 2 if (g > 0 and i == 0) else 1
            if block == "basic":
                total += 2 * ni + 9 * ni * no + 2 * no + 9 * no * no
            else:
                m = no // 4
                total += 2 * ni + ni * m + 2 * m + 9 * m * m + 2 * m + m * no
            if ni != no or stride != 1:
                total += ni * no
            ni = no
    total += 2 * ni + ni * num_classes + num_classes
    return total
