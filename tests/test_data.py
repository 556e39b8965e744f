"""Data loaders on tiny fixtures written in torchvision's real MNIST layout, the bundled
digits, the one-class split and test-set capping. Offline and fast."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vaecam.data import DataNotFoundError
from vaecam.data.mnist import (
    MNIST_FILES,
    LabelledImages,
    OneClassSplit,
    load_digits,
    load_mnist,
    one_class_split,
    subsample,
)

N_TRAIN, N_TEST = 50, 20


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """IDX3: magic 2051 (0x00000803, unsigned bytes, 3 dims), big-endian dims, raw pixels."""
    n, h, w = images.shape
    path.write_bytes(struct.pack(">4i", 2051, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """IDX1: magic 2049 (0x00000801, unsigned bytes, 1 dim), big-endian count, raw labels."""
    path.write_bytes(struct.pack(">2i", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def write_mnist(root: Path, seed: int = 0, compress: bool = False) -> dict[str, np.ndarray]:
    """A tiny MNIST in ``<root>/MNIST/raw``: every digit 5 times in train, twice in test."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train_images": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train_labels": rng.permutation(np.arange(N_TRAIN) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "test_labels": rng.permutation(np.arange(N_TEST) % 10).astype(np.uint8),
    }
    arrays["train_images"][0] = 0  # pin the extremes, so the [0, 1] scaling is checked exactly
    arrays["train_images"][1] = 255
    files = dict(zip(MNIST_FILES, arrays, strict=True))
    for name, key in files.items():
        writer = write_idx_images if key.endswith("images") else write_idx_labels
        writer(raw / name, arrays[key])
        if compress:
            (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
            (raw / name).unlink()
    return arrays


def as_digits(images: torch.Tensor) -> np.ndarray:
    """(N, 1, 28, 28) float in [0, 1] back to (N, 28, 28) uint8."""
    return (images[:, 0] * 255).round().to(torch.uint8).numpy()


# --- MNIST -----------------------------------------------------------------------------------


def test_mnist_reads_torchvision_layout(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path)
    data = load_mnist(tmp_path, 28, download=False)
    assert isinstance(data, LabelledImages)
    assert data.train_images.shape == (N_TRAIN, 1, 28, 28)
    assert data.test_images.shape == (N_TEST, 1, 28, 28)
    assert data.train_images.dtype == data.test_images.dtype == torch.float32
    assert data.train_labels.dtype == data.test_labels.dtype == torch.int64
    assert data.train_images.min() == 0.0 and data.train_images.max() == 1.0
    # Pixel-exact at the native size: no resize, only the /255 scaling.
    np.testing.assert_array_equal(as_digits(data.train_images), arrays["train_images"])
    np.testing.assert_array_equal(as_digits(data.test_images), arrays["test_images"])
    np.testing.assert_array_equal(data.train_labels.numpy(), arrays["train_labels"])
    np.testing.assert_array_equal(data.test_labels.numpy(), arrays["test_labels"])


def test_mnist_resizes_into_unit_range(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path)
    data = load_mnist(tmp_path, 14, download=False)
    assert data.train_images.shape == (N_TRAIN, 1, 14, 14)
    assert data.test_images.shape == (N_TEST, 1, 14, 14)
    assert 0.0 <= data.train_images.min() and data.train_images.max() <= 1.0
    # The all-black and all-white fixtures stay black and white; the mean level is kept.
    assert torch.all(data.train_images[0] == 0.0)
    assert torch.allclose(data.train_images[1], torch.ones(1, 14, 14))
    assert data.train_images.mean() == pytest.approx(arrays["train_images"].mean() / 255, abs=0.01)


def test_mnist_reads_gz_only(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path, compress=True)
    data = load_mnist(tmp_path, 28, download=False)
    np.testing.assert_array_equal(as_digits(data.test_images), arrays["test_images"])


def test_mnist_corrupt_gz_is_one_clear_error(tmp_path: Path) -> None:
    write_mnist(tmp_path, compress=True)
    archive = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    archive.write_bytes(b"not gzip")
    with pytest.raises(DataNotFoundError, match="gunzip -k") as caught:
        load_mnist(tmp_path, 28, download=False)
    assert caught.value.__suppress_context__
    assert not (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.partial").exists()


def test_mnist_missing_files_message(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as caught:
        load_mnist(tmp_path / "nowhere", 28, download=False)
    message = str(caught.value)
    assert str((tmp_path / "nowhere" / "MNIST" / "raw").resolve()) in message
    for name in MNIST_FILES:
        assert name in message
    assert "python -m orchestrator.sweep digits" in message
    assert isinstance(caught.value, FileNotFoundError)  # callers may catch the builtin


def test_mnist_partly_missing_names_missing_file(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataNotFoundError, match="missing: t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path, 28, download=False)


def test_mnist_failed_download_is_one_short_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline: torchvision's multi-mirror RuntimeError becomes one DataNotFoundError with no
    chained traceback. The download is faked, so this test needs no network."""
    from torchvision.datasets import MNIST

    def offline(self: MNIST) -> None:
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n"
            "<urlopen error [Errno -2] Name or service not known>\n"
        )

    monkeypatch.setattr(MNIST, "download", offline)
    with pytest.raises(DataNotFoundError) as caught:
        load_mnist(tmp_path, 28, download=True)
    message = str(caught.value)
    assert "download failed" in message and "Name or service not known" in message
    assert "digits" in message and str(tmp_path.resolve()) in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_mnist_failed_download_leaves_no_folder_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchvision creates ``<root>/MNIST/raw`` before it downloads into it: a download that
    fails (offline, faked here) takes the folders it created with it, the lock file too."""
    from torchvision.datasets import MNIST

    def offline(self: MNIST) -> None:
        Path(self.raw_folder).mkdir(parents=True, exist_ok=True)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(MNIST, "download", offline)
    for root in (tmp_path / "missing", tmp_path / "empty"):
        if root.name == "empty":
            root.mkdir()
        with pytest.raises(DataNotFoundError):
            load_mnist(root, 28, download=True)
        assert not (root / "MNIST").exists()
        assert root.exists() == (root.name == "empty")  # a folder that was there stays


def test_mnist_corrupt_file_is_not_reported_missing(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00" * 16)
    with pytest.raises(Exception) as caught:
        load_mnist(tmp_path, 28, download=False)
    assert not isinstance(caught.value, DataNotFoundError)


# --- digits ----------------------------------------------------------------------------------


def test_digits_shapes_range_and_fixed_split() -> None:
    data = load_digits(Path("ignored"), 16, download=False)
    assert data.train_images.shape == (1257, 1, 16, 16)
    assert data.test_images.shape == (540, 1, 16, 16)
    assert data.train_images.dtype == torch.float32 and data.train_labels.dtype == torch.int64
    assert data.train_images.min() == 0.0 and data.train_images.max() == 1.0
    assert sorted(data.test_labels.unique().tolist()) == list(range(10))
    # Stratified: every digit is about 30% test (sklearn's digits have 174..183 per digit).
    counts = torch.bincount(data.test_labels, minlength=10)
    assert counts.min() >= 52 and counts.max() <= 55
    again = load_digits(Path("elsewhere"), 16, download=True)  # root and download are ignored
    for first, second in zip(data, again, strict=True):
        assert torch.equal(first, second)


def test_digits_native_size_is_sklearn_scaled() -> None:
    from sklearn.datasets import load_digits as sklearn_digits

    data = load_digits(Path("."), 8, download=False)
    pool = torch.cat([data.train_images, data.test_images]).flatten(1).numpy()
    expected = sklearn_digits().images.reshape(1797, 64).astype(np.float32) / 16
    # The same 1797 images (at 8x8 no resize), split in some order: compare as multisets.
    rows, counts = np.unique(pool, axis=0, return_counts=True)
    expected_rows, expected_counts = np.unique(expected, axis=0, return_counts=True)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(counts, expected_counts)


@pytest.mark.parametrize("loader", [load_mnist, load_digits])
def test_every_loader_rejects_bad_image_size(loader, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image_size"):
        loader(tmp_path, 0, False)


# --- one-class split -------------------------------------------------------------------------


def labelled(train_labels: list[int], test_labels: list[int]) -> LabelledImages:
    """Images whose single pixel is their own index, so a split can be traced back."""
    n, m = len(train_labels), len(test_labels)
    return LabelledImages(
        torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1),
        torch.tensor(train_labels),
        torch.arange(m, dtype=torch.float32).view(m, 1, 1, 1),
        torch.tensor(test_labels),
    )


def test_one_class_split_keeps_inlier_only() -> None:
    labels = [i % 3 for i in range(30)]  # ten each of 0, 1, 2
    data = labelled(labels, [0, 1, 2, 2])
    split = one_class_split(data, 1, 0.2, torch.Generator().manual_seed(0))
    assert isinstance(split, OneClassSplit)
    assert split.train.shape == (8, 1, 1, 1) and split.val.shape == (2, 1, 1, 1)
    train_ids = set(split.train.flatten().long().tolist())
    val_ids = set(split.val.flatten().long().tolist())
    assert not train_ids & val_ids
    assert train_ids | val_ids == {i for i, label in enumerate(labels) if label == 1}
    assert torch.equal(split.test_images, data.test_images)
    assert torch.equal(split.test_labels, data.test_labels)


def test_one_class_split_is_seeded() -> None:
    data = load_digits(Path("."), 8, download=False)
    first = one_class_split(data, 4, 0.25, torch.Generator().manual_seed(3))
    second = one_class_split(data, 4, 0.25, torch.Generator().manual_seed(3))
    other = one_class_split(data, 4, 0.25, torch.Generator().manual_seed(4))
    assert torch.equal(first.val, second.val)
    assert not torch.equal(first.val, other.val)
    assert len(first.train) + len(first.val) == int((data.train_labels == 4).sum())


def test_one_class_split_errors() -> None:
    data = labelled([0, 0, 0, 1, 1, 2], [0])
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"\[0, 1, 2\]"):
        one_class_split(data, 7, 0.2, generator)
    for fraction in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="val_fraction"):
            one_class_split(data, 0, fraction, generator)
    with pytest.raises(ValueError, match="too few"):
        one_class_split(data, 2, 0.5, generator)  # one image: nothing left to train on


# --- subsample -------------------------------------------------------------------------------


def test_subsample_none_or_large_keeps_all() -> None:
    images, labels = torch.rand(12, 1, 2, 2), torch.arange(12) % 3
    generator = torch.Generator().manual_seed(0)
    for cap in (None, 12, 100):
        kept_images, kept_labels = subsample(images, labels, cap, generator)
        assert torch.equal(kept_images, images) and torch.equal(kept_labels, labels)


def test_subsample_is_stratified_subset() -> None:
    labels = torch.tensor([0] * 90 + [1] * 10)  # a 10% class, like one inlier digit of ten
    images = torch.arange(100, dtype=torch.float32).view(100, 1, 1, 1)
    kept_images, kept_labels = subsample(images, labels, 20, torch.Generator().manual_seed(0))
    assert len(kept_images) == len(kept_labels) == 20
    assert torch.bincount(kept_labels).tolist() == [18, 2]
    ids = kept_images.flatten().long()
    assert torch.equal(labels[ids], kept_labels)  # images and labels stay paired
    assert len(set(ids.tolist())) == 20 and torch.all(ids[1:] > ids[:-1])  # distinct, in order


def test_subsample_keeps_a_rare_class() -> None:
    labels = torch.tensor([0] * 99 + [1])
    images = torch.zeros(100, 1, 1, 1)
    _, kept = subsample(images, labels, 5, torch.Generator().manual_seed(0))
    assert torch.bincount(kept).tolist() == [4, 1]


def test_subsample_seeded_and_validated() -> None:
    images, labels = torch.rand(50, 1, 2, 2), torch.arange(50) % 5
    first = subsample(images, labels, 10, torch.Generator().manual_seed(1))
    second = subsample(images, labels, 10, torch.Generator().manual_seed(1))
    assert torch.equal(first[0], second[0])
    with pytest.raises(ValueError, match="max_count"):
        subsample(images, labels, 0, torch.Generator())
    with pytest.raises(ValueError, match="labels"):
        subsample(images, labels[:-1], 10, torch.Generator())
