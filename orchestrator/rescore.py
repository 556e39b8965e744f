"""Score every finished trial of a sweep again, from its MLflow run alone: no training, no new run.

python -m orchestrator.rescore --name SWEEP                              # the sweep's own grid
python -m orchestrator.rescore --name SWEEP --scoring 'image_score=["mean"]' \\
    --scoring 'normalisation=["none", "minmax"]'                          # a changed grid

Each finished child run's ``config.json``, ``model/model.pt`` and ``model/normal_data.pt`` (the
normal data's latent statistics) rebuild its trained model (the data is loaded again: its split
is drawn from the seed); the grid is scored as a Ray task per trial, into the same child run: a
combination scored again replaces its row of ``scores.csv`` and logs no metric whose value is
unchanged. The Ray results folder is not needed. Then the sweep's summary on the parent run is
written again (``orchestrator.summary``) and printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: make the checkout importable as when installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if __name__ == "__main__":  # a service that does not answer: one line now, before slow imports
    from orchestrator.services import probe_argv

    probe_argv(sys.argv[1:])

import ray  # noqa: E402
import torch  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from orchestrator import flags, summary  # noqa: E402
from orchestrator.headline import all_readings  # noqa: E402
from orchestrator.services import ServiceError, check_ray_address, check_recorded  # noqa: E402
from orchestrator.space import SpaceError, change_scoring  # noqa: E402
from orchestrator.tracking import RunLog, child_runs, find_sweep  # noqa: E402
from search_spaces import SPACES  # noqa: E402
from vaecam.experiments import Experiment  # noqa: E402
from vaecam.scoring import GRID_KEYS  # noqa: E402

SCORING_TAG = "vaecam.scoring"  # the grid a run was last scored on, as JSON


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.rescore",
        description="Score every finished trial of sweep --name again on a scoring grid, from "
        "its MLflow runs (model weights and normal-data statistics), into the same runs; then "
        "refresh the sweep's summary. Nothing is trained.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    flags.add_name(parser, "the sweep (its MLflow parent run)")
    flags.add_tracking_uri(parser, "the MLflow store the sweep was recorded in")
    flags.add_scoring(
        parser,
        GRID_KEYS,
        "replace one list of the sweep's scoring grid, e.g. --scoring 'image_score=[\"mean\"]'",
    )
    flags.add_resources(
        parser,
        "CPUs per task",
        "GPUs per task; 0 scores on the CPU (explicit, never inferred from the cluster)",
    )
    args = parser.parse_args(argv)
    for problem in flags.problems(args):
        parser.error(problem)
    return args


def sweep_grid(params: Mapping[str, Any], changes: list[str]) -> dict[str, Any]:
    """The grid the sweep was scored on (its parent run's ``scoring.*`` params) with each
    ``KEY=JSON`` of ``changes`` replacing that key's list."""
    prefix = "scoring."
    grid = {key[len(prefix) :]: value for key, value in params.items() if key.startswith(prefix)}
    return change_scoring(grid, changes)


def rescore_run(
    uri: str,
    run_id: str,
    experiment: Experiment,
    grid: Mapping[str, Any],
    device: str,
    claims: Sequence[Mapping[str, Any]] = (),
    every: bool = False,
) -> tuple[int, float]:
    """Score one finished run again on ``grid`` (see the module doc), logging the headline of
    ``claims`` as metrics (``every``: every number, as the sweep's ``--log-metrics all``);
    returns the number of combinations and the seconds it took. Runs where the task is placed:
    it reads everything from the tracking server."""
    started = time.monotonic()
    run = RunLog(uri, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        config = json.loads(
            Path(run.client.download_artifacts(run_id, "config.json", tmp)).read_text()
        )
        weights, normal = (
            torch.load(
                run.client.download_artifacts(run_id, f"model/{name}", tmp), weights_only=True
            )
            for name in ("model.pt", "normal_data.pt")
        )
    trained = experiment.restore(config | {"device": device}, weights, normal)
    table = experiment.score(trained, grid, run, readings=all_readings(claims))
    step = int(run.client.get_run(run_id).data.metrics.get("epoch", 0))
    run.log_scores(table, step, claims, every)
    run.client.set_tag(run_id, SCORING_TAG, json.dumps(dict(grid)))
    return len(table.rows), time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_recorded(args.tracking_uri)
        check_ray_address()
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    found = find_sweep(args.tracking_uri, args.name)
    if found is None:
        print(f"error: no sweep {args.name!r} in {args.tracking_uri}", file=sys.stderr)
        return 2
    tracking, params = found
    search_space = SPACES[params["space"]]
    experiment = search_space.experiment()
    if not search_space.scoring:
        print(f"error: {params['space']} sweeps have no scoring grid to rescore", file=sys.stderr)
        return 2
    client = MlflowClient(tracking.uri)
    runs = [run for run in child_runs(client, tracking) if run.info.status == "FINISHED"]
    try:
        grid = sweep_grid(params, args.scoring)
        for run in runs[:1]:  # every run shares the grid's names; its layers need a model
            config = client.download_artifacts(run.info.run_id, "config.json")
            experiment.check_scoring(json.loads(Path(config).read_text()), grid)
    except (SpaceError, ValueError, KeyError) as error:
        print(f"error: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return 2
    if not runs:
        print(f"error: sweep {args.name!r} has no finished trial to score", file=sys.stderr)
        return 2
    print(f"Rescoring {len(runs)} finished trials of {args.name} on: {json.dumps(grid)}")

    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    task = ray.remote(rescore_run).options(
        num_cpus=args.cpus_per_trial, num_gpus=args.gpus_per_trial
    )
    device = "cuda" if args.gpus_per_trial > 0 else "cpu"
    claims = search_space.claims
    every = params.get("log_metrics") == "all"
    pending = {
        task.remote(tracking.uri, run.info.run_id, experiment, grid, device, claims, every): run
        for run in runs
    }
    failed = 0
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        run = pending.pop(done[0])
        name = run.info.run_name or run.info.run_id
        try:
            combinations, seconds = ray.get(done[0])
            print(
                f"[{len(runs) - len(pending)}/{len(runs)}] {name}: {combinations} "
                f"combinations in {seconds:.1f} s"
            )
        except ray.exceptions.RayError as error:
            failed += 1
            reason = str(error).strip().splitlines()[-1]
            print(f"[{len(runs) - len(pending)}/{len(runs)}] {name}: FAILED: {reason}")

    summary.publish(client, tracking, search_space)
    print(f"MLflow: {tracking.ui_link()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
