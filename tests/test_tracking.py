"""MLflow bookkeeping (orchestrator.tracking) without Ray: every epoch logged once, a trial that
starts over gets a fresh run, and sweeps that start together on one fresh sqlite store."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

from orchestrator import trainable
from orchestrator.tracking import (
    SUPERSEDED_TAG,
    RunLog,
    TrialRun,
    child_runs,
    drop_unstarted_sweep,
    read_scores,
    start_sweep,
    sweep_params,
)
from orchestrator.trainable import TuneReporter, checkpoint_folder
from vaecam.data import DataSource
from vaecam.scoring import ScoreTable

CONFIG = {"lr": 0.001, "seed": 0}


def _store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _epochs(run: TrialRun, reporter: TuneReporter, epochs: range) -> None:
    for epoch in epochs:
        reporter.report({"epoch": epoch, "val_loss": 1.0 / (epoch + 1)}, {"epoch": epoch}, False)


def _steps(client: MlflowClient, run_id: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, "val_loss"))


def test_a_restore_from_an_older_checkpoint_logs_no_step_twice(tmp_path):
    tracking = start_sweep(_store(tmp_path), "digits", "sweep", {})
    with TrialRun(tracking, "t1", "t1", CONFIG, fresh=True) as first:
        _epochs(first, TuneReporter(first, None, None), range(13))  # MLflow has 0..12
    # Ray's saved state pointed at epoch 11 when the driver died: the trial trains 12 again
    state = {"epoch": 11, "metrics": {"epoch": 11, "val_loss": 1 / 12}}
    with TrialRun(tracking, "t1", "t1", CONFIG, fresh=False) as again:
        assert again.run_id == first.run_id
        again.log_epoch(state["metrics"], step=state["epoch"])
        _epochs(again, TuneReporter(again, state, None), range(12, 16))
    client = MlflowClient(tracking.uri)
    assert _steps(client, first.run_id) == list(range(16))


def test_a_sweep_killed_before_its_first_trial_can_start_again_under_its_name(tmp_path):
    uri = _store(tmp_path)
    client = MlflowClient(uri)
    empty = start_sweep(uri, "all", "camp-mnist", {})
    used = start_sweep(uri, "all", "camp-mvtec", {})
    with TrialRun(used, "t0", "trial 0", CONFIG, fresh=True):
        pass
    assert drop_unstarted_sweep(client, empty.experiment_id, "camp-mnist")
    assert sweep_params(uri, "all", "camp-mnist") is None  # the name is free again
    assert not drop_unstarted_sweep(client, used.experiment_id, "camp-mvtec")  # it has a trial
    assert sweep_params(uri, "all", "camp-mvtec") == {}
    assert not drop_unstarted_sweep(client, used.experiment_id, "camp-ucsd")  # never created
    assert start_sweep(uri, "all", "camp-mnist", {}).parent_run_id != empty.parent_run_id


def test_a_trial_started_over_gets_a_fresh_run_and_the_old_one_is_left_out(tmp_path):
    tracking = start_sweep(_store(tmp_path), "digits", "sweep", {})
    with pytest.raises(FloatingPointError):
        with TrialRun(tracking, "t1", "t1", CONFIG, fresh=True) as first:
            _epochs(first, TuneReporter(first, None, None), range(3))
            raise FloatingPointError("nan")
    # --restart-errored: no checkpoint, the trial trains from epoch 0 again
    with TrialRun(tracking, "t1", "t1", CONFIG, fresh=True) as second:
        _epochs(second, TuneReporter(second, None, None), range(5))
    client = MlflowClient(tracking.uri)
    assert second.run_id != first.run_id
    old = client.get_run(first.run_id)
    assert old.info.status == "KILLED" and old.data.tags[SUPERSEDED_TAG] == second.run_id
    assert _steps(client, first.run_id) == [0, 1, 2]  # its history as it was
    assert _steps(client, second.run_id) == [0, 1, 2, 3, 4]
    assert [run.info.run_id for run in child_runs(client, tracking)] == [second.run_id]
    # a retry without a checkpoint but with nothing logged yet keeps its one run
    with TrialRun(tracking, "t2", "t2", CONFIG, fresh=True) as empty:
        pass
    with TrialRun(tracking, "t2", "t2", CONFIG, fresh=True) as retry:
        assert retry.run_id == empty.run_id


def test_checkpoints_every_n_epochs_and_the_last_once_the_model_is_scored(tmp_path, monkeypatch):
    reports = []  # (epoch, whether a checkpoint came with it), as Tune receives them
    monkeypatch.setattr(
        trainable.tune,
        "report",
        lambda metrics, checkpoint=None: reports.append((metrics["epoch"], checkpoint is not None)),
    )
    tracking = start_sweep(_store(tmp_path), "digits", "sweep", {})
    with TrialRun(tracking, "t1", "t1", CONFIG, fresh=True) as run:
        reporter = TuneReporter(run, None, None, checkpoint_every=3)
        for epoch in range(8):
            reporter.report({"epoch": epoch, "val_loss": 1.0}, {"epoch": epoch}, epoch == 7)
        assert [epoch for epoch, saved in reports if saved] == [2, 5]
        assert len(reports) == 7  # the last epoch waits for the scores
        assert _steps(MlflowClient(tracking.uri), run.run_id) == list(range(8))  # MLflow has it
    reporter.finish()
    assert reports[-1] == (7, True)


def test_images_and_datasets_are_logged_once_per_step_and_split(tmp_path):
    tracking = start_sweep(_store(tmp_path), "digits", "sweep", {})
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(b"first")
    source = DataSource("toy", data, url="https://example.org/toy", selection={"class": 3})
    picture = Image.new("RGB", (8, 8), "red")
    with TrialRun(tracking, "t1", "t1", CONFIG, fresh=True) as run:
        run.log_epoch({"epoch": 4}, step=4)
        for _ in range(2):  # a restored trial, a re-scoring: the same key and step again
            run.log_image("overlays/good", picture, None)  # None: the last epoch
            run.log_dataset(source, "train", 10)
        run.log_dataset(source, "test", 5)
        (data / "a.bin").write_bytes(b"other")  # a changed file: another digest
        run.log_dataset(source._replace(name="toy2"), "train", 10)
    client = MlflowClient(tracking.uri)
    images = [a.path for a in client.list_artifacts(run.run_id, "images")]
    assert len(images) == 2 and all(p.startswith("images/overlays~good+step+4+") for p in images)
    inputs = client.get_run(run.run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.tags[0].value) for i in inputs] == [
        ("toy", "training"),
        ("toy", "testing"),
        ("toy2", "training"),
    ]
    profiles = [json.loads(i.dataset.profile) for i in inputs]
    assert profiles[0]["class"] == 3 and profiles[0]["num_images"] == 10
    assert profiles[0]["sha256"] == profiles[1]["sha256"] != profiles[2]["sha256"]
    assert json.loads(inputs[0].dataset.source)["uri"] == str(data)


def _start(uri: str, name: str, queue) -> None:
    try:
        tracking = start_sweep(uri, "digits", name, {"name": name})
        queue.put(("ok", tracking.experiment_id))
    except Exception as error:  # reported, not raised: the parent asserts
        queue.put(("error", repr(error)))


def test_sweeps_started_together_on_a_fresh_sqlite_store_all_succeed(tmp_path):
    uri = _store(tmp_path)
    context = multiprocessing.get_context("fork")  # nothing of this store is open yet
    queue = context.Queue()
    processes = [context.Process(target=_start, args=(uri, f"sweep-{i}", queue)) for i in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    outcomes = [queue.get(timeout=5) for _ in processes]
    assert [kind for kind, _ in outcomes] == ["ok"] * 4, outcomes
    assert len({experiment_id for _, experiment_id in outcomes}) == 1  # one experiment
    client = MlflowClient(uri)
    parents = client.search_runs([outcomes[0][1]])
    assert sorted(run.info.run_name for run in parents) == [f"sweep-{i}" for i in range(4)]


def test_a_checkpoint_left_behind_by_a_killed_attempt_is_removed(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    stale = tmp_path / "vaecam-checkpoint-t1-abc"
    stale.mkdir()
    (stale / "state.pt.partial").write_bytes(b"half")
    other = tmp_path / "vaecam-checkpoint-t2-abc"
    other.mkdir()
    with checkpoint_folder("t1") as folder:
        assert folder.exists() and not stale.exists()
    assert not folder.exists() and other.exists()  # another trial's is not ours to remove


EXITING = """
import sys, threading, time
from orchestrator.trainable import checkpoint_folder
writing = threading.Event()
def train():
    with checkpoint_folder("t1") as folder:
        print(folder, flush=True)
        writing.set()
        time.sleep(30)
threading.Thread(target=train, daemon=True).start()
writing.wait()
sys.exit(0)
"""


def test_a_process_exiting_leaves_the_checkpoint_being_written_alone(tmp_path):
    """Ray ends a trial's worker (its main thread exits) while Tune's training thread may be
    writing a checkpoint: the write must not lose its folder, which would fail the trial
    instead of leaving it interrupted (seen in CI after a second Ctrl-C)."""
    env = os.environ | {"TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", EXITING], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip())
    assert folder.parent == tmp_path and folder.exists()  # the next checkpoint removes it


def test_a_run_scored_before_score_tables_keeps_its_rows_when_scored_again(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = start_sweep(uri, "digits", "old", {})
    client = MlflowClient(uri)
    run_id = client.create_run(tracking.experiment_id).info.run_id
    combination = {"normalisation": "none", "image_score": "max"}
    old = pd.DataFrame([{"method": "recon", **combination, "image_auroc": 0.6}])
    client.log_text(run_id, old.to_csv(index=False), "scores.csv")  # as runs were scored before
    table = ScoreTable([{"method": "energy", **combination, "image_auroc": 0.5}], frozenset())
    RunLog(uri, run_id).log_scores(table, 0)
    assert sorted(read_scores(client, run_id).method) == ["energy", "recon"]
    assert {"scores.json", "scores.csv"} <= {a.path for a in client.list_artifacts(run_id)}
