"""What every experiment's trial shares: the resumable epoch loop, and scoring images by their
attention maps and by their reconstruction error."""

from __future__ import annotations

import inspect
import os
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
from vaecam.models import MODELS, VAE
from vaecam.registry import Registry
from vaecam.training import batches, evaluate_loss, train_epoch

if TYPE_CHECKING:
    from vaecam.experiments import Reporter

#: How a pixel map (B, H, W) becomes one anomaly score per image (B,).
IMAGE_SCORES: Registry[Callable[[Tensor], Tensor]] = Registry(
    "image score",
    {"mean": lambda maps: maps.flatten(1).mean(1), "max": lambda maps: maps.flatten(1).amax(1)},
)


def _minmax(maps: Tensor, val_maps: Tensor) -> Tensor:
    low = maps.flatten(1).amin(1)[:, None, None]
    high = maps.flatten(1).amax(1)[:, None, None]
    return (maps - low) / (high - low + 1e-12)


def _validation(maps: Tensor, val_maps: Tensor) -> Tensor:
    # Per pixel position: how unusual is this value where normal images put their maps?
    return (maps - val_maps.mean(0)) / (val_maps.std(0, correction=0) + 1e-12)


#: Map normalisation before scoring, ``(maps (N, H, W), validation maps (V, H, W)) -> maps``:
#: ``none``; ``minmax`` per image (what one reproduction did before pooling pixels: it changes
#: the pooled pixel AUROC, PAPER.md section 6); ``validation``: per pixel position, the z-score
#: against the maps of the held-out normal validation images.
NORMALISATIONS: Registry[Callable[[Tensor, Tensor], Tensor]] = Registry(
    "map normalisation",
    {"none": lambda maps, val_maps: maps, "minmax": _minmax, "validation": _validation},
)


def constructor_arguments(cls: type) -> set[str]:
    """The keyword arguments ``cls(...)`` takes: those of its ``__init__`` and, where that passes
    ``**options`` on (``ADFactorVAE`` to ``FactorVAE``), of its bases' in turn. ``inspect.
    signature(cls)`` alone would hide ``gamma`` behind ``options``."""
    names: set[str] = set()
    for base in cls.__mro__:
        if "__init__" not in vars(base):
            continue
        parameters = list(inspect.signature(base.__init__).parameters.values())[1:]  # no self
        names |= {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if all(p.kind is not p.VAR_KEYWORD for p in parameters):
            break
    return names


def build_model(config: Mapping[str, Any], in_channels: int) -> VAE:
    """``MODELS[config["model"]]`` for ``in_channels`` x ``image_size``^2 inputs and
    ``latent_dim``, on ``config["device"]``. Architecture options come from
    ``config["model_options"]`` (e.g. ``{"pretrained": True}``); the model's other constructor
    arguments found in the config are passed too, so a regulariser weight such as ``gamma`` is
    a plain, sweepable setting (a model ignores the ones it does not take). Bad names fail now
    (``check_names``)."""
    cls = MODELS[config["model"]]
    given = {"in_channels", "image_size", "latent_dim", *config.get("model_options", {})}
    own = {k: config[k] for k in constructor_arguments(cls) if k in config and k not in given}
    model = cls(
        in_channels=in_channels,
        image_size=config["image_size"],
        latent_dim=config["latent_dim"],
        **config.get("model_options", {}),
        **own,
    ).to(config["device"])
    check_names(model, config)
    return model


def check_names(model: VAE, config: Mapping[str, Any]) -> None:
    """Fail on a bad target layer, formulation, quantity, image score or map normalisation in
    ``config`` now, not after training: each error lists the valid names."""
    if "target_layer" in config:
        LayerActivations(model, config["target_layer"])
    for key, registry in (
        ("formulation", FORMULATIONS),
        ("quantity", QUANTITIES),
        ("image_score", IMAGE_SCORES),
        ("normalisation", NORMALISATIONS),
    ):
        if key in config:
            registry[config[key]]


def inject_faults(config: Mapping[str, Any], epoch: int, resumed: bool) -> None:
    """Deterministic faults for testing the failure paths, off unless configured:
    ``fault_exit_epoch`` kills the process at the start of that epoch (a node or worker dying)
    unless the trial was resumed from a checkpoint, so a retry or restore then finishes."""
    if epoch == config["fault_exit_epoch"] and not resumed:
        os._exit(17)


def training_state(
    epoch: int,
    metrics: dict[str, float],
    model: VAE,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> dict[str, Any]:
    """What a trial checkpoints after each epoch: all :func:`restore` needs to go on exactly,
    and the epoch's metrics, so a restore can log what a crash kept from the tracker."""
    return {
        "epoch": epoch,
        "metrics": metrics,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
    }


def restore(
    state: dict[str, Any] | None,
    model: VAE,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> int:
    """Load a :func:`training_state` into ``model``, ``optimizer`` and ``generator``; the first
    epoch still to run (0 without a ``state``)."""
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return state["epoch"] + 1


def fit(
    model: VAE,
    generator: torch.Generator,
    train: Tensor,
    val: Tensor,
    config: Mapping[str, Any],
    reporter: Reporter,
    state: dict[str, Any] | None,
    evaluate: Callable[[], dict[str, float]],
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
) -> dict[str, float]:
    """Adam on ``train`` (N, C, H, W) for ``config["epochs"]`` epochs, from ``state`` when
    resuming. Each epoch reports train and validation losses (``val`` holds normal images only)
    with the state to checkpoint; the last epoch's report adds ``evaluate()``'s test metrics.
    Returns the last report's metrics."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    start, resumed = restore(state, model, optimizer, generator), state is not None
    metrics: dict[str, float] = {}
    for epoch in range(start, config["epochs"]):
        inject_faults(config, epoch, resumed)
        try:
            if epoch == config["fault_nan_epoch"]:
                raise FloatingPointError("training loss became nan (fault_nan_epoch)")
            losses = train_epoch(model, optimizer, train, config["batch_size"], generator, augment)
        except FloatingPointError as error:
            raise FloatingPointError(f"epoch {epoch}: {error}") from None
        metrics = {"epoch": epoch}
        metrics |= {f"train_{name}": value for name, value in losses.items()}
        metrics |= {
            f"val_{k}": v for k, v in evaluate_loss(model, val, config["batch_size"]).items()
        }
        if epoch == config["epochs"] - 1:
            metrics |= evaluate()
        reporter.report(metrics, training_state(epoch, metrics, model, optimizer, generator))
    return metrics


def log_weights(model: VAE, reporter: Reporter, folder: Path) -> None:
    """The trained weights as the trial's ``model/model.pt`` artifact (written in ``folder``)."""
    weights = folder / "model.pt"
    torch.save(model.state_dict(), weights)
    reporter.log_artifact(weights, "model")


@torch.no_grad()
def encode_all(model: VAE, images: Tensor, batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """``mu`` and ``logvar`` (N, n) of ``images`` (N, C, H, W), on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    codes = [model.encode(images[i].to(device)) for i in batches(len(images), batch_size)]
    return torch.cat([mu for mu, _ in codes]).cpu(), torch.cat([lv for _, lv in codes]).cpu()


def normal_stats(model: VAE, train: Tensor) -> LatentStats:
    """Latent statistics of the normal training images, on the model's device (for Eq. 4)."""
    device = next(model.parameters()).device
    return LatentStats(*(t.to(device) for t in latent_stats(*encode_all(model, train))))


def score_maps(
    model: VAE,
    images: Tensor,
    config: Mapping[str, Any],
    stats: LatentStats,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """Attention maps and reconstruction-error maps (both (N, H, W)) and reconstructions
    (N, C, H, W) of ``images``, on the CPU, in batches of ``config["batch_size"]``."""
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
