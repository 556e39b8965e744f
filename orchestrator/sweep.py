"""Run a search space as a Ray Tune sweep recorded in MLflow.

python -m orchestrator.sweep digits --quick      # offline, minutes on a laptop CPU
python -m orchestrator.sweep mnist --data-root ./data
python orchestrator/sweep.py mnist ...           # as a file too (what ``ray submit`` runs)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import signal
import sys
import tempfile
import time
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: make the checkout importable as when installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if __name__ == "__main__":  # a service that does not answer: one line now, before slow imports
    from orchestrator.services import probe_argv

    probe_argv(sys.argv[1:])

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID  # noqa: E402
from pyarrow import fs  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler  # noqa: E402

from orchestrator import campaign, cluster, flags, state_digest, summary  # noqa: E402
from orchestrator.campaign import CAMPAIGN  # noqa: E402
from orchestrator.names import MAX_NAME, NAME  # noqa: E402, F401
from orchestrator.provenance import (  # noqa: E402
    code_provenance,
    command_tags,
    environment_provenance,
)
from orchestrator.search import OPTUNA_EXTRA, SEARCHES, build_search  # noqa: E402
from orchestrator.services import ServiceError, check_services  # noqa: E402
from orchestrator.space import (  # noqa: E402
    SpaceError,
    build_scoring,
    build_space,
    check_space,
    corners,
    prepare_data,
    searched_keys,
)
from orchestrator.system_metrics import EXTRA as SYSTEM_METRICS_EXTRA  # noqa: E402
from orchestrator.system_metrics import require_psutil  # noqa: E402
from orchestrator.tracking import (  # noqa: E402
    Tracking,
    close_sweep,
    discard_sweep,
    mark_stopped_early,
    reconcile,
    sqlite_path,
    start_sweep,
    sweep_params,
)
from orchestrator.trainable import (  # noqa: E402
    TrialOptions,
    faults_from_environment,
    train_trial,
)
from search_spaces import SPACES  # noqa: E402
from search_spaces.space import SearchSpace  # noqa: E402
from vaecam.data import DataFormatError, DataNotFoundError  # noqa: E402
from vaecam.data.fetch import fetch_for_loader  # noqa: E402
from vaecam.experiments import Experiment  # noqa: E402
from vaecam.experiments.datasets import DATASETS  # noqa: E402
from vaecam.scoring import GRID_KEYS  # noqa: E402


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the flags' help, and the epilog as written."""


#: The scoring grid's names, for ``--help`` (the README has the whole story).
SCORING_HELP = """scoring grid (--scoring KEY=JSON; a trained model is scored on every combination):
  method         attention (the paper's maps); recon, recon_l1 (squared or absolute
                 reconstruction error; L1 is the reproduction's); average_recon,
                 average_recon_l1 (the reproduction's baseline: the error against the
                 reconstruction of the mean normal image); controls: energy (mean intensity),
                 gradient_energy (edge magnitude of the input), random (a uniform noise map),
                 untrained (every attention reading on the same architecture, freshly
                 initialised: the model-randomisation sanity check), latent_distance
                 (Mahalanobis distance of mu to the normal data, no map)
  formulation    per_dim (the paper's equations), per_channel (the reproduction's report:
                 mean_k |alpha_k A^k|), authors (the authors' code: sum(mu), ONE RMS over the
                 batch, abs), authors_per_image (the same with each image's own RMS),
                 reproduction (the reproduction's code: sum(mu), one batch RMS, mean_k
                 |alpha_k A^k|, align_corners=True); authors and reproduction depend on the
                 batch (score_batch_size). normal_difference under an abs formulation is
                 mu's map: not scored twice when mu is in the grid
  quantity       mu; z (a sampled z); normal_difference (the paper's Eq. 4 read literally: the
                 mean mu_n - mu_x, whose gradient is -d mu: identical to mu under abs, the
                 normal data do not change the map); normal_difference_z (a draw of it);
                 kl_to_normal, mahalanobis (our readings in which the normal statistics
                 matter: per-dim KL to, and squared standardised distance from, the normal
                 data's latent Gaussian)
  target_layer   encoder module names, e.g. encoder.2 or encoder.layer2.1.conv1
  normalisation  none, minmax (per image), validation (per-pixel z-score against the
                 validation images' maps)
  image_score    mean, max
Every AUROC, AP, AUPRO and EER comes with its class sizes and a 95% stratified bootstrap
interval (the image, or a video's clip, is the unit of pixel metrics)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.sweep",
        description="Run search space SPACE as a Ray Tune sweep; every trial is an MLflow "
        "run nested under one parent run for the sweep.",
        epilog=SCORING_HELP,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "space",
        choices=[*sorted(SPACES), CAMPAIGN],
        help="which search space to run; all: every experiment of the paper at once, each on "
        "the data --data-root has (listed before anything starts), then the report",
    )
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
    flags.add_resources(
        parser,
        "CPUs reserved for each trial",
        "GPUs per trial; fractions share one GPU (0.25: four trials per GPU); 0: train on the "
        "CPU. Explicit, never inferred from the cluster",
    )
    parser.add_argument(
        "--data-root", type=Path, default=Path("data"), help="folder holding the datasets"
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="first fetch what is missing of the experiment's dataset (all: of every one) into "
        "--data-root, from its official source, checked against its published hash, on this "
        "machine before Ray starts (python -m vaecam.data.fetch does it alone)",
    )
    flags.add_tracking_uri(
        parser, "MLflow store: a sqlite file (absolute path) or an http://HOST:PORT server"
    )
    parser.add_argument(
        "--storage-path",
        default=str(Path("ray_results").resolve()),
        help="where Ray Tune keeps results and checkpoints; shared storage (NFS, s3://, gs://) "
        "on a multi-node cluster",
    )
    flags.add_name(
        parser,
        "name of the sweep: Ray's results folder and MLflow's parent run "
        "(default: SPACE-YYYYmmdd-HHMMSS)",
        required=False,
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted sweep --name (default: the latest SPACE sweep in "
        "--storage-path): finished trials are kept, errored ones continue from their last "
        "checkpoint, each in its own MLflow run; --quick, --num-samples, --categories and --set "
        "are the sweep's own, read from its MLflow parent run",
    )
    parser.add_argument(
        "--trust-storage",
        action="store_true",
        help="with --resume: resume even if the sweep's state files in --storage-path changed "
        "since its driver last wrote them (Tune unpickles them on this machine; see "
        "docker/README.md, security model)",
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
        "a JSON grid makes it a dimension: --set 'lr={\"grid_search\": [1e-3, 1e-4]}'); with "
        "all, each goes to the experiments that have KEY, or to one: --set mvtec:epochs=5",
    )
    parser.add_argument(
        "--preset",
        choices=("paper", "authors", "reproduction"),
        help="set what the paper, the authors' code or the reproduction used (training settings "
        "and scoring grid, the README's table of presets; --set and --scoring apply after it)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        help="replicate every configuration over seeds 0..N-1 (a grid dimension of its own, "
        "replacing the space's seed grid); the summary aggregates over them (default: the "
        "space's seeds)",
    )
    parser.add_argument(
        "--search",
        choices=SEARCHES,
        help="how trials are picked: random (Tune's sampling of the space's random "
        "dimensions, the same sample on every grid value and seed) or optuna (Optuna's TPE "
        "per combination of the grid values, learning from the mean over seeds; needs "
        f"{OPTUNA_EXTRA}) (default: random)",
    )
    parser.add_argument(
        "--scheduler",
        choices=sorted(SCHEDULERS),
        help="fifo: every trial trains to the end; asha: Asynchronous Successive Halving "
        "stops trials whose validation metric is in the worst part at each rung (epochs "
        "grace-period x reduction-factor^k); a stopped trial is not scored (default: fifo)",
    )
    parser.add_argument(
        "--grace-period",
        type=int,
        help=f"asha: epochs every trial trains before it can be stopped (default: "
        f"{DEFAULTS['grace_period']})",
    )
    parser.add_argument(
        "--reduction-factor",
        type=float,
        help=f"asha: 1 in this many trials goes on at each rung (default: "
        f"{DEFAULTS['reduction_factor']})",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        help="epochs between checkpoints, and always the last: a resumed or retried trial "
        "trains again at most N-1 epochs; every checkpoint is a write (an upload on a "
        f"cluster) of the whole model and optimiser (default: {DEFAULTS['checkpoint_every']})",
    )
    parser.add_argument(
        "--system-metrics",
        action=argparse.BooleanOptionalAction,
        help="record CPU, memory, disk, network and GPU use in each trial's run (MLflow's "
        f"system/ metrics; needs psutil, and nvidia-ml-py for GPUs: {SYSTEM_METRICS_EXTRA}) "
        "(default: on; --no-system-metrics turns them off)",
    )
    parser.add_argument(
        "--system-metrics-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with --system-metrics: seconds between samples (each is one step of system/ metrics)",
    )
    parser.add_argument(
        "--log-metrics",
        choices=LOG_METRICS,
        help="which scores each trial logs as MLflow metrics: headline (per claim, the "
        "paper's reading and each control, e.g. image_auroc/authors_code, image_auroc/recon) "
        "or all (every scoring combination, its interval and class sizes: thousands of "
        "metrics); the whole grid is always in the trial's scores.json table (default: "
        f"{DEFAULTS['log_metrics']})",
    )
    flags.add_scoring(
        parser,
        GRID_KEYS,
        "replace one list of the scoring grid that every trained model is scored on, e.g. "
        '--scoring \'formulation=["per_dim", "authors"]\' (a lone name is a list of one; with '
        "all, as --set: --scoring mvtec:KEY=JSON)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="all: an experiment whose real data is not under --data-root is an error, not "
        "skipped (or, with --quick, run on generated data)",
    )
    # A campaign's sweeps: the campaign's MLflow run, which each sweep's run nests under.
    parser.add_argument("--within-campaign", metavar="RUN_ID", help=argparse.SUPPRESS)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for problem in flag_problems(args):
        parser.error(problem)
    if args.resume and not args.name:
        args.name = latest_sweep(args.storage_path, args.space)
        if not args.name:
            parser.error(f"--resume: no {args.space} sweep in {args.storage_path}; pass --name")
    # Unique under parallel launches: the second, and 32 random bits (with 16, 50 launches in
    # one second collide 2% of the time).
    args.name = args.name or (
        f"{args.space}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
    )
    return args


def flag_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the flags themselves (before any setting or data is looked at)."""
    # a campaign's name is the start of its sweeps' names (campaign.sweep_name)
    suffix = 1 + max(map(len, SPACES)) if args.space == CAMPAIGN else 0
    problems = flags.problems(args, name_limit=MAX_NAME - suffix)
    if args.restart_errored and not args.resume:
        problems.append("--restart-errored needs --resume")
    if args.trust_storage and not args.resume:
        problems.append("--trust-storage needs --resume")
    if args.strict and args.space != CAMPAIGN:
        problems.append(f"--strict is for {CAMPAIGN!r}, the campaign of every experiment")
    if args.space == CAMPAIGN and args.categories:
        problems.append("--categories is MVTec AD's: run mvtec alone")
    return problems


def mlflow_experiment(args: Namespace) -> str:
    """The MLflow experiment of the sweep's runs: a campaign's sweeps are all in the
    campaign's, nested under its run."""
    return CAMPAIGN if args.within_campaign else args.space


def latest_sweep(storage_path: str, space: str) -> str | None:
    """The newest ``SPACE-*`` sweep folder in a local ``storage_path``, if any."""
    folders = Path(storage_path).glob(f"{space}-*") if "://" not in storage_path else []
    folders = sorted((f for f in folders if f.is_dir()), key=lambda f: f.stat().st_mtime)
    return folders[-1].name if folders else None


#: Flags that Ray restores with a sweep (its scheduler and search state included): on
#: ``--resume`` a value given again must be the recorded one (repeating the original command is
#: fine), and is otherwise not needed.
RESTORED_FLAGS = {
    "max_concurrent": 0,
    "max_failures": 0,
    "search": None,
    "scheduler": None,
    "grace_period": None,
    "reduction_factor": None,
}

#: The flags that define a sweep's search space and how its trials run, with their values when
#: not given; the sweep's parent run records them and ``--resume`` takes them from there.
SPACE_FLAGS = {
    "quick": False,
    "num_samples": None,
    "categories": None,
    "overrides": [],
    "scoring": [],
    "preset": None,
    "seeds": None,
    "checkpoint_every": None,
    "system_metrics": None,
    "log_metrics": None,
}

#: What a flag left out (and not recorded by the sweep being resumed) means.
DEFAULTS = {
    "search": "random",
    "scheduler": "fifo",
    "grace_period": 10,
    "reduction_factor": 3.0,
    "checkpoint_every": 10,
    "log_metrics": "headline",
}

#: ``--log-metrics`` choices: the headline of each claim, or every number of the score table.
LOG_METRICS = ("headline", "all")


def resolve_defaults(args: Namespace, search_space: SearchSpace) -> None:
    """Fill in the flags left out: :data:`DEFAULTS`, the space's number of samples, system
    metrics on (one sample every ``--system-metrics-every`` seconds costs milliseconds: far
    under 1% of a trial, ``--quick`` ones included)."""
    for flag, value in DEFAULTS.items():
        if getattr(args, flag) is None:
            setattr(args, flag, value)
    if args.num_samples is None:
        args.num_samples = (
            search_space.quick_num_samples if args.quick else search_space.num_samples
        )
    if args.system_metrics is None:
        args.system_metrics = True


def restore_space_flags(args: argparse.Namespace) -> None:
    """On ``--resume``, set :data:`SPACE_FLAGS` in ``args`` as the sweep started with them.

    Ray restores every trial's config itself, but the driver's data check and summary build the
    space from these flags: without them, resuming an ``mvtec --quick --categories grid`` sweep
    would check all 15 categories. A flag given again must have its recorded value."""
    recorded = sweep_params(args.tracking_uri, mlflow_experiment(args), args.name)
    if recorded is None:
        raise SpaceError(
            f"--resume: no MLflow parent run of sweep {args.name!r} in {args.tracking_uri}; "
            "check --name, or pass the --tracking-uri it was recorded in"
        )
    for flag, unset in (SPACE_FLAGS | RESTORED_FLAGS).items():
        if flag not in recorded:  # a sweep recorded before the flag was
            continue
        given = getattr(args, flag)
        if given != unset and given != recorded[flag]:
            option = {"overrides": "--set"}.get(flag, "--" + flag.replace("_", "-"))
            raise SpaceError(
                f"--resume: {option} {given!r} differs from the sweep's {recorded[flag]!r}; "
                "leave it out: the sweep resumes as it started"
            )
        setattr(args, flag, recorded[flag])


def open_sweep(
    search_space: SearchSpace,
    space: dict[str, Any],
    scoring: dict[str, Any],
    args: Namespace,
    provenance: dict[str, str],
) -> Tracking:
    """The sweep's MLflow experiment and parent run, with every flag, the space and the scoring
    grid as params (``--resume`` reads them back), and the driver's ``provenance`` and
    environment as tags."""
    params = {
        "space": args.space,
        **{flag: getattr(args, flag) for flag in (*SPACE_FLAGS, *RESTORED_FLAGS)},
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "storage_path": args.storage_path,
        "metric": search_space.metric,
        "mode": search_space.mode,
        "searched": searched_keys(space),
    }
    params |= {f"space.{key}": value for key, value in space.items()}
    params |= {f"scoring.{key}": value for key, value in scoring.items()}
    tags = provenance | environment_provenance()
    if args.within_campaign:
        tags[MLFLOW_PARENT_RUN_ID] = args.within_campaign
    return start_sweep(args.tracking_uri, mlflow_experiment(args), args.name, params, tags)


def run_sweep(
    search_space: SearchSpace,
    space: dict[str, Any],
    scoring: dict[str, Any],
    search: tuple[Any, int],
    tracking: Tracking,
    options: TrialOptions,
    args: Namespace,
) -> tune.ResultGrid:
    """Run (or restore) the Tuner: every trial trains once and scores its model on the
    ``scoring`` grid; trials come from ``search`` (``build_search``'s search algorithm and
    number of samples) under the ``--scheduler``. SIGTERM and SIGHUP stop it as Ctrl-C does
    (Tune stops the trials and saves its state); a second signal raises ``KeyboardInterrupt``
    at once."""
    trainable = tune.with_resources(
        tune.with_parameters(
            train_trial,
            tracking=tracking,
            experiment=search_space.experiment(),
            scoring=scoring,
            options=options,
            faults=faults_from_environment(),
        ),
        {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial},
    )
    # Tune's legacy console output, the one whose columns can be chosen (progress_table), on
    # a resume too (the restored sweep keeps its reporter)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    for number in (signal.SIGTERM, signal.SIGHUP):  # after ray.init, which sets its own
        signal.signal(number, forward_as_sigint)
    # Tune replaces this during fit and puts it back when a first Ctrl-C has stopped it: a
    # second one (or a first, without Tune's handler) stops at once.
    signal.signal(signal.SIGINT, stop_now)
    if args.resume:  # the search's and the scheduler's state come back with the sweep
        tuner = tune.Tuner.restore(
            sweep_path(args),
            trainable,
            resume_errored=not args.restart_errored,
            restart_errored=args.restart_errored,
        )
        return tuner.fit()
    search_alg, num_samples = search
    experiment = search_space.experiment()
    max_t = max(experiment.rounds(config) for config in corners(space))
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=search_space.metric,
            mode=search_space.mode,
            search_alg=search_alg,
            scheduler=SCHEDULERS[args.scheduler](args, max_t),
            num_samples=num_samples,
            max_concurrent_trials=None,  # the search algorithm limits them (build_search)
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=args.name,
            storage_path=args.storage_path,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=args.max_failures),
            callbacks=[MarkStoppedEarly(experiment)],
            progress_reporter=progress_table(search_space, space),
            verbose=1,
        ),
    )
    return tuner.fit()


def progress_table(search_space: SearchSpace, space: dict[str, Any]) -> tune.CLIReporter:
    """Tune's progress table with a few columns: trial, status, the searched settings (at most
    four, names cut to 14 characters), epoch and the sweep's metric; the best trial's line
    names only those settings. (Tune's newer console output cannot choose its columns:
    :func:`run_sweep` turns it off.)"""
    searched = searched_keys(space)[:4]
    return tune.CLIReporter(
        metric_columns={"epoch": "epoch", search_space.metric: search_space.metric},
        parameter_columns={key: key[:14] for key in searched},
        max_column_length=14,
        max_progress_rows=20,
        max_report_frequency=30,
        sort_by_metric=True,
    )


def asha(args: Namespace, max_t: int) -> ASHAScheduler:
    """ASHA on the sweep's metric, in epochs (Tune's iterations: one report per epoch)."""
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=max_t,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
    )


#: ``--scheduler`` choices: name -> (args, the longest training in epochs) -> scheduler.
SCHEDULERS: dict[str, Callable[[Namespace, int], TrialScheduler]] = {
    "fifo": lambda args, max_t: FIFOScheduler(),
    "asha": asha,
}

#: Ray's own record of a trial (its last result) says a scheduler stopped it early.
STOPPED_EARLY = "stopped_early"


class MarkStoppedEarly(tune.Callback):
    """Marks in a trial's last result (Ray's record: ``result.json``, the ``ResultGrid``)
    that the scheduler stopped it before its last epoch: Tune calls both ``TERMINATED``. A
    trial's last result reaches callbacks with ``done`` set only when it was stopped; one that
    trained to the end reports its last epoch before it is done."""

    def __init__(self, experiment: Experiment):
        self.experiment = experiment

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        planned = self.experiment.rounds(trial.config)
        if result.get("done") and result.get("epoch", -1) + 1 < planned:
            result[STOPPED_EARLY] = True


#: The signal that stopped the sweep, if one did (for the exit status: 128 + its number).
STOPPED_BY: list[int] = []


def forward_as_sigint(number: int, frame: object) -> None:
    """SIGTERM or SIGHUP (a scheduler's timeout, a closed terminal): stop as Ctrl-C does."""
    STOPPED_BY.append(number)
    os.kill(os.getpid(), signal.SIGINT)


def stop_now(number: int, frame: object) -> None:
    """Ctrl-C when Tune is not (or no longer) handling it: stop at once."""
    STOPPED_BY.append(number)
    raise KeyboardInterrupt


def was_interrupted() -> bool:
    """Whether Tune stopped on a signal: its handler puts :func:`stop_now` back when it has
    been called (and stays installed otherwise)."""
    return bool(STOPPED_BY) or signal.getsignal(signal.SIGINT) is stop_now


def sweep_path(args: Namespace) -> str:
    return f"{args.storage_path.rstrip('/')}/{args.name}"


def trial_outcomes(
    results: tune.ResultGrid, experiment: Experiment
) -> tuple[dict[str, str | None], dict[str, tuple[int, int]]]:
    """From Tune's results, of every trial it knows of (started or not): trial id -> the last
    line of its error (None: it did not fail); and of each trial a scheduler stopped, trial id
    -> (epochs trained, epochs planned)."""
    errors: dict[str, str | None] = {}
    stopped = {}
    for result in results:
        trial_id = trial_id_of(result)
        errors[trial_id] = str(result.error).strip().splitlines()[-1] if result.error else None
        if result.metrics.get(STOPPED_EARLY):
            planned = experiment.rounds(result.config)
            stopped[trial_id] = (int(result.metrics["epoch"]) + 1, planned)
    return errors, stopped


def trial_dirname(trial: tune.experiment.Trial) -> str:
    """A trial's folder is named by its id: short (unix socket and path limits) and how a
    trial that failed before its first report is still found (``trial_id_of``)."""
    return trial.trial_id


def trial_id_of(result: tune.Result) -> str:
    return Path(result.path).name


def publish(
    tracking: Tracking, search_space: SearchSpace, args: Namespace, interrupted: bool
) -> pd.DataFrame:
    """The summary (from MLflow: :func:`orchestrator.summary.publish`), also written as CSV
    beside the Ray results; then the parent run is closed: KILLED (tag
    ``vaecam.interrupted``) when the sweep was interrupted, FAILED when every trial failed.
    Returns the trials table."""
    client = MlflowClient(tracking.uri)
    table, _ = summary.publish(client, tracking, search_space)
    filesystem, folder = fs.FileSystem.from_uri(sweep_path(args))
    filesystem.create_dir(folder)
    with filesystem.open_output_stream(f"{folder}/summary.csv") as stream:
        stream.write(table.to_csv(index=False).encode())
    print(f"Summary CSV: {sweep_path(args)}/summary.csv")
    close_sweep(client, tracking, int((table.status == "ERROR").sum()), len(table), interrupted)
    return table


def resume_command(args: argparse.Namespace) -> str:
    """The exact command that resumes this sweep."""
    parts = ["python", "-m", "orchestrator.sweep", args.space, "--resume"]
    parts += ["--name", args.name, "--storage-path", args.storage_path]
    parts += ["--tracking-uri", args.tracking_uri, "--data-root", str(args.data_root.resolve())]
    parts += ["--cpus-per-trial", str(args.cpus_per_trial)]
    parts += ["--gpus-per-trial", str(args.gpus_per_trial)]
    return shlex.join(parts)


def main(argv: list[str] | None = None) -> int:
    """The sweep as the command runs it; its exit status: 0 when every trial finished (or a
    scheduler stopped it), 1 when some failed, 2 for bad input (nothing started), 128 + the
    signal's number when a signal interrupted it."""
    args = parse_args(argv)
    try:
        check_services(args.tracking_uri)
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.space == CAMPAIGN:
        return campaign.main(args, build_parser())
    if args.within_campaign:
        campaign.end_with_campaign()
    search_space = SPACES[args.space]
    try:  # bad flags, settings, data, or a name taken: one clear error now, nothing recorded
        check_resources(args)
        # On the driver, before Ray starts: trials never download. First, so that offline it
        # fails at once; what it fetches is needed whatever else is wrong.
        if args.download and args.space in DATASETS:
            fetch_for_loader(args.space, args.data_root)
        check_storage(args.storage_path)
        if args.resume:
            if not tune.Tuner.can_restore(sweep_path(args)):
                raise SpaceError(
                    f"--resume: no sweep to resume at {sweep_path(args)}; check --name and "
                    "--storage-path"
                )
            restore_space_flags(args)
            check_state(args)
        elif sweep_exists(args):
            raise SpaceError(
                f"--name {args.name!r}: a sweep of that name exists (in {args.storage_path} or "
                f"{args.tracking_uri}); continue it with --resume, or choose a new name"
            )
        resolve_defaults(args, search_space)
        if args.system_metrics:
            require_psutil()
        runtime = {
            "data_root": str(args.data_root.resolve()),
            "device": "cuda" if args.gpus_per_trial > 0 else "cpu",
        }
        space = build_space(
            search_space,
            args.quick,
            args.overrides,
            args.categories,
            runtime,
            args.preset,
            args.seeds,
        )
        scoring = build_scoring(search_space, args.quick, args.scoring, args.preset)
        check_space(search_space.experiment(), space, scoring)
        search = build_search(
            args.search,
            space,
            search_space.metric,
            search_space.mode,
            args.num_samples,
            explore=search_space.explore,
            max_concurrent=args.max_concurrent,
        )
        prepare_data(search_space.experiment(), space, progress)
    except (
        SpaceError,
        DataNotFoundError,
        DataFormatError,
        ValueError,
        KeyError,
        ImportError,
    ) as error:
        print(f"error: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return 2
    handler = signal.getsignal(signal.SIGINT)
    try:
        return run(args, search_space, space, scoring, search, argv)
    finally:  # a sweep run in a Python session leaves its Ctrl-C as it was
        signal.signal(signal.SIGINT, handler)


def run(
    args: Namespace,
    search_space: SearchSpace,
    space: dict[str, Any],
    scoring: dict[str, Any],
    search: tuple[Any, int],
    argv: list[str] | None,
) -> int:
    """Run the checked sweep on Ray (a local instance unless one is running or RAY_ADDRESS
    names a cluster), close its runs, publish its summary; the exit status of :func:`main`."""
    started_ray = cluster.connect()
    driver = code_provenance() | command_tags(
        None if argv is None else [sys.executable, "-m", "orchestrator.sweep", *argv]
    )
    new_folder = not args.resume and not folder_exists(sweep_path(args))
    tracking = open_sweep(search_space, space, scoring, args, driver)
    every = args.system_metrics_every if args.system_metrics else None
    options = TrialOptions(
        args.checkpoint_every,
        every,
        driver,
        args.restart_errored,
        claims=search_space.claims,
        every_metric=args.log_metrics == "all",
    )
    failure: Exception | None = None
    state_digest.mark_running(sweep_path(args))
    try:
        results = run_sweep(search_space, space, scoring, search, tracking, options, args)
        outcomes, stopped = trial_outcomes(results, search_space.experiment())
        interrupted = was_interrupted()
        state_digest.record_state(sweep_path(args))  # Tune's last write: what --resume trusts
    except KeyboardInterrupt:  # a second Ctrl-C: stop now, the trials' runs stay resumable
        outcomes, stopped, interrupted = {}, {}, True
    except Exception as error:  # noqa: BLE001  (undone below if nothing could be resumed)
        failure, interrupted = error, False
    finally:
        # What is left takes seconds and must not be cut short: a signal now would leave runs
        # RUNNING, or Ray half shut down (its core worker then exits by itself, losing this
        # output). Tune has stopped, and the trials go with Ray.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if started_ray:  # the local instance goes with the sweep, whatever happened
            cluster.disconnect()
    if not args.resume and not tune.Tuner.can_restore(sweep_path(args)):
        return undo_unstarted(tracking, args, failure, interrupted, new_folder)
    if failure is not None:
        raise failure
    unfinished = reconcile(tracking, outcomes, interrupted)
    if not interrupted:
        mark_stopped_early(tracking, stopped)
    table = publish(tracking, search_space, args, interrupted)
    db = sqlite_path(tracking.uri)
    if db:
        print(f"MLflow UI: mlflow ui --backend-store-uri sqlite:///{db}")
    print("then open this sweep's runs table, a row per trial (clear its search for all runs):")
    print(f"  {tracking.ui_link()}")
    if not args.within_campaign:  # a campaign writes its own report
        print(
            "The paper's claims beside these numbers: python -m orchestrator.report "
            f"--name {args.name} --tracking-uri {args.tracking_uri}"
        )
    if interrupted:
        print(f"Interrupted: {unfinished} trials did not finish.")
        print(f"Resume the sweep with:\n  {resume_command(args)}")
        return 128 + (STOPPED_BY[0] if STOPPED_BY else signal.SIGINT)
    failed = table[~table.status.isin(["OK", summary.STOPPED])]
    if len(failed):
        print(f"{len(failed)} of {len(table)} trials failed: {', '.join(failed.trial_id)}")
        print(f"Resume them from their last checkpoints with:\n  {resume_command(args)}")
        return 1
    return 0


def check_resources(args: Namespace) -> None:
    """Resources a local sweep could never get: Ray would wait for them forever. (On a cluster,
    RAY_ADDRESS set, an autoscaler may add them: the flags are explicit there.)"""
    if os.environ.get("RAY_ADDRESS"):
        return
    if args.gpus_per_trial > 0 and torch.cuda.device_count() == 0:
        raise SpaceError(
            f"--gpus-per-trial {args.gpus_per_trial}: this machine has no GPU torch can use, "
            "and no cluster to run on (RAY_ADDRESS is not set); train on the CPU with "
            "--gpus-per-trial 0"
        )
    if args.cpus_per_trial > (os.cpu_count() or 1):
        raise SpaceError(
            f"--cpus-per-trial {args.cpus_per_trial}: this machine has {os.cpu_count()} CPUs"
        )


def check_state(args: Namespace) -> None:
    """``--resume`` unpickles the sweep's state files: refuse them if they changed since the
    sweep's driver last wrote them (:mod:`orchestrator.state_digest`), unless
    ``--trust-storage``."""
    changed = state_digest.changed_state(sweep_path(args))
    if changed is None:
        print(
            f"note: no record on this machine of the state {sweep_path(args)} was left in (its "
            "driver was killed, or ran elsewhere): resuming from it unverified"
        )
    elif changed and not args.trust_storage:
        raise SpaceError(
            f"--resume: the state files of {sweep_path(args)} changed since the sweep last wrote "
            f"them ({', '.join(changed)}); Ray would unpickle them here. If only you can write "
            "there, pass --trust-storage"
        )


def check_storage(path: str) -> None:
    """A local ``--storage-path`` must be a folder this process can create and write in: Tune
    would find out only after the sweep's MLflow run exists. The check leaves nothing behind.
    (Remote storage, ``s3://`` and the like, is checked by Tune as it starts.)"""
    if "://" in path:
        return
    folder = Path(path)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    created: list[Path] = []
    try:
        for parent in reversed(missing):
            parent.mkdir()
            created.append(parent)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise SpaceError(
            f"--storage-path {path}: cannot write there ({error.strerror or error}); choose a "
            "folder you can write (shared storage, NFS or s3://, on a multi-node cluster)"
        ) from None
    finally:
        for parent in reversed(created):
            parent.rmdir()


def folder_exists(uri: str) -> bool:
    """Whether the folder (a local path or a ``pyarrow`` URI such as ``s3://...``) exists."""
    try:
        filesystem, folder = fs.FileSystem.from_uri(uri)
        return filesystem.get_file_info(folder).type != fs.FileType.NotFound
    except (OSError, ValueError):  # a parent that is a file, a bucket that is not there
        return False


def undo_unstarted(
    tracking: Tracking,
    args: Namespace,
    failure: Exception | None,
    interrupted: bool,
    new_folder: bool,
) -> int:
    """A sweep that stopped before Tune saved its first state has nothing to resume, and its
    name, in use, would refuse to start again: its MLflow runs end FAILED (KILLED when it was
    interrupted) and are deleted (MLflow keeps them among its deleted runs, with the error),
    and its results folder is removed if this sweep created it; then the same command starts it
    again. The exit status of :func:`main`."""
    reason = f"{type(failure).__name__}: {failure}" if failure else "interrupted"
    status = "KILLED" if interrupted and failure is None else "FAILED"
    discard_sweep(MlflowClient(tracking.uri), tracking, status, reason)
    if new_folder:
        with contextlib.suppress(OSError, ValueError):
            filesystem, folder = fs.FileSystem.from_uri(sweep_path(args))
            filesystem.delete_dir(folder)
    line = str(failure).strip().splitlines()[-1] if failure and str(failure).strip() else reason
    print(
        f"error: sweep {args.name} stopped before Ray Tune saved its first state "
        f"({line}); its MLflow run {tracking.parent_run_id} is marked {status} and deleted, "
        "nothing is left to resume: run the same command again",
        file=sys.stderr,
    )
    if failure is None:
        return 128 + (STOPPED_BY[0] if STOPPED_BY else signal.SIGINT)
    return 1


def sweep_exists(args: Namespace) -> bool:
    """A sweep of this name in the storage path (local) or the MLflow store, without creating
    either."""
    local = "://" not in args.storage_path and Path(sweep_path(args)).exists()
    return local or sweep_params(args.tracking_uri, mlflow_experiment(args), args.name) is not None


def progress(done: int, total: int, what: str) -> None:
    """The data check's progress on large sets, one line now and then."""
    if total >= 200 and (done == total or done % max(1, total // 10) == 0):
        print(f"checking {what}: {done}/{total} files", flush=True)


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # each line out at once, also into a log file
    sys.exit(main())
