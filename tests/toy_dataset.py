"""A toy dataset, written as a new dataset's module is (README.md, "Adding a dataset"): its
settings, its plug-in into the anomaly skeleton, its layout under a data root and its generated
stand-in, in one :class:`~vaecam.experiments.common.Dataset`. Nothing to download.

    <root>/toy/train/000.png ...               normal images (stripes across)
    <root>/toy/test/{normal,anomalous}/000.png  anomalous ones have stripes down
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vaecam.data import DataSource, hold_out
from vaecam.data.images import Progress
from vaecam.data.synthetic import found_at, mark_synthetic, written_once
from vaecam.experiments.common import AnomalyData, AnomalySettings, Benchmark, Dataset, Found
from vaecam.settings import setting
from vaecam.uncertainty import bootstrap_interval, interval_metrics

FOLDER = "toy"
SIZE = 16  # pixels a side, on disk


@dataclass(frozen=True)
class ToySettings(AnomalySettings):
    """The toy's defaults: the conv VAE at 16 x 16, a few epochs."""

    dataset: str = setting("toy", data=True)
    image_size: int = setting(SIZE, ge=8)
    latent_dim: int = setting(4, ge=1)
    batch_size: int = setting(8, ge=1)
    epochs: int = setting(2, ge=1)
    val_fraction: float = setting(0.2, gt=0, lt=1)


def make_toy(folder: Path, n_train: int = 20, n_test: int = 8) -> Path:
    """The toy in its layout at ``folder``, marked synthetic."""
    rng = np.random.default_rng(0)
    stripes = np.tile((np.arange(SIZE) % 4 < 2)[:, None] * 200.0, (1, SIZE))  # (S, S)
    splits = {"train": (n_train, stripes), "test/normal": (n_test, stripes)}
    splits["test/anomalous"] = (n_test, stripes.T)
    for split, (count, pattern) in splits.items():
        (folder / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = np.clip(pattern + rng.normal(0, 20, pattern.shape), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / split / f"{i:03d}.png")
    mark_synthetic(folder, "toy")
    return folder


def read(folder: Path) -> Tensor:
    """Every PNG in ``folder``, in name order: ``(N, 1, S, S)`` float32 in [0, 1]."""
    paths = sorted(folder.glob("*.png"))
    images = [np.asarray(Image.open(path).convert("L"), dtype=np.float32) for path in paths]
    return torch.from_numpy(np.stack(images) / 255.0)[:, None]


def check(settings: ToySettings, progress: Progress | None = None) -> None:
    """Every file decoded once."""
    load(settings)


def load(settings: ToySettings) -> AnomalyData:
    folder = Path(settings.data_root) / FOLDER
    rng = torch.Generator().manual_seed(settings.seed)
    train, val = hold_out(read(folder / "train"), settings.val_fraction, rng, "toy")
    normal, anomalous = read(folder / "test" / "normal"), read(folder / "test" / "anomalous")
    groups = ["normal"] * len(normal) + ["anomalous"] * len(anomalous)
    flags = torch.tensor([group == "anomalous" for group in groups])
    titles = [f"{group} {i}" for i, group in enumerate(groups)]
    return AnomalyData(train, val, torch.cat([normal, anomalous]), flags, groups, titles)


def source(settings: ToySettings) -> DataSource:
    folder = Path(settings.data_root).resolve() / FOLDER
    return DataSource("toy", folder, synthetic=True)


def image_metrics(scores: Tensor, data: AnomalyData, settings: ToySettings) -> dict[str, float]:
    """``image_auroc``, anomalous vs normal test images, with its 95% bootstrap interval."""
    return interval_metrics("image_auroc", bootstrap_interval("auroc", scores, data.anomalous))


def generate(cache: Path) -> Path:
    """The stand-in: the toy written once under ``cache``; its data root."""
    return written_once(cache / FOLDER, make_toy).parent


def find(root: Path, quick: bool, cache: Path) -> Found | str:
    """The toy under ``<root>/toy``; with ``quick`` and none there, the generated one."""
    if (root / FOLDER / "train").is_dir():
        return Found("toy", str(root), found_at(root / FOLDER))
    missing = f"the toy is not under {root / FOLDER}"
    if quick:
        return Found("toy", str(generate(cache)), f"synthetic: generated ({missing})")
    return missing


TOY = Dataset(
    "toy",
    Benchmark(ToySettings, check, load, source, image_metrics),
    find=find,
    generate=generate,
)
