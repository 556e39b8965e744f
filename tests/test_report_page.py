"""``report.html`` in a real browser: Debian's Chromium, driven by Selenium through Debian's
chromium-driver. The page shows no raw Markdown, nothing is wider than a 1,280 px window, every
image loads; a screenshot and the page's measurements are kept in ``test-artifacts/``."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from test_report import _sweep

from orchestrator import report
from vaecam.figures import localisation_image

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"  # git-ignored
WIDTH = 1280
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    f"--window-size={WIDTH},900",
]


@pytest.fixture
def browser(tmp_path):
    if BROWSER is None or DRIVER is None:
        pytest.skip("no chromium or chromedriver on PATH: apt-get install chromium chromium-driver")
    from selenium import webdriver  # the dev extra's: a missing one is an error, not a skip

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    yield driver
    driver.quit()


def _with_overlays(uri: str) -> None:
    """Overlays in two groups on every trial (files as trials log them), as a sweep has."""
    client = MlflowClient(uri)
    rng = np.random.default_rng(0)
    for run in client.search_runs(["1"], "tags.`mlflow.parentRunId` != ''"):
        for group in ("good", "broken_large"):
            image = localisation_image(
                rng.random((2, 3, 32, 32)), None, {"attention": rng.random((2, 32, 32))}, ["a", "b"]
            )
            path = Path(client.download_artifacts(run.info.run_id, "", None)) / "maps-01-01.png"
            image.save(path)
            client.log_artifact(run.info.run_id, str(path), f"overlays/{group}")


RAW_MARKDOWN = [
    ("bold markers", re.compile(r"\*\*")),
    ("backquotes", re.compile(r"`")),
    ("emphasis markers", re.compile(r"(?<![\w*])\*\w[^*\n]*\*(?![\w*])")),
    ("a list item as text", re.compile(r"^\s*- ", re.MULTILINE)),
    ("a heading as text", re.compile(r"^#+ ", re.MULTILINE)),
    ("a table as text", re.compile(r"^\|.*\|$", re.MULTILINE)),
]


def test_report_page_renders_in_a_browser(tmp_path, browser):
    uri = _sweep(tmp_path)
    _with_overlays(uri)
    _, page = report.write(MlflowClient(uri), "handmade", tmp_path / "out")
    browser.get(page.as_uri())
    text = browser.find_element("tag name", "body").text
    assert "vaecam report: handmade" in text and "Verdicts" in text
    for what, pattern in RAW_MARKDOWN:
        found = pattern.search(text)
        assert not found, f"raw Markdown in the page ({what}): {found}"
    measured = browser.execute_script(
        """
        const width = window.innerWidth;
        const wide = [...document.querySelectorAll('body *')]
          .map(e => [e.tagName + (e.className ? '.' + e.className : ''), e.getBoundingClientRect()])
          .filter(([, r]) => r.right > width + 0.5 || r.left < -0.5)
          .map(([name, r]) => `${name} ${Math.round(r.left)}-${Math.round(r.right)}`);
        const images = [...document.images];
        const navigation = performance.getEntriesByType('navigation')[0];
        return {
          viewport: width,
          page_width: document.documentElement.scrollWidth,
          page_height: document.documentElement.scrollHeight,
          wider_than_viewport: wide,
          images: images.length,
          broken_images: images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
          load_ms: navigation.loadEventEnd - navigation.startTime,
          bytes: navigation.transferSize || navigation.encodedBodySize,
        };
        """
    )
    ARTIFACTS.mkdir(exist_ok=True)
    browser.set_window_size(WIDTH, min(measured["page_height"] + 200, 16000))
    browser.save_screenshot(str(ARTIFACTS / "report.png"))
    (ARTIFACTS / "report-page.json").write_text(json.dumps(measured, indent=2))
    print(f"report.html in Chromium: {json.dumps(measured)}")
    assert measured["viewport"] == WIDTH
    assert measured["page_width"] <= WIDTH and not measured["wider_than_viewport"], measured
    assert measured["images"] >= 1 + 2 and not measured["broken_images"], measured
    # every overlay group of the selected trial is on the page, each its own picture
    overlays = {
        image.get_attribute("alt").split(" ")[3]: image.get_attribute("src")
        for image in browser.find_elements("tag name", "img")
        if image.get_attribute("alt").startswith("attention maps of")
    }
    assert set(overlays) == {"overlays/good/maps-01-01.png", "overlays/broken_large/maps-01-01.png"}
    assert len(set(overlays.values())) == 2
