"""The experiments, and the one seam between an experiment and whoever runs it: :class:`Experiment`.

Two modules implement it: :mod:`~vaecam.experiments.anomaly` (MNIST, MVTec AD, UCSD Ped1) and
:mod:`~vaecam.experiments.disentanglement` (dSprites). A search space names its module
(``search_spaces``); the orchestrator calls it through this protocol. An experiment knows nothing
of Ray or MLflow: everything it reports goes through the ``Reporter`` it is given
(:class:`~vaecam.experiments.common.Reporter`).

This package imports neither: they import torch (seconds), which what only reads a search
space's data (``report``, ``--help``) does not need.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from vaecam.data.images import Progress
    from vaecam.experiments.common import Reporter
    from vaecam.scoring import ScoreTable


class Experiment(Protocol):
    """What a sweep does with an experiment, from its plain config (setting -> value)."""

    def defaults(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Every setting with its default (the paper's or the reproduction's)."""

    def check(self, config: Mapping[str, Any]) -> Any:
        """The typed, checked settings (its settings dataclass); a bad value raises
        :class:`~vaecam.settings.SettingsError` naming the key."""

    def data_settings(self, config: Mapping[str, Any]) -> list[str]:
        """The settings that pick the files a trial reads."""

    def prepare(self, config: Mapping[str, Any], progress: Progress | None = None) -> None:
        """Check (or fetch) the data once, before any trial starts."""

    def check_scoring(self, config: Mapping[str, Any], grid: Mapping[str, Any]) -> object:
        """The model's options and the scoring grid, checked before training."""

    def rounds(self, config: Mapping[str, Any]) -> int:
        """How many reports (epochs, rounds) a full training makes."""

    def train(
        self,
        config: Mapping[str, Any],
        reporter: Reporter,
        state: dict[str, Any] | None = None,
        scoring: Mapping[str, Any] | None = None,
    ) -> Any:
        """One trial's training, resumable from ``state`` (the scoring grid it will be scored
        on, for previews during training); the trained model with what scoring needs."""

    def score(
        self,
        trained: Any,
        grid: Mapping[str, Any],
        reporter: Reporter,
        readings: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> ScoreTable:
        """Every combination of the scoring grid on the trained model."""

    def restore(self, config: Mapping[str, Any], weights: Any, normal: Any) -> Any:
        """A trained model again from a finished run's config and ``torch.load``-ed state
        dicts, nothing trained: for scoring it again (``orchestrator.rescore``)."""


__all__ = ["Experiment"]
