"""The tracking server as the head runs it (docker/mlflow-server.sh, basic auth) on a real
PostgreSQL server, under concurrent trial processes: bench/tracking_load.py at a small N."""

import os
import pwd
import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import tracking_load  # noqa: E402
from orchestrator.services import ServiceError, check_tracking  # noqa: E402


def _postgres_missing() -> str | None:
    """Why PostgreSQL cannot run here, or None."""
    if tracking_load.postgres_bin() is None:
        return "PostgreSQL is not installed (apt-get install -y postgresql; .ci/run installs it)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without the postgres user that Debian's package creates"
    return None


@pytest.mark.slow
def test_postgresql_store_loses_nothing_under_concurrent_trials(tmp_path, monkeypatch):
    why = _postgres_missing()
    if why:
        pytest.skip(why)
    pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app: pip install 'mlflow[auth]'")
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials of this machine
    password = secrets.token_urlsafe(16)
    with tracking_load.backend_server("postgresql", tmp_path, password, workers=2) as url:
        # the commands' probe: a real MLflow server that wants the account ...
        with pytest.raises(ServiceError, match="HTTP 401.*no account given"):
            check_tracking(url)
        with tracking_load.logged_in(password):
            check_tracking(url)  # ... and accepts it
        result = tracking_load.load(url, password, clients=4, epochs=10, timeout=600)
    assert result["runs_created"] == result["runs_finished"] == 4, result
    assert result["points_expected"] == 4 * 10 * 3 and result["lost"] == 0, result
    assert result["errors"] == 0 and result["runs_with_table_and_images"] == 4, result
    assert not list(tmp_path.rglob("mlflow.db"))  # the runs are in PostgreSQL, not sqlite
