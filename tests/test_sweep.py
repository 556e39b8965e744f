"""The sweep CLI end to end: real Ray Tune trials recorded in a real (sqlite) MLflow store."""

import csv
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mvtec_fixture import make_mvtec
from ucsd_fixture import make_ucsd

from orchestrator import rescore, summary, sweep
from orchestrator.tracking import unparam
from orchestrator.trainable import FAULTS_VARIABLE
from search_spaces import dsprites, mvtec

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
def test_digits_quick_sweep_trains_once_and_scores_the_whole_grid(tmp_path):
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
    assert "Scores of trial" in done.stdout

    client, parent, children = _runs(tmp_path, "quick")
    assert parent.info.status == "FINISHED"
    # artifacts beside the database, wherever the trials ran
    assert parent.info.artifact_uri == (tmp_path / "mlruns" / "digits").as_uri() + (
        f"/{parent.info.run_id}/artifacts"
    )
    parent_files = _artifacts(client, parent.info.run_id)
    assert {"summary.csv", "summary.md", "scores.csv", "scores.md", "trials.png"} <= parent_files
    (child,) = children  # one training
    assert child.info.status == "FINISHED" and child.data.tags["ray.trial_id"]
    epochs = int(parent.data.params["space.epochs"])
    history = client.get_metric_history(child.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == list(range(epochs))

    # every combination of the grid on the one model, as flat metrics named as documented
    attention = [key.split("/") for key in child.data.metrics if key.startswith("attention/")]
    combinations = {tuple(parts[1:4]) + (parts[5],) for parts in attention if len(parts) == 7}
    layers, formulations, quantities, scores = (set(c) for c in zip(*combinations, strict=True))
    assert len(layers) >= 2 and len(formulations) >= 3 and len(quantities) >= 2
    assert scores == {"mean", "max"}
    assert len(combinations) == len(layers) * len(formulations) * len(quantities) * 2
    for key in [k for k in child.data.metrics if k.endswith("/image_auroc")]:
        assert 0.0 <= child.data.metrics[key] <= 1.0
        history = client.get_metric_history(child.info.run_id, key)
        assert [m.step for m in history] == [epochs - 1]  # logged once, at the last epoch
    assert "recon/none/mean/image_auroc" in child.data.metrics

    files = _artifacts(client, child.info.run_id)
    overlays = {f for f in files if f.startswith("overlays/") and f.endswith(".png")}
    assert "overlays/inlier_1.png" in overlays and len(overlays) == 10  # inlier + 9 outliers
    assert {"config.json", "scores.csv", "model/model.pt", "model/normal_data.pt"} <= files
    scores = pd.read_csv(client.download_artifacts(child.info.run_id, "scores.csv", str(tmp_path)))
    assert len(scores) == len(combinations) + 2  # + recon at both image scores
    parent_scores = client.download_artifacts(parent.info.run_id, "scores.csv", str(tmp_path))
    assert len(pd.read_csv(parent_scores)) == len(scores)

    with open(tmp_path / "ray_results" / "quick" / "summary.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["mlflow_run_id"] for row in rows] == [child.info.run_id]


SEEDS = ["--set", 'seed={"grid_search": [0, 1]}']  # two trainings that differ by their seed


@pytest.mark.slow
def test_a_failing_trial_is_marked_failed_and_the_sweep_goes_on(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(FAULTS_VARIABLE, '{"nan_epoch": 1, "when": {"seed": 1}}')
    overrides = [*SEEDS, "--set", "epochs=3", "--scoring", 'target_layer=["encoder.2"]']
    code = sweep.main(["digits", "--quick", *overrides, *_sweep_args(tmp_path, "faulty")])
    assert code == 1
    assert "1 of 2 trials failed" in capsys.readouterr().out

    client, parent, children = _runs(tmp_path, "faulty")
    by_status = {child.info.status: child for child in children}
    assert set(by_status) == {"FINISHED", "FAILED"}
    failed = by_status["FAILED"]
    assert failed.data.params["seed"] == "1"
    error = failed.data.tags["vaecam.error"]
    assert "epoch 1" in error and "nan" in error
    assert [m.step for m in client.get_metric_history(failed.info.run_id, "val_loss")] == [0]
    assert not any(key.startswith("attention/") for key in failed.data.metrics)  # not scored

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
        "--scoring",
    ):
        assert flag in done.stdout


def test_unknown_experiment_lists_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        sweep.parse_args(["mvtecc"])
    assert exit_.value.code == 2
    assert "digits" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set", "inliers=3"], "unknown setting 'inliers'; valid settings: .*inlier"),
        (["--set", "lr=abc"], "lr='abc': expected a number > 0"),
        (["--set", "epochs=-1"], "epochs=-1: expected an integer >= 1"),
        (["--set", "inlier=11"], "inlier=11: expected an integer >= 0 and <= 9"),
        (["--set", 'lr={"grid_search": [0.1, -1]}'], "lr=-1: expected a number > 0"),
        (["--scoring", 'target_layer=["encoder.9"]'], "unknown target_layer 'encoder.9'"),
        (["--scoring", "formulation=gradcam"], "expected one of authors, per_channel"),
        (["--scoring", "colour=red"], "unknown scoring key colour"),
    ],
)
def test_bad_settings_and_scoring_fail_before_anything_starts(tmp_path, capsys, flags, message):
    assert sweep.main(["digits", "--quick", *flags, *_sweep_args(tmp_path, "bad")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "mlflow.db").exists()  # nothing recorded
    assert not (tmp_path / "ray_results").exists()


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
        for method in (mvtec.OURS["attention (ours)"].rsplit("/", 1)[0], "recon/none"):
            for metric in ("pixel_auroc", "aupro", "max/image_auroc"):
                assert 0 <= metrics[f"{method}/{metric}"] <= 1
        files = _artifacts(client, child.info.run_id)
        assert {"overlays/good.png", "figures/roc.png", "scores.csv"} <= files
    assert {"comparison.csv", "comparison.md"} <= _artifacts(client, parent.info.run_id)
    comparison = client.download_artifacts(parent.info.run_id, "comparison.csv", str(tmp_path))
    with open(comparison) as file:
        rows = {row["category"]: row for row in csv.DictReader(file)}
    assert set(rows) == {"grid", "bottle", "mean (2 swept)"}
    assert float(rows["grid"]["paper"]) == 0.73 and float(rows["bottle"]["AE-SSIM"]) == 0.93
    by_category = {c.data.params["category"]: c for c in children}
    assert float(rows["grid"]["attention (ours)"]) == pytest.approx(
        by_category["grid"].data.metrics[mvtec.OURS["attention (ours)"]]
    )


@pytest.mark.parametrize(
    ("categories", "message"),
    [("grid,hazlenut", "category='hazlenut': expected one of bottle"), ("carpet", "carpet")],
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
    metrics = child.data.metrics
    for method in ("attention/encoder.6/authors/normal_difference", "recon", "average_recon"):
        for metric in ("pixel_auroc", "max/frame_auroc", "max/frame_eer", "pixel_criterion_eer"):
            assert 0 <= metrics[f"{method}/none/{metric}"] <= 1
    assert {"overlays/anomalous.png", "overlays/normal.png"} <= _artifacts(
        client, child.info.run_id
    )


@pytest.mark.slow
def test_a_crashed_trial_resumes_into_its_one_mlflow_run(tmp_path, capsys, monkeypatch):
    args = _sweep_args(tmp_path, "crash")
    monkeypatch.setenv(FAULTS_VARIABLE, '{"exit_epoch": 2, "when": {"seed": 1}}')  # one dies
    faults = [*SEEDS, "--set", "epochs=4", "--scoring", 'target_layer=["encoder.2"]']
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
    assert summary.read_text().splitlines()[0] == columns  # the same space: the seed grid
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
    searched = ["model", "seed"]
    seeds = summary.aggregate_over_seeds(table, dsprites, searched, {}).set_index("model")
    assert seeds.loc["factor_vae", "n_seeds"] == 2
    assert seeds.loc["factor_vae", "factor_vae_score_mean"] == pytest.approx(0.7)
    assert seeds.loc["factor_vae", "factor_vae_score_std"] == pytest.approx(0.1414213, rel=1e-5)
    assert seeds.loc["ad_factor_vae", "n_seeds"] == 1  # the errored seed is left out
    assert math.isnan(seeds.loc["ad_factor_vae", "mig_std"])
    assert seeds.loc["factor_vae", "reproduction"].startswith("0.805")

    # one model, fixed (--set model=ad_factor_vae): its references still come with its row
    fixed = {"model": "ad_factor_vae"}
    one = summary.aggregate_over_seeds(
        table[table.model == "ad_factor_vae"], dsprites, ["seed"], fixed
    )
    assert len(one) == 1
    assert one.loc[0, "reproduction"] == dsprites.REFERENCE["ad_factor_vae"]["reproduction"]


def test_comparison_picks_each_categorys_best_trial_by_validation_loss_only():
    table = pd.DataFrame(
        {  # sorted best first by val_loss, as summarise returns it
            "trial_id": ["a", "b", "c"],
            "status": ["OK", "OK", "OK"],
            "category": ["grid", "grid", "bottle"],
            "val_loss": [1.0, 2.0, 1.5],
            "attention (ours)": [0.6, 0.9, 0.7],  # b is better on the test, not selected
            "recon (ours)": [0.5, 0.5, 0.8],
            "attention AUPRO (ours)": [0.2, 0.3, 0.4],
            "recon AUPRO (ours)": [0.1, 0.1, 0.3],
        }
    )
    comparison = summary.compare_with_reference(table, mvtec).set_index("category")
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


@pytest.mark.slow
def test_rescore_adds_a_changed_grid_to_the_same_runs_without_training(tmp_path, monkeypatch):
    args = _sweep_args(tmp_path, "again")
    small = ["--set", "epochs=3", "--scoring", 'target_layer=["encoder.2"]']
    small += ["--scoring", 'formulation=["per_dim"]', "--scoring", 'quantity=["mu"]']
    assert sweep.main(["digits", "--quick", *small, *args]) == 0
    client, parent, (child,) = _runs(tmp_path, "again")
    run_id = child.info.run_id
    weights = client.download_artifacts(run_id, "model/model.pt", str(tmp_path / "before"))
    old_key = "attention/encoder.2/per_dim/mu/none/max/image_auroc"
    old_value = child.data.metrics[old_key]
    shutil.rmtree(tmp_path / "ray_results")  # rescoring needs MLflow only

    # In this process, with training made impossible: no optimiser, no training step.
    def no_training(*args, **kwargs):
        raise AssertionError("rescoring trained")

    monkeypatch.setattr("torch.optim.Adam", no_training)
    monkeypatch.setattr("vaecam.training.train_step", no_training)
    grid = rescore.sweep_grid(_params(parent), [])
    combinations, _ = rescore.rescore_run(client.tracking_uri, run_id, "anomaly", grid, "cpu")
    assert combinations == 4  # the sweep's own grid again: attention and recon, two scores
    monkeypatch.undo()

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    changed = ["--scoring", 'formulation=["per_dim", "authors"]']
    changed += ["--scoring", 'normalisation=["none", "minmax"]']
    assert rescore.main(["--name", "again", "--tracking-uri", uri, *changed]) == 0

    client, parent_after, children = _runs(tmp_path, "again")
    assert [c.info.run_id for c in children] == [run_id]  # no new run
    runs = client.search_runs([parent.info.experiment_id])
    assert len(runs) == 2  # the parent and its one child: nothing else was created
    metrics = children[0].data.metrics
    assert "attention/encoder.2/authors/mu/minmax/mean/image_auroc" in metrics  # added
    assert metrics[old_key] == old_value  # scored again, the same value
    for key in (old_key, "attention/encoder.2/authors/mu/none/max/image_auroc"):
        assert len(client.get_metric_history(run_id, key)) == 1  # never doubled
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [0, 1, 2]
    again = client.download_artifacts(run_id, "model/model.pt", str(tmp_path / "after"))
    assert open(weights, "rb").read() == open(again, "rb").read()
    scores = pd.read_csv(client.download_artifacts(run_id, "scores.csv", str(tmp_path)))
    assert len(scores) == (2 + 1) * 2 * 2  # 2 attention maps + recon, 2 normalisations, 2 scores
    parent_scores = client.download_artifacts(parent_after.info.run_id, "scores.csv", str(tmp_path))
    assert len(pd.read_csv(parent_scores)) == len(scores)


def _params(run) -> dict:
    return {key: unparam(value) for key, value in run.data.params.items()}


def test_rescore_refuses_an_unknown_sweep(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert rescore.main(["--name", "nowhere", "--tracking-uri", uri]) == 2
    assert "no sweep 'nowhere'" in capsys.readouterr().err
