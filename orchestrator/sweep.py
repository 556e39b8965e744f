"""Run an experiment's search space as a Ray Tune sweep recorded in MLflow.

python -m orchestrator.sweep digits --quick      # offline, minutes on a laptop CPU
python -m orchestrator.sweep mnist --data-root ./data
python orchestrator/sweep.py mnist ...           # as a file too (what ``ray submit`` runs)
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

if not __package__:  # run as a file: make the checkout importable as when installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
import ray  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from pyarrow import fs  # noqa: E402
from ray import tune  # noqa: E402

from orchestrator.tracking import (  # noqa: E402
    ERROR_TAG,
    TRIAL_TAG,
    Tracking,
    sqlite_path,
    start_sweep,
    sweep_params,
)
from orchestrator.trainable import train_trial  # noqa: E402
from search_spaces import SPACES  # noqa: E402
from vaecam.data import DataFormatError, DataNotFoundError  # noqa: E402
from vaecam.experiments import EXPERIMENTS  # noqa: E402
from vaecam.figures import compare_trials, scatter_figure  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.sweep",
        description="Run EXPERIMENT's search space as a Ray Tune sweep; every trial is an MLflow "
        "run nested under one parent run for the sweep.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("experiment", choices=sorted(SPACES), help="which search space to run")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the search space's small budget: minutes on a 2-core CPU, every artifact produced",
    )
    parser.add_argument(
        "--num-samples",
        type=int,
        help="samples of the random dimensions per grid point (default: the search space's)",
    )
    parser.add_argument(
        "--max-concurrent", type=int, default=0, help="trials at once; 0: as resources allow"
    )
    parser.add_argument(
        "--cpus-per-trial", type=float, default=1.0, help="CPUs reserved for each trial"
    )
    parser.add_argument(
        "--gpus-per-trial",
        type=float,
        default=0.0,
        help="GPUs per trial; fractions share one GPU (0.25: four trials per GPU); 0: train on "
        "the CPU. Explicit, never inferred from the cluster",
    )
    parser.add_argument(
        "--data-root", type=Path, default=Path("data"), help="folder holding the datasets"
    )
    parser.add_argument(
        "--tracking-uri",
        default=f"sqlite:///{Path('mlflow.db').resolve()}",
        help="MLflow store: a sqlite file (absolute path) or an http://HOST:PORT server",
    )
    parser.add_argument(
        "--storage-path",
        default=str(Path("ray_results").resolve()),
        help="where Ray Tune keeps results and checkpoints; shared storage (NFS, s3://, gs://) "
        "on a multi-node cluster",
    )
    parser.add_argument(
        "--name",
        help="name of the sweep: Ray's results folder and MLflow's parent run "
        "(default: EXPERIMENT-YYYYmmdd-HHMMSS)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted sweep --name (default: the latest EXPERIMENT sweep in "
        "--storage-path): finished trials are kept, errored ones continue from their last "
        "checkpoint, each in its own MLflow run; --quick, --num-samples, --categories and --set "
        "are the sweep's own, read from its MLflow parent run",
    )
    parser.add_argument(
        "--restart-errored",
        action="store_true",
        help="with --resume: start errored trials over instead of from their checkpoints",
    )
    parser.add_argument(
        "--max-failures",
        type=int,
        default=0,
        help="retries of a failed trial, each from its last checkpoint (-1: unlimited)",
    )
    parser.add_argument(
        "--categories",
        type=lambda text: [c for c in text.split(",") if c],
        help="comma-separated categories to sweep instead of the space's, e.g. grid,hazelnut "
        "(for sweeps with a category dimension, such as mvtec)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one setting of every trial, e.g. --set epochs=5 (VALUE is JSON, else text)",
    )
    args = parser.parse_args(argv)
    if args.restart_errored and not args.resume:
        parser.error("--restart-errored needs --resume")
    if args.resume and (args.max_concurrent or args.max_failures):
        parser.error(
            "--max-concurrent and --max-failures have no effect with --resume: Ray restores "
            "the sweep's own"
        )
    if args.resume and not args.name:
        args.name = latest_sweep(args.storage_path, args.experiment)
        if not args.name:
            parser.error(
                f"--resume: no {args.experiment} sweep in {args.storage_path}; pass --name"
            )
    args.name = args.name or f"{args.experiment}-{time.strftime('%Y%m%d-%H%M%S')}"
    return args


def latest_sweep(storage_path: str, experiment: str) -> str | None:
    """The newest ``EXPERIMENT-*`` sweep folder in a local ``storage_path``, if any."""
    folders = Path(storage_path).glob(f"{experiment}-*") if "://" not in storage_path else []
    folders = sorted((f for f in folders if f.is_dir()), key=lambda f: f.stat().st_mtime)
    return folders[-1].name if folders else None


#: The flags that define a sweep's search space, with their values when not given; the
#: sweep's parent run records them and ``--resume`` takes them from there.
SPACE_FLAGS = {"quick": False, "num_samples": None, "categories": None, "overrides": []}


def restore_space_flags(args: argparse.Namespace) -> None:
    """On ``--resume``, set :data:`SPACE_FLAGS` in ``args`` as the sweep started with them.

    Ray restores every trial's config itself, but the driver's data check and summary build the
    space from these flags: without them, resuming an ``mvtec --quick --categories grid`` sweep
    would check all 15 categories. A flag given again must have its recorded value."""
    recorded = sweep_params(args.tracking_uri, args.experiment, args.name)
    if recorded is None:
        raise SystemExit(
            f"--resume: no MLflow parent run of sweep {args.name!r} in {args.tracking_uri}; "
            "check --name, or pass the --tracking-uri it was recorded in"
        )
    for flag, unset in SPACE_FLAGS.items():
        if flag not in recorded:  # a sweep recorded before the flag was
            continue
        given = getattr(args, flag)
        if given != unset and given != recorded[flag]:
            option = "--set" if flag == "overrides" else "--" + flag.replace("_", "-")
            raise SystemExit(
                f"--resume: {option} {given!r} differs from the sweep's {recorded[flag]!r}; "
                "leave it out: the sweep resumes as it started"
            )
        setattr(args, flag, recorded[flag])


def apply_overrides(
    space: dict[str, Any], overrides: list[str], categories: list[str] | None = None
) -> dict[str, Any]:
    """``space`` with each ``KEY=VALUE`` applied and the category grid narrowed to
    ``categories``; an unknown key lists the valid ones."""
    space = dict(space)
    if categories:
        if "category" not in space:
            raise SystemExit("--categories: this sweep has no category dimension")
        space["category"] = tune.grid_search(categories)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or key not in space:
            raise SystemExit(
                f"--set {item!r}: expected KEY=VALUE with KEY one of: {', '.join(sorted(space))}"
            )
        try:
            space[key] = json.loads(text)
        except json.JSONDecodeError:
            space[key] = text
    return space


def searched_keys(space: dict[str, Any]) -> list[str]:
    """The dimensions Tune varies: grid searches and sampled domains."""
    return [
        key
        for key, value in space.items()
        if isinstance(value, tune.search.sample.Domain)
        or (isinstance(value, dict) and "grid_search" in value)
    ]


def run_sweep(
    search_space: ModuleType,
    space: dict[str, Any],
    args: argparse.Namespace,
) -> tuple[tune.ResultGrid, Tracking]:
    """Prepare the data, open the sweep's MLflow parent run, and run the Tuner."""
    params = {
        "experiment": args.experiment,
        **{flag: getattr(args, flag) for flag in SPACE_FLAGS},
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "storage_path": args.storage_path,
        "metric": search_space.METRIC,
        "mode": search_space.MODE,
    } | {f"space.{key}": value for key, value in space.items()}
    tracking = start_sweep(args.tracking_uri, args.experiment, args.name, params)

    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, tracking=tracking),
        {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial},
    )
    path = f"{args.storage_path.rstrip('/')}/{args.name}"
    if args.resume:
        if not tune.Tuner.can_restore(path):
            raise SystemExit(f"--resume: no sweep to resume at {path}")
        tuner = tune.Tuner.restore(
            path,
            trainable,
            resume_errored=not args.restart_errored,
            restart_errored=args.restart_errored,
        )
        return tuner.fit(), tracking
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=search_space.METRIC,
            mode=search_space.MODE,
            num_samples=args.num_samples,
            max_concurrent_trials=args.max_concurrent or None,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=args.name,
            storage_path=args.storage_path,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=args.max_failures),
            verbose=1,
        ),
    )
    return tuner.fit(), tracking


def summarise(
    results: tune.ResultGrid, tracking: Tracking, search_space: ModuleType, space: dict[str, Any]
) -> pd.DataFrame:
    """One row per trial, best first by the sweep's metric (errored trials last, with their
    reason): the searched settings, the search space's ``SUMMARY`` metrics of the last report,
    and the trial's MLflow run."""
    client = MlflowClient(tracking.uri)
    children = client.search_runs(
        [tracking.experiment_id], f"tags.`mlflow.parentRunId` = '{tracking.parent_run_id}'"
    )
    runs = {run.data.tags.get(TRIAL_TAG): run for run in children}
    rows = []
    for result in results:
        metrics = result.metrics or {}
        trial_id = trial_id_of(result)
        run = runs.get(trial_id)
        error = run.data.tags.get(ERROR_TAG, "") if run and result.error else ""
        if result.error and not error:  # the process died (a crash, a lost node)
            error = str(result.error).strip().splitlines()[-1]
            if run:  # it could not close its own run
                client.set_tag(run.info.run_id, ERROR_TAG, error[:5000])
                client.set_terminated(run.info.run_id, "FAILED")
        rows.append(
            {"trial_id": trial_id, "status": "ERROR" if result.error else "OK"}
            | {key: result.config.get(key) for key in searched_keys(space)}
            | {"epochs_done": metrics.get("training_iteration", 0)}
            | {key: metrics.get(key, math.nan) for key in search_space.SUMMARY}
            | {"mlflow_run_id": run.info.run_id if run else "", "error": error}
        )
    table = pd.DataFrame(rows).sort_values(
        ["status", search_space.METRIC], ascending=[False, search_space.MODE == "min"]
    )
    return table.reset_index(drop=True)


def trial_dirname(trial: tune.experiment.Trial) -> str:
    """A trial's folder is named by its id: short (unix socket and path limits) and how a
    trial that failed before its first report is still found (``trial_id_of``)."""
    return trial.trial_id


def trial_id_of(result: tune.Result) -> str:
    return Path(result.path).name


def publish(
    table: pd.DataFrame,
    results: tune.ResultGrid,
    tracking: Tracking,
    search_space: ModuleType,
    space: dict[str, Any],
) -> None:
    """Print the summary, write it as CSV beside the Ray results, and put it (CSV, markdown and
    a figure comparing trials) on the sweep's parent run with the search space's comparison
    with published numbers or its aggregate over seeds; then close the parent run."""
    client = MlflowClient(tracking.uri)
    run_id = tracking.parent_run_id
    heading = f"Summary, best first by {search_space.METRIC} ({search_space.MODE})"
    post_table(client, run_id, "summary", table, heading, digits=4)
    filesystem, folder = fs.FileSystem.from_uri(results.experiment_path)
    with filesystem.open_output_stream(f"{folder}/summary.csv") as stream:
        stream.write(table.to_csv(index=False).encode())
    print(f"Summary CSV: {results.experiment_path}/summary.csv")

    with tempfile.TemporaryDirectory() as tmp:
        names = [f"{row.trial_id} ({row.status})" for row in table.itertuples()]
        values = {label: table[key].tolist() for label, key in search_space.COMPARE.items()}
        title = f"{len(table)} trials, best {search_space.METRIC} first"
        ylabel = " / ".join(search_space.COMPARE.values())
        path = compare_trials(names, values, Path(tmp) / "trials.png", title, ylabel)
        client.log_artifact(run_id, str(path))

    if hasattr(search_space, "REFERENCE_COLUMNS"):
        heading = f"Best trial per {search_space.GROUP_BY} (by {search_space.METRIC}) vs published"
        comparison = compare_with_reference(table, search_space)
        post_table(client, run_id, "comparison", comparison, heading)
    if hasattr(search_space, "AGGREGATE"):
        heading = f"Mean and std over {search_space.AGGREGATE_OVER}s per configuration"
        post_table(
            client, run_id, "seeds", aggregate_over_seeds(table, search_space, space), heading
        )
        x, y = search_space.SCATTER
        points = {
            ", ".join(map(str, label)): (group[x], group[y])
            for label, group in configurations(table[table.status == "OK"], search_space, space)
        }
        with tempfile.TemporaryDirectory() as tmp:
            title = f"{y} against {x}, one point per trial"
            path = scatter_figure(points, Path(tmp) / "scatter.png", title, x, y)
            client.log_artifact(run_id, str(path))

    errored = int((table.status == "ERROR").sum())
    client.set_tag(run_id, "vaecam.errored_trials", errored)
    client.set_terminated(run_id, "FAILED" if errored == len(table) else "FINISHED")


def post_table(
    client: MlflowClient, run_id: str, name: str, table: pd.DataFrame, heading: str, digits: int = 3
) -> None:
    """Print ``table`` under ``heading`` and log it as ``name``.csv and ``name``.md."""
    text = table.to_string(index=False, float_format=lambda v: f"{v:.{digits}f}")
    print(f"\n{heading}:\n{text}\n")
    client.log_text(run_id, table.to_csv(index=False), f"{name}.csv")
    client.log_text(run_id, markdown(table), f"{name}.md")


def configurations(
    finished: pd.DataFrame, search_space: ModuleType, space: dict[str, Any]
) -> list[tuple[tuple, pd.DataFrame]]:
    """Trials grouped by configuration: the searched settings other than ``AGGREGATE_OVER``
    (e.g. every seed of one model), as ``(values, rows)`` pairs."""
    keys = [k for k in searched_keys(space) if k != search_space.AGGREGATE_OVER]
    if not keys:
        return [(("all",), finished)]
    return [
        (values if isinstance(values, tuple) else (values,), group)
        for values, group in finished.groupby(keys, sort=False)
    ]


def compare_with_reference(table: pd.DataFrame, search_space: ModuleType) -> pd.DataFrame:
    """Per group (e.g. MVTec category): the best finished trial by the sweep's metric (never by
    a test metric), its ``OURS`` metrics beside the ``REFERENCE`` numbers, and a mean row."""
    finished = table[table.status == "OK"]  # already sorted best first
    best = finished.groupby(search_space.GROUP_BY, sort=False).head(1)
    rows = []
    for group, reference in search_space.REFERENCE.items():
        found = best[best[search_space.GROUP_BY] == group]
        ours = {
            label: (found[key].iloc[0] if len(found) else math.nan)
            for label, key in search_space.OURS.items()
        }
        trial = {"trial_id": found.trial_id.iloc[0] if len(found) else ""}
        rows.append(
            {search_space.GROUP_BY: group}
            | ours
            | dict(zip(search_space.REFERENCE_COLUMNS, reference, strict=True))
            | trial
        )
    comparison = pd.DataFrame(rows)
    swept = comparison[comparison.trial_id != ""]
    mean = {search_space.GROUP_BY: f"mean ({len(swept)} swept)"}
    mean |= swept.drop(columns=[search_space.GROUP_BY, "trial_id"]).mean().to_dict()
    return pd.concat([swept, pd.DataFrame([mean | {"trial_id": ""}])], ignore_index=True)


def aggregate_over_seeds(
    table: pd.DataFrame, search_space: ModuleType, space: dict[str, Any]
) -> pd.DataFrame:
    """Per configuration (the searched settings but ``AGGREGATE_OVER``, e.g. the seed): mean and
    standard deviation of the ``AGGREGATE`` metrics over its finished trials, the number of
    them, and the ``REFERENCE`` numbers of its ``REFERENCE_BY`` value."""
    keys = [k for k in searched_keys(space) if k != search_space.AGGREGATE_OVER]
    rows = []
    for values, group in configurations(table[table.status == "OK"], search_space, space):
        row = dict(zip(keys, values, strict=False))
        row[f"n_{search_space.AGGREGATE_OVER}s"] = len(group)
        for metric in search_space.AGGREGATE:
            row[f"{metric}_mean"] = group[metric].mean()
            row[f"{metric}_std"] = group[metric].std(ddof=1) if len(group) > 1 else math.nan
        reference_by = row.get(search_space.REFERENCE_BY, space.get(search_space.REFERENCE_BY))
        rows.append(row | search_space.REFERENCE.get(reference_by, {}))
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """``table`` as a GitHub-flavoured markdown table (MLflow renders .md artifacts)."""
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in table.values]
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


def resume_command(args: argparse.Namespace) -> str:
    """The exact command that resumes this sweep."""
    parts = ["python", "-m", "orchestrator.sweep", args.experiment, "--resume"]
    parts += ["--name", args.name, "--storage-path", args.storage_path]
    parts += ["--tracking-uri", args.tracking_uri, "--data-root", str(args.data_root.resolve())]
    parts += ["--cpus-per-trial", str(args.cpus_per_trial)]
    parts += ["--gpus-per-trial", str(args.gpus_per_trial)]
    return shlex.join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.resume:
        restore_space_flags(args)
    search_space = SPACES[args.experiment]
    space = search_space.QUICK if args.quick else search_space.SPACE
    space = apply_overrides(space, args.overrides, args.categories) | {
        "data_root": str(args.data_root.resolve()),
        "device": "cuda" if args.gpus_per_trial > 0 else "cpu",
    }
    if args.num_samples is None:
        args.num_samples = (
            search_space.QUICK_NUM_SAMPLES if args.quick else search_space.NUM_SAMPLES
        )
    try:  # missing or bad data: one clear error now, not one per trial
        EXPERIMENTS[space["experiment"]].prepare(space)
    except (DataNotFoundError, DataFormatError, ValueError, KeyError) as error:
        print(f"error: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return 2
    results, tracking = run_sweep(search_space, space, args)
    table = summarise(results, tracking, search_space, space)
    publish(table, results, tracking, search_space, space)
    db = sqlite_path(tracking.uri)
    if db:
        print(f"MLflow UI: mlflow ui --backend-store-uri sqlite:///{db}")
    print(f"then open {tracking.ui_link()}")
    failed = table[table.status == "ERROR"]
    if len(failed):
        print(f"{len(failed)} of {len(table)} trials failed: {', '.join(failed.trial_id)}")
        print(f"Resume them from their last checkpoints with:\n  {resume_command(args)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
