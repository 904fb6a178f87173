"""Image-folder datasets (one sub-folder per class, ImageNet/Imagenette layout) and the standard ImageNet transforms,
with Pillow and torch only (no torchvision).

Layout::

    root/train/n01440764/xxx.JPEG      root/val/n01440764/yyy.JPEG     (class = sub-folder name, sorted)

Transforms are callables ``PIL.Image -> PIL.Image`` or ``-> Tensor``; random ones draw from torch's global RNG, which
``torch.utils.data.DataLoader`` seeds differently in every worker (``base_seed + worker_id``), so a multi-worker
loader with a seeded ``generator`` is reproducible.

Example:
    >>> dataset = ImageFolder("imagenette2/train", transform=imagenet_transform(train=True))   # doctest: +SKIP
    >>> loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, num_workers=2)  # doctest: +SKIP
    >>> images, labels = next(iter(loader))    # images: float32 (64, 3, 224, 224), normalised     # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _uniform(low: float, high: float) -> float:
    return float(torch.empty(()).uniform_(low, high))


class Compose:
    """Apply transforms in order. ``Compose([Resize(256), CenterCrop(224), ToTensor()])``."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, image):
        for transform in self.transforms:
            image = transform(image)
        return image

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


class RandomResizedCrop:
    """Crop a random area fraction in ``scale`` with aspect ratio in ``ratio`` (log-uniform), resize to ``size``.

    As in the Inception/ResNet ImageNet recipe: up to 10 tries, then a central crop with the ratio clamped.
    """

    def __init__(self, size: int | tuple[int, int], scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 interpolation=Image.BILINEAR):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.scale, self.ratio, self.interpolation = scale, ratio, interpolation

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, crop width, crop height) drawn from torch's RNG."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * _uniform(*self.scale)
            aspect = math.exp(_uniform(*log_ratio))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, ()))
                left = int(torch.randint(0, width - w + 1, ()))
                return left, top, w, h
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, round(width / min(self.ratio))
        elif in_ratio > max(self.ratio):
            h, w = height, round(height * max(self.ratio))
        else:
            w, h = width, height
        return (width - w) // 2, (height - h) // 2, w, h

    def __call__(self, image: Image.Image) -> Image.Image:
        left, top, w, h = self.box(*image.size)
        return image.resize((self.size[1], self.size[0]), self.interpolation, box=(left, top, left + w, top + h))

    def __repr__(self) -> str:
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.transpose(Image.FLIP_LEFT_RIGHT) if float(torch.rand(())) < self.p else image

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Resize:
    """Resize so the shorter side is ``size`` (int), or to exactly (height, width) (tuple)."""

    def __init__(self, size: int | tuple[int, int], interpolation=Image.BILINEAR):
        self.size, self.interpolation = size, interpolation

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        if isinstance(self.size, int):
            if width <= height:
                new = (self.size, max(1, int(self.size * height / width)))
            else:
                new = (max(1, int(self.size * width / height)), self.size)
        else:
            new = (self.size[1], self.size[0])
        return image if new == (width, height) else image.resize(new, self.interpolation)

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class CenterCrop:
    """Crop the central (size x size) or (height x width) region."""

    def __init__(self, size: int | tuple[int, int]):
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        h, w = self.size
        left, top = round((width - w) / 2), round((height - h) / 2)
        return image.crop((left, top, left + w, top + h))

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class ToTensor:
    """PIL image → float32 tensor (C, H, W) in [0, 1]; with ``mean``/``std``, also normalised per channel."""

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        array = np.asarray(image, dtype=np.uint8)
        if array.ndim == 2:
            array = array[:, :, None]
        tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)
        if self.mean is not None:
            tensor = tensor - self.mean
        if self.std is not None:
            tensor = tensor / self.std
        return tensor

    def __repr__(self) -> str:
        return f"ToTensor(mean={None if self.mean is None else self.mean.flatten().tolist()})"


def imagenet_transform(train: bool, size: int = 224, resize: int | None = None, mean=IMAGENET_MEAN,
                       std=IMAGENET_STD) -> Compose:
    """Standard ImageNet pipeline. Train: RandomResizedCrop(size) + horizontal flip; eval: Resize(size·256/224)
    + CenterCrop(size). Both end with ToTensor normalised by ``mean``/``std``.

    Example: ``imagenet_transform(train=False)(Image.new("RGB", (500, 375))).shape == (3, 224, 224)``.
    """
    if train:
        return Compose([RandomResizedCrop(size), RandomHorizontalFlip(), ToTensor(mean, std)])
    resize = resize if resize is not None else round(size * 256 / 224)
    return Compose([Resize(resize), CenterCrop(size), ToTensor(mean, std)])


class ImageDecodeError(ValueError):
    """An image file that Pillow cannot decode (truncated, not an image, a decompression bomb); the message names the
    file.  Raised inside a ``DataLoader`` worker, torch re-raises it in the main process with the worker's traceback
    as the message: the first line then still names the file (the original message is recovered from it)."""

    def __init__(self, message: str = ""):
        message = str(message)
        if message.startswith("Caught ") and "Original Traceback" in message:  # re-raised by a DataLoader worker
            last = [line for line in message.splitlines() if line.strip()][-1].strip()
            head, _, rest = last.partition(": ")
            message = (rest if head.endswith("ImageDecodeError") and rest else last) + " (in a DataLoader worker)"
        super().__init__(message)


class ImageFolder(torch.utils.data.Dataset):
    """Dataset of images in ``root/<class>/<image>``; item ``i`` is ``(transform(image), label)``.

    Classes are the sub-folder names in sorted order (``classes``, ``class_to_idx``), or the given ``classes`` (the
    training split's, so a validation folder that lacks a class is labelled like the training folder; a sub-folder
    that is not one of them is an error).  ``samples`` lists ``(path, label)`` sorted by class then file name.
    Images are converted to ``mode`` ("RGB" by default).  Without a transform, items are uint8 tensors (C, H, W).

    Links are followed only inside ``root``: a class folder or image that resolves outside it is refused (a dataset
    folder must not reach into the rest of the file system).  An image that cannot be decoded raises
    :class:`ImageDecodeError` naming the file.

    Example: ``ImageFolder("data/imagenette2/val", transform=imagenet_transform(train=False))``.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS, mode: str = "RGB",
                 classes: Sequence[str] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageFolder: {self.root} is not a folder; expected root/<class>/<image files>")
        extensions = tuple(e.lower() for e in extensions)
        found = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if classes is None:
            self.classes = found
        else:
            self.classes = list(classes)
            unknown = [name for name in found if name not in self.classes]
            if unknown:
                raise ValueError(f"ImageFolder: {self.root} has class folders {unknown[:5]} that the training split "
                                 f"does not have (its classes: {self.classes[:10]}{' ...' if len(self.classes) > 10 else ''}); "
                                 "move them into the training folder too, or remove them")
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        real_root = self.root.resolve()
        self.samples = []
        for name in self.classes:
            folder = self.root / name
            if not folder.is_dir():
                continue  # a class of the training split with no images here
            for path in sorted(folder.rglob("*")):
                if not path.is_file() or path.suffix.lower() not in extensions:
                    continue
                _inside(path, real_root, self.root)
                self.samples.append((path, self.class_to_idx[name]))
        if not self.samples:
            raise FileNotFoundError(f"ImageFolder: no images with extensions {extensions} in class folders of "
                                    f"{self.root} (found folders: {found[:10]})")
        self.targets = [label for _, label in self.samples]
        self.transform, self.mode = transform, mode

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> Image.Image:
        """The image of sample ``index`` in ``mode``; :class:`ImageDecodeError` naming the file if it cannot be read."""
        path = self.samples[index][0]
        try:
            with Image.open(path) as image:
                return image.convert(self.mode)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError: OSError
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise ImageDecodeError(f"{path}: cannot decode the image ({type(exc).__name__}: {detail}); "
                                   "replace or remove the file") from None

    def __getitem__(self, index: int):
        image = self.load(index)
        label = self.samples[index][1]
        if self.transform is not None:
            return self.transform(image), label
        return ToTensor()(image).mul_(255).round_().to(torch.uint8), label

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r}, {len(self)} images, {len(self.classes)} classes)"


def _inside(path: Path, real_root: Path, root: Path) -> None:
    """Refuse ``path`` if it (through any link on the way) resolves outside ``root``."""
    target = path.resolve()
    if target != real_root and real_root not in target.parents:
        raise ValueError(f"ImageFolder: {path} resolves to {target}, outside the dataset folder {root}; links out of "
                         "the dataset folder are refused: copy the file into the folder or remove the link")
