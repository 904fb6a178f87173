"""ResNet-18/34/50/101/152 (He et al. 2016) with the torchvision ImageNet layout, module names and parameter counts.

This is a from-scratch re-implementation (torchvision is not a dependency) that matches ``torchvision.models.resnetN``
name for name, so state dicts are interchangeable: ``conv1``, ``bn1``, ``layer1..layer4`` of blocks with
``conv1/bn1/conv2/bn2[/conv3/bn3]`` and ``downsample`` (``Sequential(conv1x1, bn)``), ``fc``. Bottleneck blocks put the
stride on the 3x3 ``conv2`` ("ResNet v1.5"), as torchvision does.

Parameter counts with 1000 classes: ResNet-18 11,689,512; ResNet-34 21,797,672; ResNet-50 25,557,032;
ResNet-101 44,549,160; ResNet-152 60,192,808.

The square layers, where channel symmetries apply, are the 3x3 ``conv2`` of every bottleneck (ResNet-50/101/152)
and, in basic blocks (ResNet-18/34), ``conv2`` always and ``conv1`` when the block keeps its width.

``small_input=True`` adapts the stem to 32x32 images (CIFAR): ``conv1`` becomes 3x3 stride 1 and the max-pool is
removed (``maxpool`` is an ``nn.Identity`` so names stay aligned).

Example:
    >>> import torch
    >>> model = resnet(18, num_classes=10, small_input=True)
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import torch
from torch import nn

# depth -> (block kind, blocks per stage)
RESNET_LAYOUTS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


class BasicBlock(nn.Module):
    """Post-activation basic block: conv3x3-BN-ReLU-conv3x3-BN, + shortcut, ReLU (torchvision ``BasicBlock``)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """Bottleneck: conv1x1 (ni→p) - conv3x3 (p→p, stride) - conv1x1 (p→4p), each with BN (torchvision ``Bottleneck``)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ImageNet ResNet (torchvision layout). Use :func:`resnet` to build one by depth.

    Example: ``ResNet("bottleneck", (3, 4, 6, 3))`` is ResNet-50.
    """

    def __init__(self, block: str, layers: tuple[int, int, int, int], num_classes: int = 1000,
                 small_input: bool = False, zero_init_residual: bool = False, in_channels: int = 3):
        super().__init__()
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"ResNet: block={block!r} must be 'basic' or 'bottleneck'")
        block_class = BasicBlock if block == "basic" else Bottleneck
        self.inplanes = 64
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block_class, 64, layers[0], 1)
        self.layer2 = self._make_layer(block_class, 128, layers[1], 2)
        self.layer3 = self._make_layer(block_class, 256, layers[2], 2)
        self.layer4 = self._make_layer(block_class, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block_class.expansion, num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)
                elif isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def _make_layer(self, block_class: type, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        out_channels = planes * block_class.expansion
        if stride != 1 or self.inplanes != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        layers = [block_class(self.inplanes, planes, stride, downsample)]
        self.inplanes = out_channels
        layers += [block_class(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet(depth: int, num_classes: int = 1000, small_input: bool = False, zero_init_residual: bool = False) -> ResNet:
    """ResNet-``depth`` for ``depth`` in {18, 34, 50, 101, 152}, torchvision layout.

    Example: ``sum(p.numel() for p in resnet(50).parameters()) == 25_557_032``.
    """
    if depth not in RESNET_LAYOUTS:
        raise ValueError(f"resnet: depth={depth!r} is not one of {sorted(RESNET_LAYOUTS)}")
    block, layers = RESNET_LAYOUTS[depth]
    return ResNet(block, layers, num_classes=num_classes, small_input=small_input,
                  zero_init_residual=zero_init_residual)


def resnet_param_count(depth: int, num_classes: int = 1000, small_input: bool = False) -> int:
    """Closed-form parameter count of ``resnet(depth, num_classes, small_input)``.

    Each conv is counted as k²·cin·cout (no bias), each BN as 2c, the classifier as f·K + K (f = 512 or 2048).
    Example: ``resnet_param_count(101) == 44_549_160``.
    """
    if depth not in RESNET_LAYOUTS:
        raise ValueError(f"resnet_param_count: depth={depth!r} is not one of {sorted(RESNET_LAYOUTS)}")
    block, layers = RESNET_LAYOUTS[depth]
    expansion = 1 if block == "basic" else 4
    total = (9 if small_input else 49) * 3 * 64 + 2 * 64
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
        out = planes * expansion
        for i in range(blocks):
            if block == "basic":
                total += 9 * inplanes * planes + 2 * planes + 9 * planes * planes + 2 * planes
            else:
                total += inplanes * planes + 2 * planes + 9 * planes * planes + 2 * planes + planes * out + 2 * out
            if i == 0 and (stage > 0 or inplanes != out):
                total += inplanes * out + 2 * out
            inplanes = out
    return total + inplanes * num_classes + num_classes
