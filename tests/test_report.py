"""``orchestrator.report``: the verdict rule on hand-made values, and a report of hand-made
MLflow runs whose every number is checked against the score-table row it cites."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from scipy import stats

from orchestrator import report, results
from orchestrator.provenance import log_dataset_input
from orchestrator.tracking import RunLog, read_scores, start_sweep
from search_spaces import SPACES
from vaecam.scoring import ScoreTable

NAN = math.nan


@pytest.mark.parametrize(
    ("low", "high", "paper", "chance", "expected"),
    [
        (0.70, 0.76, (0.73, 0.73), 0.5, "consistent"),
        (0.60, 0.68, (0.73, 0.73), 0.5, "below"),  # wholly below the paper
        (0.80, 0.90, (0.73, 0.73), 0.5, "above"),
        (0.80, 0.90, (0.70, 0.83), 0.5, "consistent"),  # a range overlapping ours
        (0.84, 0.86, (0.89, 0.91), 0.2, "below"),
        # the MVTec grid, quick: at chance and below the paper's 0.73, never "inconclusive"
        (0.388, 0.587, (0.73, 0.73), 0.5, "below (at chance)"),
        (0.45, 0.60, (0.73, 0.73), 0.5, "below (at chance)"),
        (0.26, 0.37, (0.73, 0.73), 0.5, "below"),  # below chance: no qualifier
        (0.60, 0.85, (0.73, 0.73), 0.5, "inconclusive"),  # overlaps, wider than MAX_WIDTH
        (0.40, 0.75, (0.73, 0.73), 0.5, "inconclusive (at chance)"),
        (0.52, 0.60, (0.50, 1.00), 0.5, "consistent"),  # "above chance", and it is
        (0.45, 0.55, (0.50, 1.00), 0.5, "inconclusive (at chance)"),  # "above chance" unshown
        (0.30, 0.45, (0.50, 1.00), 0.5, "below"),
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
        ((0.45, 0.70), (0.20, 0.30), "consistent (at chance)"),
        ((0.45, 0.55), (0.90, 0.95), "below (at chance)"),
    ],
)
def test_verdict_against_a_baseline(ours, baseline, expected):
    assert report.versus_verdict(*ours, *baseline, chance=0.5) == expected


def test_one_chance_level_and_one_interval_over_seeds_serve_every_table():
    assert results.chance("image_auroc") == results.chance("frame_eer") == 0.5
    assert results.chance("image_auroc_vs_3") == 0.5  # one inlier against one other digit
    assert results.chance("average_precision", 1, 3) == 0.25  # the positive rate
    assert results.chance("aupro", max_fpr=0.3) == pytest.approx(0.15)
    assert results.chance("factor_vae_score") is None  # a claim says its own
    values = [0.70, 0.74, 0.71]
    half = stats.t.ppf(0.975, 2) * stats.tstd(values) / math.sqrt(3)
    mean = sum(values) / 3
    expected = (mean, mean - half, mean + half, stats.tstd(values))
    assert results.t_interval(values) == pytest.approx(expected, rel=1e-12)
    one = results.t_interval([0.7])
    assert one[0] == 0.7 and all(math.isnan(v) for v in one[1:])
    assert all(math.isnan(v) for v in results.t_interval([]))


# the MVTec claim under the reproduction's code; its other reading (the paper's equations) is
# not in this sweep's table, as under a preset that drops it
SELECT = next(c for c in SPACES["mvtec"].claims if c["reading"] == "the reproduction's code")
SELECT = SELECT["select"]


def _sweep(
    tmp_path: Path, name: str = "handmade", dataset: str = "mvtec_ad/grid", untrained: float = 0.30
) -> str:
    """A finished mvtec sweep in a fresh store: on ``grid``, two learning rates x two seeds;
    lr 1e-4 has the better validation loss and the *worse* test metric."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = {
        "space": "mvtec",
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
        ours = SELECT | {"pixel_auroc": value}
        ours |= {"pixel_auroc_ci_low": value - 0.05, "pixel_auroc_ci_high": value + 0.05}
        ours |= {"pixel_auroc_n_pos": 50, "pixel_auroc_n_neg": 950}
        control = SELECT | {"method": "untrained", "pixel_auroc": untrained}
        recon = {"method": "recon", "normalisation": "none", "image_score": "max"}
        recon |= {"pixel_auroc": 0.6 + seed / 100}
        table = ScoreTable([ours, control, recon], frozenset())
        RunLog(uri, run).log_scores(table, 0, SPACES["mvtec"].claims)
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


def verdict_rows(markdown: str) -> list[dict[str, str]]:
    """The report's verdict table, each row with its sources (the table after it, row for row:
    the same claim, reading and group)."""
    tables = [t for t in markdown_tables(markdown) if t]
    verdicts = next(t for t in tables if "verdict" in t[0])
    sources = next(t for t in tables if "scores.json row" in t[0])
    assert len(sources) == len(verdicts)
    for verdict, source in zip(verdicts, sources, strict=True):
        keys = ("experiment", "claim", "reading", "group")
        assert [verdict[k] for k in keys] == [source[k] for k in keys]
        verdict |= source
    return verdicts


def cited_rows(client: MlflowClient, cell: str, runs: list[str]) -> tuple[str, list[dict]]:
    """The metric a report's ``scores.json row`` cell (``metric @ column=value, ...``) cites,
    and the row it cites in each of ``runs``' score tables: the one with those values."""
    metric, _, fields = cell.partition(" @ ")
    wanted = dict(field.split("=", 1) for field in fields.split(", ")) if fields else {}
    rows = []
    for run in runs:
        table = read_scores(client, run)
        found = table[(table[list(wanted)] == pd.Series(wanted)).all(axis=1)] if wanted else table
        assert len(found) == 1, (cell, run)
        rows.append(found.iloc[0].to_dict())
    return metric, rows


def cited_values(client: MlflowClient, cell: str, runs: list[str]) -> list[float]:
    """The number a ``scores.json row`` cell cites in each of ``runs`` (:func:`cited_rows`)."""
    metric, rows = cited_rows(client, cell, runs)
    return [float(row[metric]) for row in rows]


def test_report_selects_on_validation_loss_and_every_number_is_the_metric_it_cites(tmp_path):
    uri = _sweep(tmp_path)
    client = MlflowClient(uri)
    md, page = report.write(client, "handmade", tmp_path / "out")
    text = md.read_text()
    dropped, row = verdict_rows(text)
    # the claim under each reading: the one not in the grid is listed, never skipped
    assert dropped["reading"] == "the paper's equations" and dropped["ours [95%]"] == "n/a"
    assert dropped["verdict"] == (
        "not measured under this preset (reading the paper's equations: "
        "encoder.layer2.1.conv1/per_dim/normal_difference_z not in the grid)"
    )
    assert row["reading"] == "the reproduction's code"
    assert row["group"] == "grid" and row["paper"] == "0.73"
    # the setting the verdict stands on, and the line that opens the report about it
    setting = "epochs 30 (paper: 300-512); a subset: 10 of 78 test images; 2 seeds (0, 1)"
    assert row["setting"] == setting
    assert "claim rows are measured outside the paper's setting" in text.split("## ")[0]
    assert re.search(r"untrained 0\.300", row["controls"])  # outside ours: the model matters
    assert "do not depend on what the model learned" not in row["verdict"]
    runs = row["runs"].split()
    assert len(runs) == 2  # the two seeds of lr 1e-4: the better validation loss
    assert {client.get_run(r).data.params["lr"] for r in runs} == {"0.0001"}
    # the number cited is the score table's row of the claim's reading
    cited = row["scores.json row"]
    assert cited == "pixel_auroc @ " + ", ".join(f"{k}={v}" for k, v in SELECT.items())
    values = cited_values(client, cited, runs)
    assert sorted(values) == pytest.approx([0.70, 0.74])
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
    _, row = verdict_rows(md.read_text())
    assert row["verdict"] == "no verdict: not the paper's data"
    assert row["setting"].startswith("epochs 30 (paper: 300-512); not the paper's data")


def test_untrained_maps_within_our_interval_are_called_out(tmp_path):
    uri = _sweep(tmp_path, untrained=0.72)  # the selected configuration's mean
    md, _ = report.write(MlflowClient(uri), "handmade", tmp_path / "out")
    _, row = verdict_rows(md.read_text())
    assert row["verdict"].endswith(
        "the untrained model's maps score within our interval: the maps do not depend on what "
        "the model learned"
    )


def test_an_unknown_name_is_one_clear_error(tmp_path, capsys):
    uri = _sweep(tmp_path)
    assert report.main(["--name", "nope", "--tracking-uri", uri, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "handmade" in err  # what exists, named


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_claim_names_its_data_metric_and_what_it_is_compared_with(name):
    space = SPACES[name]
    assert space.claims and space.paper_settings
    for claim in space.claims:
        assert claim["dataset"] and claim["metric"]
        assert ("paper" in claim) != ("versus" in claim)
        assert claim.get("versus") in (None, *claim.get("controls", []))


ROOT = Path(__file__).resolve().parents[1]


def test_the_report_starts_without_torch():
    """``report`` reads MLflow only: importing it imports no torch (seconds), so it starts in
    a moment (``bench/report_start.py`` times it)."""
    code = "import sys, orchestrator.report; print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
