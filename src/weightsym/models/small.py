"""Small models for quick experiments: an MLP, a 1-D CNN for MNIST-1D and a 2-D CNN for Fashion-MNIST.

Each model has a dense input layer ``stem``, ``num_square`` *square* middle layers (in == out, so channel symmetries
apply) named ``conv1..convK`` (``hidden1..hiddenK`` for the MLP), and a dense classifier ``fc``. Plain PyTorch: symmetry
is applied from outside.

Example:
    >>> import torch
    >>> MNIST1DCNN()(torch.zeros(8, 1, 40)).shape
    torch.Size([8, 10])
    >>> FashionCNN(width=16, padding_mode="reflect")(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> MLP(in_features=40, width=64)(torch.zeros(3, 1, 40)).shape
    torch.Size([3, 10])
"""

from __future__ import annotations

import torch
from torch import nn

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _check(model: str, width: int, num_square: int, padding_mode: str | None = None) -> None:
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"{model}: width={width!r} must be a positive integer (e.g. 32)")
    if not isinstance(num_square, int) or num_square < 0:
        raise ValueError(f"{model}: num_square={num_square!r} must be a non-negative integer (e.g. 2)")
    if padding_mode is not None and padding_mode not in PADDING_MODES:
        raise ValueError(f"{model}: padding_mode={padding_mode!r} is not one of {PADDING_MODES}")


class MLP(nn.Module):
    """Multi-layer perceptron: flatten - ``stem`` (in→w) - ReLU - [``hidden{i}`` (w→w) - ReLU] x num_square - ``fc``.

    The hidden layers are square (w x w), so matrix symmetries (symmetric, triangular, ...) apply to them.
    Accepts any input whose trailing dimensions flatten to ``in_features``, e.g. (N, 1, 40) or (N, 1, 28, 28).

    Example: ``MLP(in_features=784, width=128, num_square=2)(torch.zeros(4, 1, 28, 28)).shape == (4, 10)``.
    """

    def __init__(self, in_features: int = 40, width: int = 256, num_square: int = 2, num_classes: int = 10):
        super().__init__()
        _check("MLP", width, num_square)
        self.in_features, self.width, self.num_square = in_features, width, num_square
        self.stem = nn.Linear(in_features, width)
        for i in range(1, num_square + 1):
            self.add_module(f"hidden{i}", nn.Linear(width, width))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"MLP: input flattens to {x.shape[1]} features, expected in_features={self.in_features}")
        x = torch.relu(self.stem(x))
        for i in range(1, self.num_square + 1):
            x = torch.relu(getattr(self, f"hidden{i}")(x))
        return self.fc(x)


class MNIST1DCNN(nn.Module):
    """1-D CNN for MNIST-1D, input (N, 1, 40).

    ``stem`` Conv1d 1→w (kernel 5, stride 2: 40→20) - ReLU - [``conv{i}`` Conv1d w→w (kernel 3, padding 1; stride 2
    for the first two, so 20→10→5) - [BN] - ReLU] x num_square - flatten - ``fc`` (w·L→classes), where L is the final
    length. The ``conv{i}`` layers are square, so channel symmetries apply; ``padding_mode`` ("zeros" or "reflect")
    is used by every conv. ``norm=True`` adds BatchNorm1d after each square conv.

    Example: ``MNIST1DCNN(width=32, padding_mode="reflect")(torch.zeros(2, 1, 40)).shape == (2, 10)``.
    """

    def __init__(self, num_classes: int = 10, width: int = 32, num_square: int = 2, padding_mode: str = "zeros",
                 in_channels: int = 1, length: int = 40, norm: bool = False):
        super().__init__()
        _check("MNIST1DCNN", width, num_square, padding_mode)
        self.width, self.num_square, self.length = width, num_square, length
        self.stem = nn.Conv1d(in_channels, width, 5, stride=2, padding=2, padding_mode=padding_mode)
        out_length = (length - 1) // 2 + 1
        for i in range(1, num_square + 1):
            stride = 2 if i <= 2 else 1
            self.add_module(f"conv{i}", nn.Conv1d(width, width, 3, stride=stride, padding=1,
                                                  padding_mode=padding_mode))
            self.add_module(f"bn{i}", nn.BatchNorm1d(width) if norm else nn.Identity())
            out_length = (out_length - 1) // stride + 1
        self.out_length = out_length
        self.fc = nn.Linear(width * out_length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # (N, 40) -> (N, 1, 40)
            x = x.unsqueeze(1)
        x = torch.relu(self.stem(x))
        for i in range(1, self.num_square + 1):
            x = torch.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        return self.fc(torch.flatten(x, 1))


class FashionCNN(nn.Module):
    """2-D CNN for Fashion-MNIST, input (N, 1, 28, 28).

    ``stem`` Conv2d 1→w 3x3 - [BN] - ReLU - [``conv{i}`` Conv2d w→w 3x3 - [BN] - ReLU - (2x2 max-pool after the first
    two: 28→14→7)] x num_square - global average pool - ``fc`` (w→classes). The ``conv{i}`` layers are square and
    use ``padding_mode`` ("zeros" or "reflect"), as does the stem. BatchNorm is on by default (``norm=True``).

    Example: ``FashionCNN(width=32)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)``.
    """

    def __init__(self, num_classes: int = 10, width: int = 32, num_square: int = 2, padding_mode: str = "zeros",
                 in_channels: int = 1, norm: bool = True):
        super().__init__()
        _check("FashionCNN", width, num_square, padding_mode)
        self.width, self.num_square = width, num_square
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, padding_mode=padding_mode, bias=not norm)
        self.bn0 = nn.BatchNorm2d(width) if norm else nn.Identity()
        for i in range(1, num_square + 1):
            self.add_module(f"conv{i}", nn.Conv2d(width, width, 3, padding=1, padding_mode=padding_mode,
                                                  bias=not norm))
            self.add_module(f"bn{i}", nn.BatchNorm2d(width) if norm else nn.Identity())
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.stem(x)))
        for i in range(1, self.num_square + 1):
            x = torch.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
            if i <= 2:
                x = nn.functional.max_pool2d(x, 2)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
