"""Scoring a trained model: every choice that does not change training, on the one model.

Train once, score many (DESIGN.md). A :class:`ScoringGrid` lists, for one trained model, the
methods that turn a test image into an anomaly map (``attention``, the paper's; baselines such
as ``recon``), and for the attention maps the target layers, formulations and quantities; then
how maps are normalised and how a map becomes an image score. :func:`anomaly_maps` computes the
maps of every (method, layer, formulation, quantity) from shared work: per batch one encoder
pass with hooks on every layer (:func:`vaecam.attention.attention_grid`), one batched backward
per quantity, every formulation from the same gradients, and the reconstruction from that
pass's ``mu``. The experiment then turns each map into metrics (:class:`ScoreTable`).

Metric names (:meth:`ScoreTable.metrics`, what a run logs): :mod:`vaecam.grid`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from vaecam.attention import (
    FORMULATIONS,
    NEGATED,
    QUANTITIES,
    SIGN_INVARIANT,
    LayerActivations,
    attention_grid,
)
from vaecam.grid import COLUMNS, metric_name
from vaecam.latent import LatentStats, latent_stats
from vaecam.registry import Registry
from vaecam.training import batches, encode_all

# --- what scoring knows of the normal data ---------------------------------------------------


class NormalData(NamedTuple):
    """What scoring uses of the normal training images, computed once per trained model (and
    saved with its weights, so a finished model is scored again without its training data):
    ``stats``, the latent statistics (what the quantities that compare with normal data and the
    latent distance use), and ``mean_recon`` ``(C, H, W)``, the model's
    reconstruction of the mean training image (the ``average_recon`` baseline)."""

    stats: LatentStats
    mean_recon: Tensor

    def to(self, device: torch.device | str) -> NormalData:
        return NormalData(
            LatentStats(self.stats.mu.to(device), self.stats.var.to(device)),
            self.mean_recon.to(device),
        )

    def state_dict(self) -> dict[str, Tensor]:
        return {"mu": self.stats.mu, "var": self.stats.var, "mean_recon": self.mean_recon}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> NormalData:
        return cls(LatentStats(state["mu"], state["var"]), state["mean_recon"])


@torch.no_grad()
def normal_data(model: nn.Module, train: Tensor, batch_size: int) -> NormalData:
    """:class:`NormalData` of the normal training images ``train`` ``(N, C, H, W)``, on the
    CPU: the aggregate posterior's moments (:func:`vaecam.latent.latent_stats`) and the
    reconstruction of their mean image."""
    stats = latent_stats(*encode_all(model, train, batch_size))
    device = next(model.parameters()).device
    mean = train.mean(0, keepdim=True).to(device)
    mean_recon = torch.sigmoid(model.decode(model.encode(mean)[0]))[0]
    return NormalData(stats, mean_recon.cpu())


# --- methods: what turns an image into an anomaly map -----------------------------------------


class Pass(NamedTuple):
    """One batch's shared encoder pass, for every method: images ``x`` ``(B, C, H, W)``, their
    reconstruction ``recon`` from ``z = mu`` (in [0, 1], same shape), ``mu`` and ``logvar``
    ``(B, n)``."""

    x: Tensor
    recon: Tensor
    mu: Tensor
    logvar: Tensor


#: A baseline's or a control's map of a batch, ``(Pass, NormalData on the batch's device,
#: generator) -> (B, H, W)``; higher = more anomalous. ``generator`` is the method's own (CPU).
Baseline = Callable[[Pass, NormalData, torch.Generator], Tensor]


def _gradient_magnitude(x: Tensor) -> Tensor:
    """``|grad x|`` per pixel ``(B, H, W)``, channels averaged: central differences inside,
    one-sided at the border (``torch.gradient``)."""
    dy, dx = torch.gradient(x, dim=(-2, -1))
    return torch.sqrt(dx**2 + dy**2).mean(1)


def _random(batch: Pass, normal: NormalData, generator: torch.Generator) -> Tensor:
    # Uniform noise, drawn on the CPU: a map that knows nothing scores AUROC 0.5 up to chance.
    shape = (batch.x.shape[0], *batch.x.shape[-2:])
    return torch.rand(shape, generator=generator, dtype=batch.x.dtype).to(batch.x.device)


BASELINES: Registry[Baseline] = Registry(
    "scoring method",
    {
        # squared reconstruction error (L2), averaged over channels: the usual VAE baseline
        "recon": lambda batch, normal, generator: (batch.x - batch.recon).pow(2).mean(1),
        # absolute reconstruction error (L1): the reproduction's baseline
        "recon_l1": lambda batch, normal, generator: (batch.x - batch.recon).abs().mean(1),
        # the reproduction's "average reconstruction" baseline, which beat the paper's model on
        # UCSD Ped1: the squared difference from the reconstruction of the mean normal image
        "average_recon": lambda batch, normal, generator: (
            (batch.x - normal.mean_recon).pow(2).mean(1)
        ),
        "average_recon_l1": lambda batch, normal, generator: (
            (batch.x - normal.mean_recon).abs().mean(1)
        ),
        # controls: what a map that sees only the input's intensity, its edges, or nothing scores
        "energy": lambda batch, normal, generator: batch.x.mean(1),
        "gradient_energy": lambda batch, normal, generator: _gradient_magnitude(batch.x),
        "random": _random,
    },
)


def latent_distance(batch: Pass, normal: NormalData) -> Tensor:
    """The (diagonal) Mahalanobis distance of each image's ``mu`` to the normal data's latent
    Gaussian, ``sqrt(sum_i (mu_i - mu_n,i)^2 / sigma_n,i^2)`` ``(B,)``: an image-level control
    that needs no map."""
    return ((batch.mu - normal.stats.mu) ** 2 / normal.stats.var).sum(1).sqrt()


#: Methods that score an image without a map, ``(Pass, NormalData) -> (B,)``: no
#: normalisation or image score applies, so their rows have neither.
IMAGE_METHODS: Registry[Callable[[Pass, NormalData], Tensor]] = Registry(
    "image-level scoring method", {"latent_distance": latent_distance}
)

#: The methods that are attention maps, one per (layer, formulation, quantity) of the grid:
#: ``attention``, the trained model's (the paper's), and ``untrained``, the same readings on
#: the same architecture with freshly initialised, seeded weights: the model-randomisation
#: sanity check of Adebayo et al. (NeurIPS 2018). A map that scores as well untrained does not
#: depend on what the model learned.
ATTENTION_METHODS = ("attention", "untrained")

#: Every scoring method: attention maps, the baselines and controls with maps, and the
#: image-level ones.
METHODS = (*ATTENTION_METHODS, *BASELINES, *IMAGE_METHODS)


# --- after the maps: normalisation and image scores ------------------------------------------


def _minmax(maps: Tensor, val_maps: Tensor | None) -> Tensor:
    low = maps.flatten(1).amin(1)[:, None, None]
    high = maps.flatten(1).amax(1)[:, None, None]
    return (maps - low) / (high - low + 1e-12)


def _validation(maps: Tensor, val_maps: Tensor | None) -> Tensor:
    # Per pixel position: how unusual is this value where normal images put their maps?
    if val_maps is None:
        raise ValueError("the validation normalisation needs the validation images' maps")
    return (maps - val_maps.mean(0)) / (val_maps.std(0, correction=0) + 1e-12)


#: Map normalisation before scoring, ``(maps (N, H, W), validation maps (V, H, W)) -> maps``:
#: ``none``; ``minmax`` per image (what one reproduction did before pooling pixels: it changes
#: the pooled pixel AUROC, PAPER.md section 6); ``validation``: per pixel position, the z-score
#: against the maps of the held-out normal validation images.
NORMALISATIONS: Registry[Callable[[Tensor, Tensor | None], Tensor]] = Registry(
    "map normalisation",
    {"none": lambda maps, val_maps: maps, "minmax": _minmax, "validation": _validation},
)

#: How a pixel map (N, H, W) becomes one anomaly score per image (N,).
IMAGE_SCORES: Registry[Callable[[Tensor], Tensor]] = Registry(
    "image score",
    {"mean": lambda maps: maps.flatten(1).mean(1), "max": lambda maps: maps.flatten(1).amax(1)},
)


# --- the grid ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoringGrid:
    """Lists of scoring choices; every combination is scored on the one trained model.

    ``target_layer``, ``formulation`` and ``quantity`` apply to the ``attention`` method only.
    Each list keeps its order, without repeats."""

    method: tuple[str, ...] = ("attention", "recon")
    target_layer: tuple[str, ...] = ()
    formulation: tuple[str, ...] = ("per_dim",)
    quantity: tuple[str, ...] = ("mu",)
    normalisation: tuple[str, ...] = ("none",)
    image_score: tuple[str, ...] = ("max",)

    @property
    def readings(self) -> list[tuple[str, str, str]]:
        """Every (layer, formulation, quantity) of the attention methods, but the duplicates:
        a :data:`~vaecam.attention.NEGATED` quantity under a
        :data:`~vaecam.attention.SIGN_INVARIANT` formulation when the grid has the quantity it
        negates (``normal_difference`` under ``authors`` is ``mu`` under ``authors``)."""
        return [
            (layer, formulation, quantity)
            for layer in self.target_layer
            for formulation in self.formulation
            for quantity in self.quantity
            if not (formulation in SIGN_INVARIANT and NEGATED.get(quantity) in self.quantity)
        ]

    @property
    def variants(self) -> list[Variant]:
        """Every map to compute: each attention method's readings, then each baseline."""
        attention = [
            Variant(method, *reading)
            for method in ATTENTION_METHODS
            if method in self.method
            for reading in self.readings
        ]
        return attention + [Variant(m) for m in self.method if m not in ATTENTION_METHODS]

    def __len__(self) -> int:
        """The number of combinations scored: maps x normalisations x image scores, and one
        per image-level method."""
        maps = [v for v in self.variants if v.method not in IMAGE_METHODS]
        image = len(self.variants) - len(maps)
        return len(maps) * len(self.normalisation) * len(self.image_score) + image


#: The registry each grid key's names come from (``target_layer``: the model's modules).
_GRID_NAMES: dict[str, Collection] = {
    "method": METHODS,
    "formulation": FORMULATIONS,
    "quantity": QUANTITIES,
    "normalisation": NORMALISATIONS,
    "image_score": IMAGE_SCORES,
}
GRID_KEYS = tuple(field.name for field in fields(ScoringGrid))


def scoring_grid(values: Mapping[str, Any], model: nn.Module | None = None) -> ScoringGrid:
    """A :class:`ScoringGrid` from a mapping of key -> list of names (a lone name is a list of
    one), checked: unknown keys, empty lists and unknown names raise ``ValueError`` naming the
    key and the valid names; with ``model``, every target layer must be one of its modules
    (``KeyError`` listing them otherwise)."""
    unknown = sorted(set(values) - set(GRID_KEYS))
    if unknown:
        raise ValueError(
            f"unknown scoring key {', '.join(unknown)}; valid keys: {', '.join(GRID_KEYS)}"
        )
    lists = {}
    for key, names in values.items():
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"scoring {key}={names!r}: expected a list of names")
        if not names:
            raise ValueError(f"scoring {key}: the list is empty")
        valid = _GRID_NAMES.get(key)
        for name in names:
            if valid is not None and name not in valid:
                raise ValueError(
                    f"scoring {key}={name!r}: expected one of {', '.join(sorted(valid))}"
                )
        lists[key] = tuple(dict.fromkeys(names))
    grid = ScoringGrid(**lists)
    if set(ATTENTION_METHODS) & set(grid.method) and not grid.target_layer:
        raise ValueError("scoring: the attention methods need at least one target_layer")
    if model is not None:
        for layer in grid.target_layer:
            LayerActivations(model, layer)  # an unknown layer lists the valid ones
    return grid


class Variant(NamedTuple):
    """One anomaly map of the grid: a method, and for attention its layer, formulation and
    quantity (None for a baseline)."""

    method: str
    target_layer: str | None = None
    formulation: str | None = None
    quantity: str | None = None


def generator_for(seed: int, name: str) -> torch.Generator:
    """A CPU generator of its own for what ``name`` draws (a sampled quantity, a random
    control, each per split: ``"test/random"``), seeded from the trial's ``seed``: the draws of
    one choice never depend on which others are in the grid, so a combination scores the same
    alone or in any grid, and the test and validation images never share a stream."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


def untrained_model(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``build()`` with freshly initialised weights drawn from ``seed`` (torch's global RNG is
    left as it was): the ``untrained`` method's model, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator_for(seed, "untrained").initial_seed())
        return build().eval()


class Model(NamedTuple):
    """A model to score and what scoring knows of its normal data."""

    model: nn.Module
    normal: NormalData


def anomaly_maps(
    models: Mapping[str, Model],
    images: Tensor,
    grid: ScoringGrid,
    seed: int,
    batch_size: int,
    split: str,
) -> dict[Variant, Tensor]:
    """Every map of ``grid.variants`` for ``images`` ``(N, C, H, W)`` of ``split`` (``test``
    or ``val``), each ``(N, H, W)`` on the CPU (``(N,)`` scores for the
    :data:`IMAGE_METHODS`), from one shared pass per batch of ``batch_size`` (see the module
    doc). ``models["attention"]`` is the trained model (every method but ``untrained`` uses
    it), ``models["untrained"]`` the :func:`untrained_model` where the grid has that method.
    Models are put in eval mode; sampled quantities and the random control draw from
    :func:`generator_for`, per split."""
    device = next(models["attention"].model.parameters()).device
    models = {name: Model(m.model.eval(), m.normal.to(device)) for name, m in models.items()}
    trained = models["attention"]
    attention = [method for method in ATTENTION_METHODS if method in grid.method]
    generators = {
        method: {q: generator_for(seed, f"{split}/{method}/{q}") for q in grid.quantity}
        for method in attention
    }
    method_generators = {m: generator_for(seed, f"{split}/{m}") for m in grid.method}
    parts: dict[Variant, list[Tensor]] = {variant: [] for variant in grid.variants}
    for index in batches(len(images), batch_size):
        x = images[index].to(device)
        mu = logvar = None
        for method in attention:
            model, normal = models[method]
            maps = attention_grid(
                model,
                x,
                grid.target_layer,
                grid.formulation,
                grid.quantity,
                normal.stats,
                generators[method],
            )
            for reading in grid.readings:
                parts[Variant(method, *reading)].append(maps.maps[reading].aggregate.cpu())
            if method == "attention":
                mu, logvar = maps.mu, maps.logvar
        with torch.no_grad():
            if mu is None:
                mu, logvar = trained.model.encode(x)
            batch = Pass(x, torch.sigmoid(trained.model.decode(mu)), mu, logvar)
            for method in grid.method:
                if method in IMAGE_METHODS:
                    score = IMAGE_METHODS[method](batch, trained.normal)
                    parts[Variant(method)].append(score.cpu())
                elif method in BASELINES:
                    generator = method_generators[method]
                    baseline = BASELINES[method](batch, trained.normal, generator)
                    parts[Variant(method)].append(baseline.cpu())
    return {variant: torch.cat(chunks) for variant, chunks in parts.items()}


# --- the table ---------------------------------------------------------------------------------


@dataclass
class ScoreTable:
    """Scores of one trained model: one row per combination (:data:`COLUMNS`: a baseline's
    layer, formulation and quantity None, and an image-level method's normalisation and image
    score too), then every metric. Map-level metrics (pixel AUROC) do not depend on the image
    score and repeat across a combination's image-score rows; ``image_level`` names the
    metrics that do."""

    rows: list[dict[str, Any]]
    image_level: frozenset[str]

    def metrics(self) -> dict[str, float]:
        """Every number as one flat metric, named as the module doc says (a map-level metric
        once per map and normalisation)."""
        flat = {}
        for row in self.rows:
            for metric, value in row.items():
                if metric in COLUMNS:
                    continue
                keep = COLUMNS if metric in self.image_level else COLUMNS[:-1]
                flat[metric_name(row, metric, keep)] = value
        return flat
