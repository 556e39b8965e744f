"""Attention disentanglement on dSprites (PAPER.md sections 2, 3, 4 and 5).

Train a model of the disentanglement family (VAE, beta-VAE, FactorVAE, AD-FactorVAE) for a
number of iterations on batches drawn on the fly from a ground-truth dataset; every
``eval_every`` iterations report the losses and a held-out reconstruction error, and every
``metric_every`` reports (and at the end) the FactorVAE metric and MIG, computed against the
dataset's ground-truth factors exactly as disentanglement_lib does, each with its own RNG.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from vaecam.attention import attention_maps
from vaecam.data.dsprites import GROUND_TRUTH, GroundTruthData
from vaecam.disentanglement import factor_vae_score, mig
from vaecam.experiments.common import (
    build_model,
    encode_all,
    inject_faults,
    log_weights,
    restore,
    training_state,
)
from vaecam.figures import image_grid
from vaecam.models import VAE
from vaecam.training import evaluate_loss, seed_everything, train_step

if TYPE_CHECKING:
    from vaecam.experiments import Reporter

TRAVERSAL_STEPS = 8  # values per latent dim in the traversal figure, over [-2, 2]


def load(config: Mapping[str, Any]) -> GroundTruthData:
    return GROUND_TRUTH[config["dataset"]](Path(config["data_root"]))


def prepare(config: Mapping[str, Any]) -> None:
    """Fail before any trial starts if the dataset is missing (e.g. the real .npz)."""
    datasets = config["dataset"]
    for name in datasets["grid_search"] if isinstance(datasets, Mapping) else [datasets]:
        GROUND_TRUTH[name](Path(config["data_root"]))


def observations(data: GroundTruthData, num: int, rng: np.random.RandomState) -> Tensor:
    """``num`` random observations ``(num, 1, 64, 64)`` as a float tensor."""
    factors = data.sample_factors(num, rng)
    return torch.from_numpy(data.sample_observations_from_factors(factors, rng)).float()


def representation(model: VAE, batch_size: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    """The mean encoding as disentanglement_lib's ``representation_function``:
    observations ``(N, 1, 64, 64)`` numpy -> ``mu`` ``(N, n)`` numpy."""

    def encode(x: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(np.asarray(x, dtype=np.float32))
        return encode_all(model, images, batch_size)[0].numpy()

    return encode


def run(
    config: Mapping[str, Any], reporter: Reporter, state: dict[str, Any] | None = None
) -> dict[str, float]:
    """One trial: ``iterations`` steps in rounds of ``eval_every`` (from ``state`` when
    resuming), a report per round; disentanglement metrics every ``metric_every`` rounds and
    at the end, where figures and weights are logged too."""
    generator = seed_everything(config["seed"])
    data = load(config)
    model = build_model(config, in_channels=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"], betas=(0.9, 0.999))
    # Held out: a fixed sample for the reconstruction error, never trained on.
    val = observations(data, config["val_size"], np.random.RandomState(config["seed"] + 1))
    iterations, every = config["iterations"], config["eval_every"]
    if every < 1 or iterations < every or iterations % every:
        raise ValueError(
            f"iterations ({iterations}) must be a positive multiple of eval_every ({every}): "
            "a trial trains in whole rounds of eval_every iterations, one report each"
        )
    rounds = iterations // every
    start, resumed = restore(state, model, optimizer, generator), state is not None
    device = next(model.parameters()).device
    metrics: dict[str, float] = {}
    for round_ in range(start, rounds):
        inject_faults(config, round_, resumed)
        # The round's data from its own seed: a resumed trial draws what it would have drawn.
        rng = np.random.RandomState([config["seed"], round_])
        totals: dict[str, float] = {}
        for _ in range(config["eval_every"]):
            x = observations(data, config["batch_size"], rng).to(device)
            for name, value in train_step(model, optimizer, x, generator).items():
                totals[name] = totals.get(name, 0.0) + value / config["eval_every"]
        metrics = {"epoch": round_, "iteration": (round_ + 1) * config["eval_every"]}
        metrics |= {f"train_{name}": value for name, value in totals.items()}
        metrics |= {f"val_{k}": v for k, v in evaluate_loss(model, val, 256).items()}
        metrics["recon_error"] = metrics["val_recon"]  # BCE summed per image, the paper's x axis
        last = round_ == rounds - 1
        if last or (round_ + 1) % config["metric_every"] == 0:
            metrics |= disentanglement_metrics(model, data, config)
        if last:
            log_figures(model, data, val, config, generator, reporter)
        reporter.report(metrics, training_state(round_, metrics, model, optimizer, generator))
    return metrics


def disentanglement_metrics(
    model: VAE, data: GroundTruthData, config: Mapping[str, Any]
) -> dict[str, float]:
    """FactorVAE metric (its eval accuracy, PAPER.md section 5) and MIG, each from a fresh RNG
    seeded by the trial's seed, so successive evaluations differ only by the model."""
    encode = representation(model)
    factor = factor_vae_score(
        data,
        encode,
        np.random.RandomState(config["seed"]),
        num_train=config["metric_num_train"],
        num_eval=config["metric_num_eval"],
        num_variance_estimate=config["metric_num_variance"],
    )
    gap = mig(
        data, encode, np.random.RandomState(config["seed"]), num_train=config["mig_num_train"]
    )
    return {
        "factor_vae_score": factor["eval_accuracy"],
        "factor_vae_train_accuracy": factor["train_accuracy"],
        "active_dims": factor["num_active_dims"],
        "mig": gap["mig"],
    }


@torch.no_grad()
def traversals(model: VAE, x: Tensor) -> Tensor:
    """Decoded latent traversals of one image ``x`` ``(1, C, H, W)``: each latent dim swept
    over ``[-2, 2]`` from its mean encoding, ``(n, TRAVERSAL_STEPS, C, H, W)``."""
    model.eval()
    mu, _ = model.encode(x)
    values = torch.linspace(-2, 2, TRAVERSAL_STEPS, device=mu.device)
    codes = mu.repeat(model.latent_dim, TRAVERSAL_STEPS, 1)  # (n, steps, n)
    dims = torch.arange(model.latent_dim)
    codes[dims, :, dims] = values
    images = torch.sigmoid(model.decode(codes.flatten(0, 1)))
    return images.unflatten(0, (model.latent_dim, TRAVERSAL_STEPS)).cpu()


def log_figures(
    model: VAE,
    data: GroundTruthData,
    val: Tensor,
    config: Mapping[str, Any],
    generator: torch.Generator,
    reporter: Reporter,
) -> None:
    """Latent traversals, per-dimension attention maps of a few held-out images, weights."""
    device = next(model.parameters()).device
    examples = val[: config["figure_examples"]].to(device)
    model.eval()
    maps = attention_maps(
        model,
        examples,
        config["target_layer"],
        formulation=config["formulation"],
        quantity="mu",
        generator=generator,
    ).per_dim.cpu()  # (n, B, H, W)
    rows = [f"z{i}" for i in range(model.latent_dim)]
    with tempfile.TemporaryDirectory() as tmp:
        path = image_grid(
            traversals(model, examples[:1]),
            Path(tmp) / "traversals.png",
            rows,
            [f"{v:+.1f}" for v in torch.linspace(-2, 2, TRAVERSAL_STEPS).tolist()],
        )
        reporter.log_artifact(path, "figures")
        images = examples.cpu().expand(model.latent_dim, *examples.shape)
        path = image_grid(images, Path(tmp) / "attention_per_dim.png", rows, maps=maps)
        reporter.log_artifact(path, "figures")
        log_weights(model, reporter, Path(tmp))
