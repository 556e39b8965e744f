"""Benchmark: the MLflow tracking server under a cluster's load, on PostgreSQL and on sqlite.

    PYTHONPATH=$PWD python bench/tracking_load.py [--clients 8,32,64] [--epochs 50]
                                                  [--backends postgresql,sqlite] [--workers 4]

For each backend, the server the head runs (``docker/mlflow-server.sh``: MLflow's basic-auth
app, artifacts proxied) on 127.0.0.1, on a fresh store:

* postgresql: a real PostgreSQL server (Debian's ``postgresql`` package) initialised in a
  temporary folder and run as the ``postgres`` user (as this user when not root), listening on
  127.0.0.1 only, password authentication; the password reaches MLflow in a libpq password file,
  never on a command line;
* sqlite: the script's default, ``sqlite:///$MLFLOW_HOME/mlflow.db``.

Then, for each N of ``--clients``, N client processes (not threads: a trial is a process) that
each behave like a trial: a run nested under one parent run, its params, its metrics once per
epoch (``train_loss``, ``val_loss`` and ``epoch`` in one request, as ``TrialRun.log_epoch``
does) for ``--epochs`` epochs, the final score table (``log_table``) and two images (each after
listing the run's images, as ``RunLog.log_image`` does), then the run ends. The clients start
together (each imports MLflow first, then waits for the go) and use MLflow's client as trials do,
retries included. Afterwards the store is read back: runs finished, metric points stored against
those logged, and errors (calls that failed after the client's retries).

Prints a line per backend and N, then one JSON object as the last line:
``{"results": {BACKEND: {N: {"runs_finished", "lost", "errors", "points_per_s", ...}}}}``.
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "docker" / "mlflow-server.sh"
METRICS = ("train_loss", "val_loss", "epoch")  # logged together, once per epoch
IMAGES = ("maps/attention", "maps/reconstruction")
PARAMS = 24  # about a trial's config
TABLE_ROWS = 48  # about a digits trial's scoring grid
USER = "vaecam"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL server's programs (``/usr/lib/postgresql/V/bin``), if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run ``command`` as the ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def postgres(password: str) -> Iterator[str]:
    """A PostgreSQL server with its data in a new temporary folder (its own, in the system's
    temporary folder, which the ``postgres`` user can reach), on 127.0.0.1 and a free port, no
    unix socket, password authentication for the user ``postgres``, and a database ``mlflow``;
    yields its URI without the password (libpq reads that from a password file)."""
    import psycopg  # the `postgres` extra (and dev): SQLAlchemy's driver for postgresql://

    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    folder = Path(tempfile.mkdtemp(prefix="vaecam-pg-"))
    data, pwfile = folder / "data", folder / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    pwfile.unlink()
    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' "
    options += "-c max_connections=200"
    log = folder / "postgres.log"
    start = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options]
    subprocess.run(_as_postgres([*start, "start"]), check=True, capture_output=True)
    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", password=password, autocommit=True
        ) as connection:
            connection.execute("CREATE DATABASE mlflow")
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


def account_env(password: str) -> dict[str, str]:
    return {"MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": password}


@contextlib.contextmanager
def mlflow_server(
    home: Path, password: str, backend: str | None, workers: int, pg_password: str | None = None
) -> Iterator[str]:
    """``docker/mlflow-server.sh`` on 127.0.0.1 and a free port with its files in ``home``, the
    account ``vaecam``/``password``, ``backend`` (None: its sqlite default) and, for
    PostgreSQL, ``pg_password`` in ``home/mlflow/.pgpass`` (where the script looks); yields its
    URL once it answers, stops it afterwards."""
    mlflow_home = home / "mlflow"
    mlflow_home.mkdir(parents=True)
    if pg_password is not None:
        pgpass = mlflow_home / ".pgpass"
        pgpass.write_text(f"127.0.0.1:*:*:postgres:{pg_password}\n")
        pgpass.chmod(0o600)
    port = free_port()
    env = {
        **os.environ,
        **account_env(password),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "MLFLOW_HOME": str(mlflow_home),
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_WORKERS": str(workers),
    }
    if backend:
        env["MLFLOW_BACKEND_URI"] = backend
    log = open(home / "server.log", "w")  # noqa: SIM115  (closed below)
    server = subprocess.Popen(
        ["bash", str(SERVER)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the MLflow server did not start:\n{(home / 'server.log').read_text()}"
                    ) from None
                time.sleep(0.5)
        yield url
    finally:
        subprocess.run(["bash", str(SERVER), "stop"], env=env, capture_output=True, timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        log.close()


def trial(url: str, experiment_id: str, parent_id: str, index: int, epochs: int) -> None:
    """One client: waits for a line on stdin (the go), logs as a trial does, prints a JSON line
    with its errors (calls that failed after MLflow's own retries) and the first one's text."""
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    client = MlflowClient(url)
    rng = np.random.default_rng(index)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in IMAGES]
    print("ready", flush=True)
    sys.stdin.readline()
    errors: list[str] = []

    def call(function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:  # noqa: BLE001  (counted: what a trial would have lost)
            errors.append(f"{type(error).__name__}: {str(error).splitlines()[0][:300]}")
            return None

    tags = {MLFLOW_PARENT_RUN_ID: parent_id}
    run = call(client.create_run, experiment_id, tags=tags, run_name=f"trial-{index}")
    if run is not None:
        run_id = run.info.run_id
        params = [Param(f"setting_{i}", str(rng.random())) for i in range(PARAMS)]
        call(client.log_batch, run_id, params=params)
        for epoch in range(epochs):
            now = int(time.time() * 1000)
            values = {"train_loss": rng.random(), "val_loss": rng.random(), "epoch": epoch}
            metrics = [Metric(key, float(values[key]), now, epoch) for key in METRICS]
            call(client.log_batch, run_id, metrics=metrics)
        table = {
            "method": [f"m{i % 6}" for i in range(TABLE_ROWS)],
            "auroc": rng.random(TABLE_ROWS).tolist(),
        }
        call(client.log_table, run_id, data=table, artifact_file="scores.json")
        for key, image in zip(IMAGES, images, strict=True):
            call(client.list_artifacts, run_id, "images")
            call(client.log_image, run_id, image, key=key, step=epochs - 1)
        call(client.set_terminated, run_id, "FINISHED")
    print(json.dumps({"errors": len(errors), "first_error": errors[0] if errors else ""}))


@contextlib.contextmanager
def logged_in(password: str) -> Iterator[None]:
    """MLflow's client in this process logs in with the account while the block runs."""
    before = {key: os.environ.get(key) for key in account_env(password)}
    os.environ.update(account_env(password))
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load(url: str, password: str, clients: int, epochs: int, timeout: float) -> dict:
    """N trial processes at once against ``url``; what the store holds afterwards."""
    with logged_in(password):
        return _load(url, password, clients, epochs, timeout)


def _load(url: str, password: str, clients: int, epochs: int, timeout: float) -> dict:
    from mlflow import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    client = MlflowClient(url)
    experiment_id = client.create_experiment(f"load-{clients}-{secrets.token_hex(3)}")
    parent_id = client.create_run(experiment_id, run_name=f"sweep-{clients}").info.run_id
    command = [sys.executable, str(Path(__file__).resolve()), "--trial", url, experiment_id]
    processes = [
        subprocess.Popen(
            [*command, parent_id, str(index), str(epochs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **account_env(password)},
        )
        for index in range(clients)
    ]
    try:
        for process in processes:  # every client has imported MLflow: they start together
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError("a client did not start")
        started = time.monotonic()
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes, killed = [], 0
        for process in processes:
            try:
                left = max(1.0, started + timeout - time.monotonic())
                out, _ = process.communicate(timeout=left)
                outcomes.append(json.loads(out.strip().splitlines()[-1]))
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                process.kill()
                process.communicate()
                killed += 1
    finally:  # an error or a signal here: no client outlives the benchmark
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    seconds = time.monotonic() - started
    client.set_terminated(parent_id, "FINISHED")

    runs = client.search_runs([experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_id}'")
    stored = sum(
        len(client.get_metric_history(run.info.run_id, key)) for run in runs for key in METRICS
    )
    expected = clients * epochs * len(METRICS)
    complete = 0
    for run in runs:
        files = {item.path for item in client.list_artifacts(run.info.run_id)}
        images = client.list_artifacts(run.info.run_id, "images")
        complete += "scores.json" in files and len(images) >= len(IMAGES)
    errors = [outcome for outcome in outcomes if outcome["errors"]]
    return {
        "clients": clients,
        "runs_created": len(runs),
        "runs_finished": sum(run.info.status == "FINISHED" for run in runs),
        "runs_with_table_and_images": complete,
        "points_expected": expected,
        "points_stored": stored,
        "lost": expected - stored,
        "errors": sum(outcome["errors"] for outcome in outcomes) + killed,
        "clients_killed_after_timeout": killed,
        "first_error": errors[0]["first_error"] if errors else "",
        "seconds": round(seconds, 1),
        "points_per_s": round(stored / seconds, 1),
        "runs_per_min": round(60 * sum(run.info.status == "FINISHED" for run in runs) / seconds, 1),
    }


@contextlib.contextmanager
def backend_server(name: str, folder: Path, password: str, workers: int) -> Iterator[str]:
    """The MLflow server on ``name``'s store (postgresql or sqlite) in ``folder``: its URL."""
    if name == "sqlite":
        with mlflow_server(folder / "home", password, None, workers) as url:
            yield url
        return
    pg_password = secrets.token_urlsafe(24)
    with postgres(pg_password) as uri:
        with mlflow_server(folder / "home", password, uri, workers, pg_password) as url:
            yield url


BACKENDS = ("postgresql", "sqlite")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clients",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[8, 32, 64],
        help="comma-separated numbers of concurrent trials",
    )
    parser.add_argument("--epochs", type=int, default=50, help="metric steps per trial")
    parser.add_argument(
        "--backends",
        type=lambda text: text.split(","),
        default=list(BACKENDS),
        help=f"comma-separated, of {', '.join(BACKENDS)}",
    )
    parser.add_argument(
        "--workers", type=int, default=4, help="server worker processes (the script's default)"
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds a load may take; slower clients die"
    )
    args = parser.parse_args(argv)
    # SIGTERM (timeout, a scheduler) unwinds like Ctrl-C: the servers and clients stop too
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    if any(name not in BACKENDS for name in args.backends):
        parser.error(f"--backends: expected some of {', '.join(BACKENDS)}")
    results: dict[str, dict[str, dict]] = {}
    password = secrets.token_urlsafe(16)
    for name in args.backends:
        with tempfile.TemporaryDirectory(prefix="vaecam-load-") as tmp:
            with backend_server(name, Path(tmp), password, args.workers) as url:
                for clients in args.clients:
                    result = load(url, password, clients, args.epochs, args.timeout)
                    results.setdefault(name, {})[str(clients)] = result
                    print(
                        f"{name:>10} N={clients:<3} finished {result['runs_finished']}/{clients}, "
                        f"lost {result['lost']} of {result['points_expected']} points, "
                        f"{result['errors']} errors, {result['seconds']} s, "
                        f"{result['points_per_s']} points/s {result['first_error']}",
                        flush=True,
                    )
    print(
        json.dumps(
            {
                "epochs": args.epochs,
                "metrics_per_epoch": len(METRICS),
                "server_workers": args.workers,
                "cpus": os.cpu_count(),
                "results": results,
            }
        )
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--trial"]:
        url, experiment_id, parent_id, index, epochs = sys.argv[2:7]
        trial(url, experiment_id, parent_id, int(index), int(epochs))
    else:
        sys.exit(main())
