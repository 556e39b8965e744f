"""Experiments by name, and the one seam between them and whoever runs them.

An experiment module has ``prepare(config)`` (check or fetch its data once, before any trial
starts) and ``run(config, reporter, state)`` (one trial). It knows nothing of Ray or MLflow:
everything it reports goes through the ``Reporter`` it is given.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from vaecam.experiments import disentanglement, localisation, one_class, video
from vaecam.registry import Registry


class Reporter(Protocol):
    """What an experiment reports to; the orchestrator's sends it to Ray Tune and MLflow."""

    def report(self, metrics: dict[str, float], state: dict[str, Any]) -> None:
        """Once per epoch: metrics (``epoch`` included) and the state to checkpoint."""

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """A file to keep (a figure, the final weights), optionally under a sub-folder."""


EXPERIMENTS: Registry[ModuleType] = Registry(
    "experiment",
    {
        "one_class": one_class,
        "localisation": localisation,
        "video": video,
        "disentanglement": disentanglement,
    },
)
