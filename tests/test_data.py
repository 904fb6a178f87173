"""Data: real local files (counts, class balance, MANIFEST pixel hashes), readers for every format, the batched
augmentation, the TensorLoader (determinism, resumption, sharding) and the image-folder pipeline."""

from __future__ import annotations

import gzip
import os
import pickle
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from weightsym.data import (
    ImageFolder,
    RandomCropFlip,
    RandomFlip,
    RandomResizedCrop,
    TensorLoader,
    cache_root,
    data_root,
    dataset_info,
    get_dataset,
    get_loader,
    imagenet_transform,
    load_cifar,
    load_fashion_mnist,
    load_jpeg_npz_cached,
    load_mnist1d,
    pixel_sha256,
    read_idx,
    subset_indices,
)
from weightsym.data import cifar as cifar_module

# ------------------------------------------------------------------ locating the shared data (no conftest: lead's)
REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$WEIGHTSYM_DATA`` if set, else ``../shared/data`` next to the repository."""
    return Path(os.environ.get("WEIGHTSYM_DATA") or REPO.parent / "shared" / "data")


def require_shared(*relative: str) -> Path:
    """The shared data folder, or a loud skip naming the missing file and how to point tests at the data."""
    root = shared_data_dir()
    for rel in relative:
        if not (root / rel).is_file():
            pytest.skip(f"SKIPPED, DATA MISSING: {root / rel} not found. Set WEIGHTSYM_DATA to the folder holding "
                        f"cifar10_jpeg_q75/ and fashion_mnist/ (default: {REPO.parent / 'shared' / 'data'})")
    return root


CIFAR_TRAIN = "cifar10_jpeg_q75/cifar10_train_jpeg.npz"
CIFAR_TEST = "cifar10_jpeg_q75/cifar10_test_jpeg.npz"
FMNIST_TRAIN = "fashion_mnist/fashion_mnist_train.npz"
FMNIST_TEST = "fashion_mnist/fashion_mnist_test.npz"

# From shared/data/MANIFEST.md: sha256 of the decoded uint8 (N, 32, 32, 3) pixels and of the int64 labels.
CIFAR_HASHES = {
    "train": ("bf3aabd52be912dae02a0435296c4dab5289524b57f55cd162dc4796935a611b",
              "a2084e87c76d1d22ef5ac30a81addb49027565cdc65f0e1b451ae5969d56117e"),
    "test": ("5a6aa8185204d80b65d3dfb540696dadd5f10d185ded226a96665d3e0fc6259f",
             "c5575395e636cadcdfe5764ffc8d56f56d234a4dc687096f8fc2d975dd6a5597"),
}
FMNIST_HASHES = {
    "train": ("2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
              "e3245b63f7c40d1c8b652835f19744d970c1613b40ddac6bcfc87b9c46e16a0b"),
    "test": ("c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
             "d51d859896c55775b9e9e219b77ff03bcec1b6ac322f313544dc3f9e7bc94fae"),
}


# ------------------------------------------------------------------ paths
def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("WEIGHTSYM_DATA", raising=False)
    monkeypatch.delenv("WEIGHTSYM_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root() == tmp_path / "xdg" / "weightsym"
    assert cache_root() == tmp_path / "xdg" / "weightsym" / "derived"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root() == tmp_path / "home" / ".cache" / "weightsym"
    monkeypatch.setenv("WEIGHTSYM_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("WEIGHTSYM_CACHE", str(tmp_path / "cache"))
    assert data_root() == tmp_path / "env" and cache_root() == tmp_path / "cache"
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"


def test_missing_data_names_the_path_and_the_env_var(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        get_dataset("cifar10", "test", data_dir=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "cifar10_jpeg_q75" / "cifar10_test_jpeg.npz") in message
    assert f"{tmp_path / 'cifar10'}, " in message  # the lossless PNG copy is looked for too
    assert "WEIGHTSYM_DATA" in message and "--data-dir" in message
    assert message.endswith(f"fetch it: weightsym download cifar10 --data-dir {tmp_path}")  # a command, not a call
    with pytest.raises(FileNotFoundError, match="fashion-mnist train split.*WEIGHTSYM_DATA.*weightsym download "
                                                "fashion-mnist"):
        load_fashion_mnist("train", data_dir=tmp_path)


def test_a_run_without_its_data_names_the_download_command_and_leaves_no_folder(tmp_path, capsys, monkeypatch):
    from weightsym.cli import main

    monkeypatch.setenv("WEIGHTSYM_DATA", str(tmp_path / "empty"))
    out = tmp_path / "run"
    assert main(["train", "--model", "airbench-16-32-32", "--recipe", "airbench", "--no-progress",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "weightsym download cifar10" in err and "Traceback" not in err
    assert not out.exists()
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; known: cifar10, cifar100, fashion-mnist, mnist1d"):
        get_dataset("svhn", "train")
    with pytest.raises(ValueError, match="split='val'"):
        get_dataset("cifar10", "val", data_dir=tmp_path)


# ------------------------------------------------------------------ real local data
@pytest.mark.data
@pytest.mark.parametrize("split,count", [("train", 50_000), ("test", 10_000)])
def test_cifar10_jpeg_copy_counts_and_manifest_hashes(split, count):
    root = require_shared(CIFAR_TRAIN if split == "train" else CIFAR_TEST)
    x, y = load_cifar("cifar10", split, data_dir=root, source="jpeg")  # cached decode (see cache_root())
    assert x.shape == (count, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [count // 10] * 10
    assert (pixel_sha256(x), pixel_sha256(y)) == CIFAR_HASHES[split]
    tx, ty = get_dataset("cifar10", split, data_dir=root, source="jpeg")  # as tensors, NCHW
    assert tx.shape == (count, 3, 32, 32) and tx.dtype == torch.uint8
    assert torch.equal(tx.permute(0, 2, 3, 1), torch.from_numpy(x)) and torch.equal(ty, torch.from_numpy(y))


@pytest.mark.data
def test_jpeg_decode_is_cached_outside_the_data_folder_and_reused(tmp_path, monkeypatch):
    root = require_shared(CIFAR_TEST)
    x, y = load_jpeg_npz_cached(root / CIFAR_TEST, cache_dir=tmp_path)
    cached = sorted(p.name for p in tmp_path.iterdir())
    assert cached == ["cifar10_test_jpeg-da9ee529971be370.npy"]  # keyed by the npz's sha256
    monkeypatch.setattr(cifar_module, "decode_jpeg_npz", lambda path: pytest.fail("cache was not reused"))
    x2, y2 = load_jpeg_npz_cached(root / CIFAR_TEST, cache_dir=tmp_path)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert pixel_sha256(x2) == CIFAR_HASHES["test"][0]


@pytest.mark.data
@pytest.mark.parametrize("split,count", [("train", 60_000), ("test", 10_000)])
def test_fashion_mnist_counts_and_manifest_hashes(split, count):
    root = require_shared(FMNIST_TRAIN if split == "train" else FMNIST_TEST)
    x, y = load_fashion_mnist(split, data_dir=root)
    assert x.shape == (count, 28, 28) and np.bincount(y).tolist() == [count // 10] * 10
    assert (pixel_sha256(x), pixel_sha256(y)) == FMNIST_HASHES[split]
    tx, _ = get_dataset("fashion-mnist", split, data_dir=root)
    assert tx.shape == (count, 1, 28, 28) and tx.dtype == torch.uint8


@pytest.mark.data
def test_train_subset_is_class_balanced_and_seeded():
    root = require_shared(FMNIST_TRAIN)
    x, y = get_dataset("fmnist", "train", data_dir=root, train_subset=1000)
    assert x.shape == (1000, 1, 28, 28) and torch.bincount(y).tolist() == [100] * 10
    x_again, _ = get_dataset("fashion-mnist", "train", data_dir=root, train_subset=1000)
    x_other, _ = get_dataset("fashion-mnist", "train", data_dir=root, train_subset=1000, subset_seed=1)
    assert torch.equal(x, x_again) and not torch.equal(x, x_other)
    _, y_random = get_dataset("fashion-mnist", "train", data_dir=root, train_subset=1000, balanced=False)
    assert len(y_random) == 1000 and torch.bincount(y_random).tolist() != [100] * 10
    x_test, _ = get_dataset("fashion-mnist", "test", data_dir=root, train_subset=1000)
    assert len(x_test) == 10_000  # the subset applies to the training split only


@pytest.mark.data
def test_cifar_loader_batches_are_normalised_and_augmented():
    root = require_shared(CIFAR_TRAIN)
    loader = get_loader("cifar10", "train", batch_size=128, data_dir=root, seed=0)
    assert len(loader) == 391 and loader.augment is not None
    xb, yb = next(iter(loader))
    assert xb.shape == (128, 3, 32, 32) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert xb.mean().abs() < 0.2 and 0.8 < xb.std() < 1.2
    test_loader = get_loader("cifar10", "test", batch_size=1000, data_dir=root)
    assert len(test_loader) == 10 and test_loader.augment is None and not test_loader.shuffle


# ------------------------------------------------------------------ reader formats (files written by the test)
def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_idx_reader(tmp_path, compress):
    rng = np.random.default_rng(0)
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    suffix = ".gz" if compress else ""
    images, labels = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8), rng.integers(0, 10, 7).astype(np.uint8)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", images, compress)
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", labels, compress)
    assert np.array_equal(read_idx(folder / f"t10k-images-idx3-ubyte{suffix}"), images)
    x, y = load_fashion_mnist("test", data_dir=tmp_path)
    assert np.array_equal(x, images) and np.array_equal(y, labels) and y.dtype == np.int64
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="IDX magic"):
        read_idx(tmp_path / "bad")


def test_cifar10_binary_and_python_readers(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (6 * 3, 32, 32, 3), dtype=np.uint8)  # 5 train batches of 3 + one test batch
    y = rng.integers(0, 10, 6 * 3)
    chw = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
    (tmp_path / "cifar-10-batches-bin").mkdir()
    (tmp_path / "cifar-10-batches-py").mkdir()
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        rows = slice(3 * b, 3 * b + 3)
        records = np.concatenate([y[rows, None].astype(np.uint8), chw[rows]], axis=1)
        (tmp_path / "cifar-10-batches-bin" / f"{name}.bin").write_bytes(records.tobytes())
        with open(tmp_path / "cifar-10-batches-py" / name, "wb") as handle:
            pickle.dump({b"data": chw[rows], b"labels": y[rows].tolist()}, handle)
    for source in ("binary", "python", "auto"):
        x_train, y_train = load_cifar("cifar10", "train", data_dir=tmp_path, source=source)
        assert np.array_equal(x_train, x[:15]) and np.array_equal(y_train, y[:15]), source
        x_test, y_test = load_cifar("cifar10", "test", data_dir=tmp_path, source=source)
        assert np.array_equal(x_test, x[15:]) and np.array_equal(y_test, y[15:]), source
    with pytest.raises(FileNotFoundError, match="cifar10_jpeg_q75"):
        load_cifar("cifar10", "test", data_dir=tmp_path, source="jpeg")


def test_cifar100_binary_reader_fine_and_coarse(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    coarse, fine = rng.integers(0, 20, 4), rng.integers(0, 100, 4)
    records = np.concatenate([coarse[:, None], fine[:, None], x.transpose(0, 3, 1, 2).reshape(4, -1)], axis=1)
    (tmp_path / "cifar-100-binary").mkdir()
    (tmp_path / "cifar-100-binary" / "test.bin").write_bytes(records.astype(np.uint8).tobytes())
    tx, ty = get_dataset("cifar100", "test", data_dir=tmp_path)
    assert torch.equal(tx, torch.from_numpy(x).permute(0, 3, 1, 2)) and ty.tolist() == fine.tolist()
    _, y_coarse = get_dataset("cifar100", "test", data_dir=tmp_path, label_mode="coarse")
    assert y_coarse.tolist() == coarse.tolist()
    (tmp_path / "cifar-100-binary" / "test.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(ValueError, match="not a multiple of the 3074-byte record"):
        get_dataset("cifar100", "test", data_dir=tmp_path)


# ------------------------------------------------------------------ MNIST-1D
def test_mnist1d_is_generated_offline_deterministic_and_side_effect_free():
    np.random.seed(123)
    random.seed(123)
    numpy_before, python_before = np.random.get_state()[1].copy(), random.getstate()
    x_train, y_train, x_test, y_test = load_mnist1d(seed=42, num_samples=5000)
    assert np.array_equal(np.random.get_state()[1], numpy_before) and random.getstate() == python_before
    assert x_train.shape == (4000, 1, 40) and x_test.shape == (1000, 1, 40)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert sorted(torch.unique(y_train).tolist()) == list(range(10))
    # generated again (get_dataset caches per process): the same arrays
    x, y = get_dataset("mnist1d", "test")
    assert torch.equal(x, x_test) and torch.equal(y, y_test) and dataset_info("mnist1d")["input_shape"] == (1, 40)
    small = load_mnist1d(seed=0, num_samples=500)
    assert small[0].shape == (400, 1, 40) and small[2].shape == (100, 1, 40)
    assert not torch.equal(small[0], x_train[:400])


# ------------------------------------------------------------------ augmentation
def reference_crop_flip(x, padding, mode, generator):
    """Pad the batch explicitly, crop each image with a Python loop, flip: the slow, obvious version."""
    n, _, h, w = x.shape
    dy = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator)
    flipped = torch.rand(n, 1, generator=generator) < 0.5
    padded = F.pad(x.double(), (padding,) * 4, mode={"zeros": "constant"}.get(mode, mode))
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    return torch.where(flipped.view(n, 1, 1, 1), out.flip(-1), out)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), c=st.integers(1, 3), h=st.integers(5, 12), w=st.integers(5, 12),
       padding=st.integers(0, 4), mode=st.sampled_from(["reflect", "replicate", "zeros"]), seed=st.integers(0, 999))
def test_random_crop_flip_matches_explicit_pad_crop_flip(n, c, h, w, padding, mode, seed):
    x = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8)
    out = RandomCropFlip(padding, padding_mode=mode)(x, torch.Generator().manual_seed(seed))
    expected = reference_crop_flip(x, padding, mode, torch.Generator().manual_seed(seed))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out.double(), expected)


def test_augmentation_is_deterministic_given_a_seed():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    crop_flip = RandomCropFlip(4)
    a = crop_flip(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, crop_flip(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(a, crop_flip(x, torch.Generator().manual_seed(8)))
    assert torch.equal(RandomCropFlip(0, flip=False)(x, torch.Generator()), x)
    flipped = RandomFlip()(x.float(), torch.Generator().manual_seed(0))
    assert all(torch.equal(f, o) or torch.equal(f, o.flip(-1)) for f, o in zip(flipped, x.float()))
    with pytest.raises(ValueError, match="expected a batch"):
        crop_flip(x[0], None)


# ------------------------------------------------------------------ TensorLoader
def toy(n=103):
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    return x, torch.arange(n) % 10


def batches(loader):
    return [(xb.clone(), yb.clone()) for xb, yb in loader]


def test_loader_visits_every_sample_once_per_epoch_and_reshuffles():
    x, y = toy()
    loader = TensorLoader(x, y, batch_size=16, seed=3)
    assert len(loader) == 7 and loader.num_samples == 103
    first = torch.cat([xb[:, 0, 0, 0] for xb, _ in loader])
    assert sorted(first.long().tolist()) == list(range(103)) and loader.state_dict()["epoch"] == 1
    second = torch.cat([xb[:, 0, 0, 0] for xb, _ in loader])
    assert sorted(second.long().tolist()) == list(range(103)) and not torch.equal(first, second)
    loader.set_epoch(0)
    assert torch.equal(torch.cat([xb[:, 0, 0, 0] for xb, _ in loader]), first)
    same_seed = TensorLoader(x, y, batch_size=16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.cat([xb[:, 0, 0, 0] for xb, _ in same_seed]), first)
    ordered = TensorLoader(x, y, batch_size=50, shuffle=False, drop_last=True)
    assert [len(b) for b, _ in ordered] == [50, 50]
    assert torch.equal(next(iter(ordered))[1], y[:50])


def test_loader_resumes_exactly_mid_epoch_with_augmentation():
    x = torch.randint(0, 256, (90, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(90) % 10
    options = {"batch_size": 8, "augment": "crop-flip", "seed": 11, "mean": (0.5,) * 3, "std": (0.2,) * 3}
    reference = TensorLoader(x, y, **options)
    reference.set_epoch(2)
    expected = batches(reference)
    interrupted = TensorLoader(x, y, **options)
    interrupted.set_epoch(2)
    iterator = iter(interrupted)
    done = [next(iterator) for _ in range(5)]
    state = interrupted.state_dict()
    assert state == {"seed": 11, "epoch": 2, "batch": 5}
    resumed = TensorLoader(x, y, batch_size=8, augment="crop-flip", mean=(0.5,) * 3, std=(0.2,) * 3)
    resumed.load_state_dict(state)
    rest = batches(resumed)
    assert len(done) + len(rest) == len(expected) == 12
    for (xb, yb), (xe, ye) in zip(done + rest, expected):
        assert torch.equal(xb, xe) and torch.equal(yb, ye)
    assert resumed.state_dict() == {"seed": 11, "epoch": 3, "batch": 0}


@pytest.mark.parametrize("drop_last", [False, True])
def test_loader_shards_across_ranks(drop_last):
    x, y = toy(103)
    world = 4
    shards = [TensorLoader(x, y, batch_size=10, seed=5, rank=r, world_size=world, drop_last=drop_last)
              .epoch_indices(1) for r in range(world)]
    sizes = {len(s) for s in shards}
    seen = torch.cat(shards)
    if drop_last:
        assert sizes == {20} and len(set(seen.tolist())) == 80  # 25 per rank, whole batches of 10 only
    else:
        assert sizes == {26} and set(seen.tolist()) == set(range(103))  # padded to 104 by wrapping around
        assert len(seen) - len(set(seen.tolist())) == 1
    with pytest.raises(ValueError, match="rank=4"):
        TensorLoader(x, y, batch_size=10, rank=4, world_size=4)


def test_loader_normalises_uint8_batches():
    x = torch.full((4, 3, 2, 2), 255, dtype=torch.uint8)
    xb, _ = next(iter(TensorLoader(x, torch.zeros(4), batch_size=4, shuffle=False, mean=(0.5, 0.25, 0.0),
                                   std=(0.5, 0.25, 2.0))))
    assert xb.dtype == torch.float32 and xb[:, :, 0, 0].tolist() == [[1.0, 3.0, 0.5]] * 4


def test_subset_indices_balanced_and_reproducible():
    y = torch.arange(1000) % 10
    chosen = subset_indices(y, 95, seed=4)
    assert torch.bincount(y[chosen]).tolist() == [10] * 5 + [9] * 5
    assert torch.equal(chosen, subset_indices(y, 95, seed=4)) and len(set(chosen.tolist())) == 95
    with pytest.raises(ValueError, match="smallest class"):
        subset_indices(torch.tensor([0] * 10 + [1] * 2), 8)


# ------------------------------------------------------------------ image folders
def make_image_folder(root: Path) -> dict[str, tuple[int, int, int]]:
    """3 classes x 4 images, PNG and JPEG, various sizes, each class one solid colour."""
    colours = {"cat": (200, 30, 30), "dog": (30, 200, 30), "fish": (30, 30, 200)}
    for c, (name, colour) in enumerate(colours.items()):
        (root / name).mkdir(parents=True)
        for i in range(4):
            size = (40 + 10 * i, 30 + 7 * c)
            Image.new("RGB", size, colour).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    (root / "cat" / "notes.txt").write_text("not an image")
    return colours


def test_image_folder_labels_and_eval_transform(tmp_path):
    colours = make_image_folder(tmp_path)
    dataset = ImageFolder(tmp_path, transform=imagenet_transform(train=False, size=24, mean=(0, 0, 0),
                                                                 std=(1, 1, 1)))
    assert dataset.classes == ["cat", "dog", "fish"] and len(dataset) == 12
    assert dataset.targets == [0] * 4 + [1] * 4 + [2] * 4
    image, label = dataset[5]
    assert image.shape == (3, 24, 24) and label == 1
    expected = torch.tensor(colours["dog"], dtype=torch.float32) / 255
    png, _ = dataset[5]  # index 5 is dog/1.png: lossless, so the solid colour survives exactly
    assert torch.allclose(png.mean((1, 2)), expected, atol=1e-6)
    raw, _ = ImageFolder(tmp_path)[0]
    assert raw.dtype == torch.uint8 and raw.shape == (3, 30, 40)
    with pytest.raises(FileNotFoundError, match="no images"):
        ImageFolder(tmp_path / "cat")


def test_random_resized_crop_stays_in_bounds_and_in_scale():
    torch.manual_seed(0)
    crop = RandomResizedCrop(16, scale=(0.08, 1.0))
    for width, height in [(50, 40), (300, 20), (17, 200)]:
        for _ in range(50):
            left, top, w, h = crop.box(width, height)
            assert 0 <= left and 0 <= top and left + w <= width and top + h <= height and w > 0 and h > 0
    for _ in range(50):  # on a roomy image the first try succeeds: area fraction and aspect ratio in range
        left, top, w, h = crop.box(400, 400)
        assert 0.07 <= w * h / 160000 <= 1.0 and 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
    assert crop(Image.new("RGB", (50, 40))).size == (16, 16)


def test_image_folder_with_multiworker_loader_is_reproducible(tmp_path):
    make_image_folder(tmp_path)
    dataset = ImageFolder(tmp_path, transform=imagenet_transform(train=True, size=16))

    def run():
        loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True, num_workers=2,
                                             generator=torch.Generator().manual_seed(0))
        return [(xb, yb) for xb, yb in loader]

    first, second = run(), run()
    assert [xb.shape for xb, _ in first] == [(4, 3, 16, 16)] * 3
    assert sorted(torch.cat([yb for _, yb in first]).tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(first, second))


def test_cifar_python_reader_refuses_pickles_that_run_code(tmp_path):
    """The CIFAR python format is read with an allow-list unpickler: arrays and lists load, callables are refused."""
    import os

    from weightsym.data.cifar import safe_unpickle

    good = tmp_path / "batch"
    with open(good, "wb") as handle:
        pickle.dump({b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), b"labels": [1, 2]}, handle)
    assert np.array_equal(safe_unpickle(good)[b"data"], np.arange(6, dtype=np.uint8).reshape(2, 3))

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    bad = tmp_path / "evil"
    with open(bad, "wb") as handle:
        pickle.dump({b"data": Exploit()}, handle)
    with pytest.raises(ValueError, match="evil.*refusing to load"):
        safe_unpickle(bad)
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------ image folders: labels, links, broken files
def _folder_split(root: Path, split: str, classes: dict[str, int]) -> None:
    """``root/split/<class>/<i>.png``: each class's images carry its index in the red channel."""
    for name, count in classes.items():
        (root / split / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (20, 20), (40 * (ord(name[-1]) - ord("0")), 0, 0)).save(root / split / name / f"{i}.png")


def test_validation_folder_lacking_a_class_is_labelled_by_the_training_classes(tmp_path):
    """Issue 10: a val/ folder without class n2 used to be labelled from its own listing (n3 got label 1, not 2)."""
    from weightsym.train.config import TrainConfig
    from weightsym.train.data import make_test_loader, training_data_info
    from weightsym.train.distributed import DistContext

    _folder_split(tmp_path, "train", {"n1": 2, "n2": 2, "n3": 2})
    _folder_split(tmp_path, "val", {"n1": 1, "n3": 2})
    config = TrainConfig(dataset="imagefolder", data_dir=str(tmp_path), image_size=16, workers=0, eval_batch_size=8)
    info = training_data_info("imagefolder", str(tmp_path), 16)
    assert info["classes"] == ("n1", "n2", "n3") and info["num_classes"] == 3
    labels = torch.cat([yb for _, yb in make_test_loader(config, info, DistContext())]).tolist()
    assert labels == [0, 2, 2]
    _folder_split(tmp_path, "val", {"n9": 1})  # a class the training split does not have
    with pytest.raises(ValueError, match=r"class folders \['n9'\] that the training split does not have"):
        list(make_test_loader(config, info, DistContext()))


def test_image_folder_refuses_links_out_of_the_folder(tmp_path):
    root = tmp_path / "data"
    make_image_folder(root)
    outside = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(outside)
    (root / "dog" / "inside.png").symlink_to(root / "cat" / "1.png")  # a link inside the folder is fine
    assert len(ImageFolder(root)) == 13
    (root / "dog" / "escape.png").symlink_to(outside)
    with pytest.raises(ValueError, match=r"dog/escape\.png resolves to .*secret\.png, outside the dataset folder"):
        ImageFolder(root)
    (root / "dog" / "escape.png").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.new("RGB", (8, 8)).save(elsewhere / "x.png")
    (root / "bird").symlink_to(elsewhere, target_is_directory=True)  # a class folder linked from outside
    with pytest.raises(ValueError, match=r"bird/x\.png resolves to .*elsewhere/x\.png"):
        ImageFolder(root)


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("problem", ["not an image", "truncated", "decompression bomb"])
def test_undecodable_images_are_named_also_from_loader_workers(tmp_path, monkeypatch, workers, problem):
    from weightsym.train.data import FolderLoader

    make_image_folder(tmp_path)
    bad = tmp_path / "dog" / "2.png"
    if problem == "not an image":
        bad.write_bytes(b"this is not a PNG file")
    elif problem == "truncated":
        Image.new("RGB", (64, 64), (1, 2, 3)).save(bad)
        bad.write_bytes(bad.read_bytes()[:60])
    else:
        Image.new("RGB", (120, 120)).save(bad)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 14,400 pixels > 2 x the limit: an error, not a warning
    dataset = ImageFolder(tmp_path, transform=imagenet_transform(train=False, size=8))
    loader = FolderLoader(dataset, batch_size=4, shuffle=False, seed=0, workers=workers, pad=False)
    with pytest.raises(ValueError) as error:
        list(loader)
    first = str(error.value).splitlines()[0]
    assert first.startswith(f"{bad}: cannot decode the image") and "replace or remove the file" in first, first
    assert ("DataLoader worker" in first) == (workers > 0)
