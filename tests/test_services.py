"""Unreachable or wrong services fail fast with one line (exit 2): a remote tracking URI, the
Ray cluster of RAY_ADDRESS; names are checked before any folder or filter."""

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator import report, rescore
from orchestrator.names import quoted
from orchestrator.services import ServiceError, check_ray_address, check_tracking
from orchestrator.tracking import find_sweep, start_sweep

ROOT = Path(__file__).resolve().parents[1]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(
    command: list[str], tmp_path: Path, **env: str
) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize(
    "command",
    [
        ["orchestrator.sweep", "digits", "--quick"],
        ["orchestrator.report", "--name", "some-sweep"],
        ["orchestrator.rescore", "--name", "some-sweep"],
    ],
    ids=["sweep", "report", "rescore"],
)
def test_an_unreachable_tracking_server_is_one_line_and_exit_2_within_15_s(command, tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    done, seconds = _run([*command, "--tracking-uri", uri], tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --tracking-uri {uri}: cannot reach")
    assert "connection refused" in lines[0]
    assert seconds < 15
    assert not list(tmp_path.iterdir())  # nothing created: no mlflow.db, no report folder


def test_a_ray_address_that_does_not_answer_is_one_line_and_exit_2(tmp_path):
    address = f"127.0.0.1:{_closed_port()}"
    done, seconds = _run(
        ["orchestrator.sweep", "digits", "--quick", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"],
        tmp_path,
        RAY_ADDRESS=address,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: RAY_ADDRESS {address}: no Ray cluster answers at {address}")
    assert seconds < 15 and not (tmp_path / "m.db").exists()
    with pytest.raises(ServiceError, match="answers at 127.0.0.1:10001"):  # the client's port
        check_ray_address("ray://127.0.0.1", timeout=2)
    with pytest.raises(ServiceError, match="expected HOST:PORT"):
        check_ray_address("ray://:x")
    check_ray_address("auto")  # Ray's own lookup of a local instance: nothing to probe


class _Answer(http.server.BaseHTTPRequestHandler):
    """A web server that is no MLflow: it answers every GET with ``status`` and a page."""

    status = 200

    def do_GET(self):  # noqa: N802  (http.server's name)
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>a web page</html>")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (200, "not an MLflow tracking server (HTTP 200"),
        (404, "not an MLflow tracking server (HTTP 404"),
        (401, "refused the login (HTTP 401): no account given: set MLFLOW_TRACKING_USERNAME"),
        (403, "refused access (HTTP 403)"),
    ],
)
def test_a_server_that_is_not_mlflow_or_refuses_the_login_is_named(status, message, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no ~/.mlflow/credentials
    handler = type("Answer", (_Answer,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(ServiceError) as caught:
            check_tracking(uri)
    finally:
        server.shutdown()
        server.server_close()
    assert str(caught.value).startswith(f"--tracking-uri {uri}: ")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_server_that_does_not_answer_in_time_is_named(monkeypatch):
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(ServiceError, match=r"no answer within 1 s"):
            check_tracking(uri, timeout=1)
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("name", ["../../x", "it's", "a" * 129])
def test_report_and_rescore_check_the_name_before_creating_anything(name, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for main in (report.main, rescore.main):
        with pytest.raises(SystemExit) as exit_:
            main(["--name", name, "--tracking-uri", uri])
        assert exit_.value.code == 2
        assert "--name" in capsys.readouterr().err
    assert not list(tmp_path.iterdir()) and not list(tmp_path.parent.glob("x"))


def test_report_of_an_unknown_name_creates_no_folder_and_no_store(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert report.main(["--name", "nowhere", "--tracking-uri", uri]) == 2
    assert "no MLflow store there" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # neither mlflow.db nor report-nowhere
    start_sweep(uri, "digits", "somewhere", {})
    assert report.main(["--name", "nowhere", "--tracking-uri", uri]) == 2
    assert "known: somewhere" in capsys.readouterr().err
    assert not (tmp_path / "report-nowhere").exists()


def test_names_with_quotes_are_quoted_or_refused_in_mlflow_filters(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    start_sweep(uri, "digits", "it's", {})  # older or foreign runs may hold any tag value
    assert quoted("plain") == "'plain'" and quoted("it's") == '"it\'s"'
    assert find_sweep(uri, "it's") is not None and find_sweep(uri, "its") is None
    for bad in ('it\'s "x"', "back\\slash"):
        with pytest.raises(ValueError, match="cannot be searched"):
            quoted(bad)
    assert MlflowClient(uri).search_experiments()  # the store is intact
