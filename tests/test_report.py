"""``orchestrator.report``: the verdict rule on hand-made values, and a report of hand-made
MLflow runs whose every number is checked against the metric it cites."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from scipy import stats

from orchestrator import report
from orchestrator.provenance import log_dataset_input
from orchestrator.tracking import RunLog, flat_scores, read_scores, start_sweep
from search_spaces import SPACES
from vaecam.scoring import ScoreTable

NAN = math.nan


@pytest.mark.parametrize(
    ("low", "high", "paper", "chance", "expected"),
    [
        (0.70, 0.76, (0.73, 0.73), 0.5, "consistent"),
        (0.60, 0.68, (0.73, 0.73), 0.5, "below"),
        (0.80, 0.90, (0.73, 0.73), 0.5, "above"),
        (0.80, 0.90, (0.70, 0.83), 0.5, "consistent"),  # a range overlapping ours
        (0.84, 0.86, (0.89, 0.91), 0.2, "below"),
        (0.45, 0.60, (0.73, 0.73), 0.5, "inconclusive"),  # contains chance
        (0.60, 0.85, (0.73, 0.73), 0.5, "inconclusive"),  # wider than MAX_WIDTH
        (NAN, NAN, (0.73, 0.73), 0.5, "inconclusive"),  # no interval
        (0.70, 0.76, None, 0.5, "no published number"),
    ],
)
def test_verdict_against_the_paper(low, high, paper, chance, expected):
    assert report.verdict(low, high, paper, chance) == expected


@pytest.mark.parametrize(
    ("ours", "baseline", "expected"),
    [
        ((0.70, 0.75), (0.60, 0.65), "consistent"),
        ((0.55, 0.60), (0.65, 0.70), "below"),
        ((0.60, 0.70), (0.65, 0.75), "inconclusive"),
        ((0.45, 0.70), (0.20, 0.30), "inconclusive"),  # ours contains chance
    ],
)
def test_verdict_against_a_baseline(ours, baseline, expected):
    assert report.versus_verdict(*ours, *baseline, chance=0.5) == expected


def _sweep(tmp_path: Path, name: str = "handmade", dataset: str = "mvtec_ad/grid") -> str:
    """A finished mvtec sweep in a fresh store: on ``grid``, two learning rates x two seeds;
    lr 1e-4 has the better validation loss and the *worse* test metric."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = {
        "experiment": "mvtec",
        "searched": ["category", "seed", "lr"],
        "quick": False,
        "preset": None,
        "space.epochs": 30,
        "space.lr": {"grid_search": [1e-4, 1e-3]},
        "space.batch_size": 16,
        "space.latent_dim": 32,
        "space.image_size": 256,
    }
    tracking = start_sweep(uri, "mvtec", name, params)
    client = MlflowClient(uri)
    values = {(1e-4, 0): 0.70, (1e-4, 1): 0.74, (1e-3, 0): 0.90, (1e-3, 1): 0.92}
    for (lr, seed), value in values.items():
        run = client.create_run(
            tracking.experiment_id, tags={MLFLOW_PARENT_RUN_ID: tracking.parent_run_id}
        ).info.run_id
        for key, param in {"category": "grid", "seed": seed, "lr": lr}.items():
            client.log_param(run, key, param)
        client.log_metric(run, "val_loss", 100.0 if lr == 1e-4 else 200.0)
        # the score table, as trials log it: the report reads it, not metric names
        ours = SPACES["mvtec"].CLAIMS[0]["select"] | {"pixel_auroc": value}
        ours |= {"pixel_auroc_ci_low": value - 0.05, "pixel_auroc_ci_high": value + 0.05}
        ours |= {"pixel_auroc_n_pos": 50, "pixel_auroc_n_neg": 950}
        recon = {"method": "recon", "normalisation": "none", "image_score": "max"}
        recon |= {"pixel_auroc": 0.6 + seed / 100}
        table = ScoreTable([ours, recon], frozenset())
        RunLog(uri, run).log_scores(table, 0, SPACES["mvtec"].CLAIMS)
        log_dataset_input(
            client, run, name=dataset, source=tmp_path, digest="0" * 64, num_images=10, split="test"
        )
        client.set_terminated(run)
    client.set_terminated(tracking.parent_run_id)
    return uri


def markdown_tables(markdown: str) -> list[list[dict[str, str]]]:
    """Every Markdown table of ``markdown`` as rows of header -> cell."""
    tables, lines = [], markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            header = [c.strip() for c in lines[i - 1].strip("|").split("|")]
            rows = []
            for row in lines[i + 1 :]:
                if not row.startswith("|"):
                    break
                cells = [c.strip() for c in row.strip("|").split("|")]
                rows.append(dict(zip(header, cells, strict=True)))
            tables.append(rows)
    return tables


def test_report_selects_on_validation_loss_and_every_number_is_the_metric_it_cites(tmp_path):
    uri = _sweep(tmp_path)
    client = MlflowClient(uri)
    md, page = report.write(client, "handmade", tmp_path / "out")
    text = md.read_text()
    (row,) = next(t for t in markdown_tables(text) if t and "verdict" in t[0])
    assert row["group"] == "grid" and row["paper"] == "0.73"
    runs = row["runs"].split()
    assert len(runs) == 2  # the two seeds of lr 1e-4: the better validation loss
    assert {client.get_run(r).data.params["lr"] for r in runs} == {"0.0001"}
    # the number cited is the score table's (the trials logged only the headline as metrics)
    assert all(row["metric key"] not in client.get_run(r).data.metrics for r in runs)
    values = [flat_scores(read_scores(client, r))[row["metric key"]] for r in runs]
    mean, low, high = map(float, re.findall(r"[\d.]+", row["ours [95%]"]))
    half = stats.t.ppf(0.975, 1) * stats.tstd(values) / math.sqrt(2)
    assert mean == pytest.approx(sum(values) / 2, abs=5e-4)
    clipped = (max(mean - half, 0), min(mean + half, 1))  # the metric's range
    assert (low, high) == pytest.approx(clipped, abs=5e-4)
    assert row["interval over"] == "2 seeds (t)" and row["n"] == "50+/950-"
    assert row["verdict"] == report.verdict(low, high, (0.73, 0.73), 0.5)  # too wide here
    recon = re.search(r"recon ([\d.]+)", row["controls"]).group(1)
    assert float(recon) == pytest.approx(0.605, abs=5e-4)
    assert "`epochs`: ours 30, the paper's 300-512" in text
    assert page.read_text().count("data:image/png;base64,") >= 1  # the claim's bars, embedded
    # logged on the sweep's run; the same runs give the same files but for the time stamp
    (parent,) = client.search_runs(["1"], "tags.`vaecam.sweep` = 'handmade'")
    assert {"report.md", "report.html"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)
    }
    again, again_page = report.write(client, "handmade", tmp_path / "again")
    stamp = re.compile(r"Generated [^<\n]*")
    assert stamp.sub("", again.read_text()) == stamp.sub("", text)
    assert stamp.sub("", again_page.read_text()) == stamp.sub("", page.read_text())


def test_no_verdict_on_data_other_than_the_papers(tmp_path):
    uri = _sweep(tmp_path, dataset="mvtec_ad/grid (synthetic)")
    md, _ = report.write(MlflowClient(uri), "handmade", tmp_path / "out")
    (row,) = next(t for t in markdown_tables(md.read_text()) if t and "verdict" in t[0])
    assert row["verdict"] == "no verdict: not the paper's data"


def test_an_unknown_name_is_one_clear_error(tmp_path, capsys):
    uri = _sweep(tmp_path)
    assert report.main(["--name", "nope", "--tracking-uri", uri, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "handmade" in err  # what exists, named


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_claim_names_its_data_metric_and_what_it_is_compared_with(name):
    space = SPACES[name]
    assert space.CLAIMS and space.PAPER_SETTINGS
    for claim in space.CLAIMS:
        assert claim["dataset"] and claim["metric"]
        assert ("paper" in claim) != ("versus" in claim)
        assert claim.get("versus") in (None, *claim.get("controls", []))
