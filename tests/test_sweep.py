"""The sweep CLI end to end: real Ray Tune trials recorded in a real (sqlite) MLflow store."""

import collections
import csv
import json
import math
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import ray
import torch
from mlflow import MlflowClient
from PIL import Image
from test_report import cited_rows, verdict_rows

from orchestrator import report, rescore, results, summary, sweep
from orchestrator.space import SpaceError
from orchestrator.tracking import flat_scores, read_scores, start_sweep, unparam
from orchestrator.trainable import FAULTS_VARIABLE
from search_spaces import mvtec
from search_spaces.digits import DIGITS
from search_spaces.dsprites import DSPRITES
from search_spaces.mnist import MNIST
from search_spaces.mvtec import MVTEC
from vaecam.data.synthetic import make_mvtec, make_ucsd
from vaecam.scoring import scoring_grid

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


#: The score table of ``sweep digits --quick`` (seeds fixed: the defaults), made by the code
#: before its refactors: a refactor changes no number, to the last digit. A change meant to
#: change numbers replaces it with the table the failing test leaves in test-artifacts/.
GOLDEN = Path(__file__).parent / "golden" / "digits_quick_scores.csv"


def _same_as_golden(scores: Path) -> None:
    """``scores`` (a sweep's ``scores.csv``) equals :data:`GOLDEN`, every cell as text, rows in
    the grid's order (the trial ids, drawn anew by each sweep, left out)."""

    def table(path: Path) -> pd.DataFrame:
        found = pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns="trial_id")
        keys = ["latent_dim", "method", "target_layer", "formulation", "quantity"]
        return found.sort_values([*keys, "normalisation", "image_score"], ignore_index=True)

    found, golden = table(scores), table(GOLDEN)
    if not found.equals(golden):
        artifacts = ROOT / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        shutil.copy(scores, artifacts / GOLDEN.name)
        if found.shape != golden.shape:
            raise AssertionError(f"{found.shape} score table, {golden.shape} in {GOLDEN}")
        cells = found.ne(golden).stack()
        differ = [
            f"row {row} ({'/'.join(found.loc[row, found.columns[:7]])}): {column} "
            f"{found.at[row, column]}, golden {golden.at[row, column]}"
            for row, column in cells[cells].index[:5]
        ]
        raise AssertionError(
            f"{len(cells[cells])} cells differ from {GOLDEN}, e.g.\n"
            + "\n".join(differ)
            + f"\n(the new table: test-artifacts/{GOLDEN.name})"
        )


@pytest.mark.slow
def test_digits_quick_sweep_trains_two_models_a_person_can_compare(tmp_path):
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
    # the console: a progress table of a few columns, the headline per trial, where the rest is
    assert "Headline per trial" in done.stdout and "image_auroc/authors_code" in done.stdout
    assert "scores.csv and scores.md on the sweep's parent run" in done.stdout
    # no line wider than 200 characters, but a link (a terminal cannot wrap one)
    lines = done.stdout.splitlines()
    wide = [line for line in lines if len(line) > 200 and not line.lstrip().startswith("http")]
    assert not wide, wide

    client, parent, children = _runs(tmp_path, "quick")
    assert parent.info.status == "FINISHED"
    # opens as model training in MLflow 3's UI, not as a GenAI app
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # artifacts beside the database, wherever the trials ran
    assert parent.info.artifact_uri == (tmp_path / "mlruns" / "digits").as_uri() + (
        f"/{parent.info.run_id}/artifacts"
    )
    parent_files = _artifacts(client, parent.info.run_id)
    assert {"summary.csv", "summary.md", "scores.csv", "scores.md", "trials.png"} <= parent_files
    assert len(children) == 2  # two latent sizes: something to compare
    assert {unparam(c.data.params["latent_dim"]) for c in children} == {8, 32}
    epochs = int(parent.data.params["space.epochs"])
    grid = len(scoring_grid(DIGITS.scoring))
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["ray.trial_id"]
        history = client.get_metric_history(child.info.run_id, "val_loss")
        assert sorted(m.step for m in history) == list(range(epochs))
        # metrics a person can read: the headline and the losses, short names
        metrics = child.data.metrics
        assert len(metrics) <= 80 and max(map(len, metrics)) <= 48
        headline = {key for key in metrics if key.startswith("image_auroc/")}
        controls = ("recon", "energy", "gradient_energy", "random", "untrained", "latent_distance")
        assert headline == {f"image_auroc/{name}" for name in ("authors_code", *controls)}
        for key in headline:
            assert 0.0 <= metrics[key] <= 1.0
            history = client.get_metric_history(child.info.run_id, key)
            assert [m.step for m in history] == [epochs - 1]  # logged once, at the last epoch
        assert "system/cpu_utilization_percentage" in metrics  # on by default, --quick too

        # the whole grid as an MLflow table, gathered across runs by mlflow.load_table
        files = _artifacts(client, child.info.run_id)
        assert {"config.json", "scores.csv", "scores.json", "model/model.pt"} <= files
        assert "model/normal_data.pt" in files
        overlays = {f for f in files if f.startswith("overlays/") and f.endswith(".png")}
        assert {f.split("/")[1] for f in overlays} == {"inlier_1"} | {
            f"outlier_{d}" for d in range(10) if d != 1
        }
        steps = _image_steps(client, child.info.run_id)
        for group in ("inlier_1", "outlier_7"):  # one square picture per (group, map)
            for name in ("authors_code", "recon", "energy", "random"):
                assert steps[f"{group}/{name}"] == [epochs - 1]
        assert len(steps["training/attention"]) == 10
    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_experiment(experiment_id=parent.info.experiment_id)
    table = mlflow.load_table(
        "scores.json", run_ids=[c.info.run_id for c in children], extra_columns=["run_id"]
    )
    assert len(table) == 2 * grid and grid >= 48
    for control in ("recon", "energy", "gradient_energy", "random", "latent_distance"):
        assert control in set(table.method)
    random = table[table.method == "random"]
    assert (random.image_auroc_ci_low <= 0.5).all() and (random.image_auroc_ci_high >= 0.5).all()
    # the headline metric is the table's number
    child = children[0]
    reading = DIGITS.claims[0]["select"]
    row = table[
        (table.run_id == child.info.run_id)
        & np.logical_and.reduce([table[key] == value for key, value in reading.items()])
    ]
    assert child.data.metrics["image_auroc/authors_code"] == pytest.approx(row.image_auroc.item())
    parent_scores = client.download_artifacts(parent.info.run_id, "scores.csv", str(tmp_path))
    assert len(pd.read_csv(parent_scores)) == len(table)
    _same_as_golden(Path(parent_scores))

    # the parent run carries the outcome: the best trial, its headline, its datasets
    with open(tmp_path / "ray_results" / "quick" / "summary.csv") as file:
        rows = list(csv.DictReader(file))
    best = rows[0]["mlflow_run_id"]
    assert {row["mlflow_run_id"] for row in rows} == {c.info.run_id for c in children}
    parent = client.get_run(parent.info.run_id)
    assert parent.data.tags["best_trial"] == best
    best_metrics = client.get_run(best).data.metrics
    assert parent.data.metrics["val_loss"] == best_metrics["val_loss"]
    for key in headline:
        assert parent.data.metrics[key] == pytest.approx(best_metrics[key])
    assert {d.dataset.name for d in parent.inputs.dataset_inputs} == {"sklearn_digits"}

    # provenance on every run: the command as typed, the code's commit, what ran it
    for run in (parent, *children):
        tags = run.data.tags
        assert tags["vaecam.command"].endswith(
            "-m orchestrator.sweep digits --quick " + shlex.join(_sweep_args(tmp_path, "quick"))
        )
        assert tags["mlflow.source.name"] == "orchestrator.sweep"
        assert tags["mlflow.source.git.commit"] == _git_head()
        assert tags["vaecam.version.torch"] == torch.__version__.split("+")[0]


def _git_head() -> str:
    """The checkout's commit, as the sweep's driver records it ("unknown" outside git)."""
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def _image_steps(client: MlflowClient, run_id: str) -> dict[str, list[int]]:
    """Image key -> the steps it was logged at (from MLflow's file names:
    ``images/<key, / as ~>+step+<step>+timestamp+...png``)."""
    steps = collections.defaultdict(list)
    for item in client.list_artifacts(run_id, "images"):
        if item.path.endswith(".png"):
            key, _, step, *_ = item.path.removeprefix("images/").split("+")
            steps[key.replace("~", "/")].append(int(step))
    return {key: sorted(found) for key, found in steps.items()}


@pytest.mark.slow
def test_asha_stops_trials_early_and_seeds_replicate_each_configuration(
    tmp_path, capsys, ray_session
):
    args = _sweep_args(tmp_path, "asha")
    flags = ["--set", "epochs=4", "--set", 'lr={"grid_search": [3e-3, 1e-5]}', "--seeds", "2"]
    flags += ["--set", "latent_dim=8"]  # one latent size: the learning rates are what differs
    flags += ["--scheduler", "asha", "--grace-period", "1", "--reduction-factor", "4"]
    flags += ["--checkpoint-every", "2", "--system-metrics", "--system-metrics-every", "1"]
    flags += ["--scoring", 'method=["attention", "recon"]', "--scoring", 'target_layer="encoder.2"']
    flags += ["--scoring", 'formulation="authors"', "--scoring", 'quantity="mu"']
    assert sweep.main(["digits", "--quick", *flags, *args]) == 0
    out = capsys.readouterr().out
    assert "The scheduler stopped" in out and "planned epochs" in out

    client, parent, children = _runs(tmp_path, "asha")
    assert len(children) == 4  # 2 learning rates x 2 seeds
    stopped = [run for run in children if "vaecam.stopped_early" in run.data.tags]
    finished = [run for run in children if run.info.status == "FINISHED"]
    assert stopped and len(stopped) + len(finished) == 4
    assert {run.data.params["lr"] for run in stopped} == {"1e-05"}  # the hopeless rate
    for run in stopped:  # not scored as if it had finished, and said so
        assert run.info.status == "KILLED" and run.data.tags["vaecam.planned_epochs"] == "4"
        scores = ("attention/", "recon/", "image_auroc/")
        assert not any(key.startswith(scores) for key in run.data.metrics)
        trial = run.data.tags["ray.trial_id"]
        last = (tmp_path / "ray_results" / "asha" / trial / "result.json").read_text()
        assert json.loads(last.splitlines()[-1])["stopped_early"] is True  # Ray's own record
    table = pd.read_csv(tmp_path / "ray_results" / "asha" / "summary.csv")
    assert set(table.status) == {"OK", "STOPPED"}
    assert (table[table.status == "STOPPED"].epochs_done < 4).all()
    assert "stopped" in parent.data.tags["vaecam.scheduler_saving"]

    # every configuration on both seeds, aggregated over them on the parent run
    assert sorted(run.data.params["seed"] for run in children) == ["0", "0", "1", "1"]
    seeds = pd.read_csv(client.download_artifacts(parent.info.run_id, "seeds.csv", str(tmp_path)))
    assert set(seeds[seeds.lr == 3e-3].n_seeds) == {2}

    for run in finished:
        # a checkpoint every second epoch (and the last), in Ray's record of the trial
        lines = (tmp_path / "ray_results" / "asha" / run.data.tags["ray.trial_id"]).joinpath(
            "result.json"
        )
        results = [json.loads(line) for line in lines.read_text().splitlines()]
        assert [r["epoch"] for r in results if r["checkpoint_dir_name"]] == [1, 3]
        # the dataset read, with a digest of its files, one input per split
        inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        assert set(inputs) == {"training", "validation", "testing"}
        profiles = {context: json.loads(d.profile) for context, d in inputs.items()}
        assert {p["sha256"] for p in profiles.values()} == {profiles["training"]["sha256"]}
        assert (
            len(profiles["training"]["sha256"]) == 64 and profiles["testing"]["num_images"] == 540
        )
        assert all(d.name == "sklearn_digits" and d.digest for d in inputs.values())
        assert (
            "-m orchestrator.sweep digits --quick --set epochs=4" in run.data.tags["vaecam.command"]
        )
        assert run.data.tags["vaecam.version.ray"] == ray.__version__
        assert run.data.metrics["system/cpu_utilization_percentage"] >= 0
    # the same images under the same keys in every trial: the UI compares them side by side
    keys = [set(_image_steps(client, run.info.run_id)) for run in finished]
    assert all(found == keys[0] for found in keys) and "inlier_1/authors_code" in keys[0]


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
        (["--scoring", "formulation=gradcam"], "expected one of authors, authors_per_image"),
        (["--scoring", "colour=red"], "unknown scoring key colour"),
    ],
)
def test_bad_settings_and_scoring_fail_before_anything_starts(tmp_path, capsys, flags, message):
    assert sweep.main(["digits", "--quick", *flags, *_sweep_args(tmp_path, "bad")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "mlflow.db").exists()  # nothing recorded
    assert not (tmp_path / "ray_results").exists()


def test_resume_checks_there_is_a_sweep_before_touching_mlflow(tmp_path, capsys):
    args = _sweep_args(tmp_path, "gone")
    assert sweep.main(["digits", "--resume", *args]) == 2
    assert "no sweep to resume at" in capsys.readouterr().err
    # a finished sweep resumed from the wrong --storage-path stays as it was
    tracking = start_sweep(f"sqlite:///{tmp_path / 'mlflow.db'}", "digits", "done", {})
    client = MlflowClient(tracking.uri)
    client.set_terminated(tracking.parent_run_id, "FINISHED")
    assert sweep.main(["digits", "--resume", *_sweep_args(tmp_path, "done")]) == 2
    assert client.get_run(tracking.parent_run_id).info.status == "FINISHED"


def test_resume_accepts_the_original_flags_again_and_refuses_other_values(tmp_path):
    params = {"quick": True, "max_failures": 2, "max_concurrent": 0, "overrides": []}
    start_sweep(f"sqlite:///{tmp_path / 'mlflow.db'}", "digits", "again", params)
    args = _sweep_args(tmp_path, "again")
    same = sweep.parse_args(["digits", "--quick", "--resume", "--max-failures", "2", *args])
    sweep.restore_space_flags(same)  # the original command with --resume appended
    assert same.max_failures == 2 and same.quick
    other = sweep.parse_args(["digits", "--resume", "--max-failures", "3", *args])
    with pytest.raises(SpaceError, match="--max-failures 3 differs from the sweep's 2"):
        sweep.restore_space_flags(other)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--name", "../x"], "--name '../x': expected letters"),
        (["--name", "it's"], '--name "it\'s": expected letters'),
        (["--cpus-per-trial", "-1"], "--cpus-per-trial -1.0: expected > 0"),
        (["--max-concurrent", "-3"], "--max-concurrent -3: expected >= 0"),
        (["--num-samples", "-1"], "--num-samples -1: expected >= 1"),
        (["--num-samples", "0"], "--num-samples 0: expected >= 1"),
        (["--max-failures", "-2"], "--max-failures -2: expected >= -1"),
        (["--restart-errored"], "--restart-errored needs --resume"),
    ],
)
def test_bad_flags_are_refused_before_anything_starts(tmp_path, capsys, flags, message):
    args = ["digits", "--quick", *_sweep_args(tmp_path, "flags"), *flags]
    with pytest.raises(SystemExit) as exit_:
        sweep.main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()


def test_gpus_that_are_not_there_are_refused_on_a_local_run(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    args = ["digits", "--quick", "--gpus-per-trial", "1", *_sweep_args(tmp_path, "gpu")]
    assert sweep.main(args) == 2
    assert "--gpus-per-trial 1.0: this machine has no GPU" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()


def test_a_name_that_exists_needs_resume(tmp_path, capsys):
    start_sweep(f"sqlite:///{tmp_path / 'mlflow.db'}", "digits", "taken", {})
    assert sweep.main(["digits", "--quick", *_sweep_args(tmp_path, "taken")]) == 2
    error = capsys.readouterr().err
    assert "a sweep of that name exists" in error and "--resume" in error
    (tmp_path / "ray_results" / "folder").mkdir(parents=True)
    assert sweep.main(["digits", "--quick", *_sweep_args(tmp_path, "folder")]) == 2


def test_a_name_too_long_for_a_folder_is_refused_naming_the_limit(tmp_path, capsys):
    args = ["digits", "--quick", *_sweep_args(tmp_path, "n" * 500)]
    with pytest.raises(SystemExit) as exit_:
        sweep.main(args)
    assert exit_.value.code == 2
    assert f"--name: 500 characters, expected at most {sweep.MAX_NAME}" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()
    # a campaign's sweeps are NAME-EXPERIMENT: its name has room left for the longest one
    with pytest.raises(SystemExit):
        sweep.parse_args(["all", "--name", "c" * (sweep.MAX_NAME - 1)])
    assert all(len(name) <= sweep.MAX_NAME for name in [sweep.parse_args(["digits"]).name])


def test_a_storage_path_that_cannot_be_written_is_refused_before_ray_starts(tmp_path):
    command = [sys.executable, "-m", "orchestrator.sweep", "digits", "--quick"]
    args = _sweep_args(tmp_path, "proc") + ["--storage-path", "/proc/x"]
    done = subprocess.run(command + args, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        "error: --storage-path /proc/x: cannot write there (No such file or directory); choose "
        "a folder you can write (shared storage, NFS or s3://, on a multi-node cluster)"
    ]
    assert "Ray" not in done.stdout and not (tmp_path / "mlflow.db").exists()
    # a writable path that does not exist yet passes, and the check leaves nothing behind
    sweep.check_storage(str(tmp_path / "new" / "results"))
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_a_sweep_that_fails_before_its_first_saved_state_can_be_run_again_as_it_was(
    tmp_path, capsys, monkeypatch, ray_session
):
    """The test hook: the storage path stops being writable (it becomes a file: root writes
    through permissions) after the parent run exists and before Tune saves anything."""
    args = ["digits", "--quick", "--set", "epochs=2", "--set", "latent_dim=8"]
    args += _sweep_args(tmp_path, "again")
    storage = tmp_path / "ray_results"
    opened = []

    def open_then_break_storage(*given):
        opened.append(open_sweep(*given))
        storage.rmdir()
        storage.write_text("not a folder")
        return opened[-1]

    open_sweep = sweep.open_sweep
    monkeypatch.setattr(sweep, "open_sweep", open_then_break_storage)
    storage.mkdir()
    assert sweep.main(args) == 1
    error = capsys.readouterr().err
    assert "stopped before Ray Tune saved its first state" in error
    assert "run the same command again" in error
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    failed = client.get_run(opened[0].parent_run_id)
    assert failed.info.status == "FAILED" and failed.info.lifecycle_stage == "deleted"
    assert failed.data.tags["vaecam.error"]
    monkeypatch.setattr(sweep, "open_sweep", open_sweep)
    storage.unlink()  # writable again: the same command starts the sweep
    assert sweep.main(args) == 0
    _, parent, children = _runs(tmp_path, "again")
    assert parent.info.status == "FINISHED" and len(children) == 1


def test_default_names_are_unique_under_parallel_launches():
    names = {sweep.parse_args(["digits"]).name for _ in range(50)}
    assert len(names) == 50 and all(sweep.NAME.fullmatch(name) for name in names)


def test_missing_mnist_is_one_clear_error_before_anything_starts(tmp_path, capsys):
    args = _sweep_args(tmp_path, "nodata") + ["--set", "download=false"]
    assert sweep.main(["mnist", "--quick", *args]) == 2
    message = capsys.readouterr().err
    assert str(tmp_path / "data" / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "digits" in message
    assert not (tmp_path / "mlflow.db").exists()  # nothing recorded for a sweep that never ran


@pytest.mark.slow
def test_mvtec_quick_sweep_reports_localisation_metrics_beside_the_paper(
    tmp_path, capsys, ray_session
):
    root = make_mvtec(tmp_path / "mvtec", categories=("grid", "bottle"), size=32)
    args = _sweep_args(tmp_path, "mvtec") + ["--data-root", str(root)]
    args += ["--categories", "grid,bottle", "--set", "image_size=32", "--set", "epochs=2"]
    assert sweep.main(["mvtec", "--quick", *args]) == 0
    out = capsys.readouterr().out
    assert "vs published" in out and "AE-SSIM" in out

    client, parent, children = _runs(tmp_path, "mvtec", experiment="mvtec")
    assert {child.data.params["category"] for child in children} == {"grid", "bottle"}
    scores = {c.info.run_id: flat_scores(read_scores(client, c.info.run_id)) for c in children}
    for child in children:
        metrics = scores[child.info.run_id]  # the score table's numbers
        for method in (mvtec.PAPER_READING, mvtec.REPRODUCTION_READING, "recon/none"):
            for metric in ("pixel_auroc", "aupro", "max/image_auroc"):
                assert 0 <= metrics[f"{method}/{metric}"] <= 1
        # as metrics, the headline: the paper's reading and the controls that have a map
        assert {"pixel_auroc/papers_equations", "pixel_auroc/recon", "pixel_auroc/random"} <= set(
            child.data.metrics
        )
        files = _artifacts(client, child.info.run_id)
        assert {"overlays/good/maps-01-08.png", "figures/roc.png", "scores.json"} <= files
    assert {"comparison.csv", "comparison.md"} <= _artifacts(client, parent.info.run_id)
    comparison = client.download_artifacts(parent.info.run_id, "comparison.csv", str(tmp_path))
    with open(comparison) as file:
        rows = {row["category"]: row for row in csv.DictReader(file)}
    assert set(rows) == {"grid", "bottle", "mean (2 swept)"}
    assert float(rows["grid"]["paper"]) == 0.73 and float(rows["bottle"]["AE-SSIM"]) == 0.93
    by_category = {c.data.params["category"]: c for c in children}
    for label in (PAPERS, "attention, reproduction's code (ours)"):  # both readings
        assert float(rows["grid"][label]) == pytest.approx(
            scores[by_category["grid"].info.run_id][MVTEC.ours[label]]
        )

    # the report: a row per category, each number the metric it cites, no verdict on
    # generated data
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    capsys.readouterr()
    assert report.main(["--name", "mvtec", "--tracking-uri", uri, "--out", str(tmp_path)]) == 0
    assert (
        f"Logged on the run: http://127.0.0.1:5000/#/experiments/{parent.info.experiment_id}/runs?"
        in capsys.readouterr().out
    )
    assert {"report.md", "report.html"} <= _artifacts(client, parent.info.run_id)
    text = (tmp_path / "report.md").read_text()
    verdicts = verdict_rows(text)
    assert {(row["group"], row["reading"]) for row in verdicts} == {
        (group, reading) for group in ("grid", "bottle") for reading in mvtec.READINGS
    }
    for row in verdicts:
        (run_id,) = row["runs"].split()
        metric, (found,) = cited_rows(client, row["scores.json row"], [run_id])
        cited = [found[metric], found[f"{metric}_ci_low"], found[f"{metric}_ci_high"]]
        assert row["ours [95%]"] == "{:.3f} [{:.3f}, {:.3f}]".format(*cited)
        assert row["verdict"].startswith("no verdict: not the paper's data")
    assert "(synthetic)" in text and (tmp_path / "report.html").stat().st_size > 10_000


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


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _sixteen_bit(path: Path) -> None:
    Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)).save(path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [(_truncate, "cannot read image"), (_empty, "cannot read image"), (_sixteen_bit, "mode")],
)
def test_a_broken_image_fails_the_data_check_naming_it(tmp_path, capsys, damage, message):
    root = make_mvtec(tmp_path / "mvtec", categories=("grid",), size=32)
    broken = sorted((root / "grid" / "test").rglob("*.png"))[-1]
    damage(broken)
    args = _sweep_args(tmp_path, "broken") + ["--data-root", str(root), "--categories", "grid"]
    assert sweep.main(["mvtec", "--quick", *args]) == 2
    error = capsys.readouterr().err
    assert str(broken) in error and message in error
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()


@pytest.mark.slow
def test_ucsd_quick_sweep_reports_attention_and_both_baselines(tmp_path, ray_session):
    root = make_ucsd(tmp_path / "ucsd", n_test=3, masked_clips=(1, 2))
    args = _sweep_args(tmp_path, "ucsd") + ["--data-root", str(root)]
    args += ["--set", "image_size=24", "--set", "epochs=2", "--set", "val_clips=1"]
    assert sweep.main(["ucsd", "--quick", *args]) == 0
    client, parent, children = _runs(tmp_path, "ucsd", experiment="ucsd")
    (child,) = children
    metrics = flat_scores(read_scores(client, child.info.run_id))  # the score table's numbers
    for method in ("attention/encoder.6/authors/mu", "recon", "average_recon"):
        for metric in ("pixel_auroc", "max/frame_auroc", "max/frame_eer", "pixel_criterion_eer"):
            assert 0 <= metrics[f"{method}/none/{metric}"] <= 1
    # as metrics, each claim's headline: the paper's reading beside both baselines
    for metric in ("pixel_auroc", "frame_auroc"):
        for name in ("papers_equations", "recon", "average_recon"):
            assert 0 <= child.data.metrics[f"{metric}/{name}"] <= 1
    files = _artifacts(client, child.info.run_id)
    assert any(f.startswith("overlays/anomalous/maps-") for f in files)
    assert any(f.startswith("overlays/normal/maps-") for f in files)


@pytest.mark.slow
def test_failed_and_crashed_optuna_trials_are_marked_and_resume_into_their_runs(
    tmp_path, capsys, monkeypatch, ray_session
):
    args = _sweep_args(tmp_path, "faults")
    faults = '[{"nan_epoch": 1, "when": {"seed": 2}}, {"exit_epoch": 2, "when": {"seed": 1}}]'
    monkeypatch.setenv(FAULTS_VARIABLE, faults)  # seed 2's loss turns NaN, seed 1's node dies
    # Optuna samples lr and latent dim once, replicated over three seeds (the full digits space
    # at one inlier); a checkpoint every epoch
    flags = ["--set", "inlier=1", "--seeds", "3", "--set", "epochs=4", "--num-samples", "1"]
    flags += ["--search", "optuna", "--checkpoint-every", "1", "--no-system-metrics"]
    flags += ["--scoring", 'target_layer=["encoder.2"]', "--scoring", 'quantity=["mu"]']
    assert sweep.main(["digits", *flags, *args]) == 1
    out = capsys.readouterr().out
    assert "2 of 3 trials failed" in out
    assert "python -m orchestrator.sweep digits --resume --name faults" in out

    client, parent, before = _runs(tmp_path, "faults")
    assert parent.data.params["search"] == "optuna"
    sampled = {(child.data.params["lr"], child.data.params["latent_dim"]) for child in before}
    assert len(sampled) == 1  # one suggestion, on every seed
    by_seed = {child.data.params["seed"]: child for child in before}
    assert {seed: run.info.status for seed, run in by_seed.items()} == {
        "0": "FINISHED",
        "1": "FAILED",
        "2": "FAILED",
    }
    error = by_seed["2"].data.tags["vaecam.error"]
    assert "epoch 1" in error and "nan" in error
    for seed, steps in (("1", [0, 1]), ("2", [0])):
        history = client.get_metric_history(by_seed[seed].info.run_id, "val_loss")
        assert [m.step for m in history] == steps
        assert not any(key.startswith("attention/") for key in by_seed[seed].data.metrics)
    summary = tmp_path / "ray_results" / "faults" / "summary.csv"
    with open(summary) as file:
        rows = {row["seed"]: row for row in csv.DictReader(file)}
    assert rows["2"]["status"] == "ERROR" and "nan" in rows["2"]["error"]
    assert rows["0"]["status"] == "OK"
    columns = summary.read_text().splitlines()[0]

    assert sweep.main(["digits", "--resume", "--set", "epochs=9", *args]) == 2
    assert "--set ['epochs=9'] differs from the sweep's" in capsys.readouterr().err
    # the printed command has no --quick nor --set: the sweep's own come from its parent run
    assert sweep.main(["digits", "--resume", *args]) == 0
    assert summary.read_text().splitlines()[0] == columns  # the same space: the seed grid
    client, parent_after, after = _runs(tmp_path, "faults")
    assert parent_after.info.run_id == parent.info.run_id  # the sweep stays one parent run
    assert sorted(c.info.run_id for c in after) == sorted(c.info.run_id for c in before)
    for child in after:
        assert child.info.status == "FINISHED"
        assert "vaecam.error" not in child.data.tags  # the recovered failure is cleared
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")]
        assert sorted(steps) == [0, 1, 2, 3]  # contiguous, nothing logged twice
    with open(summary) as file:
        assert all(row["status"] == "OK" and not row["error"] for row in csv.DictReader(file))
    again = next(c for c in after if c.info.run_id == by_seed["0"].info.run_id)
    assert again.info.end_time == by_seed["0"].info.end_time  # the finished trial did not rerun


def test_seed_table_gives_mean_and_interval_per_configuration_beside_the_references():
    scored = pd.DataFrame(  # the finished trials' score rows: dSprites has one per trial
        {
            "model": ["factor_vae", "factor_vae", "factor_vae", "ad_factor_vae"],
            "seed": [0, 1, 2, 0],
            "factor_vae_score": [0.6, 0.8, 0.7, 0.9],
            "mig": [0.1, 0.3, 0.2, 0.2],
            "recon_error": [30.0, 40.0, 35.0, 35.0],
        }
    )
    searched = ["model", "seed"]
    seeds = summary.aggregate(scored, DSPRITES, searched, ("seed",), {}).set_index("model")
    assert seeds.loc["factor_vae", "n_seeds"] == 3
    assert seeds.loc["factor_vae", "factor_vae_score_mean"] == pytest.approx(0.7)
    assert seeds.loc["factor_vae", "factor_vae_score_std"] == pytest.approx(0.1)
    half = 4.302652729749464 * 0.1 / math.sqrt(3)  # t(0.975, 2 dof) * sd / sqrt(n)
    assert seeds.loc["factor_vae", "factor_vae_score_ci_low"] == pytest.approx(0.7 - half)
    assert seeds.loc["factor_vae", "factor_vae_score_ci_high"] == pytest.approx(0.7 + half)
    assert seeds.loc["ad_factor_vae", "n_seeds"] == 1
    assert math.isnan(seeds.loc["ad_factor_vae", "mig_std"])
    assert math.isnan(seeds.loc["ad_factor_vae", "mig_ci_low"])  # one seed: no interval
    assert seeds.loc["factor_vae", "reproduction"].startswith("0.805")

    # one model, fixed (--set model=ad_factor_vae): its references still come with its row
    fixed = {"model": "ad_factor_vae"}
    one = summary.aggregate(
        scored[scored.model == "ad_factor_vae"], DSPRITES, ["seed"], ("seed",), fixed
    )
    assert len(one) == 1
    assert one.loc[0, "reproduction"] == DSPRITES.reference["ad_factor_vae"]["reproduction"]


def test_scores_are_pooled_per_combination_over_seeds_and_inliers():
    rows = []
    for inlier, seed, method, value in [
        (0, 0, "recon", 0.9),
        (0, 1, "recon", 0.8),
        (1, 0, "recon", 0.7),
        (1, 1, "recon", 0.6),
        (0, 0, "random", 0.5),
        (0, 1, "random", 0.5),
        (1, 0, "random", 0.5),
        (1, 1, "random", 0.5),
    ]:
        combination = {"method": method, "target_layer": "", "normalisation": "none"}
        rows.append({"inlier": inlier, "seed": seed, **combination, "image_auroc": value})
    scored = pd.DataFrame(rows)
    per_inlier = summary.aggregate(scored, MNIST, ["inlier", "seed"], ("seed",), {})
    assert len(per_inlier) == 4 and set(per_inlier.n_seeds) == {2}
    pooled = summary.aggregate(scored, MNIST, ["inlier", "seed"], ("seed", "inlier"), {})
    pooled = pooled.set_index("method")
    assert pooled.loc["recon", "n_seeds_and_inliers"] == 4
    assert pooled.loc["recon", "image_auroc_mean"] == pytest.approx(0.75)
    assert pooled.loc["random", "image_auroc_std"] == 0
    text = summary.readable(pooled.reset_index(), ["image_auroc"], 0.3)
    assert text.image_auroc_mean.tolist() == ["0.750 [0.545, 0.955]", "0.500 [0.500, 0.500] ~"]


def test_readable_tables_mark_what_is_not_distinguishable_from_chance():
    frame = pd.DataFrame(
        {
            "method": ["attention", "random"],
            "image_auroc": [0.8, 0.52],
            "image_auroc_ci_low": [0.7, 0.45],
            "image_auroc_ci_high": [0.9, 0.6],
            "image_auroc_n_pos": [90, 90],
            "image_auroc_n_neg": [10, 10],
            "average_precision": [0.95, 0.91],  # chance: the positive rate, 0.9
            "average_precision_ci_low": [0.92, 0.88],
            "average_precision_ci_high": [0.97, 0.93],
            "average_precision_n_pos": [90, 90],
            "average_precision_n_neg": [10, 10],
        }
    )
    text = summary.readable(frame, ["image_auroc", "average_precision"], 0.3)
    assert text.image_auroc.tolist() == ["0.800 [0.700, 0.900]", "0.520 [0.450, 0.600] ~"]
    assert text.average_precision.tolist() == ["0.950 [0.920, 0.970]", "0.910 [0.880, 0.930] ~"]
    assert text.image_auroc_n.tolist() == ["90+/10-", "90+/10-"]
    assert results.chance("aupro", 1, 1, 0.3) == pytest.approx(0.15)


PAPERS = "attention, paper's equations (ours)"


def test_comparison_picks_each_categorys_best_trial_by_validation_loss_only():
    table = pd.DataFrame(
        {  # sorted best first by val_loss, as summarise returns it
            "trial_id": ["a", "b", "c"],
            "status": ["OK", "OK", "OK"],
            "category": ["grid", "grid", "bottle"],
            "val_loss": [1.0, 2.0, 1.5],
            PAPERS: [0.6, 0.9, 0.7],  # b is better on the test, not selected
            "attention, reproduction's code (ours)": [0.5, 0.8, 0.6],
            "recon (ours)": [0.5, 0.5, 0.8],
            "attention AUPRO, paper's equations (ours)": [0.2, 0.3, 0.4],
            "recon AUPRO (ours)": [0.1, 0.1, 0.3],
        }
    )
    for label in MVTEC.ours:  # the trials' intervals
        table[f"{label} low"], table[f"{label} high"] = table[label] - 0.1, table[label] + 0.1
    comparison = summary.compare_with_reference(table, MVTEC).set_index("category")
    assert comparison.loc["grid", "trial_id"] == "a"
    assert comparison.loc["grid", PAPERS] == 0.6
    assert comparison.loc["grid", f"{PAPERS} low"] == pytest.approx(0.5)
    assert comparison.loc["grid", "paper"] == 0.73
    assert comparison.loc["mean (2 swept)", PAPERS] == pytest.approx(0.65)


#: A dSprites trial in seconds: a tiny model, a few iterations, small metric samples.
TINY_DSPRITES = {
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


@pytest.mark.slow
def test_dsprites_quick_sweep_aggregates_seeds_beside_the_published_numbers(
    tmp_path, capsys, ray_session
):
    overrides = [arg for key, value in TINY_DSPRITES.items() for arg in ("--set", f"{key}={value}")]
    args = _sweep_args(tmp_path, "dsprites")
    overrides += ["--set", "model=ad_factor_vae"]  # one model, two seeds: two trials
    assert sweep.main(["dsprites", "--quick", *overrides, *args]) == 0
    assert "Mean and 95% interval (t, over trials) across seeds" in capsys.readouterr().out
    client, parent, children = _runs(tmp_path, "dsprites", experiment="dsprites")
    assert len(children) == 2  # AD-FactorVAE, two seeds
    assert {"seeds.csv", "seeds.md", "scatter.png"} <= _artifacts(client, parent.info.run_id)
    seeds = client.download_artifacts(parent.info.run_id, "seeds.csv", str(tmp_path))
    with open(seeds) as file:
        (row,) = csv.DictReader(file)
    assert row["n_seeds"] == "2" and float(row["factor_vae_score_std"]) >= 0
    assert row["reproduction"].startswith("0.854")  # the fixed model's published numbers
    for child in children:
        assert {"figures/traversals.png", "figures/attention_per_dim.png"} <= _artifacts(
            client, child.info.run_id
        )


@pytest.mark.slow
def test_rescore_adds_a_changed_grid_to_the_same_runs_without_training(
    tmp_path, monkeypatch, ray_session
):
    args = _sweep_args(tmp_path, "again")
    small = [
        "--set",
        "epochs=3",
        "--set",
        "latent_dim=8",
        "--scoring",
        'target_layer=["encoder.2"]',
    ]
    small += ["--log-metrics", "all"]  # every combination a metric: rescoring doubles none
    small += ["--scoring", 'formulation=["per_dim"]', "--scoring", 'quantity=["mu"]']
    small += ["--scoring", 'method=["attention", "recon"]']
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
    combinations, _ = rescore.rescore_run(
        client.tracking_uri, run_id, DIGITS.experiment(), grid, "cpu"
    )
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
    assert "no MLflow store there" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()  # not created by the lookup
    start_sweep(uri, "digits", "somewhere", {})
    assert rescore.main(["--name", "nowhere", "--tracking-uri", uri]) == 2
    assert "no sweep 'nowhere'" in capsys.readouterr().err
