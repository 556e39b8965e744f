"""MNIST, and scikit-learn's digits in its place offline: one-class anomaly detection on digits
(PAPER.md sections 1 and 3), the paper's MNIST experiment, plugged into the anomaly skeleton
(:mod:`vaecam.experiments.anomaly`). Everything known of the dataset is here: its settings, its
plug-in, its layout under a data root (torchvision's ``<root>/MNIST/raw``), its download and
its stand-in (:data:`MNIST`, :data:`DIGITS`); its files are read by :mod:`vaecam.data.mnist`.

Train on one digit (the inlier), validate on held-out images of it, test on all ten: the inlier
is normal, every other digit anomalous. Metrics are image-level (there are no pixel masks):
AUROC and average precision against all other digits, and AUROC against each digit alone, each
with a 95% stratified bootstrap interval.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

from vaecam.data import DataSource
from vaecam.data.download import Download, Source
from vaecam.data.images import Progress
from vaecam.data.mnist import (
    MNIST_FILES,
    LabelledImages,
    load_digits,
    load_mnist,
    one_class_split,
    subsample,
)
from vaecam.experiments.common import AnomalyData, AnomalySettings, Benchmark, Dataset, Found
from vaecam.settings import setting
from vaecam.uncertainty import bootstrap_interval, interval_metrics

DOWNLOAD = Download(
    name="mnist",
    title="MNIST",
    folder="MNIST",
    loader_root="parent",
    parts=tuple(f"raw/{name}" for name in MNIST_FILES),
    kind="torchvision",
    # torchvision downloads these (from its first mirror that answers) and checks
    # their MD5s itself; the MD5s are torchvision's (torchvision.datasets.MNIST
    # .resources), the sizes those of the files on yann.lecun.com.
    sources=tuple(
        Source(f"https://ossci-datasets.s3.amazonaws.com/mnist/{name}", size, (("md5", md5),))
        for name, (size, md5) in {
            "train-images-idx3-ubyte.gz": (9912422, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            "train-labels-idx1-ubyte.gz": (28881, "d53e105ee54ea40749a09fcbcd1e9432"),
            "t10k-images-idx3-ubyte.gz": (1648877, "9fb629c4189551a2d022fa330f9573f3"),
            "t10k-labels-idx1-ubyte.gz": (4542, "ec29112dd5afa0611ce80d1b7f02629c"),
        }.items()
    ),
    licence="CC BY-SA 3.0 (Y. LeCun, C. Cortes, C. J. C. Burges)",
    homepage="http://yann.lecun.com/exdb/mnist/",
    into="raw",
)


@dataclass(frozen=True)
class OneClassSettings(AnomalySettings):
    """The authors' MNIST setup (PAPER.md section 3): the conv VAE at 28x28, latent 32, Adam
    1e-3, batch 128, 100 epochs, on inlier digit 1."""

    download: bool = setting(True, data=True)  # fetch MNIST when missing and the network allows
    inlier: int = setting(1, ge=0, le=9)
    val_fraction: float = setting(0.1, gt=0, lt=1)  # inlier training images held out
    max_train_images: int | None = setting(None, ge=1)  # None: all
    max_test_images: int | None = setting(None, ge=1)  # a stratified subset; None: all


@dataclass(frozen=True)
class DigitsSettings(OneClassSettings):
    """scikit-learn's bundled 8x8 digits (no download), upsampled to 16x16 so the two convs
    leave a 4x4 map to attend over; ~125 training images per digit."""

    dataset: str = setting("digits", data=True)
    download: bool = setting(False, data=True)
    image_size: int = setting(16, ge=8)
    batch_size: int = setting(32, ge=1)
    epochs: int = setting(60, ge=1)


Loader = Callable[[Path, int, bool], LabelledImages]

MNIST_URL = "https://yann.lecun.com/exdb/mnist/"
DIGITS_FILE = "digits.csv.gz"  # in scikit-learn's sklearn/datasets/data
DIGITS_URL = "https://archive.ics.uci.edu/dataset/80"  # Optical Recognition of Handwritten Digits


def check(loader: Loader, settings: OneClassSettings, progress: Progress | None = None) -> None:
    """Read (or download) the dataset, every image decoded: a missing or broken one fails
    before any trial starts."""
    loader(Path(settings.data_root), settings.image_size, settings.download)


def load(loader: Loader, settings: OneClassSettings) -> AnomalyData:
    """The inlier's train / validation images and the test images, capped at
    ``max_train_images`` / ``max_test_images``. Drawn from a generator of their own, so the
    selection never depends on how far a resumed trial had got. Never downloads: ``check``
    did, on the driver; on a cluster every node fetches its data as it joins."""
    images = loader(Path(settings.data_root), settings.image_size, False)
    rng = torch.Generator().manual_seed(settings.seed)
    split = one_class_split(images, settings.inlier, settings.val_fraction, rng)
    train = split.train
    if settings.max_train_images is not None:
        train = train[torch.randperm(len(train), generator=rng)[: settings.max_train_images]]
    test, labels = subsample(split.test_images, split.test_labels, settings.max_test_images, rng)
    groups = [
        f"{'inlier' if digit == settings.inlier else 'outlier'} {digit}"
        for digit in labels.tolist()
    ]
    return AnomalyData(
        train, split.val, test, labels != settings.inlier, groups, groups, classes=labels
    )


def image_metrics(
    scores: Tensor, data: AnomalyData, settings: OneClassSettings
) -> dict[str, float]:
    """``image_auroc`` and ``average_precision`` (inlier vs all other digits) and
    ``image_auroc_vs_<d>`` for each other digit ``d`` (inlier vs that digit alone), each with
    its 95% bootstrap interval and class sizes (:func:`~vaecam.uncertainty.interval_metrics`)."""
    assert data.classes is not None
    out = interval_metrics("image_auroc", bootstrap_interval("auroc", scores, data.anomalous))
    interval = bootstrap_interval("average_precision", scores, data.anomalous)
    out |= interval_metrics("average_precision", interval)
    inliers = data.classes == settings.inlier
    for digit in data.classes[~inliers].unique().tolist():
        pair = inliers | (data.classes == digit)
        interval = bootstrap_interval("auroc", scores[pair], data.anomalous[pair])
        out |= interval_metrics(f"image_auroc_vs_{digit}", interval)
    return out


def mnist_source(settings: OneClassSettings) -> DataSource:
    """torchvision's four raw MNIST files."""
    raw = Path(settings.data_root).expanduser().resolve() / DOWNLOAD.folder / "raw"
    return DataSource("mnist", raw, MNIST_FILES, MNIST_URL, selection={"inlier": settings.inlier})


def digits_source(settings: OneClassSettings) -> DataSource:
    """The file scikit-learn ships its digits in."""
    folder = Path(str(importlib.resources.files("sklearn.datasets.data")))
    selection = {"inlier": settings.inlier}
    return DataSource("sklearn_digits", folder, (DIGITS_FILE,), DIGITS_URL, selection=selection)


def find(root: Path, quick: bool, cache: Path) -> Found | str:
    """MNIST in torchvision's layout under ``root``; with ``quick``, the digits in its place."""
    raw = root / DOWNLOAD.folder / "raw"
    if all((raw / name).exists() for name in MNIST_FILES):
        return Found("mnist", str(root), "real")
    missing = f"MNIST is not under {raw} (python -m orchestrator.sweep mnist downloads it)"
    if quick:
        data = f"stand-in: scikit-learn's 8x8 digits, not MNIST ({missing})"
        return Found("digits", str(root), data)
    return missing


MNIST = Dataset(
    "mnist",
    Benchmark(
        OneClassSettings,
        partial(check, load_mnist),
        partial(load, load_mnist),
        mnist_source,
        image_metrics,
    ),
    download=DOWNLOAD,
    find=find,
)
DIGITS = Dataset(
    "digits",
    Benchmark(
        DigitsSettings,
        partial(check, load_digits),
        partial(load, load_digits),
        digits_source,
        image_metrics,
    ),
)
