"""Run an experiment's search space as a Ray Tune sweep recorded in MLflow.

python -m orchestrator.sweep digits --quick      # offline, minutes on a laptop CPU
python -m orchestrator.sweep mnist --data-root ./data
python orchestrator/sweep.py mnist ...           # as a file too (what ``ray submit`` runs)
"""

from __future__ import annotations

import argparse
import shlex
import sys
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

from orchestrator import summary  # noqa: E402
from orchestrator.space import (  # noqa: E402
    SpaceError,
    build_scoring,
    build_space,
    check_space,
    prepare_data,
    searched_keys,
)
from orchestrator.tracking import (  # noqa: E402
    ERROR_TAG,
    TRIAL_TAG,
    Tracking,
    sqlite_path,
    start_sweep,
    sweep_params,
)
from orchestrator.trainable import Faults, train_trial  # noqa: E402
from search_spaces import SPACES  # noqa: E402
from vaecam.data import DataFormatError, DataNotFoundError  # noqa: E402
from vaecam.scoring import GRID_KEYS  # noqa: E402


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
        help="override one setting of every trial, e.g. --set epochs=5 (VALUE is JSON, else text; "
        "a JSON grid makes it a dimension: --set 'lr={\"grid_search\": [1e-3, 1e-4]}')",
    )
    parser.add_argument(
        "--scoring",
        metavar="KEY=JSON",
        action="append",
        default=[],
        help="replace one list of the scoring grid that every trained model is scored on, e.g. "
        '--scoring \'formulation=["per_dim", "authors"]\' (a lone name is a list of one); '
        f"KEY is one of {', '.join(GRID_KEYS)}",
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
SPACE_FLAGS = {
    "quick": False,
    "num_samples": None,
    "categories": None,
    "overrides": [],
    "scoring": [],
}


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
            option = {"overrides": "--set"}.get(flag, "--" + flag.replace("_", "-"))
            raise SystemExit(
                f"--resume: {option} {given!r} differs from the sweep's {recorded[flag]!r}; "
                "leave it out: the sweep resumes as it started"
            )
        setattr(args, flag, recorded[flag])


def run_sweep(
    search_space: ModuleType,
    space: dict[str, Any],
    scoring: dict[str, Any],
    args: argparse.Namespace,
) -> tuple[tune.ResultGrid, Tracking]:
    """Open the sweep's MLflow parent run and run the Tuner: every trial trains once and scores
    its model on the ``scoring`` grid."""
    params = {
        "experiment": args.experiment,
        **{flag: getattr(args, flag) for flag in SPACE_FLAGS},
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "storage_path": args.storage_path,
        "metric": search_space.METRIC,
        "mode": search_space.MODE,
        "searched": searched_keys(space),
    }
    params |= {f"space.{key}": value for key, value in space.items()}
    params |= {f"scoring.{key}": value for key, value in scoring.items()}
    tracking = start_sweep(args.tracking_uri, args.experiment, args.name, params)

    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    trainable = tune.with_resources(
        tune.with_parameters(
            train_trial,
            tracking=tracking,
            experiment=search_space.EXPERIMENT,
            scoring=scoring,
            faults=Faults.from_environment(),
        ),
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


def reconcile(results: tune.ResultGrid, tracking: Tracking) -> None:
    """Close the MLflow run of each trial whose process died (a crash, a lost node) and so could
    not close its own: FAILED, with Ray's reason."""
    client = MlflowClient(tracking.uri)
    runs = {run.data.tags.get(TRIAL_TAG): run for run in summary.child_runs(client, tracking)}
    for result in results:
        run = runs.get(trial_id_of(result))
        if result.error and run and run.info.status == "RUNNING":
            error = str(result.error).strip().splitlines()[-1]
            client.set_tag(run.info.run_id, ERROR_TAG, error[:5000])
            client.set_terminated(run.info.run_id, "FAILED")


def trial_dirname(trial: tune.experiment.Trial) -> str:
    """A trial's folder is named by its id: short (unix socket and path limits) and how a
    trial that failed before its first report is still found (``trial_id_of``)."""
    return trial.trial_id


def trial_id_of(result: tune.Result) -> str:
    return Path(result.path).name


def publish(
    results: tune.ResultGrid,
    tracking: Tracking,
    search_space: ModuleType,
    space: dict[str, Any],
) -> pd.DataFrame:
    """The summary (from MLflow: :func:`orchestrator.summary.publish`), also written as CSV
    beside the Ray results; then the parent run is closed. Returns the trials table."""
    client = MlflowClient(tracking.uri)
    searched = searched_keys(space)
    fixed = {key: value for key, value in space.items() if key not in searched}
    table, _ = summary.publish(client, tracking, search_space, searched, fixed)
    filesystem, folder = fs.FileSystem.from_uri(results.experiment_path)
    with filesystem.open_output_stream(f"{folder}/summary.csv") as stream:
        stream.write(table.to_csv(index=False).encode())
    print(f"Summary CSV: {results.experiment_path}/summary.csv")
    errored = int((table.status != "OK").sum())
    client.set_tag(tracking.parent_run_id, "vaecam.errored_trials", errored)
    status = "FAILED" if errored == len(table) else "FINISHED"
    client.set_terminated(tracking.parent_run_id, status)
    return table


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
    runtime = {
        "data_root": str(args.data_root.resolve()),
        "device": "cuda" if args.gpus_per_trial > 0 else "cpu",
    }
    if args.num_samples is None:
        args.num_samples = (
            search_space.QUICK_NUM_SAMPLES if args.quick else search_space.NUM_SAMPLES
        )
    try:  # bad settings, missing or bad data: one clear error now, not one per trial
        space = build_space(search_space, args.quick, args.overrides, args.categories, runtime)
        scoring = build_scoring(search_space, args.quick, args.scoring)
        check_space(search_space.EXPERIMENT, space, scoring)
        prepare_data(search_space.EXPERIMENT, space)
    except (SpaceError, DataNotFoundError, DataFormatError, ValueError, KeyError) as error:
        print(f"error: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return 2
    results, tracking = run_sweep(search_space, space, scoring, args)
    reconcile(results, tracking)
    table = publish(results, tracking, search_space, space)
    db = sqlite_path(tracking.uri)
    if db:
        print(f"MLflow UI: mlflow ui --backend-store-uri sqlite:///{db}")
    print(f"then open {tracking.ui_link()}")
    failed = table[table.status != "OK"]
    if len(failed):
        print(f"{len(failed)} of {len(table)} trials failed: {', '.join(failed.trial_id)}")
        print(f"Resume them from their last checkpoints with:\n  {resume_command(args)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
