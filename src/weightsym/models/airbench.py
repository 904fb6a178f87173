"""The fast CIFAR-10 network of Jordan (2024), *94% on CIFAR-10 in 3.29 Seconds on a Single GPU* (arXiv 2404.00498).

Written here from the paper's published description (registry names ``airbench-W1-W2-W3``, e.g.
``airbench-64-128-128``, the 93% width, and ``airbench-64-256-256``, the 94% width):

* **whitening stem** ``whiten``: a 2x2 convolution, no padding, 3 -> 24 channels, whose weights are the eigenvectors
  of the covariance of the training set's 2x2 patches, each scaled by 1/sqrt(eigenvalue + 5e-4), and their negatives
  (:meth:`AirbenchNet.initialize_from_data`); its weight is frozen, its bias trained for the first epochs (the recipe
  says how many); then GELU;
* three **conv groups** ``group1..3``: conv3x3 -> max-pool 2 -> BatchNorm -> GELU -> conv3x3 -> BatchNorm -> GELU,
  with widths W1, W2, W3; convolutions have no bias and start as the identity (dirac) on their first ``in`` output
  channels; BatchNorm has eps 1e-12, running-statistics momentum 0.4 (the paper's 0.6 in the other convention) and
  a scale frozen at 1 (only its bias learns);
* a 3x3 **max-pool**, and a bias-free **classifier** ``fc`` whose output is multiplied by a fixed 1/9.

Where symmetry can act: the square convolutions (``in == out``), that is every ``groupK.conv2`` and, when two
neighbouring widths are equal, ``groupK.conv1`` (``group3.conv1`` in 64-128-128 and 64-256-256): channel symmetries
need ``in == out``; spatial symmetries act on every 3x3 conv.  ``weightsym.symmetrize`` leaves the first and last
weight layers dense (the whitening stem and the classifier), so its default placement is every conv of the groups
for spatial symmetries and every square one of them for channel symmetries.

Plain PyTorch: nothing here knows about symmetry.

Example:
    >>> import torch
    >>> net = AirbenchNet((16, 32, 32))
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> [name for name, m in net.named_modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels == m.out_channels]
    ['group1.conv2', 'group2.conv2', 'group3.conv1', 'group3.conv2']
    >>> net.initialize_from_data(torch.randn(64, 3, 32, 32))   # the whitening stem from (normalised) images
    >>> bool(net.whiten.weight.requires_grad)
    False
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

WHITEN_KERNEL = 2
WHITEN_EPS = 5e-4
BN_MOMENTUM = 0.4  # torch convention (weight of the new batch); the paper writes 0.6 for the old statistics
BN_EPS = 1e-12
OUTPUT_SCALE = 1 / 9
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _conv(in_channels: int, out_channels: int, padding_mode: str, dirac: bool) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False, padding_mode=padding_mode)
    if dirac:
        with torch.no_grad():
            nn.init.dirac_(conv.weight[:in_channels])
    return conv


def _batchnorm(channels: int) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
    norm.weight.requires_grad_(False)  # the scale stays 1; only the bias learns
    return norm


class ConvGroup(nn.Module):
    """conv3x3 -> max-pool 2 -> BatchNorm -> GELU -> conv3x3 -> BatchNorm -> GELU."""

    def __init__(self, in_channels: int, out_channels: int, padding_mode: str = "zeros", dirac: bool = True):
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, padding_mode, dirac)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _batchnorm(out_channels)
        self.conv2 = _conv(out_channels, out_channels, padding_mode, dirac)
        self.norm2 = _batchnorm(out_channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


STEMS = ("whiten", "random")


class AirbenchNet(nn.Module):
    """Whitening stem, three conv groups of widths ``widths``, max-pool, scaled bias-free classifier (see module).

    Ablation switches: ``stem="random"`` keeps the stem's default random init and trains it like any layer (no
    whitening); ``dirac=False`` leaves the 3x3 convs at PyTorch's default init; ``padding_mode`` of the 3x3 convs;
    ``pool="global"`` ends with a global max-pool instead of the 3x3 one, so the network takes inputs of any size
    (the same numbers on 32 x 32 images, where the last feature map is 3 x 3; needed for input expansion)."""

    def __init__(self, widths: tuple[int, int, int] = (64, 256, 256), num_classes: int = 10,
                 padding_mode: str = "zeros", stem: str = "whiten", dirac: bool = True, pool: str = "3x3"):
        super().__init__()
        widths = tuple(widths)
        if len(widths) != 3 or not all(isinstance(w, int) and w >= 1 for w in widths):
            raise ValueError(f"AirbenchNet: widths={widths!r} must be three positive integers, e.g. (64, 256, 256)")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"AirbenchNet: padding_mode={padding_mode!r} is not one of {PADDING_MODES}")
        if stem not in STEMS:
            raise ValueError(f"AirbenchNet: stem={stem!r} is not one of {STEMS}")
        if pool not in ("3x3", "global"):
            raise ValueError(f"AirbenchNet: pool={pool!r}: use '3x3' (published) or 'global' (any input size)")
        self.widths, self.stem = widths, stem
        stem_width = 2 * 3 * WHITEN_KERNEL ** 2
        self.whiten = nn.Conv2d(3, stem_width, WHITEN_KERNEL, padding=0, bias=True)
        with torch.no_grad():
            self.whiten.bias.zero_()
        self.whiten.weight.requires_grad_(stem == "random")
        self.act = nn.GELU()
        self.group1 = ConvGroup(stem_width, widths[0], padding_mode, dirac)
        self.group2 = ConvGroup(widths[0], widths[1], padding_mode, dirac)
        self.group3 = ConvGroup(widths[1], widths[2], padding_mode, dirac)
        self.pool = nn.MaxPool2d(3) if pool == "3x3" else nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes, bias=False)
        self.output_scale = OUTPUT_SCALE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.whiten(x))
        x = self.group3(self.group2(self.group1(x)))
        x = torch.flatten(self.pool(x), 1)
        return self.fc(x) * self.output_scale

    @torch.no_grad()
    def initialize_from_data(self, images: torch.Tensor, eps: float = WHITEN_EPS) -> None:
        """Set the whitening stem from normalised training images (N, 3, H, W): the eigenvectors V of the covariance
        of all 2x2 patches, scaled by 1/sqrt(eigenvalue + ``eps``), largest eigenvalue first, then their negatives.
        After it, the stem's 12 positive outputs on the patches have (nearly) identity covariance.  The weight
        stays frozen; the bias is left as it is.  With ``stem="random"`` this does nothing."""
        if self.stem != "whiten":
            return
        patches = whitening_patches(images.float(), self.whiten.kernel_size)
        values, vectors = whitening_basis(patches)
        scaled = vectors / torch.sqrt(values + eps).view(-1, 1, 1, 1)
        weight = torch.cat((scaled, -scaled)).to(self.whiten.weight.dtype)
        if parametrize.is_parametrized(self.whiten, "weight"):  # a symmetry put on the stem: store its projection
            self.whiten.weight = weight
        else:
            self.whiten.weight.copy_(weight)


def whitening_patches(images: torch.Tensor, kernel_size: tuple[int, int]) -> torch.Tensor:
    """Every ``kernel_size`` patch (stride 1) of ``images`` (N, C, H, W) as a (P, C, kh, kw) tensor."""
    kh, kw = kernel_size
    c = images.shape[1]
    return images.unfold(2, kh, 1).unfold(3, kw, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c, kh, kw)


def whitening_basis(patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors, reshaped to patches, of the uncentred patch covariance."""
    n, c, kh, kw = patches.shape
    flat = patches.reshape(n, -1).double()
    covariance = flat.T @ flat / n
    values, vectors = torch.linalg.eigh(covariance)
    values, vectors = values.flip(0), vectors.flip(1)
    return values.float(), vectors.T.reshape(c * kh * kw, c, kh, kw).float()


def airbench_param_count(widths: tuple[int, int, int], num_classes: int = 10) -> dict[str, int]:
    """Parameters of ``AirbenchNet(widths)``: ``total`` (every tensor) and ``trained`` (what the optimizer moves:
    not the frozen whitening weight nor the frozen BatchNorm scales)."""
    net = AirbenchNet(tuple(widths), num_classes)
    total = sum(p.numel() for p in net.parameters())
    trained = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return {"total": total, "trained": trained}
