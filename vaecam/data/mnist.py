"""MNIST in torchvision's layout and scikit-learn's bundled digits (its offline stand-in) as
in-memory tensors, the one-class split of the paper, and test-set capping.

The digit loaders have the signature ``(root, image_size, download) -> LabelledImages``; they
read the real on-disk layout (torchvision's ``<root>/MNIST/raw``) and fail with a
``DataNotFoundError`` that names the missing path and how to obtain the data.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from vaecam.data import DataNotFoundError, _check_image_size, _resize, file_lock, hold_out

__all__ = [
    "MNIST_FILES",
    "LabelledImages",
    "OneClassSplit",
    "load_digits",
    "load_mnist",
    "one_class_split",
    "subsample",
]


class LabelledImages(NamedTuple):
    """A labelled train / test pair of image sets, held in memory.

    Images are float32 in [0, 1], shaped (N, C, H, W); labels are int64, shaped (N,).
    """

    train_images: Tensor  # (N, C, H, W) float32 in [0, 1]
    train_labels: Tensor  # (N,) int64
    test_images: Tensor  # (M, C, H, W) float32 in [0, 1]
    test_labels: Tensor  # (M,) int64


class OneClassSplit(NamedTuple):
    """One-class anomaly detection data (PAPER.md section 3): train on one digit only.

    ``train`` and ``val`` hold inlier images only (validation and early stopping see normal
    data only, as at test time nothing else is known to be normal); the test set keeps every
    digit, the inlier as "normal" and the others as "anomalous".
    """

    train: Tensor  # (N_train, C, H, W) inlier training images
    val: Tensor  # (N_val, C, H, W) held-out inlier training images
    test_images: Tensor  # (M, C, H, W) every test image
    test_labels: Tensor  # (M,) their digits


# --------------------------------------------------------------------------------------------
# MNIST, in torchvision's layout
# --------------------------------------------------------------------------------------------

#: The files ``load_mnist`` needs in ``<root>/MNIST/raw`` (torchvision's names, uncompressed).
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_SIZE = 28  # native resolution: no resize at this size


def _gunzip_missing(raw: Path) -> None:
    """Decompress ``<name>.gz`` for each MNIST file present only compressed.

    torchvision checks for the uncompressed files and only extracts archives as part of a
    download, so copied-in ``.gz`` files would otherwise be reported missing when offline.
    """
    for name in MNIST_FILES:
        target, archive = raw / name, raw / f"{name}.gz"
        if not target.is_file() and archive.is_file():
            # never leave a truncated target; a name of its own: trials may start together
            partial = target.with_name(f"{name}.{os.getpid()}.partial")
            try:
                with gzip.open(archive, "rb") as source, open(partial, "wb") as sink:
                    shutil.copyfileobj(source, sink)
                partial.replace(target)
            except OSError as error:  # a read-only folder, a corrupt archive
                partial.unlink(missing_ok=True)
                raise DataNotFoundError(
                    f"MNIST: found {archive} but could not decompress it to {target} ({error}); "
                    f"decompress it yourself, e.g. gunzip -k {archive}"
                ) from None


def _one_line(error: BaseException) -> str:
    """A long multi-mirror download error, cut to its first and last lines."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


def _mnist_missing_message(raw: Path, download: bool, reason: str | None) -> str:
    missing = [name for name in MNIST_FILES if not (raw / name).is_file()]
    lines = [
        f"MNIST not found in {raw}",
        f"  it needs these four files (or the same names + .gz): {', '.join(MNIST_FILES)}",
    ]
    if len(missing) < len(MNIST_FILES):
        lines.append(f"  missing: {', '.join(missing)}")
    if download:
        lines.append(f"  download failed: {reason}")
    lines += [
        "To get them: run with download enabled on a machine with network access (torchvision",
        f"  fetches them into that folder), or copy the four files into {raw}",
        "Offline alternative: python -m orchestrator.sweep digits"
        " (scikit-learn's bundled 8x8 digits, no download).",
    ]
    return "\n".join(lines)


def load_mnist(root: Path, image_size: int = MNIST_SIZE, download: bool = False) -> LabelledImages:
    """MNIST from torchvision's layout ``<root>/MNIST/raw/{MNIST_FILES}``.

    Returns 60000 train and 10000 test images (N, 1, image_size, image_size) in [0, 1],
    resized bilinearly only when ``image_size != 28``. With ``download`` true, missing files
    are fetched into ``<root>/MNIST/raw``; if they are missing and cannot be fetched, raises
    one ``DataNotFoundError`` naming the folder, the files and the offline alternative.
    """
    from torchvision.datasets import MNIST  # torchvision's import is slow; only MNIST needs it

    _check_image_size(image_size)
    root = Path(root).expanduser().resolve()
    raw = root / "MNIST" / "raw"
    if raw.is_dir():
        _gunzip_missing(raw)
    # a failed download leaves nothing behind: the first of these folders it creates goes again
    created = next((p for p in (root, root / "MNIST", raw) if not p.exists()), None)
    try:
        # The train set's download fetches all four files, so the test set never downloads;
        # one process at a time (trials on a fresh node start together, and torchvision writes
        # each file under its final name).
        with file_lock(root / "MNIST" / ".download.lock" if download else None):
            train = MNIST(str(root), train=True, download=download)
        test = MNIST(str(root), train=False, download=False)
    except (RuntimeError, OSError) as error:
        # torchvision raises RuntimeError both for "not found" and for a failed download
        # (listing every mirror's URL error); replace that chain with one short message.
        if all((raw / name).is_file() for name in MNIST_FILES):
            raise  # the files are there: something else went wrong, keep the real error
        reason = _one_line(error) if download else None
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise DataNotFoundError(_mnist_missing_message(raw, download, reason)) from None

    def to_images(data: Tensor) -> Tensor:  # (N, 28, 28) uint8 -> (N, 1, S, S) float32
        return _resize(data.unsqueeze(1).float().div_(255.0), image_size)

    return LabelledImages(
        to_images(train.data),
        train.targets.long(),
        to_images(test.data),
        test.targets.long(),
    )


# --------------------------------------------------------------------------------------------
# scikit-learn's bundled digits: the offline stand-in for MNIST
# --------------------------------------------------------------------------------------------

DIGITS_MAX = 16.0  # sklearn's digits count set pixels in 4x4 blocks: values 0..16
DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0  # fixed, not the trial's seed: every trial sees the same test set


def load_digits(
    root: Path | None = None, image_size: int = 16, download: bool = False
) -> LabelledImages:
    """scikit-learn's 1797 handwritten 8x8 digits, shipped with scikit-learn.

    ``root`` and ``download`` are ignored (nothing to read or fetch); they keep the loader
    signature. Images are scaled to [0, 1] and resized bilinearly to ``image_size`` (16 by
    default: the conv VAE needs a few stride-2 layers), then split 70/30 stratified by digit
    with a fixed seed: train (1257, 1, S, S), test (540, 1, S, S).
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    _check_image_size(image_size)
    bunch = sklearn_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).div_(DIGITS_MAX).unsqueeze(1)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    train_index, test_index = train_test_split(
        torch.arange(len(labels)).numpy(),
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=labels.numpy(),
    )
    train_index, test_index = torch.as_tensor(train_index), torch.as_tensor(test_index)
    images = _resize(images, image_size)
    return LabelledImages(
        images[train_index], labels[train_index], images[test_index], labels[test_index]
    )


# --------------------------------------------------------------------------------------------
# The one-class split and test-set capping
# --------------------------------------------------------------------------------------------


def one_class_split(
    data: LabelledImages, inlier: int, val_fraction: float, generator: torch.Generator
) -> OneClassSplit:
    """Train on the ``inlier`` digit only; hold out ``val_fraction`` of its training images.

    The held-out images (at least one, chosen by ``generator``) are for validation and early
    stopping on normal data only; the test set is returned whole (every digit).
    """
    present = data.train_labels.unique().tolist()
    if inlier not in present:
        raise ValueError(f"inlier {inlier!r} is not among the training labels {present}")
    train, val = hold_out(
        data.train_images[data.train_labels == inlier], val_fraction, generator, f"inlier {inlier}"
    )
    return OneClassSplit(train, val, data.test_images, data.test_labels)


def _stratified_counts(class_sizes: Tensor, max_count: int) -> Tensor:
    """How many of each class to keep: proportional (largest remainder), at least one each
    while ``max_count`` allows, never more than a class has. (K,) int64 summing to max_count."""
    exact = class_sizes.double() * max_count / class_sizes.sum()
    counts = exact.floor().long()
    # Largest remainders first; a stable sort breaks ties by class order, so it is deterministic.
    by_remainder = torch.sort(exact - counts, descending=True, stable=True).indices
    counts[by_remainder[: max_count - int(counts.sum())]] += 1
    # A rare class (the inlier among nine outlier digits is ~10%) must not vanish from a small
    # capped test set, or its AUROC is undefined: take one from the largest class for it.
    for k in (counts == 0).nonzero().flatten().tolist():
        largest = int(counts.argmax())
        if counts[largest] <= 1:
            break  # fewer slots than classes: cannot give every class one
        counts[largest] -= 1
        counts[k] += 1
    return counts


def subsample(
    images: Tensor, labels: Tensor, max_count: int | None, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """A random subset of at most ``max_count`` images (N, C, H, W) and labels (N,), stratified
    by label (class proportions kept, every class present while ``max_count`` allows), in
    their original order. ``None``, or a cap at least N, keeps all of them unchanged.

    Used to cap the test set of quick runs; the randomness comes from ``generator`` only.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if max_count is None or max_count >= len(labels):
        return images, labels
    if max_count < 1:
        raise ValueError(f"max_count must be a positive int or None, got {max_count}")
    classes, inverse, sizes = labels.unique(return_inverse=True, return_counts=True)
    counts = _stratified_counts(sizes, max_count)
    keep = []
    for k in range(len(classes)):
        members = (inverse == k).nonzero().flatten()
        keep.append(members[torch.randperm(len(members), generator=generator)[: counts[k]]])
    index = torch.cat(keep).sort().values
    return images[index], labels[index]
