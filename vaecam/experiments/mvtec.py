"""MVTec AD: anomaly localisation (PAPER.md sections 1, 3, 4 and 6), one model per category,
plugged into the anomaly skeleton (:mod:`vaecam.experiments.anomaly`). Everything known of the
dataset is here (:data:`MVTEC`): its settings, its plug-in, its layout under a data root
(``<root>/mvtec_ad/<category>``), its download and its generated stand-in; its files are read
by :mod:`vaecam.data.mvtec`.

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
from vaecam.data.download import Download, anomalib_archive
from vaecam.data.images import Progress
from vaecam.data.mvtec import CATEGORIES, GOOD, MVTEC_URL, load_mvtec, verify_category
from vaecam.data.synthetic import example_mvtec, found_at, written_once
from vaecam.experiments.common import (
    AnomalyData,
    AnomalySettings,
    Benchmark,
    Dataset,
    Found,
    subset_source,
)
from vaecam.settings import setting
from vaecam.uncertainty import (
    aupro_interval,
    bootstrap_interval,
    interval_metrics,
    pixel_auroc_interval,
)

DOWNLOAD = Download(
    name="mvtec",
    title="MVTec AD",
    folder="mvtec_ad",
    loader_root="folder",
    parts=CATEGORIES,
    # MVTec's own download link, as anomalib uses it (DOWNLOAD_INFO in
    # src/anomalib/data/datamodules/image/mvtecad.py, later mvtec_ad.py): 4.9 GiB
    sources=anomalib_archive(
        "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/"
        "download/420938113-1629952094/mvtec_anomaly_detection.tar.xz",
        5264982680,
        "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
        "eefca59f2cede9c3fc5b6befbfec275e",
    ),
    kind="archive",
    licence="CC BY-NC-SA 4.0 (non-commercial use only; MVTec Software GmbH)",
    homepage=MVTEC_URL,
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


def find(root: Path, quick: bool, cache: Path) -> Found | str:
    """The categories under ``<root>/mvtec_ad`` (with ``quick``, ``grid`` only); with ``quick``
    and none there, the generated stand-in at 64 x 64."""
    folder = root / DOWNLOAD.folder
    present = [c for c in CATEGORIES if (folder / c / "train" / GOOD).is_dir()]
    wanted = [c for c in ("grid",) if c in present] if quick else present
    if wanted:
        absent = [c for c in CATEGORIES if c not in present]
        data = found_at(folder) + (
            f" (categories not under {folder}: {', '.join(absent)})" if absent else ""
        )
        return Found("mvtec", str(folder), data, tuple(wanted))
    missing = f"no MVTec AD category under {folder} (<category>/train/good)"
    if quick:
        data = f"synthetic: generated in the MVTec AD layout ({missing})"
        return Found("mvtec", str(generate(cache)), data, ("grid",), ("image_size=64",))
    return missing


def generate(cache: Path) -> Path:
    """The stand-in of ``--quick`` without real data: ``grid`` and ``bottle`` generated in the
    MVTec AD layout (:func:`~vaecam.data.synthetic.example_mvtec`), once, under ``cache``."""
    return written_once(cache / DOWNLOAD.folder, example_mvtec)


MVTEC = Dataset(
    "mvtec",
    Benchmark(MVTecSettings, check, load, source, image_metrics, map_metrics),
    download=DOWNLOAD,
    find=find,
    generate=generate,
)
