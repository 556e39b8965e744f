"""Experiments by name, and the one seam between them and whoever runs them.

An experiment module has:

- ``defaults(config)``: every setting with its default (the paper's or the reproduction's);
  ``check(config)``: the typed, checked settings (a bad value raises
  :class:`~vaecam.settings.SettingsError` naming the key); ``data_settings(config)``: the keys
  that pick the files a trial reads;
- ``prepare(config)``: check (or fetch) the data once, before any trial starts;
- ``check_scoring(config, grid)``: the model's options and the scoring grid, before training;
- ``rounds(config)``: how many reports (epochs, rounds) a full training makes;
- ``train(config, reporter, state, scoring) -> trained``: one trial's training, resumable (the
  scoring grid it will be scored on, for previews during training);
- ``score(trained, grid, reporter) -> ScoreTable``: every scoring choice on the trained model.

It knows nothing of Ray or MLflow: everything it reports goes through the ``Reporter`` it is
given (:class:`~vaecam.experiments.common.Reporter`).
"""

from __future__ import annotations

from types import ModuleType

from vaecam.experiments import anomaly, disentanglement
from vaecam.experiments.common import Reporter
from vaecam.registry import Registry

EXPERIMENTS: Registry[ModuleType] = Registry(
    "experiment", {"anomaly": anomaly, "disentanglement": disentanglement}
)

__all__ = ["EXPERIMENTS", "Reporter"]
