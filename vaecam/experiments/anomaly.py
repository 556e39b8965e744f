"""The anomaly experiments' one skeleton: one-class MNIST, MVTec AD and UCSD Ped1 (PAPER.md
section 3) differ only in their dataset, its settings and its metrics, plugged in by each
dataset's :class:`~vaecam.experiments.common.Benchmark`
(:func:`vaecam.experiments.datasets.benchmarks`). Training and scoring are separate verbs::

    trained = train(config, reporter, state)     # seed, load, build, fit (resumable), weights
    table = score(trained, {"target_layer": ["encoder.0", "encoder.2"], ...}, reporter)

``train`` fits the VAE on normal images only (validation on held-out normal images: model
selection never sees a test label), then logs the weights and what scoring needs of the normal
data. ``score`` evaluates every combination of a scoring grid (:mod:`vaecam.scoring`) on that
one model, so choices that do not change training are compared on the same model, and
:func:`restore` rebuilds a trained model from those artifacts to score it again later.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from PIL import Image
from torch import Tensor

from vaecam.attention import attention_maps
from vaecam.data.images import Augment, Progress
from vaecam.experiments.common import (
    AnomalyData,
    AnomalySettings,
    Reporter,
    build_model,
    fit,
    log_model,
)
from vaecam.experiments.datasets import benchmarks
from vaecam.figures import MAX_CURVES, localisation_image, map_image, roc_figure
from vaecam.metrics import roc_points
from vaecam.models import VAE
from vaecam.scoring import (
    IMAGE_SCORES,
    NORMALISATIONS,
    Model,
    NormalData,
    ScoreTable,
    ScoringGrid,
    Variant,
    anomaly_maps,
    normal_data,
    scoring_grid,
    untrained_model,
)
from vaecam.settings import check_settings, data_keys
from vaecam.settings import defaults as settings_defaults
from vaecam.training import evaluate_loss, seed_everything, train_epoch

# --- settings ----------------------------------------------------------------------------------


def settings_class(config: Mapping[str, Any]) -> type[AnomalySettings]:
    """The settings dataclass of ``config["dataset"]`` (an unknown one lists the valid names)."""
    return benchmarks()[config.get("dataset", AnomalySettings.dataset)].settings


def defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting of ``config["dataset"]`` with its default."""
    return settings_defaults(settings_class(config))


def data_settings(config: Mapping[str, Any]) -> list[str]:
    """The settings that pick the files a trial reads (checked once per value before a
    sweep)."""
    return data_keys(settings_class(config))


def check(config: Mapping[str, Any]) -> AnomalySettings:
    """The typed settings of ``config`` (a :class:`~vaecam.settings.SettingsError` names a bad
    key or value)."""
    return check_settings(settings_class(config), config)


def prepare(config: Mapping[str, Any], progress: Progress | None = None) -> None:
    """Check the data ``config`` reads, every file decoded once (fetching it where allowed),
    before any trial starts; ``progress(done, total, what)`` is told as files are done."""
    settings = check(config)
    benchmarks()[settings.dataset].check(settings, progress)


def check_scoring(config: Mapping[str, Any], grid: Mapping[str, Any]) -> ScoringGrid:
    """The checked scoring grid for ``config``'s model: names from their registries, target
    layers among the model's modules. Builds the model on the meta device (no memory, no
    weights), so it costs nothing before a sweep."""
    settings = check(config)
    with torch.device("meta"):
        model = build_model(settings, in_channels=3, device="meta")
    return scoring_grid(grid, model)


# --- train -------------------------------------------------------------------------------------


class Trained(NamedTuple):
    """A trained model with what scoring it needs: its settings, data and normal-data
    statistics."""

    settings: AnomalySettings
    model: VAE
    data: AnomalyData
    normal: NormalData


def rounds(config: Mapping[str, Any]) -> int:
    """How many reports (epochs) a trial of ``config`` makes when it trains to the end."""
    return check(config).epochs


def train(
    config: Mapping[str, Any],
    reporter: Reporter,
    state: dict[str, Any] | None = None,
    scoring: Mapping[str, Any] | None = None,
) -> Trained:
    """Train ``config``'s model on its normal images for ``epochs`` epochs (from ``state`` when
    resuming), reporting the data read and each epoch (``train_*`` and ``val_*`` losses, the
    state to checkpoint); then log ``model/model.pt`` and ``model/normal_data.pt``. Given the
    ``scoring`` grid the model will be scored on, ten times over training the maps of its
    first layer and formulation (of ``mu``) for the first test image of each group go to
    ``reporter.log_image`` as ``training/attention``: how a map forms, the same images in
    every trial of a sweep."""
    settings = check(config)
    generator = seed_everything(settings.seed)
    benchmark = benchmarks()[settings.dataset]
    data = benchmark.load(settings)
    source = benchmark.source(settings)
    for split, images in (("train", data.train), ("val", data.val), ("test", data.test)):
        reporter.log_dataset(source, split, len(images))
    model = build_model(settings, in_channels=data.train.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    augment = Augment(settings.hflip, settings.vflip, settings.rotation_degrees)
    shown = scoring_grid(scoring, model) if scoring else None

    def preview(epoch: int) -> dict[str, float]:
        if shown is not None and shown.target_layer and epoch in preview_epochs(settings.epochs):
            image = preview_image(model, data, shown.target_layer[0], shown.formulation[0])
            reporter.log_image("training/attention", image, epoch)
        return {}

    fit(
        model,
        optimizer,
        generator,
        settings.epochs,
        lambda epoch: train_epoch(
            model, optimizer, data.train, settings.batch_size, generator, augment
        ),
        lambda: evaluate_loss(model, data.val, settings.batch_size),
        reporter,
        state,
        extra=preview,
    )
    normal = normal_data(model, data.train, settings.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        log_model(model, reporter, Path(tmp), normal)
    return Trained(settings, model, data, normal)


def preview_epochs(epochs: int) -> set[int]:
    """The ten (or fewer) epochs a training preview is drawn at, the last among them."""
    every = max(1, epochs // 10)
    return {epoch for epoch in range(epochs) if (epoch + 1) % every == 0} | {epochs - 1}


def preview_image(
    model: VAE, data: AnomalyData, target_layer: str, formulation: str
) -> Image.Image:
    """The attention map of ``mu`` at ``target_layer`` for the first test image of each group,
    as one square :func:`~vaecam.figures.map_image`."""
    rows = [group_rows[0] for group_rows in figure_rows(data, 1).values()]
    device = next(model.parameters()).device
    x = data.test[rows].to(device)
    model.eval()
    maps = attention_maps(model, x, target_layer, formulation, "mu").aggregate.cpu()
    masks = data.masks[rows] if data.masks is not None else None
    heading = f"attention {target_layer} {formulation} mu"
    return map_image(data.test[rows], maps, [data.titles[i] for i in rows], heading, masks)


def restore(
    config: Mapping[str, Any], weights: Mapping[str, Tensor], normal: Mapping[str, Tensor]
) -> Trained:
    """A :class:`Trained` from a finished run's config, ``model/model.pt`` and
    ``model/normal_data.pt`` (their ``torch.load``-ed state dicts): its data is loaded again
    (the same split: it is drawn from the seed), nothing is trained."""
    settings = check(config)
    data = benchmarks()[settings.dataset].load(settings)
    model = build_model(settings, in_channels=data.train.shape[1])
    model.load_state_dict(weights)
    return Trained(settings, model.eval(), data, NormalData.from_state_dict(normal))


# --- score -------------------------------------------------------------------------------------


def score(
    trained: Trained,
    grid: Mapping[str, Any],
    reporter: Reporter,
    readings: Mapping[str, Mapping[str, Any]] | None = None,
    figures: bool = True,
) -> ScoreTable:
    """Every combination of the scoring ``grid`` (key -> list of names, see
    :class:`~vaecam.scoring.ScoringGrid`) on the trained model: the maps of every method,
    layer, formulation and quantity from shared passes over the test images (and the
    validation images when a normalisation needs them), each normalised each way, then the
    dataset's map-level metrics and, per image score, its image-level metrics. With
    ``figures``, logs the overlays of every map per group of test images, and the maps and ROC
    curves of the ``readings`` (name -> scoring combination: the claims' readings) and of the
    controls (:func:`log_figures`)."""
    settings, model, data, normal = trained
    benchmark = benchmarks()[settings.dataset]
    checked = scoring_grid(grid, model)
    models = {"attention": Model(model, normal)}
    if "untrained" in checked.method:
        fresh = untrained_model(
            lambda: build_model(settings, in_channels=data.train.shape[1]), settings.seed
        )
        models["untrained"] = Model(fresh, normal_data(fresh, data.train, settings.batch_size))

    def maps_of(images: Tensor, split: str) -> dict[Variant, Tensor]:
        return anomaly_maps(
            models, images, checked, settings.seed, settings.score_batch_size, split
        )

    test = maps_of(data.test, "test")
    val = maps_of(data.val, "val") if "validation" in checked.normalisation else {}
    rows: list[dict[str, Any]] = []
    image_level: set[str] = set()
    shown: dict[Variant, Tensor] = {}  # the maps the figures show: the first normalisation's
    for variant, maps in test.items():
        if maps.dim() == 1:  # an image-level method: scores, no map
            shown[variant] = maps
            image = benchmark.image_metrics(maps, data, settings)
            image_level |= set(image)
            rows.append(variant._asdict() | {"normalisation": None, "image_score": None} | image)
            continue
        for normalisation in checked.normalisation:
            normalised = NORMALISATIONS[normalisation](maps, val.get(variant))
            shown.setdefault(variant, normalised)
            pixel = (
                benchmark.map_metrics(normalised, data, settings) if benchmark.map_metrics else {}
            )
            for image_score in checked.image_score:
                scores = IMAGE_SCORES[image_score](normalised)
                image = benchmark.image_metrics(scores, data, settings)
                image_level |= set(image)
                combination = {"normalisation": normalisation, "image_score": image_score}
                rows.append(variant._asdict() | combination | pixel | image)
    table = ScoreTable(rows, frozenset(image_level))
    if figures:
        log_figures(trained, checked, shown, table, reporter, readings or {})
    return table


# --- figures -----------------------------------------------------------------------------------


def label(variant: Variant) -> str:
    """A column title: layer, formulation and quantity on three lines for attention
    (``untrained`` before the layer for the untrained model's), else the method."""
    if variant.target_layer is None:
        return variant.method
    reading = f"{variant.target_layer}\n{variant.formulation}\n{variant.quantity}"
    return reading if variant.method == "attention" else f"{variant.method} {reading}"


def featured(
    variants: Sequence[Variant], readings: Mapping[str, Mapping[str, Any]]
) -> dict[str, Variant]:
    """The maps a person compares across trials, by name: each reading the grid has (else the
    grid's first attention map, as ``attention``), the untrained model's maps of the first of
    them (``untrained``), then every baseline and control."""
    chosen = {
        name: Variant(*(selection.get(key) for key in Variant._fields))
        for name, selection in readings.items()
    }
    found = {name: variant for name, variant in chosen.items() if variant in variants}
    attention = [v for v in variants if v.method == "attention"]
    if not found and attention:
        found["attention"] = attention[0]
    if found:
        untrained = next(iter(found.values()))._replace(method="untrained")
        if untrained in variants:
            found["untrained"] = untrained
    return found | {v.method: v for v in variants if v.target_layer is None}


def figure_rows(data: AnomalyData, per_group: int) -> dict[str, list[int]]:
    """Up to ``per_group`` test images of each group, evenly spread over it; anomalous images
    only among those with ground-truth masks where some have none."""
    rows: dict[str, list[int]] = {}
    for group in dict.fromkeys(data.groups):
        members = torch.tensor([i for i, g in enumerate(data.groups) if g == group])
        if data.has_mask is not None and data.anomalous[members].all():
            members = members[data.has_mask[members]]
        if len(members) and per_group:
            spread = torch.linspace(0, len(members) - 1, min(per_group, len(members))).long()
            rows[group] = members[spread].tolist()
    return rows


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


#: An overlay file shows at most this many maps: the grid's are split over several files.
MAPS_PER_FILE = 8


def log_figures(
    trained: Trained,
    grid: ScoringGrid,
    shown: Mapping[Variant, Tensor],
    table: ScoreTable,
    reporter: Reporter,
    readings: Mapping[str, Mapping[str, Any]],
) -> None:
    """Per group of test images (a few of each): ``overlays/<group>/maps-<i>-<j>.png``, input,
    ground truth (where there are masks), reconstruction and maps ``i`` to ``j`` of ``shown``
    (the grid's first normalisation), at most :data:`MAPS_PER_FILE` a file; and for each
    :func:`featured` map a square image ``<group>/<name>`` (``reporter.log_image``: the same
    key in every trial). ``figures/roc.png``: the featured maps' ROC curves, pixel-level where
    there are masks, else image-level from the first image score (and the image-level
    methods')."""
    settings, model, data, _ = trained
    device = next(model.parameters()).device
    normalisation, image_score = grid.normalisation[0], grid.image_score[0]
    maps = {variant: values for variant, values in shown.items() if values.dim() == 3}
    named = featured(list(shown), readings)
    with tempfile.TemporaryDirectory() as tmp:
        for group, rows in figure_rows(data, settings.figure_examples).items():
            with torch.no_grad():
                x = data.test[rows].to(device)
                recons = torch.sigmoid(model.decode(model.encode(x)[0])).cpu()
            masks = data.masks[rows] if data.masks is not None else None
            titles = [data.titles[i] for i in rows]
            variants = list(maps)
            folder = Path(tmp) / _slug(group)
            folder.mkdir()
            for first in range(0, len(variants), MAPS_PER_FILE):
                part = variants[first : first + MAPS_PER_FILE]
                image = localisation_image(
                    data.test[rows],
                    masks,
                    {label(variant): maps[variant][rows] for variant in part},
                    titles,
                    recons=recons,
                )
                path = folder / f"maps-{first + 1:02d}-{first + len(part):02d}.png"
                image.save(path, format="PNG")
                reporter.log_artifact(path, f"overlays/{_slug(group)}")
            for name, variant in named.items():
                if variant not in maps:  # an image-level method: no map
                    continue
                what = label(variant).replace("\n", " ")
                heading = f"{group}: {name}" + ("" if name == what else f" ({what})")
                picture = map_image(data.test[rows], maps[variant][rows], titles, heading, masks)
                reporter.log_image(f"{_slug(group)}/{name}", picture, None)

        if data.masks is not None:  # pixel-level curves of the maps
            annotated = data.has_mask if data.has_mask is not None else slice(None)
            metric, kind = "pixel_auroc", "pixel"
            curves = {
                name: roc_points(maps[v][annotated], data.masks[annotated])
                for name, v in named.items()
                if v in maps
            }
        else:  # image-level curves of every method
            metric, kind = "image_auroc", f"image ({image_score})"
            curves = {}
            for name, v in named.items():
                scores = shown[v] if shown[v].dim() == 1 else IMAGE_SCORES[image_score](shown[v])
                curves[name] = roc_points(scores, data.anomalous)
        areas = {}
        for row in table.rows:
            variant = Variant(*(row[key] for key in Variant._fields))
            if row["normalisation"] in (normalisation, None) and row["image_score"] in (
                image_score,
                None,
            ):
                areas[variant] = row.get(metric)
        legend = {
            name: (*points, areas[named[name]])
            for name, points in curves.items()
            if areas.get(named[name]) is not None
        }
        if legend:
            legend = dict(list(legend.items())[:MAX_CURVES])  # the readings first
            title = f"{settings.dataset}: {kind} ROC ({normalisation})"
            reporter.log_artifact(roc_figure(legend, Path(tmp) / "roc.png", title), "figures")
