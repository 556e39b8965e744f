"""The Tune trainable: one trial of any experiment, trained once and scored on its scoring grid,
reported to Ray Tune (per epoch, with checkpoints) and MLflow (everything)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
from PIL import Image
from ray import tune

from orchestrator.headline import all_readings
from orchestrator.provenance import environment_provenance
from orchestrator.system_metrics import system_metrics
from orchestrator.tracking import Tracking, TrialRun
from vaecam.data import DataSource
from vaecam.experiments import Experiment

STATE_FILE = "state.pt"

#: Test-only fault injection (never a setting of a search space): JSON in this environment
#: variable of the sweep's driver, one fault or a list, e.g. ``{"exit_epoch": 2, "when":
#: {"seed": 1}}``.
FAULTS_VARIABLE = "VAECAM_FAULTS"


@dataclass(frozen=True)
class Fault:
    """A deterministic fault for testing the failure paths, in the trials whose config matches
    ``when``, unless the trial was resumed (so a retry or restore then finishes):
    ``exit_epoch`` kills the process after epoch ``exit_epoch - 1`` is logged (and checkpointed
    when one is due): a node or worker dying; ``nan_epoch`` fails the trial as a non-finite loss
    in that epoch would (before the epoch is reported)."""

    exit_epoch: int | None = None
    nan_epoch: int | None = None
    when: dict[str, Any] = field(default_factory=dict)

    def applies(self, config: Mapping[str, Any]) -> bool:
        return all(config.get(key) == value for key, value in self.when.items())


def faults_from_environment() -> list[Fault]:
    text = os.environ.get(FAULTS_VARIABLE)
    found = json.loads(text) if text else []
    return [Fault(**fault) for fault in ([found] if isinstance(found, dict) else found)]


def save_state(state: dict[str, Any], directory: Path) -> None:
    """Write a checkpoint atomically: a crash mid-write leaves no half-written file."""
    partial = directory / f"{STATE_FILE}.partial"
    torch.save(state, partial)
    os.replace(partial, directory / STATE_FILE)


@contextmanager
def checkpoint_folder(trial_id: str) -> Iterator[Path]:
    """A temporary folder to write a checkpoint in, named for the trial, so that what an
    attempt killed while writing left behind is removed by the trial's next checkpoint."""
    prefix = f"vaecam-checkpoint-{trial_id}-"
    for stale in Path(tempfile.gettempdir()).glob(prefix + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    # Not a TemporaryDirectory: its finalizer also runs when the process exits, as Ray ends a
    # trial's worker when a sweep is stopped, and removed the folder under a checkpoint that
    # Tune's training thread was writing: the trial failed instead of being interrupted.
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def load_state(checkpoint: tune.Checkpoint | None) -> dict[str, Any] | None:
    """The experiment state in ``checkpoint``; ``weights_only`` loading executes no code."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return torch.load(Path(directory) / STATE_FILE, weights_only=True)


class TuneReporter:
    """Sends an experiment's reports to the trial's MLflow run (everything) and Tune (metrics
    every epoch, a checkpoint every ``checkpoint_every`` epochs and with the last, which goes
    to Tune after scoring: :meth:`finish`); remembers the last epoch reported (the step its
    scores and final images are logged at)."""

    def __init__(
        self,
        run: TrialRun,
        state: dict[str, Any] | None,
        fault: Fault | None,
        checkpoint_every: int = 1,
    ):
        self.run = run
        self.epoch = state["epoch"] if state else -1
        self.fault = fault if state is None else None  # a resumed trial goes on
        self.checkpoint_every = checkpoint_every
        self.last: tuple[dict[str, float], dict[str, Any]] | None = None

    def report(self, metrics: dict[str, float], state: dict[str, Any], final: bool) -> None:
        epoch = int(metrics["epoch"])
        if self.fault and epoch == self.fault.nan_epoch:
            raise FloatingPointError(f"epoch {epoch}: training loss became nan (injected fault)")
        # MLflow first: Tune's report may end the process (a scheduler's stop). An epoch
        # logged but not checkpointed is trained again on a restore, and not logged again.
        self.run.log_epoch(metrics, step=epoch)
        self.epoch = epoch
        if final:
            self.last = (metrics, state)  # to Tune once the model is scored: :meth:`finish`
        elif (epoch + 1) % self.checkpoint_every == 0:
            self.checkpoint(metrics, state)
        else:
            tune.report(metrics)
        if self.fault and epoch + 1 == self.fault.exit_epoch:
            os._exit(17)

    def checkpoint(self, metrics: dict[str, float], state: dict[str, Any]) -> None:
        with checkpoint_folder(self.run.trial_id) as tmp:
            save_state(state, tmp)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(tmp)))

    def finish(self) -> None:
        """Report the last epoch to Tune, with its checkpoint, after the model is scored: a
        scheduler may stop a trial at any report (ASHA at a rung on the last epoch, or at
        ``max_t``), which ends its process, and a trial that trained to the end is scored."""
        if self.last is not None:
            self.checkpoint(*self.last)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.run.log_artifact(path, artifact_path)

    def log_image(self, key: str, image: Image.Image, step: int | None) -> None:
        self.run.log_image(key, image, self.epoch if step is None else step)

    def log_dataset(self, source: DataSource, split: str, num_images: int) -> None:
        self.run.log_dataset(source, split, num_images)


@dataclass(frozen=True)
class TrialOptions:
    """How the sweep's driver wants each trial run (its flags), passed to every trial."""

    checkpoint_every: int = 1  # epochs between checkpoints (the last is always checkpointed)
    system_metrics_every: float | None = None  # seconds between MLflow's system/ metrics (CPU,
    # memory, GPU) in the run; None: none
    provenance: Mapping[str, str] = field(default_factory=dict)  # the driver's code, command
    restart: bool = False  # --restart-errored: a trial with no checkpoint starts a fresh run
    claims: Sequence[Mapping[str, Any]] = ()  # the search space's claims: the headline metrics
    every_metric: bool = False  # --log-metrics all: every scoring combination as a metric


def train_trial(
    config: dict[str, Any],
    tracking: Tracking,
    experiment: Experiment,
    scoring: Mapping[str, Any],
    options: TrialOptions = TrialOptions(),
    faults: Sequence[Fault] = (),
) -> None:
    """Train ``config`` with ``experiment`` (from Tune's last checkpoint if any), then score the
    trained model on the ``scoring`` grid; the score table goes to the trial's MLflow run, and
    its headline (or with ``options.every_metric`` every number) as metrics at the last epoch's
    step. The run gets the driver's provenance and this node's environment
    (:mod:`orchestrator.provenance`) and, with ``options.system_metrics_every``, MLflow's
    system metrics while the trial runs.

    Outside a Tune session (a unit test) ``tune.report`` and ``tune.get_checkpoint`` are no-ops
    and the trial id falls back to ``config["trial_id"]``.
    """
    context = tune.get_context()
    trial_id = context.get_trial_id() or config.get("trial_id", "local")
    trial_name = context.get_trial_name() or trial_id
    config = {key: value for key, value in config.items() if key != "trial_id"}
    state = load_state(tune.get_checkpoint())
    fresh = state is None and options.restart
    with TrialRun(tracking, trial_id, trial_name, config, fresh=fresh) as run:
        run.log_tags({**options.provenance, **environment_provenance()})
        if ray.is_initialized():
            run.record_node(ray.get_runtime_context().get_node_id())
        if state is not None:  # a retry or restore: the checkpointed epoch, if MLflow lacks it
            run.log_epoch(state["metrics"], step=state["epoch"])
        fault = next((fault for fault in faults if fault.applies(config)), None)
        reporter = TuneReporter(run, state, fault, options.checkpoint_every)
        every = options.system_metrics_every
        with system_metrics(run.run_id, tracking.uri, every) if every else nullcontext():
            trained = experiment.train(config, reporter, state, scoring)
            table = experiment.score(
                trained, scoring, reporter, readings=all_readings(options.claims)
            )
            run.log_scores(table, reporter.epoch, options.claims, options.every_metric)
    reporter.finish()
