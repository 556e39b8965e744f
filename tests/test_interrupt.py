"""A sweep stopped by a signal, as a user's Ctrl-C or a scheduler's timeout stops it: it never
looks finished, its local Ray instance goes with it, and resuming it logs every epoch once."""

from __future__ import annotations

import csv
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from processes import command_line, using

from orchestrator.tracking import open_store

EPOCHS = 8
SWEEP = ["digits", "--quick", "--set", 'seed={"grid_search": [0, 1]}', "--set", f"epochs={EPOCHS}"]
SWEEP += ["--set", "latent_dim=8"]  # one latent size: two trials, one per seed
SWEEP += ["--scoring", 'method=["attention", "recon"]', "--scoring", 'target_layer=["encoder.2"]']
SWEEP += ["--scoring", 'formulation=["per_dim"]', "--scoring", 'quantity=["mu"]']
SWEEP += ["--checkpoint-every", "1"]  # resumes continue from the last epoch checkpointed


class Sweep:
    """``python -m orchestrator.sweep`` in a subprocess with stores in ``tmp_path`` and Ray's
    temporary folder of its own (a short path: unix sockets), so its processes can be found."""

    def __init__(self, tmp_path: Path, name: str):
        self.tmp_path, self.name = tmp_path, name
        self.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        self.ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        self.log = tmp_path / f"{name}.log"

    def start(self, *extra: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "orchestrator.sweep", *SWEEP, *extra, "--name", self.name]
        command += ["--tracking-uri", self.uri, "--storage-path", str(self.tmp_path / "results")]
        command += ["--data-root", str(self.tmp_path / "data")]
        env = os.environ | {"RAY_TMPDIR": self.ray_tmp}
        self.out = open(self.log, "w")  # noqa: SIM115 (closed in output())
        return subprocess.Popen(
            command, cwd=self.tmp_path, env=env, stdout=self.out, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        self.out.close()
        return self.log.read_text()

    def children(self):
        client = open_store(self.uri)  # the sweep may be creating the store: its lock
        experiment = client.get_experiment_by_name("digits")
        if experiment is None:
            return client, []
        parent = client.search_runs(
            [experiment.experiment_id], f"tags.`vaecam.sweep` = '{self.name}'"
        )
        if not parent:
            return client, []
        runs = client.search_runs(
            [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'"
        )
        return client, runs

    def wait_for_epoch(self, process: subprocess.Popen, epoch: int, timeout: float = 240):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert process.poll() is None, self.output()[-3000:]
            if (self.tmp_path / "mlflow.db").exists():
                _, runs = self.children()
                if any(run.data.metrics.get("epoch", -1) >= epoch for run in runs):
                    return
            time.sleep(0.5)
        pytest.fail(f"no trial reached epoch {epoch} in {timeout}s:\n{self.output()[-3000:]}")

    def ray_processes(self) -> set[int]:
        return using([self.ray_tmp])


def _wait(process: subprocess.Popen, timeout: float, sweep: Sweep) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the sweep did not exit within {timeout}s:\n{sweep.output()[-3000:]}")


@pytest.mark.slow
def test_sigterm_stops_the_sweep_interrupted_and_resume_logs_every_epoch_once(tmp_path):
    sweep = Sweep(tmp_path, "stopped")
    process = sweep.start()
    sweep.wait_for_epoch(process, 1)
    process.send_signal(signal.SIGTERM)  # what `timeout` and schedulers send
    code = _wait(process, 120, sweep)
    out = sweep.output()
    assert code == 128 + signal.SIGTERM, out[-3000:]
    assert "Interrupted: 2 trials did not finish" in out
    command = re.search(r"Resume the sweep with:\n\s+(.+)", out).group(1)
    assert "--resume --name stopped" in command

    client, runs = sweep.children()
    assert len(runs) == 2 and {run.info.status for run in runs} == {"KILLED"}
    parent = client.get_run(runs[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED" and parent.data.tags["vaecam.interrupted"] == "true"
    with open(tmp_path / "results" / "stopped" / "summary.csv") as file:
        assert {row["status"] for row in csv.DictReader(file)} == {"INTERRUPTED"}
    # the local Ray instance the sweep started is gone with it
    strays = sweep.ray_processes()
    assert not strays, [command_line(pid) for pid in strays]

    # the printed command resumes it: every trial finishes, every epoch logged once
    env = os.environ | {"RAY_TMPDIR": sweep.ray_tmp}
    done = subprocess.run(
        shlex.split(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client, after = sweep.children()
    assert sorted(r.info.run_id for r in after) == sorted(r.info.run_id for r in runs)
    for run in after:
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert sorted(steps) == list(range(EPOCHS)), steps  # every step, once
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["vaecam.interrupted"] == "false"


@pytest.mark.slow
def test_a_second_ctrl_c_exits_promptly(tmp_path):
    sweep = Sweep(tmp_path, "impatient")
    process = sweep.start()
    sweep.wait_for_epoch(process, 0)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    stopped = time.monotonic()
    code = _wait(process, 60, sweep)
    out = sweep.output()
    assert code == 128 + signal.SIGINT, out[-3000:]
    assert time.monotonic() - stopped < 45
    assert "Resume the sweep with:" in out
    _, runs = sweep.children()
    assert runs and all(run.info.status in ("KILLED", "FINISHED") for run in runs)
    assert not sweep.ray_processes()
