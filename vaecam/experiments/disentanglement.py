"""Attention disentanglement on dSprites (PAPER.md sections 2, 3, 4 and 5).

``train`` fits a model of the disentanglement family (beta-VAE, FactorVAE, AD-FactorVAE) for a
number of iterations on batches drawn on the fly from a ground-truth dataset, in the same
resumable loop as every experiment: every ``eval_every`` iterations it reports the losses and a
held-out reconstruction error, every ``metric_every`` reports the FactorVAE metric and MIG.
``score`` gives the final metrics, computed against the dataset's ground-truth factors exactly
as disentanglement_lib does, each with its own RNG.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from vaecam.attention import FORMULATIONS, attention_maps
from vaecam.data.dsprites import GroundTruthData
from vaecam.data.images import Progress
from vaecam.disentanglement import factor_vae_score, mig
from vaecam.experiments.common import Reporter, build_model, fit, log_model
from vaecam.experiments.datasets import ground_truths
from vaecam.figures import image_grid
from vaecam.models import VAE
from vaecam.models.disentangle import AD_REDUCTIONS
from vaecam.scoring import ScoreTable
from vaecam.settings import SettingsError, check_settings, data_keys, setting
from vaecam.settings import defaults as settings_defaults
from vaecam.training import encode_all, evaluate_loss, seed_everything, train_step

TRAVERSAL_STEPS = 8  # values per latent dim in the traversal figure, over [-2, 2]


@dataclass(frozen=True)
class DisentanglementSettings:
    """One trial: the FactorVAE paper's dSprites setup (PAPER.md section 3). ``beta`` applies to
    beta_vae, ``gamma`` to the FactorVAEs, ``lam`` and the attention options to ad_factor_vae
    only (a model ignores the settings it does not take)."""

    dataset: str = setting("dsprites_procedural", choices=ground_truths(), data=True)  # or dsprites
    data_root: str = setting("data", data=True)
    device: str = "cpu"
    model: str = setting("ad_factor_vae", choices=("beta_vae", "factor_vae", "ad_factor_vae"))
    model_options: dict[str, Any] = setting({})  # architecture: the FactorVAE paper's by default
    image_size: int = setting(64, ge=64, le=64)  # dSprites is 64x64
    latent_dim: int = setting(10, ge=2)  # the FactorVAE paper's; the reproduction used 32
    beta: float = setting(4.0, ge=0)
    gamma: float = setting(40.0, ge=0)
    lam: float = setting(40.0, ge=0)  # weight of the attention-disentanglement loss
    target_layer: str = "encoder.4"  # the third conv
    formulation: str = setting("per_dim", choices=FORMULATIONS)
    quantity: str = setting("z", choices=("z", "mu"))  # the reproduction differentiated a z
    ad_pairs: str | int = "random"  # AD loss pairs per step: random | reproduction | k | all
    ad_reduction: str = setting("per_image", choices=AD_REDUCTIONS)  # or the reproduction's
    lr: float = setting(1e-4, gt=0)
    batch_size: int = setting(64, ge=2)
    iterations: int = setting(300_000, ge=1)
    eval_every: int = setting(5_000, ge=1)  # iterations per report (one Tune iteration)
    metric_every: int = setting(10, ge=1)  # reports between disentanglement metrics
    val_size: int = setting(1024, ge=1)  # held-out observations for the reconstruction error
    metric_num_train: int = setting(10_000, ge=1)  # disentanglement_lib's standard settings
    metric_num_eval: int = setting(5_000, ge=1)
    metric_num_variance: int = setting(10_000, ge=2)
    mig_num_train: int = setting(10_000, ge=1)
    figure_examples: int = setting(4, ge=1)
    seed: int = setting(0, ge=0)

    def __post_init__(self) -> None:
        if self.iterations % self.eval_every:
            raise SettingsError(
                f"iterations={self.iterations} must be a multiple of eval_every="
                f"{self.eval_every}: a trial trains in whole rounds of eval_every iterations, "
                "one report each"
            )

    @property
    def rounds(self) -> int:
        return self.iterations // self.eval_every


def defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    return settings_defaults(DisentanglementSettings)


def data_settings(config: Mapping[str, Any]) -> list[str]:
    return data_keys(DisentanglementSettings)


def check(config: Mapping[str, Any]) -> DisentanglementSettings:
    return check_settings(DisentanglementSettings, config)


def prepare(config: Mapping[str, Any], progress: Progress | None = None) -> None:
    """Fail before any trial starts if the dataset is missing or unreadable (the real .npz is
    read whole)."""
    load(check(config))


def check_scoring(config: Mapping[str, Any], grid: Mapping[str, Any]) -> None:
    """The model's options (built on the meta device); dSprites has no scoring grid: its
    scores are the disentanglement metrics."""
    if grid:
        raise ValueError(f"dSprites has no scoring grid; got {', '.join(grid)}")
    with torch.device("meta"):
        build_model(check(config), in_channels=1, device="meta")


def load(settings: DisentanglementSettings) -> GroundTruthData:
    return ground_truths()[settings.dataset](Path(settings.data_root))


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


class Trained(NamedTuple):
    settings: DisentanglementSettings
    model: VAE
    data: GroundTruthData
    val: Tensor  # (V, 1, 64, 64) the held-out observations


def rounds(config: Mapping[str, Any]) -> int:
    """How many reports (rounds) a trial of ``config`` makes when it trains to the end."""
    return check(config).rounds


def train(
    config: Mapping[str, Any],
    reporter: Reporter,
    state: dict[str, Any] | None = None,
    scoring: Mapping[str, Any] | None = None,
) -> Trained:
    """``iterations`` steps in rounds of ``eval_every`` (from ``state`` when resuming) in the
    one resumable loop (:func:`~vaecam.experiments.common.fit`), a report per round, with the
    disentanglement metrics every ``metric_every`` rounds before the last (:func:`score` gives
    the last); then the weights are logged. ``scoring`` must be empty (:func:`check_scoring`):
    dSprites is scored by its disentanglement metrics."""
    settings = check(config)
    check_scoring(config, scoring or {})
    generator = seed_everything(settings.seed)
    data = load(settings)
    # Training draws from every factor combination; a fixed sample is held out.
    reporter.log_dataset(data.source, "train", math.prod(data.factors_num_values))
    reporter.log_dataset(data.source, "val", settings.val_size)
    model = build_model(settings, in_channels=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, betas=(0.9, 0.999))
    device = next(model.parameters()).device
    # Held out: a fixed sample for the reconstruction error, never trained on.
    val = observations(data, settings.val_size, np.random.RandomState(settings.seed + 1))

    def train_round(round_: int) -> dict[str, float]:
        # The round's data from its own seed: a resumed trial draws what it would have drawn.
        rng = np.random.RandomState([settings.seed, round_])
        totals: dict[str, float] = {}
        for _ in range(settings.eval_every):
            x = observations(data, settings.batch_size, rng).to(device)
            for name, value in train_step(model, optimizer, x, generator).items():
                totals[name] = totals.get(name, 0.0) + value / settings.eval_every
        return totals

    def extra(round_: int) -> dict[str, float]:
        metrics = {"iteration": (round_ + 1) * settings.eval_every}
        if (round_ + 1) % settings.metric_every == 0 and round_ < settings.rounds - 1:
            metrics |= disentanglement_metrics(model, data, settings)
        return metrics

    fit(
        model,
        optimizer,
        generator,
        settings.rounds,
        train_round,
        lambda: evaluate_loss(model, val, 256),
        reporter,
        state,
        unit="round",
        extra=extra,
    )
    with tempfile.TemporaryDirectory() as tmp:
        log_model(model, reporter, Path(tmp))
    return Trained(settings, model, data, val)


def restore(config: Mapping[str, Any], weights: Any, normal: Any) -> Trained:
    """Never: dSprites is scored by its disentanglement metrics as training ends; it has no
    scoring grid to score again."""
    raise SettingsError(
        "dSprites has no scoring grid to score again: its scores are the "
        "disentanglement metrics, computed as training ends"
    )


def score(
    trained: Trained,
    grid: Mapping[str, Any],
    reporter: Reporter,
    readings: Mapping[str, Mapping[str, Any]] | None = None,
) -> ScoreTable:
    """The final disentanglement metrics (one row, PAPER.md section 5) beside the held-out
    reconstruction error (``recon_error``: BCE summed per image, the paper's Fig. 8 x axis);
    logs latent traversals and per-dimension attention maps. (``readings``: a scoring grid's
    combinations to feature; this experiment has one.)"""
    check_scoring(vars(trained.settings), grid)
    settings, model, data, val = trained
    row = disentanglement_metrics(model, data, settings)
    row["recon_error"] = evaluate_loss(model, val, 256)["recon"]
    log_figures(model, val, settings, reporter)
    return ScoreTable([row], frozenset())


def disentanglement_metrics(
    model: VAE, data: GroundTruthData, settings: DisentanglementSettings
) -> dict[str, float]:
    """FactorVAE metric (its eval accuracy, PAPER.md section 5) and MIG, each from a fresh RNG
    seeded by the trial's seed, so successive evaluations differ only by the model."""
    encode = representation(model)
    factor = factor_vae_score(
        data,
        encode,
        np.random.RandomState(settings.seed),
        num_train=settings.metric_num_train,
        num_eval=settings.metric_num_eval,
        num_variance_estimate=settings.metric_num_variance,
    )
    gap = mig(data, encode, np.random.RandomState(settings.seed), num_train=settings.mig_num_train)
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
    model: VAE, val: Tensor, settings: DisentanglementSettings, reporter: Reporter
) -> None:
    """Latent traversals and per-dimension attention maps of a few held-out images."""
    device = next(model.parameters()).device
    examples = val[: settings.figure_examples].to(device)
    model.eval()
    maps = attention_maps(
        model, examples, settings.target_layer, formulation=settings.formulation, quantity="mu"
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
