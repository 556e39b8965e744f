"""The MLflow link a sweep prints, opened in a real browser (Debian's Chromium through Selenium
and chromium-driver) on a real ``mlflow server`` on 127.0.0.1: the runs table shows the sweep's
trials as rows of their own, not folded behind the parent's "+", and no other sweep's. A
screenshot is kept in ``test-artifacts/``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from processes import free_port, wait_healthy
from test_report_page import ARTIFACTS, browser  # noqa: F401  (the Chromium fixture)

from orchestrator.tracking import Tracking, TrialRun, start_sweep

TRIALS = ["train_digits_aaaa1_00000", "train_digits_aaaa1_00001"]
OTHER = "train_digits_bbbb2_00000"  # a trial of another sweep in the same experiment


@pytest.fixture
def server(tmp_path):
    """``mlflow server`` on 127.0.0.1 over a fresh sqlite store, artifacts under ``tmp_path``;
    its URL. Stopped (its whole process group) after the test."""
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
    ]  # fmt: skip
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, tmp_path / "server.log", timeout=60)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def _sweep(uri: str, name: str, trials: list[str]) -> Tracking:
    """A sweep's parent run and its trials' runs, made as a sweep makes them."""
    tracking = start_sweep(uri, "digits", name, {"epochs": 1})
    for number, trial in enumerate(trials):
        with TrialRun(tracking, trial, trial, {"latent_dim": 8 * (number + 1)}, False) as run:
            run.log_epoch({"val_loss": 1.0 / (number + 1)}, 0)
    return tracking


@pytest.mark.slow
def test_printed_link_shows_the_trials(server, browser):  # noqa: F811  (the fixture)
    _sweep(server, "other-sweep", [OTHER])
    link = _sweep(server, "handmade", TRIALS).ui_link()
    assert link.startswith(f"{server}/#/experiments/")
    browser.get(link)
    shown = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the table fills in after the page loads
        text = browser.find_element("tag name", "body").text
        shown = {name: name in text for name in [*TRIALS, OTHER]}
        if all(shown[name] for name in TRIALS):
            break
        time.sleep(0.5)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "mlflow-link.png"))
    assert all(shown[name] for name in TRIALS), f"trials not shown by {link}: {shown}"
    time.sleep(1)  # the other sweep's trial would have arrived with them
    text = browser.find_element("tag name", "body").text
    assert OTHER not in text, f"{link} shows another sweep's trial"
