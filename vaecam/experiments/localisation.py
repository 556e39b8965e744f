"""Anomaly localisation on MVTec AD (PAPER.md sections 1, 3, 4 and 6), one model per category,
plugged into the anomaly skeleton (:mod:`vaecam.experiments.anomaly`).

Train on a category's defect-free training images (a held-out slice of them validates); every
test pixel has ground truth. Metrics: pixel AUROC (all test pixels pooled) and AUPRO up to 30%
false-positive rate (the MVTec AD benchmark's standard) from each map, image AUROC (defective vs
good images) from each image score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaecam.data import DataSource, hold_out
from vaecam.data.images import Progress
from vaecam.data.mvtec import CATEGORIES, GOOD, MVTEC_URL, load_mvtec, verify_category
from vaecam.experiments.common import (
    AnomalyData,
    AnomalySettings,
    Benchmark,
    subset_source,
)
from vaecam.settings import setting
from vaecam.uncertainty import (
    aupro_interval,
    bootstrap_interval,
    interval_metrics,
    pixel_auroc_interval,
)


@dataclass(frozen=True)
class MVTecSettings(AnomalySettings):
    """The reproduction's MVTec AD setup (PAPER.md section 3): a ResNet-18 VAE from scratch at
    256x256, latent 32, Adam 1e-4, batch 16, 300 epochs, with the reproduction's encoder stem
    (a 3x3 stride-2 conv, no max-pool: ``encoder.layer2.1.conv1`` is their 64x64 map at 256
    px; ``{"stem": "torchvision"}`` for torchvision's 7x7 conv and max-pool, 32x32 there).
    Scored in batches of 4, the reproduction's ``test_expVAE.py`` default (their batch-wide
    RMS makes the ``reproduction`` maps depend on it; their test loader shuffled, ours keeps
    the test-set order)."""

    dataset: str = setting("mvtec", data=True)
    category: str = setting("grid", choices=CATEGORIES, data=True)
    image_size: int = setting(256, ge=32)
    model: str = "resnet_vae"
    model_options: dict[str, Any] = setting({"pretrained": False, "stem": "reproduction"})
    lr: float = setting(1e-4, gt=0)
    batch_size: int = setting(16, ge=1)
    epochs: int = setting(300, ge=1)
    val_fraction: float = setting(0.1, gt=0, lt=1)  # share of train/good held out
    max_fpr: float = setting(0.3, gt=0, le=1)  # AUPRO's integration limit
    figure_examples: int = setting(2, ge=0)
    score_batch_size: int = setting(4, ge=1)


def check(settings: MVTecSettings, progress: Progress | None = None) -> None:
    """The category's folders, a mask for every defective test image, and every file decoded
    once, before any trial starts."""
    verify_category(Path(settings.data_root), settings.category, progress)


def load(settings: MVTecSettings) -> AnomalyData:
    data = load_mvtec(Path(settings.data_root), settings.category, settings.image_size)
    # The validation slice from its own generator: the same whatever the resume point.
    rng = torch.Generator().manual_seed(settings.seed)
    train, val = hold_out(data.train, settings.val_fraction, rng, f"MVTec AD {settings.category}")
    titles = [f"{Path(path).parent.name}/{Path(path).name}" for path in data.test_paths]
    anomalous = torch.tensor([defect != GOOD for defect in data.test_defects])
    return AnomalyData(
        train, val, data.test_images, anomalous, data.test_defects, titles, data.test_masks
    )


def map_metrics(maps: Tensor, data: AnomalyData, settings: MVTecSettings) -> dict[str, float]:
    """``pixel_auroc`` (all test pixels pooled) and ``aupro`` (up to ``max_fpr``), each with
    its 95% bootstrap interval over test images (the image is the resampling unit: its pixels
    are not independent) and its pixel counts."""
    return interval_metrics("pixel_auroc", pixel_auroc_interval(maps, data.masks)) | (
        interval_metrics("aupro", aupro_interval(maps, data.masks, max_fpr=settings.max_fpr))
    )


def image_metrics(scores: Tensor, data: AnomalyData, settings: MVTecSettings) -> dict[str, float]:
    """``image_auroc``, defective vs good test images (when both are there), with its 95%
    bootstrap interval and image counts."""
    if data.anomalous.all() or not data.anomalous.any():
        return {}
    return interval_metrics("image_auroc", bootstrap_interval("auroc", scores, data.anomalous))


def source(settings: MVTecSettings) -> DataSource:
    """The category's folder (train, test and ground-truth files)."""
    return subset_source("mvtec_ad", settings.data_root, "category", settings.category, MVTEC_URL)


MVTEC = Benchmark(MVTecSettings, check, load, source, image_metrics, map_metrics)
