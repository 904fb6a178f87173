"""In-memory batch loading with vectorised, seeded augmentation, exact resumption and distributed sharding.

:class:`TensorLoader` iterates over ``(x, y)`` tensors held in memory (uint8 images or float signals) and yields
float32 batches, optionally augmented (whole batch at once) and normalised. Everything random is a pure function of
``(seed, epoch, batch index, rank)``, so

* the same seed gives the same batches on any machine, and
* training resumes exactly from ``state_dict() == {"seed", "epoch", "batch"}`` (also in the middle of an epoch),
  without replaying earlier batches.

With ``world_size > 1`` every rank sees the same permutation and takes every ``world_size``-th sample (like
``torch.utils.data.DistributedSampler``; the permutation is padded by wrapping around unless ``drop_last``).

Example:
    >>> import torch
    >>> x = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8)
    >>> y = torch.arange(100) % 10
    >>> loader = TensorLoader(x, y, batch_size=32, augment="crop-flip", seed=0, mean=(0.5,) * 3, std=(0.25,) * 3)
    >>> len(loader), [tuple(xb.shape) for xb, yb in loader][-1]
    (4, (4, 3, 32, 32))
    >>> loader.state_dict()
    {'seed': 0, 'epoch': 1, 'batch': 0}
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (``numpy.random.SeedSequence``), e.g. ``mix_seed(seed, epoch, batch)``."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


def _seeded(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(mix_seed(*parts))


class RandomCropFlip:
    """Random crop after padding by ``padding`` pixels, and random horizontal flip, for a batch (N, C, H, W).

    Each image gets its own offset ``(dy, dx)`` in ``[0, 2·padding]`` and flip bit, drawn from ``generator``. The whole
    batch is done with one ``torch.gather`` of precomputed source indices (no per-image Python loop), works on any
    dtype (uint8 stays uint8) and never materialises the padded batch. ``padding_mode`` is ``"reflect"`` (as
    ``torch.nn.functional.pad(mode="reflect")``: the edge pixel is not repeated), ``"replicate"`` or ``"zeros"``.

    Example: ``RandomCropFlip(4)(x, torch.Generator().manual_seed(0))`` has the shape and dtype of ``x``.
    """

    def __init__(self, padding: int = 4, flip: bool | str = True, padding_mode: str = "reflect"):
        if flip not in (True, False, "alternate"):
            raise ValueError(f"RandomCropFlip: flip={flip!r} must be True (random), False or 'alternate'")
        if padding < 0:
            raise ValueError(f"RandomCropFlip: padding={padding} must be >= 0")
        if padding_mode not in ("reflect", "replicate", "zeros"):
            raise ValueError(f"RandomCropFlip: padding_mode={padding_mode!r} must be 'reflect', 'replicate' or 'zeros'")
        self.padding, self.flip, self.padding_mode = padding, flip, padding_mode

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip}, padding_mode={self.padding_mode!r})"

    def _source(self, index: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.padding_mode == "reflect":
            if self.padding >= size:
                raise ValueError(f"RandomCropFlip: reflect padding {self.padding} needs images larger than {size}")
            index = index.abs()
            return torch.where(index > size - 1, 2 * (size - 1) - index, index), None
        valid = (index >= 0) & (index <= size - 1) if self.padding_mode == "zeros" else None
        return index.clamp(0, size - 1), valid

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None,
                 flip_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``flip_mask`` (N,) bool: which images to mirror (``flip="alternate"`` needs it: the loader passes it);
        otherwise each image is mirrored with probability 1/2 when ``flip`` is True."""
        if x.dim() != 4:
            raise ValueError(f"RandomCropFlip: expected a batch (N, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        p = self.padding
        dy = torch.randint(0, 2 * p + 1, (n, 1), generator=generator)
        dx = torch.randint(0, 2 * p + 1, (n, 1), generator=generator)
        rows, row_valid = self._source(torch.arange(h).unsqueeze(0) + dy - p, h)  # (N, H)
        cols, col_valid = self._source(torch.arange(w).unsqueeze(0) + dx - p, w)  # (N, W)
        if flip_mask is None and self.flip == "alternate":
            raise ValueError("RandomCropFlip(flip='alternate') needs flip_mask (TensorLoader passes it)")
        if flip_mask is not None or self.flip:
            flipped = flip_mask.view(n, 1).cpu() if flip_mask is not None else torch.rand(n, 1, generator=generator) < 0.5
            cols = torch.where(flipped, cols.flip(1), cols)
            if col_valid is not None:
                col_valid = torch.where(flipped, col_valid.flip(1), col_valid)
        index = (rows.unsqueeze(2) * w + cols.unsqueeze(1)).reshape(n, 1, h * w).to(x.device)
        out = torch.gather(x.reshape(n, c, h * w), 2, index.expand(n, c, h * w)).reshape(n, c, h, w)
        if row_valid is not None:
            mask = (row_valid.unsqueeze(2) & col_valid.unsqueeze(1)).unsqueeze(1).to(x.device)
            out = out * mask.to(out.dtype)
        return out


class RandomFlip:
    """Random horizontal flip of each sample of a batch along the last axis (images (N,C,H,W) or signals (N,C,L))."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        flipped = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
        return torch.where(flipped.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)

    def __repr__(self) -> str:
        return "RandomFlip()"


AUGMENT_HELP = ("None/'none', 'crop-flip' (pad 4 + random flip), 'crop', 'flip', or '+'-joined parts: 'flip' "
                "(random mirror), 'altflip' (alternating mirror), 'translate:P' (reflect-pad P, random crop), e.g. "
                "'altflip+translate:2'; or a callable f(batch, generator)")


def make_augment(augment: str | bool | Augment | None) -> Augment | None:
    """``None``/``False``/``"none"`` → no augmentation; ``True`` or ``"crop-flip"`` → ``RandomCropFlip(4)``;
    ``"flip"`` → :class:`RandomFlip`; ``"crop"`` → ``RandomCropFlip(4, flip=False)``; a callable
    ``f(batch, generator)`` is used as is.  Parts joined by ``+`` combine: ``"translate:P"`` (reflect-pad by P and
    crop back at a random offset), ``"flip"`` (mirror half the images at random), ``"altflip"`` (the fast recipe's
    alternating flip: each image is mirrored at random in the first epoch and in the opposite way to that in every
    other epoch, so consecutive epochs see both orientations; Jordan 2024), e.g. ``"altflip+translate:2"``.

    Example: ``make_augment("altflip+translate:2")`` is ``RandomCropFlip(padding=2, flip='alternate')``."""
    if augment is None or augment is False or augment == "none":
        return None
    if augment is True or augment == "crop-flip":
        return RandomCropFlip(4)
    if augment == "crop":
        return RandomCropFlip(4, flip=False)
    if augment == "flip":
        return RandomFlip()
    if callable(augment):
        return augment
    if isinstance(augment, str):
        padding, flip = 0, False
        for part in augment.split("+"):
            name, _, value = part.strip().partition(":")
            if name == "translate" and value.isdigit():
                padding = int(value)
            elif name in ("flip", "altflip") and not value:
                if flip:
                    raise ValueError(f"augment={augment!r}: give one of flip and altflip")
                flip = True if name == "flip" else "alternate"
            else:
                raise ValueError(f"augment={augment!r}: unknown part {part!r}; use {AUGMENT_HELP}")
        return RandomCropFlip(padding, flip=flip)
    raise ValueError(f"augment={augment!r}: use {AUGMENT_HELP}")


def normalize(x: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> torch.Tensor:
    """float32 batch: uint8 is scaled to [0, 1]; then ``(x - mean[c]) / std[c]`` per channel (dim 1) if given."""
    out = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    if mean is not None or std is not None:
        shape = (1, -1) + (1,) * (out.dim() - 2)
        if mean is not None:
            out = out - torch.as_tensor(mean, dtype=out.dtype, device=out.device).view(shape)
        if std is not None:
            out = out / torch.as_tensor(std, dtype=out.dtype, device=out.device).view(shape)
    return out


def subset_indices(y: torch.Tensor, size: int, seed: int = 0, balanced: bool = True) -> torch.Tensor:
    """Sorted indices of a fixed, seeded subset of ``size`` samples of labels ``y``.

    ``balanced=True`` takes ``size // K`` samples of each of the K classes (the remainder goes one each to the
    lowest-numbered classes); ``balanced=False`` takes a uniform random subset. Same ``(y, size, seed)`` → same subset.

    Example: ``subset_indices(torch.arange(100) % 10, 20)`` picks 2 samples of every class.
    """
    y = torch.as_tensor(y)
    n = y.shape[0]
    if not 0 < size <= n:
        raise ValueError(f"subset: size={size} must be between 1 and the number of samples ({n})")
    generator = _seeded(seed, 0x5B5E7)
    if not balanced:
        return torch.randperm(n, generator=generator)[:size].sort().values
    classes, counts = torch.unique(y, return_counts=True)
    quota = torch.full((len(classes),), size // len(classes))
    quota[: size % len(classes)] += 1
    if (quota > counts).any():
        raise ValueError(f"subset: a class-balanced subset of {size} needs {int(quota.max())} per class, but the "
                         f"smallest class has {int(counts.min())}; use balanced=False or a smaller size")
    order = torch.randperm(n, generator=generator)
    shuffled = y[order]
    # rank of each shuffled sample within its class: stable sort by class, then position minus the class start
    by_class = torch.sort(shuffled, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    class_index = torch.searchsorted(classes, by_class.values)
    rank = torch.arange(n) - starts[class_index]
    chosen = order[by_class.indices[rank < quota[class_index]]]
    return chosen.sort().values


class TensorLoader:
    """Iterable over batches ``(x_batch float32, y_batch int64)`` of in-memory tensors ``x``, ``y``.

    Args:
        x, y: samples (N, ...) (uint8 images are scaled to [0, 1]) and labels (N,).
        batch_size: samples per batch (per rank).
        shuffle: a new seeded permutation every epoch (otherwise the stored order).
        augment: see :func:`make_augment` (e.g. ``"crop-flip"`` for CIFAR); applied to the raw batch.
        seed / generator: the randomness root; a ``torch.Generator`` contributes its ``initial_seed()``.
        drop_last: drop the last incomplete batch (and, with several ranks, the samples that do not divide evenly).
        mean, std: per-channel normalisation after scaling.
        rank, world_size: this process's shard of every epoch.
        device: where batches are moved.

    State: ``epoch`` (advanced after a full pass, or set with :meth:`set_epoch`) and ``batch`` (batches already
    yielded in this epoch). ``load_state_dict(state_dict())`` continues with exactly the batches that would have come.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = True,
                 augment: str | bool | Augment | None = None, seed: int | None = None,
                 generator: torch.Generator | None = None, drop_last: bool = False,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, rank: int = 0,
                 world_size: int = 1, device: torch.device | str | None = None):
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"TensorLoader: x has {x.shape[0]} samples but y has {y.shape[0]}")
        if batch_size < 1:
            raise ValueError(f"TensorLoader: batch_size={batch_size} must be >= 1")
        if not (world_size >= 1 and 0 <= rank < world_size):
            raise ValueError(f"TensorLoader: rank={rank} must be in [0, world_size={world_size})")
        if seed is not None and generator is not None:
            raise ValueError("TensorLoader: pass seed or generator, not both")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment = make_augment(augment)
        self.seed = int(generator.initial_seed() if generator is not None else (seed or 0))
        self.mean, self.std = mean, std
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device) if device is not None else None
        self.epoch, self.batch = 0, 0
        # alternating flip: each sample's first-epoch orientation, a pure function of (seed, sample index)
        self._base_flip = torch.rand(x.shape[0], generator=_seeded(self.seed, 0xA17F)) < 0.5 \
            if getattr(self.augment, "flip", None) == "alternate" else None
        if self.num_samples == 0 or len(self) == 0:
            raise ValueError(f"TensorLoader: {x.shape[0]} samples give no batch of {batch_size} on rank {rank} of "
                             f"{world_size} (drop_last={drop_last}); use a smaller batch_size or drop_last=False")

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        n = self.x.shape[0]
        return n // self.world_size if self.drop_last else -(-n // self.world_size)

    def __len__(self) -> int:
        """Batches this rank yields per epoch."""
        m = self.num_samples
        return m // self.batch_size if self.drop_last else -(-m // self.batch_size)

    def set_epoch(self, epoch: int, batch: int = 0) -> None:
        """Start (or resume) at ``epoch``, skipping its first ``batch`` batches."""
        if epoch < 0 or not 0 <= batch <= len(self):
            raise ValueError(f"TensorLoader.set_epoch: epoch={epoch}, batch={batch} (must be in [0, {len(self)}])")
        self.epoch, self.batch = int(epoch), int(batch)

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state["seed"])
        self.set_epoch(int(state["epoch"]), int(state.get("batch", 0)))

    def epoch_indices(self, epoch: int | None = None) -> torch.Tensor:
        """The sample indices this rank visits in ``epoch`` (default: the current one), in order."""
        epoch = self.epoch if epoch is None else epoch
        n = self.x.shape[0]
        order = torch.randperm(n, generator=_seeded(self.seed, epoch)) if self.shuffle else torch.arange(n)
        if self.world_size > 1:
            total = self.num_samples * self.world_size
            if total > n:  # pad by wrapping around, as DistributedSampler does
                order = torch.cat([order, order[: total - n]])
            order = order[:total][self.rank::self.world_size]
        if self.drop_last:
            order = order[: len(self) * self.batch_size]
        return order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        order = self.epoch_indices(epoch)
        for b in range(self.batch, len(self)):
            index = order[b * self.batch_size:(b + 1) * self.batch_size]
            xb, yb = self.x[index], self.y[index]
            if self._base_flip is not None:  # mirrored in the first epoch -> not in the second, and so on
                xb = self.augment(xb, _seeded(self.seed, epoch, b, self.rank, 0xA06),
                                  flip_mask=self._base_flip[index] ^ bool(epoch % 2))
            elif self.augment is not None:
                xb = self.augment(xb, _seeded(self.seed, epoch, b, self.rank, 0xA06))
            xb = normalize(xb, self.mean, self.std)
            if self.device is not None:
                xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
            self.batch = b + 1
            yield xb, yb
        self.epoch, self.batch = epoch + 1, 0

    def __repr__(self) -> str:
        return (f"TensorLoader(n={self.x.shape[0]}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"augment={self.augment!r}, seed={self.seed}, rank={self.rank}/{self.world_size}, "
                f"epoch={self.epoch}, batch={self.batch})")
