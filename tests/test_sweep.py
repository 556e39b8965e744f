"""The sweep CLI end to end: real Ray Tune trials recorded in a real (sqlite) MLflow store."""

import csv
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mvtec_fixture import make_mvtec
from ucsd_fixture import make_ucsd

from orchestrator import sweep

ROOT = Path(__file__).resolve().parents[1]


def _sweep_args(tmp_path: Path, name: str) -> list[str]:
    return [
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--storage-path",
        str(tmp_path / "ray_results"),
        "--data-root",
        str(tmp_path / "data"),
        "--name",
        name,
    ]


def _runs(tmp_path: Path, name: str, experiment: str = "digits"):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(experiment)
    parents = client.search_runs([experiment.experiment_id], f"tags.`vaecam.sweep` = '{name}'")
    assert len(parents) == 1
    parent = parents[0]
    children = client.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    return client, parent, children


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.mark.slow
def test_digits_quick_sweep_records_nested_runs_with_metrics_and_overlays(tmp_path):
    command = [sys.executable, "-m", "orchestrator.sweep", "digits", "--quick"]
    done = subprocess.run(
        command + _sweep_args(tmp_path, "quick"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "/#/experiments/" in done.stdout and "mlflow ui --backend-store-uri" in done.stdout

    client, parent, children = _runs(tmp_path, "quick")
    assert parent.info.status == "FINISHED"
    # artifacts beside the database, wherever the trials ran
    assert parent.info.artifact_uri == (tmp_path / "mlruns" / "digits").as_uri() + (
        f"/{parent.info.run_id}/artifacts"
    )
    assert {"summary.csv", "summary.md", "trials.png"} <= _artifacts(client, parent.info.run_id)
    assert len(children) >= 2
    epochs = parent.data.params["space.epochs"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["ray.trial_id"]
        history = client.get_metric_history(child.info.run_id, "val_loss")
        assert sorted(m.step for m in history) == list(range(int(epochs)))
        for key in ("attention_image_auroc", "recon_image_auroc"):
            assert 0.0 <= child.data.metrics[key] <= 1.0
        files = _artifacts(client, child.info.run_id)
        overlays = {f for f in files if f.startswith("overlays/") and f.endswith(".png")}
        assert "overlays/inlier_1.png" in overlays and len(overlays) == 10  # inlier + 9 outliers
        assert {"config.json", "model/model.pt"} <= files
    formulations = {child.data.params["formulation"] for child in children}
    assert formulations == {"per_dim", "authors"}

    with open(tmp_path / "ray_results" / "quick" / "summary.csv") as file:
        rows = list(csv.DictReader(file))
    assert {row["mlflow_run_id"] for row in rows} == {c.info.run_id for c in children}


@pytest.mark.slow
def test_a_failing_trial_is_marked_failed_and_the_sweep_goes_on(tmp_path, capsys):
    overrides = [
        "--set",
        "formulation=authors",
        "--set",
        'fault_nan_epoch={"grid_search": [null, 1]}',  # a grid: one trial fails, one does not
        "--set",
        "epochs=3",
    ]
    code = sweep.main(["digits", "--quick", *overrides, *_sweep_args(tmp_path, "faulty")])
    assert code == 1
    assert "1 of 2 trials failed" in capsys.readouterr().out

    client, parent, children = _runs(tmp_path, "faulty")
    by_status = {child.info.status: child for child in children}
    assert set(by_status) == {"FINISHED", "FAILED"}
    failed = by_status["FAILED"]
    assert (
        "epoch 1" in failed.data.tags["vaecam.error"] and "nan" in failed.data.tags["vaecam.error"]
    )
    assert [m.step for m in client.get_metric_history(failed.info.run_id, "val_loss")] == [0]

    with open(tmp_path / "ray_results" / "faulty" / "summary.csv") as file:
        rows = {row["status"]: row for row in csv.DictReader(file)}
    assert rows["ERROR"]["mlflow_run_id"] == failed.info.run_id
    assert "nan" in rows["ERROR"]["error"]
    assert rows["OK"]["mlflow_run_id"] == by_status["FINISHED"].info.run_id


def test_help_works_when_run_as_a_file_from_another_directory(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "orchestrator" / "sweep.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for flag in (
        "--quick",
        "--num-samples",
        "--max-concurrent",
        "--gpus-per-trial",
        "--data-root",
        "--tracking-uri",
        "--storage-path",
        "--name",
    ):
        assert flag in done.stdout


def test_unknown_experiment_lists_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        sweep.parse_args(["mvtecc"])
    assert exit_.value.code == 2
    assert "digits" in capsys.readouterr().err


def test_unknown_setting_lists_the_valid_ones():
    with pytest.raises(SystemExit, match="inlier"):
        sweep.apply_overrides({"inlier": 1}, ["inliers=3"])


def test_resume_refuses_what_ray_would_ignore_and_a_sweep_it_cannot_find(tmp_path, capsys):
    args = _sweep_args(tmp_path, "gone")
    with pytest.raises(SystemExit) as exit_:
        sweep.parse_args(["digits", "--resume", "--max-failures", "2", *args])
    assert exit_.value.code == 2 and "Ray restores the sweep's own" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no MLflow parent run of sweep 'gone'"):
        sweep.main(["digits", "--resume", *args])


def test_missing_mnist_is_one_clear_error_before_anything_starts(tmp_path, capsys):
    args = _sweep_args(tmp_path, "nodata") + ["--set", "download=false"]
    assert sweep.main(["mnist", "--quick", *args]) == 2
    message = capsys.readouterr().err
    assert str(tmp_path / "data" / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "digits" in message
    assert not (tmp_path / "mlflow.db").exists()  # nothing recorded for a sweep that never ran


@pytest.mark.slow
def test_mvtec_quick_sweep_reports_localisation_metrics_beside_the_paper(tmp_path, capsys):
    root = make_mvtec(tmp_path / "mvtec", categories=("grid", "bottle"), size=32)
    args = _sweep_args(tmp_path, "mvtec") + ["--data-root", str(root)]
    args += ["--categories", "grid,bottle", "--set", "image_size=32", "--set", "epochs=2"]
    assert sweep.main(["mvtec", "--quick", *args]) == 0
    out = capsys.readouterr().out
    assert "vs published" in out and "AE-SSIM" in out

    client, parent, children = _runs(tmp_path, "mvtec", experiment="mvtec")
    assert {child.data.params["category"] for child in children} == {"grid", "bottle"}
    for child in children:
        metrics = child.data.metrics
        for method in ("attention", "recon"):
            for metric in ("pixel_auroc", "aupro", "image_auroc"):
                assert 0 <= metrics[f"{method}_{metric}"] <= 1
        category = child.data.params["category"]
        assert {f"figures/localisation_{category}.png", f"figures/roc_{category}.png"} <= (
            _artifacts(client, child.info.run_id)
        )
    assert {"comparison.csv", "comparison.md"} <= _artifacts(client, parent.info.run_id)
    comparison = client.download_artifacts(parent.info.run_id, "comparison.csv", str(tmp_path))
    with open(comparison) as file:
        rows = {row["category"]: row for row in csv.DictReader(file)}
    assert set(rows) == {"grid", "bottle", "mean (2 swept)"}
    assert float(rows["grid"]["paper"]) == 0.73 and float(rows["bottle"]["AE-SSIM"]) == 0.93
    by_category = {c.data.params["category"]: c for c in children}
    assert float(rows["grid"]["attention (ours)"]) == pytest.approx(
        by_category["grid"].data.metrics["attention_pixel_auroc"]
    )


@pytest.mark.parametrize(
    ("categories", "message"),
    [("grid,hazlenut", "unknown MVTec AD category 'hazlenut'"), ("carpet", "carpet")],
)
def test_bad_mvtec_categories_fail_before_anything_starts(tmp_path, capsys, categories, message):
    root = make_mvtec(tmp_path / "mvtec", categories=("grid",), size=32)
    args = _sweep_args(tmp_path, "bad") + ["--data-root", str(root), "--categories", categories]
    assert sweep.main(["mvtec", "--quick", *args]) == 2
    error = capsys.readouterr().err
    assert message in error
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_ucsd_quick_sweep_reports_attention_and_both_baselines(tmp_path):
    root = make_ucsd(tmp_path / "ucsd", n_test=3, masked_clips=(1, 2))
    args = _sweep_args(tmp_path, "ucsd") + ["--data-root", str(root)]
    args += ["--set", "image_size=24", "--set", "epochs=2", "--set", "val_clips=1"]
    assert sweep.main(["ucsd", "--quick", *args]) == 0
    client, parent, children = _runs(tmp_path, "ucsd", experiment="ucsd")
    (child,) = children
    for method in ("attention", "recon", "average_recon"):
        for metric in ("pixel_auroc", "frame_auroc", "frame_eer", "pixel_criterion_eer"):
            assert 0 <= child.data.metrics[f"{method}_{metric}"] <= 1
    assert "figures/localisation.png" in _artifacts(client, child.info.run_id)


@pytest.mark.slow
def test_a_crashed_trial_resumes_into_its_one_mlflow_run(tmp_path, capsys):
    args = _sweep_args(tmp_path, "crash")
    faults = ["--set", "formulation=authors", "--set", "epochs=4"]
    faults += ["--set", 'fault_exit_epoch={"grid_search": [null, 2]}']  # one trial dies
    assert sweep.main(["digits", "--quick", *faults, *args]) == 1
    out = capsys.readouterr().out
    assert "python -m orchestrator.sweep digits --resume --name crash" in out

    client, parent, before = _runs(tmp_path, "crash")
    status = {c.data.tags["ray.trial_id"]: c.info.status for c in before}
    assert sorted(status.values()) == ["FAILED", "FINISHED"]
    crashed = next(c for c in before if c.info.status == "FAILED")
    assert [m.step for m in client.get_metric_history(crashed.info.run_id, "val_loss")] == [0, 1]
    finished = next(c for c in before if c.info.status == "FINISHED")
    summary = tmp_path / "ray_results" / "crash" / "summary.csv"
    columns = summary.read_text().splitlines()[0]

    with pytest.raises(SystemExit, match="--set .* differs from the sweep's"):
        sweep.main(["digits", "--resume", "--set", "epochs=9", *args])
    # the printed command has no --quick nor --set: the sweep's own come from its parent run
    assert sweep.main(["digits", "--resume", *args]) == 0
    assert summary.read_text().splitlines()[0] == columns  # the same space, fault_exit_epoch
    client, parent_after, after = _runs(tmp_path, "crash")
    assert parent_after.info.run_id == parent.info.run_id  # the sweep stays one parent run
    assert sorted(c.info.run_id for c in after) == sorted(c.info.run_id for c in before)
    for child in after:
        assert child.info.status == "FINISHED"
        assert "vaecam.error" not in child.data.tags  # the recovered failure is cleared
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")]
        assert sorted(steps) == [0, 1, 2, 3]  # contiguous, nothing logged twice
    with open(summary) as file:
        assert all(row["status"] == "OK" and not row["error"] for row in csv.DictReader(file))
    again = next(c for c in after if c.info.run_id == finished.info.run_id)
    assert again.info.end_time == finished.info.end_time  # the finished trial did not rerun


def test_seed_table_gives_mean_and_std_per_configuration_beside_the_references():
    from search_spaces import dsprites

    space = dsprites.QUICK
    table = pd.DataFrame(
        {
            "status": ["OK", "OK", "OK", "ERROR"],
            "model": ["factor_vae", "factor_vae", "ad_factor_vae", "ad_factor_vae"],
            "seed": [0, 1, 0, 1],
            "factor_vae_score": [0.6, 0.8, 0.9, math.nan],
            "mig": [0.1, 0.3, 0.2, math.nan],
            "recon_error": [30.0, 40.0, 35.0, math.nan],
        }
    )
    assert isinstance(space["seed"], dict) and isinstance(space["model"], dict)
    seeds = sweep.aggregate_over_seeds(table, dsprites, space).set_index("model")
    assert seeds.loc["factor_vae", "n_seeds"] == 2
    assert seeds.loc["factor_vae", "factor_vae_score_mean"] == pytest.approx(0.7)
    assert seeds.loc["factor_vae", "factor_vae_score_std"] == pytest.approx(0.1414213, rel=1e-5)
    assert seeds.loc["ad_factor_vae", "n_seeds"] == 1  # the errored seed is left out
    assert math.isnan(seeds.loc["ad_factor_vae", "mig_std"])
    assert seeds.loc["factor_vae", "reproduction"].startswith("0.805")

    # one model, fixed (--set model=ad_factor_vae): its references still come with its row
    fixed = space | {"model": "ad_factor_vae"}
    one = sweep.aggregate_over_seeds(table[table.model == "ad_factor_vae"], dsprites, fixed)
    assert len(one) == 1
    assert one.loc[0, "reproduction"] == dsprites.REFERENCE["ad_factor_vae"]["reproduction"]


def test_comparison_picks_each_categorys_best_trial_by_validation_loss_only():
    from search_spaces import mvtec

    table = pd.DataFrame(
        {  # sorted best first by val_loss, as summarise returns it
            "trial_id": ["a", "b", "c"],
            "status": ["OK", "OK", "OK"],
            "category": ["grid", "grid", "bottle"],
            "val_loss": [1.0, 2.0, 1.5],
            "attention_pixel_auroc": [0.6, 0.9, 0.7],  # b is better on the test, not selected
            "recon_pixel_auroc": [0.5, 0.5, 0.8],
            "attention_aupro": [0.2, 0.3, 0.4],
            "recon_aupro": [0.1, 0.1, 0.3],
        }
    )
    comparison = sweep.compare_with_reference(table, mvtec).set_index("category")
    assert comparison.loc["grid", "trial_id"] == "a"
    assert comparison.loc["grid", "attention (ours)"] == 0.6
    assert comparison.loc["grid", "paper"] == 0.73
    assert comparison.loc["mean (2 swept)", "attention (ours)"] == pytest.approx(0.65)


@pytest.mark.slow
def test_dsprites_quick_sweep_aggregates_seeds_beside_the_published_numbers(tmp_path, capsys):
    tiny = {
        "model_options": '{"widths": [4, 4, 8, 8], "hidden": 16, "discriminator_hidden": 16}',
        "latent_dim": "3",
        "batch_size": "8",
        "iterations": "4",
        "eval_every": "2",
        "metric_every": "1",
        "val_size": "16",
        "metric_num_train": "20",
        "metric_num_eval": "10",
        "metric_num_variance": "64",
        "mig_num_train": "64",
        "figure_examples": "2",
    }
    overrides = [arg for key, value in tiny.items() for arg in ("--set", f"{key}={value}")]
    args = _sweep_args(tmp_path, "dsprites")
    assert sweep.main(["dsprites", "--quick", *overrides, *args]) == 0
    assert "Mean and std over seeds" in capsys.readouterr().out
    client, parent, children = _runs(tmp_path, "dsprites", experiment="dsprites")
    assert len(children) == 4  # FactorVAE and AD-FactorVAE, two seeds each
    assert {"seeds.csv", "seeds.md", "scatter.png"} <= _artifacts(client, parent.info.run_id)
    seeds = client.download_artifacts(parent.info.run_id, "seeds.csv", str(tmp_path))
    with open(seeds) as file:
        rows = {row["model"]: row for row in csv.DictReader(file)}
    assert set(rows) == {"factor_vae", "ad_factor_vae"}
    assert all(row["n_seeds"] == "2" for row in rows.values())
    assert rows["ad_factor_vae"]["reproduction"].startswith("0.854")
    for child in children:
        assert {"figures/traversals.png", "figures/attention_per_dim.png"} <= _artifacts(
            client, child.info.run_id
        )
