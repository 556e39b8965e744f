"""What every experiment shares: the reporter it talks to, building its model, the resumable
training loop, the anomaly experiments' settings, data and plug-in types, and the type of a
dataset (:class:`Dataset`: one module of this package each, named after it)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from PIL import Image
from torch import Tensor

from vaecam.data import DataSource
from vaecam.data.download import Download
from vaecam.data.dsprites import GroundTruthData
from vaecam.data.images import Progress
from vaecam.data.synthetic import is_synthetic
from vaecam.models import MODELS, VAE
from vaecam.scoring import NormalData
from vaecam.settings import SettingsError, setting


class Reporter(Protocol):
    """What an experiment reports to; the orchestrator's sends it to Ray Tune and MLflow."""

    def report(self, metrics: dict[str, float], state: dict[str, Any], final: bool) -> None:
        """Once per epoch: metrics (``epoch`` included), the state to checkpoint (when the
        reporter chooses to: always after the ``final`` epoch)."""

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """A file to keep (a figure, the final weights), optionally under a sub-folder."""

    def log_image(self, key: str, image: Image.Image, step: int | None) -> None:
        """A picture to compare across runs and steps (None: the last epoch reported): the
        same ``key`` in every trial of a sweep shows the same input."""

    def log_dataset(self, source: DataSource, split: str, num_images: int) -> None:
        """What the trial reads: ``num_images`` of ``source`` as its ``split`` (train, val,
        test)."""


class NullReporter:
    """A :class:`Reporter` that keeps nothing: for running an experiment outside a sweep (a
    benchmark, a test); figures are still drawn and written."""

    def report(self, metrics: dict[str, float], state: dict[str, Any], final: bool) -> None:
        pass

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        pass

    def log_image(self, key: str, image: Image.Image, step: int | None) -> None:
        pass

    def log_dataset(self, source: DataSource, split: str, num_images: int) -> None:
        pass


# --- models ------------------------------------------------------------------------------------


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


def build_model(settings: Any, in_channels: int, device: str | None = None) -> VAE:
    """``MODELS[settings.model]`` for ``in_channels`` x ``image_size``^2 inputs and
    ``latent_dim``, on ``device`` (default ``settings.device``). Architecture options come from
    ``settings.model_options`` (e.g. ``{"pretrained": True}``); the model's other constructor
    arguments found among the settings are passed too, so a regulariser weight such as
    ``gamma`` is a plain, sweepable setting (a model ignores the ones it does not take)."""
    cls = MODELS[settings.model]
    options = dict(settings.model_options)
    given = {"in_channels", "image_size", "latent_dim", *options}
    own = {
        name: getattr(settings, name)
        for name in constructor_arguments(cls)
        if hasattr(settings, name) and name not in given
    }
    try:
        model = cls(
            in_channels=in_channels,
            image_size=settings.image_size,
            latent_dim=settings.latent_dim,
            **options,
            **own,
        )
    except TypeError as error:  # an option the model does not take
        raise SettingsError(f"model_options={options!r} for {settings.model}: {error}") from None
    return model.to(device or settings.device)


def log_model(
    model: VAE, reporter: Reporter, folder: Path, normal: NormalData | None = None
) -> None:
    """The trained weights as the trial's ``model/model.pt`` artifact and, for the anomaly
    experiments, what scoring needs of the normal data as ``model/normal_data.pt`` (written in
    ``folder``): with the config, all a finished model needs to be scored again."""
    torch.save(model.state_dict(), folder / "model.pt")
    reporter.log_artifact(folder / "model.pt", "model")
    if normal is not None:
        torch.save(normal.state_dict(), folder / "normal_data.pt")
        reporter.log_artifact(folder / "normal_data.pt", "model")


# --- the resumable training loop ----------------------------------------------------------------


def training_state(
    epoch: int,
    metrics: dict[str, float],
    model: VAE,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> dict[str, Any]:
    """What a trial checkpoints after each epoch: all :func:`resume_training` needs to go on
    exactly, and the epoch's metrics, so a resumed trial can log what a crash kept from the
    tracker."""
    return {
        "epoch": epoch,
        "metrics": metrics,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
    }


def resume_training(
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
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    rounds: int,
    train_round: Callable[[int], dict[str, float]],
    validate: Callable[[], dict[str, float]],
    reporter: Reporter,
    state: dict[str, Any] | None,
    unit: str = "epoch",
    extra: Callable[[int], dict[str, float]] | None = None,
) -> None:
    """The one resumable training loop: ``rounds`` rounds (epochs over a tensor of images, or
    rounds of iterations on generated data), from ``state`` when resuming. Each round runs
    ``train_round(r)`` (its per-image loss means), then ``validate()`` on held-out *normal* data
    (model selection and early stopping never see test labels) and ``extra(r)``, and reports
    ``epoch: r``, ``train_*``, ``val_*`` and the extras with the state to checkpoint.

    A non-finite loss (``FloatingPointError``) fails the trial naming its ``unit`` and round.
    """
    for r in range(resume_training(state, model, optimizer, generator), rounds):
        try:
            losses = train_round(r)
        except FloatingPointError as error:
            raise FloatingPointError(f"{unit} {r}: {error}") from None
        metrics: dict[str, float] = {"epoch": r}
        metrics |= {f"train_{name}": value for name, value in losses.items()}
        metrics |= {f"val_{name}": value for name, value in validate().items()}
        metrics |= extra(r) if extra is not None else {}
        checkpoint = training_state(r, metrics, model, optimizer, generator)
        reporter.report(metrics, checkpoint, final=r == rounds - 1)


# --- the anomaly experiments' plug-in types -----------------------------------------------------


@dataclass(frozen=True)
class AnomalySettings:
    """What every anomaly experiment (one-class MNIST, MVTec AD, UCSD Ped1) takes; each dataset's
    settings extend these with its own and set the paper's or the reproduction's defaults.
    ``data=True`` marks what picks the files a trial reads."""

    dataset: str = setting("mnist", data=True)  # a key of vaecam.experiments.datasets.DATASETS
    data_root: str = setting("data", data=True)  # the folder holding the datasets
    device: str = "cpu"  # "cuda" on a GPU: explicit, never inferred
    image_size: int = setting(28, ge=8)
    model: str = setting("conv_vae", choices=MODELS)
    model_options: dict[str, Any] = setting({})  # architecture, e.g. {"pretrained": true}
    latent_dim: int = setting(32, ge=1)
    lr: float = setting(1e-3, gt=0)  # Adam
    batch_size: int = setting(128, ge=1)
    epochs: int = setting(100, ge=1)
    hflip: bool = False  # augmentation: random horizontal flips
    vflip: bool = False
    rotation_degrees: float = setting(0.0, ge=0, le=180)  # largest random rotation, DEGREES
    figure_examples: int = setting(4, ge=0)  # test images per group in the figures
    seed: int = setting(0, ge=0)
    # Scoring's batch size, in test-set order. The codes' formulations (authors, reproduction)
    # normalise by one RMS over the batch, so their maps depend on it: 128 is the authors'
    # MNIST test loader (batch 128, shuffle=False); each dataset sets the code it follows.
    score_batch_size: int = setting(128, ge=1)

    def __post_init__(self) -> None:
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise SettingsError(f"device={self.device!r}: expected cpu or cuda[:N]")


class AnomalyData(NamedTuple):
    """One anomaly dataset as the skeleton uses it, in memory. Images are float32 in [0, 1].

    Only normal images are trained on (``train``) and validated on (``val``); test images have
    image-level labels and, where the data has them, pixel masks. ``has_mask`` marks the test
    images whose masks are ground truth (UCSD clips without masks are never scored as
    all-normal); ``groups`` names what each test image is (a digit, a defect type, anomalous or
    normal frame) for figures, and ``titles`` labels it; ``classes`` holds class labels where
    metrics need them (the MNIST digit); ``units`` the bootstrap's resampling unit of each test
    image where images are not independent (a video's clip).
    """

    train: Tensor  # (N, C, H, W)
    val: Tensor  # (V, C, H, W)
    test: Tensor  # (M, C, H, W)
    anomalous: Tensor  # (M,) bool
    groups: list[str]  # (M,)
    titles: list[str]  # (M,)
    masks: Tensor | None = None  # (M, H, W) bool
    has_mask: Tensor | None = None  # (M,) bool; None: every test image's mask is ground truth
    classes: Tensor | None = None  # (M,) int64
    units: Tensor | None = None  # (M,) int64; None: each image its own unit


Metrics = Callable[[Tensor, AnomalyData, Any], dict[str, float]]


class Benchmark(NamedTuple):
    """A dataset and its evaluation protocol, plugged into the anomaly skeleton
    (:mod:`vaecam.experiments.anomaly`): its ``settings`` (an :class:`AnomalySettings`
    subclass with its defaults), ``check(settings, progress)`` (every file decoded once, before
    any trial starts),
    ``load(settings) -> AnomalyData``, ``source(settings) -> DataSource`` (what it reads,
    for provenance), and its metrics: ``map_metrics(maps (M, H, W), data, settings)`` for
    pixel-level ground truth (None without masks) and ``image_metrics(scores (M,), data,
    settings)`` from one score per image."""

    settings: type[AnomalySettings]
    check: Callable[[Any, Progress | None], None]
    load: Callable[[Any], AnomalyData]
    source: Callable[[Any], DataSource]
    image_metrics: Metrics
    map_metrics: Metrics | None = None


def subset_source(dataset: str, data_root: str, key: str, value: str, url: str) -> DataSource:
    """One subset (``key``: a category, a scene) of a dataset published at ``url`` and laid
    out as a folder per subset under ``data_root``: every file under ``<data_root>/<value>``."""
    root = Path(data_root).expanduser().resolve()
    return DataSource(
        f"{dataset}/{value}",
        root / value,
        url=url,
        synthetic=is_synthetic(root),
        selection={key: value},
    )


# --- datasets ------------------------------------------------------------------------------------


class Found(NamedTuple):
    """A dataset as a campaign runs it from its data root: the search space it runs (named after
    its dataset: ``digits`` in place of ``mnist``), the sweep's ``--data-root``, what the data
    are (``real``, or why they are not the paper's), and the categories and settings
    (``KEY=VALUE``) it needs."""

    space: str
    data_root: str
    data: str
    categories: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """All that is known of one dataset, in its module (named after it): its ``name`` (the
    settings' ``dataset``); its plug-in: ``benchmark`` for the anomaly experiments, or
    ``ground_truth(data root)`` for disentanglement; ``download`` (None: nothing to fetch);
    ``find(data root, quick, cache)``: where a campaign finds it under its data root, or with
    ``quick`` the stand-in it runs instead (generated under ``cache``), else why it cannot run
    (None: a stand-in, never run on its own); ``generate(cache)``: its generated stand-in,
    written once, its data root."""

    name: str
    benchmark: Benchmark | None = None
    ground_truth: Callable[[Path], GroundTruthData] | None = None
    download: Download | None = None
    find: Callable[[Path, bool, Path], Found | str] | None = None
    generate: Callable[[Path], Path] | None = None
