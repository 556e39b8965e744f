"""What a search space is: the data of one sweep, read by the orchestrator and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vaecam.experiments import Experiment

Grid = Mapping[str, Sequence[str]]  # a scoring grid: key (method, target_layer, ...) -> names


def anomaly() -> Experiment:
    """MNIST, MVTec AD and UCSD Ped1's experiment. Imported when it runs, not with the search
    spaces: it imports torch (seconds), which what only reads their data (``report``) does not
    need."""
    from vaecam.experiments import anomaly

    return anomaly


def disentanglement() -> Experiment:
    """dSprites' experiment, imported when it runs (see :func:`anomaly`)."""
    from vaecam.experiments import disentanglement

    return disentanglement


@dataclass(frozen=True)
class SearchSpace:
    """One sweep's data, in two parts:

    ``experiment()`` is the experiment that trains and scores it (:func:`anomaly`,
    :func:`disentanglement`). Then:

    - what changes training, which Tune searches: ``train`` and ``num_samples`` (the full
      sweep), ``quick`` and ``quick_num_samples`` (minutes on a CPU), each overriding only what
      differs from the experiment's defaults (its settings dataclasses, checked before Ray
      starts); ``explore``: the grids a model-based search (``--search optuna``) may explore;
    - ``scoring``: the grid of lists (methods, target layers, formulations, quantities,
      normalisations, image scores) that every trained model is scored on, never trained again
      (``quick_scoring`` for ``--quick`` where it differs).

    Tune optimises ``metric`` (validation on held-out normal data, never a test metric) in
    ``mode``. ``presets`` (``--preset``) are named ``set`` and ``scoring`` overrides.

    What the outputs show: the summary's run metrics per trial (``summary``) and the score
    tables' columns (``scores``); each trial's headline (its metrics, the console's table and the
    trial-comparison figure) is, per claim of ``claims``, its reading and every control
    (``orchestrator.headline``), or where a space has no score grid ``compare`` (label -> run
    metric). Sweeps that compare against published numbers add ``group_by`` (e.g. the
    category), ``ours`` (label -> run metric), ``reference_columns`` and ``reference``; sweeps
    over seeds ``aggregate_over``, ``aggregate``, ``scatter``, ``reference_by``. The report
    compares the training settings with ``paper_settings`` and the test set with
    ``full_test_images`` (a count, per ``group_by`` value, or None where there is none).
    """

    experiment: Callable[[], Experiment]
    train: Mapping[str, Any]
    quick: Mapping[str, Any]
    scoring: Grid
    summary: Sequence[str]
    metric: str = "val_loss"
    mode: str = "min"
    num_samples: int = 1
    quick_num_samples: int = 1
    quick_scoring: Grid | None = None
    explore: tuple[str, ...] = ()
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    scores: Sequence[str] = ()
    aggregate_over: Sequence[tuple[str, ...]] = ()
    aggregate: Sequence[str] = ()
    claims: Sequence[Mapping[str, Any]] = ()
    paper_settings: Mapping[str, Any] = field(default_factory=dict)
    full_test_images: int | Mapping[str, int] | None = None
    group_by: str | None = None
    ours: Mapping[str, str] = field(default_factory=dict)
    reference_columns: tuple[str, ...] = ()
    reference: Mapping[str, Any] = field(default_factory=dict)
    compare: Mapping[str, str] = field(default_factory=dict)
    scatter: tuple[str, str] | None = None
    reference_by: str | None = None
