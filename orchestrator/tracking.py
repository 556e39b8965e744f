"""MLflow bookkeeping: one parent run per sweep, one child run per Tune trial.

Trials log from inside themselves with ``MlflowClient`` (DESIGN.md, orchestration facts): the
stock ``MLflowLoggerCallback`` cannot nest runs, log images, or keep one run per trial across a
restore. A trial's run is found again by its ``ray.trial_id`` tag, so retries and restores keep
logging into it.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from orchestrator.headline import headline
from orchestrator.names import quoted
from orchestrator.provenance import dataset_digest, log_dataset_input, log_tags
from vaecam.grid import COLUMNS, metric_name

if TYPE_CHECKING:  # types only: the report imports this module, and needs no torch
    from PIL import Image

    from vaecam.data import DataSource
    from vaecam.scoring import ScoreTable

SWEEP_TAG = "vaecam.sweep"
TRIAL_TAG = "ray.trial_id"
ERROR_TAG = "vaecam.error"
SUPERSEDED_TAG = "vaecam.superseded_by"  # a run its trial started over from (the new run)
STOPPED_TAG = "vaecam.stopped_early"  # a scheduler (ASHA) stopped the trial: when
PLANNED_TAG = "vaecam.planned_epochs"  # the epochs a stopped trial would have trained
SCORES = "scores.csv"  # a run's score table: one row per scoring combination, to read
#: The same table as an MLflow table: what the code reads, ``mlflow.load_table`` gathers it
#: across runs (one row per run and combination), the UI's artifact view shows it as a grid.
SCORES_TABLE = "scores.json"
#: The experiment tag by which MLflow 3 opens an experiment as model training (its runs table),
#: not as a GenAI app (traces, evaluation runs).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


@dataclass(frozen=True)
class Tracking:
    """Where a sweep's runs go; passed from the driver to every trial."""

    uri: str
    experiment_id: str
    parent_run_id: str

    def ui_link(self, base: str = "http://127.0.0.1:5000") -> str:
        """The runs table, in MLflow's model-training view, with a row for each run nested
        under the parent run (a sweep's trials, a campaign's sweeps), sorted by name.

        MLflow 3.17's UI picks its view from the link's ``workflowType``, else from the
        browser's last choice (GenAI at first), whatever the experiment's kind tag. It folds
        child runs behind their parent's "+" unless the table is sorted by something other
        than the start time (``nestChildren`` in its runs table); a filter alone does not
        unfold them (it fetches the parent and folds them again). The filter keeps the
        experiment's other sweeps out; the search box shows it, to clear."""
        if self.uri.startswith(("http://", "https://")):
            base = self.uri.rstrip("/")
        query = urlencode(
            {
                "workflowType": "machine_learning",
                "searchFilter": f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.parent_run_id}'",
                "orderByKey": f"tags.`{MLFLOW_RUN_NAME}`",
                "orderByAsc": "true",
            },
            quote_via=quote,
        )
        return f"{base}/#/experiments/{self.experiment_id}/runs?{query}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (SQLAlchemy's: four slashes before an
    absolute path, three before a relative one), else None."""
    prefix = "sqlite:///"
    return Path(uri.removeprefix(prefix)).resolve() if uri.startswith(prefix) else None


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of a local sqlite store live beside the database, whatever the working
    directory of the process that created the experiment; a server decides for itself."""
    db = sqlite_path(uri)
    return (db.parent / "mlruns" / experiment).as_uri() if db else None


def sweep_run(
    client: MlflowClient, sweep: str, experiment_ids: Sequence[str] | None = None
) -> Run | None:
    """The top run named ``sweep`` (a sweep's or a campaign's) in ``experiment_ids`` (default:
    every experiment of the store), or None."""
    if experiment_ids is None:
        experiment_ids = [experiment.experiment_id for experiment in client.search_experiments()]
    query = f"tags.`{SWEEP_TAG}` = {quoted(sweep)}"
    runs = client.search_runs(experiment_ids, query, max_results=1) if experiment_ids else []
    return runs[0] if runs else None


def nested_runs(client: MlflowClient, experiment_id: str, run_id: str, **search: Any) -> list[Run]:
    """The runs nested under ``run_id`` (a campaign's sweeps, a sweep's trials);
    ``search``: more of ``search_runs``'s arguments, e.g. ``max_results``."""
    query = f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{run_id}'"
    return client.search_runs([experiment_id], query, **search)


def child_runs(client: MlflowClient, tracking: Tracking) -> list[Run]:
    """The sweep's trial runs (not those a trial started over from)."""
    runs = nested_runs(client, tracking.experiment_id, tracking.parent_run_id)
    return [run for run in runs if SUPERSEDED_TAG not in run.data.tags]


def drop_unstarted_sweep(client: MlflowClient, experiment_id: str, sweep: str) -> bool:
    """Delete the parent run of ``sweep`` if it has no trial runs: a sweep killed between
    creating its run and Ray's first saved state has nothing to resume and can only start
    again, which its name, in use, would refuse. Whether a run was deleted."""
    run = sweep_run(client, sweep, [experiment_id])
    if run is None:
        return False
    if nested_runs(client, experiment_id, run.info.run_id, max_results=1):
        return False
    client.delete_run(run.info.run_id)
    return True


def discard_sweep(client: MlflowClient, tracking: Tracking, status: str, reason: str) -> None:
    """End the sweep's parent run and its trials' runs ``status``, with ``reason`` (tag
    ``vaecam.error``) on the parent, and delete them, for a sweep that stopped before Ray saved
    its first state (:func:`drop_unstarted_sweep`'s case, with trial runs too). Deleted runs
    stay in MLflow's trash, with their status and tags, until ``mlflow gc``."""
    runs = nested_runs(client, tracking.experiment_id, tracking.parent_run_id)
    client.set_tag(tracking.parent_run_id, ERROR_TAG, reason[:5000])
    for run_id in [run.info.run_id for run in runs] + [tracking.parent_run_id]:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, status)
        client.delete_run(run_id)


def reconcile(tracking: Tracking, outcomes: Mapping[str, str | None], interrupted: bool) -> int:
    """Close the MLflow run of each trial whose process could not close its own, by Tune's
    ``outcomes`` (trial id -> the last line of its error, None when it did not fail): KILLED
    when the sweep was interrupted, else FAILED with Ray's reason (a crash, a lost node). (A
    trial stopped in its own process closes its run KILLED itself.) Returns how many trials an
    interruption left unfinished, started or not."""
    client = MlflowClient(tracking.uri)
    runs = {run.data.tags.get(TRIAL_TAG): run for run in child_runs(client, tracking)}
    for trial_id, run in runs.items():
        if run.info.status != "RUNNING":
            continue
        error = outcomes.get(trial_id)
        if interrupted:
            client.set_terminated(run.info.run_id, "KILLED")
        elif error is not None:
            client.set_tag(run.info.run_id, ERROR_TAG, error[:5000])
            client.set_terminated(run.info.run_id, "FAILED")
    if not interrupted:
        return 0
    runs = {run.data.tags.get(TRIAL_TAG): run for run in child_runs(client, tracking)}
    never_started = sum(trial_id not in runs for trial_id in outcomes)
    return sum(run.info.status == "KILLED" for run in runs.values()) + never_started


def mark_stopped_early(tracking: Tracking, stopped: Mapping[str, tuple[int, int]]) -> None:
    """Close the MLflow run of each trial a scheduler stopped (trial id -> epochs trained and
    planned) KILLED, tagged ``vaecam.stopped_early`` with the epochs it was planned to train
    (``vaecam.planned_epochs``): it is neither finished (its model was not scored) nor
    failed."""
    client = MlflowClient(tracking.uri)
    for run in child_runs(client, tracking):
        trial_id = run.data.tags.get(TRIAL_TAG)
        if trial_id in stopped:
            done, planned = stopped[trial_id]
            client.set_tag(run.info.run_id, STOPPED_TAG, f"after epoch {done} of {planned}")
            client.set_tag(run.info.run_id, PLANNED_TAG, str(planned))
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")


def close_sweep(
    client: MlflowClient, tracking: Tracking, errored: int, trials: int, interrupted: bool
) -> None:
    """End the sweep's parent run: KILLED (tag ``vaecam.interrupted``) when the sweep was
    interrupted, FAILED when every one of its ``trials`` failed (``errored``, tagged), else
    FINISHED."""
    client.set_tag(tracking.parent_run_id, "vaecam.errored_trials", errored)
    client.set_tag(tracking.parent_run_id, "vaecam.interrupted", str(interrupted).lower())
    status = "FAILED" if errored and errored == trials else "FINISHED"
    client.set_terminated(tracking.parent_run_id, "KILLED" if interrupted else status)


def open_store(uri: str) -> MlflowClient:
    """A client of the store at ``uri`` whose schema exists. MLflow creates and migrates its
    schema when a client first touches a new sqlite file, and sweeps started together would
    race there (two of three crashed); a lock beside the file serialises that first touch. A
    server store needs none."""
    from vaecam.data import file_lock  # imports torch: here, not where the report reads

    db = sqlite_path(uri)
    with file_lock(db.with_name(db.name + ".lock") if db else None):
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)  # the first touch: creates the schema
    return client


def find_sweep(
    uri: str, sweep: str, experiment: str | None = None
) -> tuple[Tracking, dict[str, Any]] | None:
    """The parent run of ``sweep`` in ``experiment`` (default: any experiment of the store), as
    its :class:`Tracking` and the params it was started with (as :func:`start_sweep` got them,
    JSON-decoded where they are JSON), or None (a sqlite store that does not exist yet is not
    created)."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return None
    client = open_store(uri)
    found = client.get_experiment_by_name(experiment) if experiment else None
    if experiment and found is None:
        return None
    run = sweep_run(client, sweep, [found.experiment_id] if found else None)
    if run is None:
        return None
    params = {k: unparam(v) for k, v in run.data.params.items()}
    return Tracking(uri, run.info.experiment_id, run.info.run_id), params


def sweep_params(uri: str, experiment: str, sweep: str) -> dict[str, Any] | None:
    """The params of ``sweep``'s parent run in ``experiment`` (:func:`find_sweep`), or None."""
    found = find_sweep(uri, sweep, experiment)
    return None if found is None else found[1]


def _experiment_id(client: MlflowClient, uri: str, experiment: str) -> str:
    """The experiment's id, creating it if it does not exist; another sweep creating it at the
    same moment is fine."""
    found = client.get_experiment_by_name(experiment)
    if found:
        return found.experiment_id
    try:
        return client.create_experiment(experiment, _artifact_location(uri, experiment))
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(experiment).experiment_id


def start_sweep(
    uri: str,
    experiment: str,
    sweep: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str] = {},  # noqa: B006  (read only)
) -> Tracking:
    """Create (or reuse) the MLflow experiment and the sweep's parent run, on the driver before
    trials start, with ``tags`` (the latest driver's provenance). A sweep name seen before
    reuses its parent run, so a resumed sweep stays one run. Sweeps may start together
    (:func:`open_store`, :func:`_experiment_id`)."""
    client = open_store(uri)
    experiment_id = _experiment_id(client, uri, experiment)
    client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND)
    run = sweep_run(client, sweep, [experiment_id])
    if run:
        run_id = run.info.run_id
        client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    else:
        run_id = client.create_run(
            experiment_id, run_name=sweep, tags={SWEEP_TAG: sweep}
        ).info.run_id
        client.log_batch(run_id, params=[Param(k, _param(v)) for k, v in params.items()])
    log_tags(client, run_id, tags)
    return Tracking(uri, experiment_id, run_id)


def _param(value: Any) -> str:
    """MLflow params are strings of at most 6000 characters; search-space domains print short."""
    return (json.dumps(value, default=str) if not isinstance(value, str) else value)[:6000]


def unparam(text: str) -> Any:
    """A param's value as logged: JSON-decoded where it is JSON, else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a string param, logged as it is


#: MLflow's limit of metrics in one ``log_batch`` request.
BATCH = 1000


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, Any], step: int) -> None:
    """Numeric, finite metrics at ``step`` (NaN breaks MLflow's charts; strings are no metrics),
    in requests of at most :data:`BATCH` (a scoring grid with intervals has thousands)."""
    now = int(time.time() * 1000)
    batch = [
        Metric(key, float(value), now, step)
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ]
    for start in range(0, len(batch), BATCH):
        client.log_batch(run_id, metrics=batch[start : start + BATCH])


class RunLog:
    """Logging into one existing MLflow run: metrics at a step, artifacts, score tables."""

    def __init__(self, uri: str, run_id: str):
        self.client = MlflowClient(uri)
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        log_metrics(self.client, self.run_id, metrics, step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_tags(self, tags: Mapping[str, str]) -> None:
        log_tags(self.client, self.run_id, tags)

    def log_image(self, key: str, image: Image.Image, step: int | None) -> None:
        """``image`` under ``key`` at ``step`` (None: the run's last epoch), the MLflow UI's
        image comparison across runs and steps; once: a step the run has an image of under
        ``key`` already (a restored trial training an epoch again, a re-scoring) is skipped."""
        if step is None:
            step = int(self.client.get_run(self.run_id).data.metrics.get("epoch", 0))
        # MLflow's file name for a keyed image: images/<key, / as ~>+step+<step>+timestamp+...
        prefix = f"images/{key.replace('/', '~')}+step+{step}+"
        if not any(
            item.path.startswith(prefix)
            for item in self.client.list_artifacts(self.run_id, "images")
        ):
            self.client.log_image(self.run_id, image, key=key, step=step)

    def log_dataset(self, source: DataSource, split: str, num_images: int) -> None:
        """``source`` as the run's ``split`` dataset input: its digest over the files read
        (hashed once per machine, :func:`~orchestrator.provenance.dataset_digest`), where it
        is and where it is published, and the settings that picked the images from it."""
        if source.files == ():  # generated in memory: nothing to hash but what it is
            digest = hashlib.sha256(source.name.encode()).hexdigest()
            where: str | Path = source.url or source.name
        else:
            digest, where = dataset_digest(source.root, source.files), source.root
        log_dataset_input(
            self.client,
            self.run_id,
            name=source.name + (" (synthetic)" if source.synthetic else ""),
            source=where,
            digest=digest,
            num_images=num_images,
            split=split,
            profile={**source.selection, "url": source.url, "synthetic": source.synthetic},
        )

    def log_scores(
        self,
        table: ScoreTable,
        step: int,
        claims: Sequence[Mapping[str, Any]] = (),
        every: bool = False,
    ) -> None:
        """The score table, merged with what the run has (a combination scored again replaces
        its row), as the MLflow table ``scores.json`` and as ``scores.csv``; as metrics at
        ``step`` its headline for ``claims`` (:mod:`orchestrator.headline`), or with ``every``
        each number of ``table`` as a flat metric. A metric whose value is unchanged is not
        logged again (scoring a finished model twice doubles nothing)."""
        scores = merge_scores(read_scores(self.client, self.run_id), scores_frame(table))
        metrics = table.metrics() if every else headline(scores.to_dict("records"), claims)
        current = self.client.get_run(self.run_id).data.metrics
        # (as read back from the table: to_json keeps 10 significant digits)
        fresh = {
            k: v
            for k, v in metrics.items()
            if k not in current or not math.isclose(current[k], v, rel_tol=1e-9)
        }
        self.log_metrics(fresh, step)
        self.client.log_text(self.run_id, scores.to_csv(index=False), SCORES)
        if any(item.path == SCORES_TABLE for item in self.client.list_artifacts(self.run_id)):
            # log_table would append to the table: write the merged one in its format instead
            text = scores.to_json(orient="split", index=False, date_format="iso")
            self.client.log_text(self.run_id, text, SCORES_TABLE)
        else:  # log_table also records the table on the run, for load_table to find
            self.client.log_table(self.run_id, scores, SCORES_TABLE)


class TrialRun(RunLog):
    """The MLflow child run of one Tune trial, as a context manager: finished on success,
    marked FAILED with the error's reason (tag ``vaecam.error``) when the trial raises, KILLED
    when it is stopped (an interrupted sweep stops its trials).

    A retry or restore keeps logging into the trial's one run, and every epoch is logged once
    however often it is trained again (:meth:`log_epoch`; training is seeded, so an epoch
    trained again gives the same numbers). A trial told to start over (``fresh``: a
    ``--restart-errored`` trial without a checkpoint) while its run has epochs gets a fresh
    run: the old one is KILLED and tagged ``vaecam.superseded_by`` (summaries leave it out),
    so no history mixes two trainings."""

    def __init__(
        self, tracking: Tracking, trial_id: str, trial_name: str, config: Mapping, fresh: bool
    ):
        self.trial_id = trial_id
        client = MlflowClient(tracking.uri)
        runs = [
            run
            for run in client.search_runs(
                [tracking.experiment_id],
                f"tags.`{TRIAL_TAG}` = '{trial_id}' and tags.`{MLFLOW_PARENT_RUN_ID}` = "
                f"'{tracking.parent_run_id}'",
            )
            if SUPERSEDED_TAG not in run.data.tags
        ]
        old = runs[0] if runs else None
        if old is not None and not (fresh and "epoch" in old.data.metrics):
            super().__init__(tracking.uri, old.info.run_id)
            self.client.update_run(self.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            if ERROR_TAG in old.data.tags:  # the failure this attempt recovers from
                self.client.delete_tag(self.run_id, ERROR_TAG)
        else:
            tags = {
                MLFLOW_PARENT_RUN_ID: tracking.parent_run_id,
                TRIAL_TAG: trial_id,
                MLFLOW_RUN_NAME: trial_name,
            }
            run = client.create_run(tracking.experiment_id, tags=tags, run_name=trial_name)
            super().__init__(tracking.uri, run.info.run_id)
            # Params once: a scheduler such as PBT may mutate the config later.
            params = [Param(k, _param(v)) for k, v in config.items()]
            self.client.log_batch(self.run_id, params=params)
            self.client.log_dict(self.run_id, dict(config), "config.json")
            if old is not None:  # started over: the old run's history stays as it was
                self.client.set_tag(old.info.run_id, SUPERSEDED_TAG, self.run_id)
                self.client.set_terminated(old.info.run_id, "KILLED")
        self.logged = {m.step for m in self.client.get_metric_history(self.run_id, "epoch")}

    def __enter__(self) -> TrialRun:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is None:
            self.client.set_terminated(self.run_id, "FINISHED")
        elif isinstance(error, SystemExit | KeyboardInterrupt):  # stopped, not failed
            self.client.set_terminated(self.run_id, "KILLED")
        else:
            self.client.set_tag(self.run_id, ERROR_TAG, f"{kind.__name__}: {error}"[:5000])
            self.client.set_terminated(self.run_id, "FAILED")

    def record_node(self, node_id: str) -> None:
        """Tag where this attempt runs (``ray.node_id``) and every node the trial has run on
        (``ray.node_ids``, in order): a retry after a lost node moves the trial elsewhere."""
        tags = self.client.get_run(self.run_id).data.tags
        nodes = [n for n in tags.get("ray.node_ids", "").split(",") if n]
        if not nodes or nodes[-1] != node_id:
            nodes.append(node_id)
        self.client.set_tag(self.run_id, "ray.node_id", node_id)
        self.client.set_tag(self.run_id, "ray.node_ids", ",".join(nodes))

    def log_epoch(self, metrics: Mapping[str, Any], step: int) -> None:
        """An epoch's metrics at ``step``, unless the run has that step already: a trial
        restored from a checkpoint older than what it had logged (Ray's state is saved now and
        then, MLflow every epoch) trains those epochs again, deterministically, and a
        checkpointed epoch that a crash kept from MLflow is logged from the checkpoint."""
        if step not in self.logged:
            self.log_metrics(metrics, step)
            self.logged.add(step)


def scores_frame(table: ScoreTable) -> pd.DataFrame:
    """A :class:`ScoreTable` as a data frame, the combination columns as text ("" for none)."""
    return _combinations_as_text(pd.DataFrame(table.rows))


def _combinations_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    for column in COLUMNS:
        if column in frame:
            frame[column] = frame[column].fillna("").astype(str)
    return frame


def read_scores(client: MlflowClient, run_id: str) -> pd.DataFrame | None:
    """The run's score table (``scores.json``; ``scores.csv`` for a run scored before there
    were tables), or None before it was scored."""
    logged = {item.path for item in client.list_artifacts(run_id)}
    with tempfile.TemporaryDirectory() as tmp:
        if SCORES_TABLE in logged:
            path = client.download_artifacts(run_id, SCORES_TABLE, tmp)
            frame = pd.read_json(path, orient="split", convert_dates=False)
        elif SCORES in logged:
            frame = pd.read_csv(client.download_artifacts(run_id, SCORES, tmp))
        else:
            return None
    return _combinations_as_text(frame)


def load_scores(client: MlflowClient, experiment_id: str, run_ids: Sequence[str]) -> pd.DataFrame:
    """The score tables of ``run_ids`` (those scored) as one frame with a ``run_id`` column,
    by ``mlflow.load_table``; empty when none was scored."""
    if not run_ids:
        return pd.DataFrame()
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    # load_table finds the runs with the global tracking URI's store, whatever the client's
    with _use_tracking_uri(client.tracking_uri):
        try:
            frame = client.load_table(experiment_id, SCORES_TABLE, list(run_ids), ["run_id"])
        except MlflowException:  # none of the runs has a table
            return pd.DataFrame()
    return _combinations_as_text(frame)


def flat_scores(frame: pd.DataFrame) -> dict[str, float]:
    """A score table's numbers under the flat names ``--log-metrics all`` gives them
    (:meth:`vaecam.scoring.ScoreTable.metrics`): the combination's fields, then the metric. A
    metric is also found without the image score (a map-level metric's name has none)."""
    flat: dict[str, float] = {}
    metrics = [column for column in frame.columns if column not in (*COLUMNS, "run_id")]
    for row in frame.to_dict("records"):
        fields = {c: (row.get(c) or None) for c in COLUMNS}
        for metric in metrics:
            value = row[metric]
            if isinstance(value, int | float) and not math.isnan(value):
                flat[metric_name(fields, metric)] = float(value)
                flat.setdefault(metric_name(fields, metric, COLUMNS[:-1]), float(value))
    return flat


def merge_scores(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """``old`` rows whose combination ``new`` does not score, then ``new``'s rows."""
    if old is None or old.empty:
        return new
    keys = [column for column in COLUMNS if column in new]
    scored = set(new[keys].itertuples(index=False, name=None))
    kept = old[[row not in scored for row in old[keys].itertuples(index=False, name=None)]]
    return pd.concat([kept, new], ignore_index=True)
