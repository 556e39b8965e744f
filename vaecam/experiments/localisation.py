"""Anomaly localisation on MVTec AD (PAPER.md sections 1, 3, 4 and 6): one model per category.

Train a VAE on a category's defect-free training images (a held-out slice of them validates),
then score every test pixel two ways in the same trial: by the attention map (the paper) and by
the reconstruction error (the baseline). Metrics per method: pixel AUROC (all test pixels
pooled), image AUROC (defective vs good images; image score = max or mean of the map) and
AUPRO up to 30% false-positive rate (the MVTec AD benchmark's standard).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from vaecam.data import hold_out
from vaecam.data.mvtec import Augment, MVTecCategory, check_category, load_mvtec
from vaecam.experiments.common import (
    IMAGE_SCORES,
    NORMALISATIONS,
    build_model,
    fit,
    log_weights,
    normal_stats,
    score_maps,
)
from vaecam.figures import localisation_figure, roc_figure
from vaecam.metrics import aupro, auroc, pixel_auroc, roc_points
from vaecam.models import VAE
from vaecam.registry import Registry
from vaecam.training import seed_everything

if TYPE_CHECKING:
    from vaecam.experiments import Reporter

#: Datasets of images with pixel masks: ``(root, category, image_size) -> MVTecCategory``.
DATASETS = Registry("localisation dataset", {"mvtec": load_mvtec})


#: The methods scored in every trial: the attention map and the reconstruction baseline.
METHODS = ("attention", "recon")


def load(config: Mapping[str, Any]) -> MVTecCategory:
    loader = DATASETS[config["dataset"]]
    return loader(Path(config["data_root"]), config["category"], config["image_size"])


def prepare(config: Mapping[str, Any]) -> None:
    """Check every category the sweep will use (its folders and masks, without decoding), so a
    missing one fails before any trial starts."""
    categories = config["category"]
    if isinstance(categories, Mapping):  # a grid search over categories
        categories = categories["grid_search"]
    for category in [categories] if isinstance(categories, str) else categories:
        check_category(Path(config["data_root"]), category)


def run(
    config: Mapping[str, Any], reporter: Reporter, state: dict[str, Any] | None = None
) -> dict[str, float]:
    """One trial on ``config["category"]``: train (from ``state`` when resuming), report each
    epoch; the last report adds the test metrics, with figures and weights logged."""
    generator = seed_everything(config["seed"])
    data = load(config)
    # The validation slice is drawn from its own generator: the same whatever the resume point.
    train, val = hold_out(
        data.train,
        config["val_fraction"],
        torch.Generator().manual_seed(config["seed"]),
        f"MVTec AD {config['category']}",
    )
    model = build_model(config, in_channels=train.shape[1])
    augment = Augment(config["hflip"], config["vflip"], config["rotation_degrees"])
    return fit(
        model,
        generator,
        train,
        val,
        config,
        reporter,
        state,
        evaluate=lambda: evaluate(model, train, val, data, config, generator, reporter),
        augment=augment,
    )


def evaluate(
    model: VAE,
    train: Tensor,
    val: Tensor,
    data: MVTecCategory,
    config: Mapping[str, Any],
    generator: torch.Generator,
    reporter: Reporter,
) -> dict[str, float]:
    """Pixel AUROC, image AUROC and AUPRO of the attention map and of the reconstruction
    error; the localisation and ROC figures; the final weights."""
    stats = normal_stats(model, train)
    test_attention, test_error, _ = score_maps(model, data.test_images, config, stats, generator)
    val_attention, val_error, _ = score_maps(model, val, config, stats, generator)
    normalise = NORMALISATIONS[config["normalisation"]]
    maps = {
        "attention": normalise(test_attention, val_attention),
        "recon": normalise(test_error, val_error),
    }
    masks = data.test_masks
    defective = torch.tensor([defect != "good" for defect in data.test_defects])
    reduce = IMAGE_SCORES[config["image_score"]]
    metrics: dict[str, float] = {}
    curves = {}
    for method, method_maps in maps.items():
        metrics[f"{method}_pixel_auroc"] = pixel_auroc(method_maps, masks)
        metrics[f"{method}_aupro"] = aupro(method_maps, masks, config["max_fpr"])
        if defective.any() and not defective.all():
            metrics[f"{method}_image_auroc"] = auroc(reduce(method_maps), defective)
        fpr, tpr = roc_points(method_maps, masks)
        curves[method] = (fpr, tpr, metrics[f"{method}_pixel_auroc"])

    with tempfile.TemporaryDirectory() as tmp:
        rows = _figure_rows(data.test_defects, config["figure_examples"])
        titles = [
            Path(data.test_paths[i]).parent.name + "/" + Path(data.test_paths[i]).name for i in rows
        ]
        path = localisation_figure(
            data.test_images[rows],
            masks[rows],
            {"attention": maps["attention"][rows], "recon. error": maps["recon"][rows]},
            titles,
            Path(tmp) / f"localisation_{config['category']}.png",
        )
        reporter.log_artifact(path, "figures")
        title = f"{config['category']}: pixel ROC"
        path = roc_figure(curves, Path(tmp) / f"roc_{config['category']}.png", title)
        reporter.log_artifact(path, "figures")
        log_weights(model, reporter, Path(tmp))
    return metrics


def _figure_rows(defects: list[str], per_defect: int) -> list[int]:
    """Up to ``per_defect`` test images of each defect type, good images included."""
    rows: dict[str, list[int]] = {}
    for index, defect in enumerate(defects):
        if len(rows.setdefault(defect, [])) < per_defect:
            rows[defect].append(index)
    return [index for indices in rows.values() for index in indices]
