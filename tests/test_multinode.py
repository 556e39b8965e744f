"""A real two-node Ray cluster on this machine: a sweep survives losing a worker node.

The head and a worker node are two ``ray start --block`` processes on 127.0.0.1 (each with its
own temp dir, 1 CPU, free ports), with token authentication (``RAY_AUTH_MODE=token`` and a
fresh ``RAY_AUTH_TOKEN`` in their environment and the sweep's, never ``~/.ray/auth_token``). An
MLflow server (sqlite, artifacts proxied) records the sweep. The ``digits`` sweep runs as a
subprocess connected to the cluster by ``RAY_ADDRESS``, one trial per node, a checkpoint every
epoch; once the worker's trial has logged two epochs and a checkpoint of it is in the storage
path, every process of the worker node is SIGKILLed (a machine lost). The sweep must retry that
trial on the head from its last checkpoint (Tune's record of the trial: the first epoch the new
attempt reports is the checkpoint's plus one, never epoch 0) and finish with one complete MLflow
run per trial, every epoch logged once. Figures: one JSON line on stdout (``pytest -s``): trials per
node, MLflow runs against trials, and seconds from the kill until Tune saw the failure, the
head's CPU was free (the other trial ended), the trial ran on the head, and it logged its next
epoch there (``seconds_to_recover``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient
from processes import command_line, descendants, free_port, kill, proc_table, using

ROOT = Path(__file__).resolve().parents[1]
SWEEP = "multinode"
EPOCHS = 8  # long enough to kill the worker mid-trial, short enough to keep the test quick

NODES_SCRIPT = """
import json, time, ray
ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
deadline = time.time() + 60
while True:
    nodes = [n for n in ray.nodes() if n["Alive"]]
    if len(nodes) >= 2 or time.time() > deadline:
        break
    time.sleep(0.2)
print(json.dumps({n["NodeID"]: "node:__internal_head__" in n["Resources"] for n in nodes}))
"""


class Cluster:
    """The processes this test starts, each in a session of its own; ``stop`` ends them all
    and everything they spawned. Every one of them, however deep or reparented, is found by
    the cluster's own auth token in its environment: the stray check after ``stop``."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen] = {}
        self.temp_dirs = [tempfile.mkdtemp(prefix="r", dir="/tmp") for _ in range(2)]
        self.gcs_port = free_port()
        self.address = f"127.0.0.1:{self.gcs_port}"
        self.mlflow_port = free_port()
        self.tracking_uri = f"http://127.0.0.1:{self.mlflow_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
        token = secrets.token_hex(32)
        self.marker = f"RAY_AUTH_TOKEN={token}".encode()
        self.env |= {
            "RAY_AUTH_MODE": "token",  # Ray 2.59+: one token, given to every process we start
            "RAY_AUTH_TOKEN": token,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # SIGTERM stops a node at once
            "PYTHONUNBUFFERED": "1",
            # the checkout, importable by the sweep and by the trials on either node
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }

    def start(self, name: str, command: list[str], **env: str) -> subprocess.Popen:
        with open(self.tmp_path / f"{name}.log", "w") as log:
            self.procs[name] = subprocess.Popen(
                command,
                cwd=self.tmp_path,
                env=self.env | env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.procs[name]

    def log(self, name: str, tail: int = 4000) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")[-tail:]

    def wait_for(self, name: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.procs[name].poll() is None, f"{name} exited:\n{self.log(name)}"
            assert time.monotonic() < deadline, f"{name} not ready in {timeout}s:\n{self.log(name)}"
            time.sleep(0.2)

    def ray_start(self, name: str, temp_dir: str, *args: str) -> None:
        command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block"]
        command += ["--node-ip-address=127.0.0.1", "--num-cpus=1"]
        command += ["--object-store-memory=100000000", "--disable-usage-stats"]
        command += [f"--temp-dir={temp_dir}", "--min-worker-port=0", "--max-worker-port=0"]
        command += [f"--dashboard-agent-listen-port={free_port()}", *args]
        self.start(name, command)

    def start_all(self) -> None:
        """MLflow and the head start side by side; the worker joins once the head answers."""
        started = time.monotonic()
        db = self.tmp_path / "mlflow.db"
        server = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
        server += ["--port", str(self.mlflow_port), "--workers", "1"]
        server += ["--backend-store-uri", f"sqlite:///{db}"]
        server += ["--artifacts-destination", str(self.tmp_path / "artifacts")]
        self.start("mlflow", server, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # GenAI jobs
        head_args = [f"--port={self.gcs_port}", "--include-dashboard=false"]
        self.ray_start("head", self.temp_dirs[0], "--head", *head_args)
        self.wait_for("head", lambda: _answers(self.gcs_port), timeout=60)
        self.ray_start("worker", self.temp_dirs[1], f"--address={self.address}")
        self.head_id, self.worker_id = self.node_ids()
        self.wait_for("mlflow", lambda: _healthy(f"{self.tracking_uri}/health"), timeout=120)
        self.setup_s = time.monotonic() - started

    def node_ids(self) -> tuple[str, str]:
        """(head, worker) node ids, once both nodes are up."""
        done = subprocess.run(
            [sys.executable, "-c", NODES_SCRIPT],
            env=self.env | {"RAY_ADDRESS": self.address},
            cwd=self.tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        nodes = json.loads(done.stdout.strip().splitlines()[-1])
        heads = [node for node, head in nodes.items() if head]
        workers = [node for node, head in nodes.items() if not head]
        assert len(heads) == 1 and len(workers) == 1, (nodes, self.log("worker"))
        return heads[0], workers[0]

    def kill_node(self, name: str, temp_dir: str) -> None:
        """SIGKILL every process of a node at once, as when its machine is lost; twice, for
        a worker process the raylet may have been starting meanwhile."""
        for _ in range(2):
            kill(descendants(self.procs[name].pid) | using([temp_dir]), signal.SIGKILL)
            time.sleep(0.2)
        self.procs[name].wait(timeout=10)

    def ours(self) -> set[int]:
        """Every live process this test started or that one of them spawned."""
        return using([str(self.tmp_path), *self.temp_dirs], self.marker)

    def stop(self) -> list[str]:
        """End everything, the sweep first and the head last; the survivors, described
        (then killed too)."""
        for name in ("sweep", "worker", "head", "mlflow"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:  # leftovers: found by ``ours`` below
                continue
            pids = descendants(proc.pid)
            # a node stops its own processes in order; the rest, whole process trees
            kill({proc.pid} if name in ("head", "worker") else pids, signal.SIGTERM)
            deadline = time.monotonic() + 5  # then SIGKILL (mlflow ignores a first SIGTERM)
            while proc_table().keys() & pids and time.monotonic() < deadline:
                time.sleep(0.1)
            kill(pids | descendants(proc.pid), signal.SIGKILL)
            proc.wait(timeout=10)
        time.sleep(0.5)
        strays = self.ours()
        described = [f"{pid}: {command_line(pid)}" for pid in strays]
        kill(strays, signal.SIGKILL)
        for temp_dir in self.temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)
        return described


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        cluster.start_all()
        yield cluster
    finally:
        strays = cluster.stop()
        assert not strays, "processes left running:\n" + "\n".join(strays)


def _children(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name("digits")
    if experiment is None:
        return []
    ids = [experiment.experiment_id]
    parents = client.search_runs(ids, f"tags.`vaecam.sweep` = '{SWEEP}'")
    if not parents:
        return []
    return client.search_runs(ids, f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")


@pytest.mark.slow
def test_a_sweep_survives_losing_a_worker_node(cluster, tmp_path):
    started = time.monotonic()
    head, worker = cluster.head_id, cluster.worker_id
    command = [sys.executable, "-m", "orchestrator.sweep", "digits", "--quick"]
    command += ["--set", 'seed={"grid_search": [0, 1]}', "--set", "latent_dim=8"]  # two trials
    command += ["--scoring", 'target_layer=["encoder.2"]', "--scoring", 'quantity=["mu"]']
    command += ["--set", f"epochs={EPOCHS}", "--cpus-per-trial", "1", "--max-failures", "3"]
    command += ["--checkpoint-every", "1"]  # a checkpoint exists when the node dies
    command += ["--tracking-uri", cluster.tracking_uri, "--name", SWEEP]
    command += ["--storage-path", str(tmp_path / "ray_results"), "--data-root", str(tmp_path)]
    sweep = cluster.start("sweep", command, RAY_ADDRESS=cluster.address)
    client = MlflowClient(cluster.tracking_uri)

    def wait(condition, what: str, timeout: float = 240, every: float = 0.3):
        deadline = time.monotonic() + timeout
        while not (found := condition()):
            assert sweep.poll() is None, f"sweep exited before {what}:\n{cluster.log('sweep')}"
            assert time.monotonic() < deadline, f"no {what} in {timeout}s:\n{cluster.log('sweep')}"
            time.sleep(every)
        return found

    results = tmp_path / "ray_results" / SWEEP

    def on_worker_after_two_epochs_with_a_checkpoint():
        runs = [r for r in _children(client) if r.data.tags.get("ray.node_id") == worker]
        return next(
            (
                r
                for r in runs
                if r.data.metrics.get("epoch", -1) >= 1
                and list((results / r.data.tags["ray.trial_id"]).glob("checkpoint_*"))
            ),
            None,
        )

    victim = wait(on_worker_after_two_epochs_with_a_checkpoint, "a checkpoint on the worker")
    run_id, victim_trial = victim.info.run_id, victim.data.tags["ray.trial_id"]
    killed_at = time.time()
    cluster.kill_node("worker", cluster.temp_dirs[1])
    history = client.get_metric_history(run_id, "val_loss")
    last_before = max(m.step for m in history if m.timestamp <= killed_at * 1000)
    assert last_before < EPOCHS - 1, "the worker's trial ended before the node was killed"

    def moved_to_head():
        return client.get_run(run_id).data.tags.get("ray.node_id") == head and time.time()

    moved_at = wait(moved_to_head, "retry on the head")

    def next_epoch():
        later = [m for m in client.get_metric_history(run_id, "val_loss") if m.step > last_before]
        return min((m.timestamp / 1000 for m in later), default=None)

    recovered_at = wait(next_epoch, "epoch after the retry")
    try:
        code = sweep.wait(timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail(f"sweep still running after 300s:\n{cluster.log('sweep')}")
    assert code == 0, cluster.log("sweep")

    # nothing lost, nothing twice: one finished run per trial, every epoch once
    trials = sorted(path.name for path in results.iterdir() if path.is_dir())
    children = _children(client)
    runs = sorted(child.data.tags["ray.trial_id"] for child in children)
    assert len(trials) == 2 and runs == trials, (runs, trials)
    for child in children:
        assert child.info.status == "FINISHED", child.data.tags.get("vaecam.error")
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")]
        assert sorted(steps) == list(range(EPOCHS)), steps  # contiguous, none twice
    parent = client.get_run(children[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED" and parent.data.tags["vaecam.sweep"] == SWEEP

    # trials ran on both nodes; the worker's moved to the head after Tune saw it fail
    nodes = {c.data.tags["ray.trial_id"]: c.data.tags["ray.node_ids"].split(",") for c in children}
    per_node = Counter(node for history in nodes.values() for node in set(history))
    assert set(per_node) == {head, worker}, nodes
    assert nodes[victim_trial] == [worker, head]
    # restored, not restarted: Tune's record of the trial (result.json, one line per report, the
    # reporting process's pid) continues on the head at the epoch after its last checkpoint
    reports = [json.loads(line) for line in (results / victim_trial / "result.json").open()]
    before = [r for r in reports if r["pid"] == reports[0]["pid"]]
    after = reports[len(before) :]
    checkpointed = [r["epoch"] for r in before if r.get("checkpoint_dir_name")]
    assert checkpointed and after, reports
    assert after[0]["epoch"] == checkpointed[-1] + 1, (checkpointed, after[0])  # not epoch 0
    assert [r["epoch"] for r in after] == list(range(after[0]["epoch"], EPOCHS)), after
    # Tune's record of the failure, written by the driver as it handles it (head's temp dir)
    errors = Path(cluster.temp_dirs[0]).glob(
        f"session_*/artifacts/*/{SWEEP}/driver_artifacts/{victim_trial}/error.txt"
    )
    failed_at = max((path.stat().st_mtime for path in errors), default=None)
    head_free_at = max(c.info.end_time / 1000 for c in children if c.info.run_id != run_id)

    figures = {
        "test": "multinode",
        "nodes": 2,
        "trials": len(trials),
        "mlflow_runs": len(children),
        "epochs_per_trial": EPOCHS,
        "trials_per_node": {"head": per_node[head], "worker": per_node[worker]},
        "worker_killed_after_epoch": last_before,
        "restored_from_epoch": checkpointed[-1],
        "seconds_to_failure_seen": failed_at and round(failed_at - killed_at, 2),
        "seconds_to_head_cpu_free": round(max(0.0, head_free_at - killed_at), 2),
        "seconds_to_retry_on_head": round(moved_at - killed_at, 2),
        "seconds_to_recover": round(recovered_at - killed_at, 2),
        "seconds_cluster_setup": round(cluster.setup_s, 1),
        "seconds_sweep": round(time.monotonic() - started, 1),
    }
    print(json.dumps(figures))
