"""One-class anomaly detection with VAE attention maps (PAPER.md sections 1 and 3).

Train a VAE on one digit (the inlier), select and stop on held-out images of that digit, then
score every test digit two ways: by its attention map (the paper) and by its reconstruction
error (the baseline). Runs on any dataset in ``DATASETS`` with digit labels (MNIST, digits).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vaecam.data import DATASETS, LabelledImages, OneClassSplit, one_class_split, subsample
from vaecam.experiments.common import (
    IMAGE_SCORES,
    build_model,
    fit,
    log_weights,
    normal_stats,
    score_maps,
)
from vaecam.figures import attention_overlays
from vaecam.metrics import anomaly_metrics
from vaecam.models import VAE
from vaecam.training import seed_everything

if TYPE_CHECKING:
    from vaecam.experiments import Reporter


def load(config: Mapping[str, Any]) -> LabelledImages:
    """The dataset named by ``config["dataset"]``, read (or downloaded) under ``data_root``."""
    loader = DATASETS[config["dataset"]]
    return loader(Path(config["data_root"]), config["image_size"], config["download"])


def prepare(config: Mapping[str, Any]) -> None:
    """Fail before any trial starts if the data is missing (downloading it where allowed)."""
    load(config)


def run(
    config: Mapping[str, Any], reporter: Reporter, state: dict[str, Any] | None = None
) -> dict[str, float]:
    """One trial: train ``config["epochs"]`` epochs (from ``state`` when resuming), reporting
    each; the last report adds the test metrics, and the figures and weights are logged.
    Returns the last report's metrics."""
    generator = seed_everything(config["seed"])
    split = select_data(config)
    model = build_model(config, in_channels=split.train.shape[1])
    return fit(
        model,
        generator,
        split.train,
        split.val,
        config,
        reporter,
        state,
        evaluate=lambda: evaluate(model, split, config, generator, reporter),
    )


def select_data(config: Mapping[str, Any]) -> OneClassSplit:
    """The trial's inlier train / validation images and its test images, capped at
    ``max_train_images`` / ``max_test_images`` (None: all). Drawn from a generator of their own,
    so the selection never depends on how far a resumed trial had got."""
    rng = torch.Generator().manual_seed(config["seed"])
    split = one_class_split(load(config), config["inlier"], config["val_fraction"], rng)
    if config["max_train_images"] is not None:
        keep = torch.randperm(len(split.train), generator=rng)[: config["max_train_images"]]
        split = split._replace(train=split.train[keep])
    test = subsample(split.test_images, split.test_labels, config["max_test_images"], rng)
    return split._replace(test_images=test[0], test_labels=test[1])


def evaluate(
    model: VAE,
    split: OneClassSplit,
    config: Mapping[str, Any],
    generator: torch.Generator,
    reporter: Reporter,
) -> dict[str, float]:
    """Test metrics of the attention score and the reconstruction baseline (inlier = normal,
    every other digit = anomalous), overlay figures and the final weights."""
    images, labels = split.test_images, split.test_labels
    stats = normal_stats(model, split.train)
    attention, error, recons = score_maps(model, images, config, stats, generator)
    reduce = IMAGE_SCORES[config["image_score"]]
    inlier = config["inlier"]
    metrics = anomaly_metrics(reduce(attention).numpy(), labels.numpy(), inlier, "attention_")
    metrics |= anomaly_metrics(reduce(error).numpy(), labels.numpy(), inlier, "recon_")

    with tempfile.TemporaryDirectory() as tmp:
        for digit in labels.unique().tolist():
            rows = (labels == digit).nonzero().flatten()[: config["figure_examples"]]
            kind = "inlier" if digit == inlier else "outlier"
            path = attention_overlays(
                images[rows],
                recons[rows],
                attention[rows],
                [f"{kind} {digit}"] * len(rows),
                Path(tmp) / f"{kind}_{digit}.png",
                baseline_maps=error[rows],
            )
            reporter.log_artifact(path, "overlays")
        log_weights(model, reporter, Path(tmp))
    return metrics
