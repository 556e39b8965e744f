"""Video anomaly localisation on UCSD Ped1 (PAPER.md sections 1, 3 and 6).

Train a VAE on frames of normal training clips (whole held-out clips validate), then score
every test pixel three ways in the same trial: the attention map (the paper), the
reconstruction error, and the "average reconstruction" baseline of the reproduction (a frame's
difference from the model's reconstruction of the training set's mean frame), which beat the
paper's model there. Each method gets the field's standard metrics: pixel AUROC over pooled
pixels of clips with masks, frame-level AUROC and EER over all clips, and the pixel-level
criterion of Mahadevan et al. 2010 (a frame is detected when 40% of its anomalous pixels are).
Clips without pixel masks are never scored as all-normal: they enter frame-level metrics only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from vaecam.data.ucsd import VideoAnomalyData, check_ucsd, load_ucsd
from vaecam.experiments.common import (
    NORMALISATIONS,
    build_model,
    fit,
    log_weights,
    normal_stats,
    score_maps,
)
from vaecam.figures import localisation_figure
from vaecam.metrics import video_anomaly_metrics
from vaecam.models import VAE
from vaecam.registry import Registry
from vaecam.training import seed_everything

if TYPE_CHECKING:
    from vaecam.experiments import Reporter

#: Video datasets by name: ``(root, image_size, val_clips, scene) -> VideoAnomalyData``.
DATASETS = Registry("video dataset", {"ucsd": load_ucsd})

#: The methods scored in every trial.
METHODS = ("attention", "recon", "average_recon")


def load(config: Mapping[str, Any]) -> VideoAnomalyData:
    loader = DATASETS[config["dataset"]]
    return loader(
        Path(config["data_root"]), config["image_size"], config["val_clips"], config["scene"]
    )


def prepare(config: Mapping[str, Any]) -> None:
    """Check the layout, every frame, mask and the frame labels without decoding anything."""
    DATASETS[config["dataset"]]
    check_ucsd(Path(config["data_root"]), config["scene"])


def run(
    config: Mapping[str, Any], reporter: Reporter, state: dict[str, Any] | None = None
) -> dict[str, float]:
    """One trial: train (from ``state`` when resuming), report each epoch; the last report
    adds every metric of every method, with figures and weights logged."""
    generator = seed_everything(config["seed"])
    data = load(config)
    model = build_model(config, in_channels=data.train.shape[1])
    return fit(
        model,
        generator,
        data.train,
        data.val,
        config,
        reporter,
        state,
        evaluate=lambda: evaluate(model, data, config, generator, reporter),
    )


def average_recon_maps(model: VAE, train: Tensor, frames: Tensor, batch_size: int) -> Tensor:
    """The reproduction's baseline, ``(N, H, W)``: squared difference between each frame of
    ``frames`` (N, C, H, W) and the model's reconstruction of the mean training frame."""
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        reference = torch.sigmoid(model(train.mean(0, keepdim=True).to(device), sample=False).recon)
    reference = reference.cpu()
    return torch.cat([(chunk - reference).pow(2).mean(1) for chunk in frames.split(batch_size)])


def evaluate(
    model: VAE,
    data: VideoAnomalyData,
    config: Mapping[str, Any],
    generator: torch.Generator,
    reporter: Reporter,
) -> dict[str, float]:
    """Every metric of every method (keys ``<method>_<metric>``), figures and weights."""
    stats = normal_stats(model, data.train)
    test = score_maps(model, data.test_frames, config, stats, generator)
    val = score_maps(model, data.val, config, stats, generator)
    size = config["batch_size"]
    raw = {
        "attention": (test[0], val[0]),
        "recon": (test[1], val[1]),
        "average_recon": (
            average_recon_maps(model, data.train, data.test_frames, size),
            average_recon_maps(model, data.train, data.val, size),
        ),
    }
    normalise = NORMALISATIONS[config["normalisation"]]
    maps = {method: normalise(test_maps, val_maps) for method, (test_maps, val_maps) in raw.items()}
    metrics: dict[str, float] = {}
    for method, method_maps in maps.items():
        scores = video_anomaly_metrics(
            method_maps, data.test_masks, data.has_mask, data.test_labels, config["image_score"]
        )
        metrics |= {f"{method}_{name}": float(value) for name, value in scores.items()}

    with tempfile.TemporaryDirectory() as tmp:
        rows = _figure_rows(data, config["figure_examples"])
        titles = [f"clip {data.test_clip[i]} frame {data.test_frame[i]}" for i in rows]
        path = localisation_figure(
            data.test_frames[rows],
            data.test_masks[rows],
            {method: method_maps[rows] for method, method_maps in maps.items()},
            titles,
            Path(tmp) / "localisation.png",
        )
        reporter.log_artifact(path, "figures")
        log_weights(model, reporter, Path(tmp))
    return metrics


def _figure_rows(data: VideoAnomalyData, count: int) -> list[int]:
    """``count`` anomalous frames with masks (spread over the test set) and ``count`` normal
    frames, for the figure."""
    anomalous = (data.has_mask & data.test_labels).nonzero().flatten()
    normal = (~data.test_labels).nonzero().flatten()
    pick = [
        group[torch.linspace(0, len(group) - 1, min(count, len(group))).long()]
        for group in (anomalous, normal)
        if len(group)
    ]
    return torch.cat(pick).tolist()
