"""The Tune trainable: one trial of any experiment, reported to Ray Tune and MLflow."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from orchestrator.tracking import Tracking, TrialRun
from vaecam.experiments import EXPERIMENTS

STATE_FILE = "state.pt"


def save_state(state: dict[str, Any], directory: Path) -> None:
    """Write a checkpoint atomically: a crash mid-write leaves no half-written file."""
    partial = directory / f"{STATE_FILE}.partial"
    torch.save(state, partial)
    os.replace(partial, directory / STATE_FILE)


def load_state(checkpoint: tune.Checkpoint | None) -> dict[str, Any] | None:
    """The experiment state in ``checkpoint``; ``weights_only`` loading executes no code."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return torch.load(Path(directory) / STATE_FILE, weights_only=True)


class TuneReporter:
    """Sends an experiment's reports to Tune (metrics, checkpoint) and the trial's MLflow run."""

    def __init__(self, run: TrialRun):
        self.run = run

    def report(self, metrics: dict[str, float], state: dict[str, Any]) -> None:
        # The checkpoint first: a crash between the two leaves an epoch that the restored
        # trial logs from its checkpoint (``TrialRun.log_missing``), never one logged twice.
        with tempfile.TemporaryDirectory() as tmp:
            save_state(state, Path(tmp))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
        self.run.log_metrics(metrics, step=int(metrics["epoch"]))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.run.log_artifact(path, artifact_path)


def train_trial(config: dict[str, Any], tracking: Tracking) -> None:
    """Run ``config["experiment"]`` for one trial, resuming from Tune's last checkpoint if any.

    Outside a Tune session (a unit test) ``tune.report`` and ``tune.get_checkpoint`` are no-ops
    and the trial id falls back to ``config["trial_id"]``.
    """
    context = tune.get_context()
    trial_id = context.get_trial_id() or config.get("trial_id", "local")
    trial_name = context.get_trial_name() or trial_id
    with TrialRun(tracking, trial_id, trial_name, config) as run:
        if ray.is_initialized():
            run.record_node(ray.get_runtime_context().get_node_id())
        state = load_state(tune.get_checkpoint())
        if state is not None:  # a retry or restore
            run.log_missing(state["metrics"], step=state["epoch"])
        EXPERIMENTS[config["experiment"]].run(config, TuneReporter(run), state)
