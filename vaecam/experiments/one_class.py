"""One-class anomaly detection with VAE attention maps (PAPER.md sections 1 and 3).

Train a VAE on one digit (the inlier), select and stop on held-out images of that digit, then
score every test digit two ways: by its attention map (the paper) and by its reconstruction
error (the baseline). Runs on any dataset in ``DATASETS`` with digit labels (MNIST, digits).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from vaecam.attention import (
    FORMULATIONS,
    QUANTITIES,
    LatentStats,
    LayerActivations,
    attention_maps,
    latent_stats,
)
from vaecam.data import DATASETS, LabelledImages, OneClassSplit, one_class_split, subsample
from vaecam.figures import attention_overlays
from vaecam.metrics import anomaly_metrics
from vaecam.models import MODELS, VAE
from vaecam.registry import Registry
from vaecam.training import batches, evaluate_loss, seed_everything, train_epoch

if TYPE_CHECKING:
    from vaecam.experiments import Reporter

#: How a pixel map (B, H, W) becomes one anomaly score per image (B,).
IMAGE_SCORES: Registry[Callable[[Tensor], Tensor]] = Registry(
    "image score",
    {"mean": lambda maps: maps.flatten(1).mean(1), "max": lambda maps: maps.flatten(1).amax(1)},
)


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
    model = MODELS[config["model"]](
        in_channels=split.train.shape[1],
        image_size=config["image_size"],
        latent_dim=config["latent_dim"],
    ).to(config["device"])
    # Bad names fail now, not after training.
    LayerActivations(model, config["target_layer"])
    FORMULATIONS[config["formulation"]], QUANTITIES[config["quantity"]]
    IMAGE_SCORES[config["image_score"]]
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start = state["epoch"] + 1

    metrics: dict[str, float] = {}
    for epoch in range(start, config["epochs"]):
        try:
            if epoch == config["fault_nan_epoch"]:  # fault injection, for testing failure paths
                raise FloatingPointError("training loss became nan (fault_nan_epoch)")
            train = train_epoch(model, optimizer, split.train, config["batch_size"], generator)
        except FloatingPointError as error:
            raise FloatingPointError(f"epoch {epoch}: {error}") from None
        val = evaluate_loss(model, split.val, config["batch_size"])
        metrics = {"epoch": epoch}
        metrics |= {f"train_{name}": value for name, value in train.items()}
        metrics |= {f"val_{name}": value for name, value in val.items()}
        if epoch == config["epochs"] - 1:
            metrics |= evaluate(model, split, config, generator, reporter)
        state = {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
        }
        reporter.report(metrics, state)
    return metrics


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


@torch.no_grad()
def encode_all(model: VAE, images: Tensor, batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """``mu`` and ``logvar`` (N, n) of ``images`` (N, C, H, W), on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    codes = [model.encode(images[i].to(device)) for i in batches(len(images), batch_size)]
    return torch.cat([mu for mu, _ in codes]).cpu(), torch.cat([lv for _, lv in codes]).cpu()


def score_maps(
    model: VAE,
    images: Tensor,
    config: Mapping[str, Any],
    stats: LatentStats,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """Attention maps, reconstruction-error maps (both (N, H, W)) and reconstructions
    (N, C, H, W) of ``images``, on the CPU, in batches."""
    model.eval()
    device = next(model.parameters()).device
    attention, error, recons = [], [], []
    for index in batches(len(images), config["batch_size"]):
        x = images[index].to(device)
        maps = attention_maps(
            model,
            x,
            config["target_layer"],
            formulation=config["formulation"],
            quantity=config["quantity"],
            latent_stats=stats,
            generator=generator,
        )
        with torch.no_grad():
            recon = torch.sigmoid(model(x, sample=False).recon)
        attention.append(maps.aggregate.cpu())
        error.append((x - recon).pow(2).mean(1).cpu())  # squared error, averaged over channels
        recons.append(recon.cpu())
    return torch.cat(attention), torch.cat(error), torch.cat(recons)


def evaluate(
    model: VAE,
    split: OneClassSplit,
    config: Mapping[str, Any],
    generator: torch.Generator,
    reporter: Reporter,
) -> dict[str, float]:
    """Test metrics of the attention score and the reconstruction baseline (inlier = normal,
    every other digit = anomalous), overlay figures and the final weights."""
    device = next(model.parameters()).device
    stats = LatentStats(*(t.to(device) for t in latent_stats(*encode_all(model, split.train))))
    images, labels = split.test_images, split.test_labels
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
        weights = Path(tmp) / "model.pt"
        torch.save(model.state_dict(), weights)
        reporter.log_artifact(weights, "model")
    return metrics
