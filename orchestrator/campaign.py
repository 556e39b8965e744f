"""``python -m orchestrator.sweep all``: every experiment of the paper in one invocation.

Each experiment runs as its own sweep (``python -m orchestrator.sweep SPACE``, a process of
its own, exactly as when run alone), all of them at once on one Ray cluster, so that their
trials interleave on the resources and no experiment waits for another. Their MLflow runs go
into the MLflow experiment ``all``: one campaign run, each sweep's run nested under it, each
trial's under its sweep's.

What each experiment runs on is decided up front from ``--data-root`` (:func:`plan`): its real
data where it is there; with ``--quick`` and no real data, what needs no download (scikit-learn's
digits for MNIST, generated sets in the MVTec AD and UCSD layouts, procedural dSprites), marked
synthetic or stand-in in every output; otherwise the experiment is skipped with the reason, or,
with ``--strict``, that is an error. ``--resume`` runs again every sweep of the campaign that
did not finish (resuming it where Ray has it). Ctrl-C (or SIGTERM, SIGHUP) stops every sweep as
it stops one.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from argparse import ArgumentParser, Namespace
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import ray
from mlflow import MlflowClient
from mlflow.entities import Metric
from ray import tune

from orchestrator import cluster, report
from orchestrator.provenance import cache_dir, code_provenance, command_tags
from orchestrator.space import SpaceError, build_scoring, build_space, check_space
from orchestrator.tracking import (
    Tracking,
    drop_unstarted_sweep,
    nested_runs,
    start_sweep,
    sweep_params,
)
from search_spaces import SPACES
from vaecam.data import DataFormatError, DataNotFoundError
from vaecam.data.download import fetch
from vaecam.data.fetch import downloads
from vaecam.experiments.datasets import DATASETS

#: ``python -m orchestrator.sweep all``: the campaign's name for its experiment, in MLflow too.
CAMPAIGN = "all"

#: How often the campaign says how its sweeps are doing (seconds).
PROGRESS_EVERY_S = 60.0

#: In the sweeps' environment: the campaign's process id, and the signal a sweep gets when that
#: process ends (:func:`end_with_campaign`).
CAMPAIGN_PID = "VAECAM_CAMPAIGN_PID"
CAMPAIGN_END_SIGNAL = "VAECAM_CAMPAIGN_END_SIGNAL"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class Member:
    """One experiment of the campaign: the search space it runs, on which data (and what that
    is: ``real``, or why it is not the paper's), which categories, which settings it needs
    (``KEY=VALUE`` as ``--set`` takes them)."""

    experiment: str  # the paper's experiment: mnist, mvtec, ucsd, dsprites
    space: str  # the search space run: mnist, or digits in its place, ...
    data_root: str
    data: str
    categories: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()


def generated_cache() -> Path:
    """Where the generated stand-ins of ``--quick`` are kept: this machine's cache."""
    return cache_dir() / "generated"


def plan(data_root: Path, quick: bool, strict: bool) -> tuple[list[Member], dict[str, str]]:
    """The campaign's members, one per dataset that a campaign finds (the paper's experiments,
    in the registry's order: each dataset's ``find`` says where its data is), and the
    experiments skipped, with why. ``strict``: an experiment without its real data raises
    ``SpaceError`` naming what is missing."""
    members, skipped = [], {}
    for name, dataset in DATASETS.items():
        if dataset.find is None:  # a stand-in: run in its dataset's place, never on its own
            continue
        found = dataset.find(data_root.resolve(), quick, generated_cache())
        if strict and (isinstance(found, str) or not found.data.startswith("real")):
            why = found if isinstance(found, str) else found.data
            raise SpaceError(f"--strict: {name}: {why}")
        if isinstance(found, str):
            skipped[name] = found
        else:
            members.append(Member(name, *found))
    return members, skipped


#: Flags every sweep of the campaign gets as given (their attributes: ``num_samples`` is
#: ``--num-samples``).
PASSED = (
    "quick",
    "num_samples",
    "max_concurrent",
    "cpus_per_trial",
    "gpus_per_trial",
    "max_failures",
    "preset",
    "seeds",
    "search",
    "scheduler",
    "grace_period",
    "reduction_factor",
    "checkpoint_every",
    "system_metrics",
    "system_metrics_every",
    "log_metrics",
)


def passed_flags(args: Namespace, parser: ArgumentParser) -> list[str]:
    """The flags of ``args`` that differ from their defaults in ``parser`` (the sweep's), as
    options for each sweep."""
    flags = []
    for attribute in PASSED:
        value, name = getattr(args, attribute), attribute.replace("_", "-")
        if value == parser.get_default(attribute):
            continue
        if isinstance(value, bool):
            flags.append(f"--{name}" if value else f"--no-{name}")
        else:
            flags += [f"--{name}", str(value)]
    return flags


def route(
    flag: str, items: list[str], members: list[Member], keys: Callable[[Member], Iterable[str]]
) -> dict[str, list[str]]:
    """Each member's share of ``items`` (``KEY=VALUE`` for every member with ``KEY`` among its
    ``keys``, ``SPACE:KEY=VALUE`` for that one), as ``KEY=VALUE``. Raises ``SpaceError``
    for an experiment not in the campaign, or a KEY that no member (or not the one named) has."""
    names = [member.experiment for member in members]
    known = {member.experiment: set(keys(member)) for member in members}
    routed: dict[str, list[str]] = {name: [] for name in names}
    for item in items:
        target, _, value = item.partition("=")
        experiment, _, key = target.rpartition(":")
        if experiment and experiment not in names:
            raise SpaceError(
                f"{flag} {item!r}: {experiment!r} is not an experiment of this campaign "
                f"({', '.join(names)})"
            )
        takers = [n for n in names if experiment in ("", n) and key in known[n]]
        if not takers:
            missing = f"{experiment} has no {key!r}" if experiment else f"no experiment has {key!r}"
            raise SpaceError(f"{flag} {item!r}: {missing} to set")
        for name in takers:
            routed[name].append(f"{key}={value}")
    return routed


def route_settings(
    members: list[Member],
    overrides: list[str],
    scoring: list[str],
    quick: bool,
    preset: str | None = None,
) -> dict[str, dict[str, list[str]]]:
    """Each member's ``--set`` and ``--scoring`` items (flag -> items): its own settings, then
    those of ``overrides`` and ``scoring`` it has (:func:`route`: ``epochs`` goes to the anomaly
    experiments, ``iterations`` to dSprites, ``mvtec:epochs=5`` to MVTec AD alone), all checked
    as its sweep will check them (with ``preset``). Raises ``SpaceError`` naming the member."""
    spaces = {member.experiment: SPACES[member.space] for member in members}
    settings = route(
        "--set",
        overrides,
        members,
        lambda m: build_space(spaces[m.experiment], quick, [], None, {}),
    )
    grids = route(
        "--scoring", scoring, members, lambda m: build_scoring(spaces[m.experiment], quick, [])
    )
    routed = {}
    for member in members:
        space, name = spaces[member.experiment], member.experiment
        routed[name] = {"--set": [*member.settings, *settings[name]], "--scoring": grids[name]}
        try:
            runtime = {"data_root": member.data_root}
            categories = list(member.categories) or None
            built = build_space(space, quick, routed[name]["--set"], categories, runtime, preset)
            grid = build_scoring(space, quick, routed[name]["--scoring"], preset)
            check_space(space.experiment(), built, grid)
        except SpaceError as error:
            raise SpaceError(f"{name}: {error}") from None
    return routed


def sweep_name(campaign: str, experiment: str) -> str:
    """The name of the campaign's sweep of ``experiment``."""
    return f"{campaign}-{experiment}"


def commands(
    args: Namespace,
    members: list[Member],
    routed: dict[str, dict[str, list[str]]],
    run_id: str,
    flags: list[str],
) -> dict[str, list[str]]:
    """Each member's sweep command (without ``--resume``): ``flags`` and its ``routed``
    options (:func:`route_settings`)."""
    base = ["--tracking-uri", args.tracking_uri, "--storage-path", args.storage_path]
    base += ["--within-campaign", run_id, *flags]
    planned = {}
    for m in members:
        name = sweep_name(args.name, m.experiment)
        command = [m.space, "--name", name, "--data-root", m.data_root]
        command += base + (["--categories", ",".join(m.categories)] if m.categories else [])
        options = routed[m.experiment].items()
        planned[m.experiment] = command + [a for f, items in options for i in items for a in (f, i)]
    return planned


def end_with_campaign() -> None:
    """In a member sweep: end when the campaign's process ends, even by ``kill -9``, which
    forwards no signal. On a cluster that outlives the campaign the sweep gets SIGINT and stops
    as on a Ctrl-C (runs KILLED, resumable). On the campaign's own local Ray instance, which
    dies with it, a sweep can neither stop cleanly nor run on (it hung, or Ray aborted it a
    minute later), so it gets SIGKILL: its runs stay RUNNING, never FINISHED, until
    ``--resume`` continues them. Either way nothing runs on that a resume would start again.
    Linux's parent-death signal; elsewhere nothing."""
    campaign = os.environ.get(CAMPAIGN_PID)
    if campaign is None or not sys.platform.startswith("linux"):
        return
    number = int(os.environ[CAMPAIGN_END_SIGNAL])
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, number)
    if os.getppid() != int(campaign):  # it ended before the line above
        os.kill(os.getpid(), number)


class Sweeps:
    """The member sweeps as child processes, each in a session of its own: a signal to the
    campaign reaches each sweep once, from here (a terminal's Ctrl-C would reach them too,
    and twice means "stop at once")."""

    def __init__(self, commands: dict[str, list[str]], folder: Path, env: dict[str, str]):
        self.started = time.monotonic()
        self.logs = {name: folder / f"{name}.log" for name in commands}
        self.processes = {}
        for name, command in commands.items():
            with open(self.logs[name], "ab") as log:
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "orchestrator.sweep", *command],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    cwd=Path(__file__).resolve().parents[1],
                )
            print(f"[{name}] started: {' '.join(command[:1])} (log: {self.logs[name]})")
        self.codes: dict[str, int] = {}

    def signal(self, number: int) -> None:
        for name, process in self.processes.items():
            if name not in self.codes:
                process.send_signal(number)

    def wait(self) -> dict[str, int]:
        """Wait for every sweep, saying how they are doing; their exit statuses."""
        last = time.monotonic()
        while len(self.codes) < len(self.processes):
            for name, process in self.processes.items():
                if name not in self.codes and process.poll() is not None:
                    self.codes[name] = process.returncode
                    took = time.monotonic() - self.started
                    print(f"[{name}] ended with exit {process.returncode} after {took:.0f} s")
                    if process.returncode not in (0, 1):
                        tail = self.logs[name].read_text(errors="replace").splitlines()[-5:]
                        print("\n".join(f"[{name}]   {line}" for line in tail))
            if time.monotonic() - last > PROGRESS_EVERY_S:
                running = [n for n in self.processes if n not in self.codes]
                print(f"{time.monotonic() - self.started:.0f} s: running {', '.join(running)}")
                last = time.monotonic()
            time.sleep(0.5)
        return self.codes


def occupancy(
    client: MlflowClient,
    campaign_run: str,
    cpus: float,
    start_ms: int,
    end_ms: int,
    cpus_per_trial: float,
) -> dict[str, float]:
    """How well the sweeps shared the cluster, from their trials' MLflow runs: the CPU time
    trials held over the CPU time there was (``cpu_busy_fraction``), and the share of the
    campaign's time when trials of two or more experiments ran at once (``overlap_fraction``)."""
    experiment = client.get_run(campaign_run).info.experiment_id
    spans = []  # (start, end, sweep)
    for sweep_run in nested_runs(client, experiment, campaign_run):
        for trial in nested_runs(client, experiment, sweep_run.info.run_id):
            end = trial.info.end_time or end_ms
            spans.append(
                (max(trial.info.start_time, start_ms), min(end, end_ms), sweep_run.info.run_id)
            )
    wall = max(end_ms - start_ms, 1)
    held = sum(max(0, end - start) for start, end, _ in spans) * cpus_per_trial
    events = sorted({t for start, end, _ in spans for t in (start, end)})
    overlap = 0
    for left, right in zip(events, events[1:], strict=False):
        running = {s for start, end, s in spans if start <= left and end >= right}
        overlap += (right - left) if len(running) >= 2 else 0
    return {
        "cpu_busy_fraction": held / (wall * cpus) if cpus else math.nan,
        "overlap_fraction": overlap / wall,
        "wall_s": wall / 1000,
    }


def resume_command(args: Namespace) -> str:
    return (
        f"python -m orchestrator.sweep {CAMPAIGN} --resume --name {args.name} "
        f"--tracking-uri {args.tracking_uri} --storage-path {args.storage_path}"
    )


def start(args: Namespace, flags: list[str]) -> tuple[dict[str, list[str]], str]:
    """A new campaign: its plan, printed, its MLflow run and its sweeps' commands (logged on
    the run as ``commands.json``, what ``--resume`` runs again). Raises ``SpaceError``."""
    if sweep_params(args.tracking_uri, CAMPAIGN, args.name) is not None:
        raise SpaceError(
            f"--name {args.name!r}: a campaign of that name exists in {args.tracking_uri}; "
            "continue it with --resume, or choose a new name"
        )
    members, skipped = plan(args.data_root, args.quick, args.strict)
    if not members:
        raise SpaceError(
            "no experiment has data to run on: "
            + "; ".join(f"{name}: {why}" for name, why in skipped.items())
        )
    # A bad --set or --scoring: an error before anything starts.
    routed = route_settings(members, args.overrides, args.scoring, args.quick, args.preset)
    print(f"Campaign {args.name}:")
    for member in members:
        print(f"  {member.experiment}: the {member.space} sweep; data: {member.data}")
    for name, why in skipped.items():
        print(f"  {name}: skipped: {why}")
    params = {
        "space": CAMPAIGN,
        "quick": args.quick,
        "cpus_per_trial": args.cpus_per_trial,
        "overrides": args.overrides,
        "scoring": args.scoring,
        "members": [asdict(m) for m in members],
        "skipped": skipped,
    }
    provenance = code_provenance() | command_tags()
    tracking = start_sweep(args.tracking_uri, CAMPAIGN, args.name, params, provenance)
    planned = commands(args, members, routed, tracking.parent_run_id, flags)
    MlflowClient(tracking.uri).log_dict(tracking.parent_run_id, planned, COMMANDS)
    return planned, tracking.parent_run_id


#: The campaign run's artifact with its sweeps' commands.
COMMANDS = "commands.json"
#: The campaign run's tag with a sweep's exit status, ``EXIT_TAG + experiment``: one that
#: finished (0) is not run again on ``--resume``.
EXIT_TAG = "vaecam.exit."


def resume(args: Namespace) -> tuple[dict[str, list[str]], str]:
    """A campaign to resume: its sweeps' recorded commands, each resuming its sweep where Ray
    has one (a sweep that never started starts), and its run. Raises ``SpaceError``."""
    recorded = sweep_params(args.tracking_uri, CAMPAIGN, args.name)
    if recorded is None:
        raise SpaceError(
            f"--resume: no campaign {args.name!r} in {args.tracking_uri}; check --name and "
            "--tracking-uri"
        )
    for flag, option in (("overrides", "--set"), ("scoring", "--scoring")):
        given, started = getattr(args, flag), recorded.get(flag, [])
        if given and given != started:  # repeating the original command is fine
            raise SpaceError(
                f"--resume: {option} {given} differs from the campaign's {started}: a campaign "
                "resumes as it started"
            )
    for member in recorded["members"]:  # a generated set lives in a cache: write it if gone
        generate = DATASETS[member["experiment"]].generate
        if generate is not None and member["data"].startswith("synthetic: generated"):
            generate(generated_cache())
    args.cpus_per_trial = recorded["cpus_per_trial"]
    tracking = start_sweep(args.tracking_uri, CAMPAIGN, args.name, {})
    client = MlflowClient(tracking.uri)
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(tracking.parent_run_id, COMMANDS, tmp)
        planned = json.loads(Path(path).read_text())
    tags = client.get_run(tracking.parent_run_id).data.tags
    for name in [name for name in planned if tags.get(EXIT_TAG + name) == "0"]:
        print(f"[{name}] finished in an earlier attempt")
        del planned[name]
    for name, command in planned.items():
        sweep = sweep_name(args.name, name)
        if tune.Tuner.can_restore(f"{args.storage_path}/{sweep}"):
            command += ["--resume", *(["--trust-storage"] if args.trust_storage else [])]
        elif drop_unstarted_sweep(client, tracking.experiment_id, sweep):
            print(f"[{name}] was stopped before it saved a state: it starts again")
    print(f"Resuming campaign {args.name}: {', '.join(planned) or 'every sweep has finished'}")
    return planned, tracking.parent_run_id


def main(args: Namespace, parser: ArgumentParser) -> int:
    """The campaign (see the module doc); exit status as a sweep's: 0 when every sweep ended
    0, 2 for bad input (nothing started), 128 + the signal's number when interrupted, else 1."""
    sys.stdout.reconfigure(line_buffering=True)  # its progress, as it happens, in a log too
    try:
        if args.download and not args.resume:  # before the plan, which then finds the data
            for download in downloads().values():
                fetch(download, args.data_root.resolve() / download.folder)
        planned, run_id = resume(args) if args.resume else start(args, passed_flags(args, parser))
    except (SpaceError, DataNotFoundError, DataFormatError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    client = MlflowClient(args.tracking_uri)
    folder = Path(args.storage_path) / args.name
    folder.mkdir(parents=True, exist_ok=True)
    local = "RAY_ADDRESS" not in os.environ  # a Ray instance that ends with this process
    started_ray = cluster.connect()
    env = os.environ | {
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        CAMPAIGN_PID: str(os.getpid()),
        CAMPAIGN_END_SIGNAL: str(int(signal.SIGKILL if local else signal.SIGINT)),
    }
    cpus = ray.cluster_resources().get("CPU", 0.0)

    start_ms = int(time.time() * 1000)
    stopped: list[int] = []
    sweeps = Sweeps(planned, folder, env)

    def forward(number: int, frame: object) -> None:
        """Each sweep stops as on its own Ctrl-C (a second: at once)."""
        stopped.append(number)
        sweeps.signal(signal.SIGINT)

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {number: signal.signal(number, forward) for number in handled}
    try:
        codes = sweeps.wait()
    finally:
        # Closing takes seconds and must not be cut short (as a sweep's): the sweeps have ended.
        for number in handled:
            signal.signal(number, signal.SIG_IGN)
        if started_ray:
            cluster.disconnect()
    try:
        return close(args, client, run_id, codes, stopped, cpus, start_ms, folder)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def close(
    args: Namespace,
    client: MlflowClient,
    run_id: str,
    codes: dict[str, int],
    stopped: list[int],
    cpus: float,
    start_ms: int,
    folder: Path,
) -> int:
    """Log how the sweeps shared the cluster, end the campaign run, write the report (unless
    interrupted); the exit status of :func:`main`."""
    shares = occupancy(client, run_id, cpus, start_ms, int(time.time() * 1000), args.cpus_per_trial)
    # One step per attempt: a resumed campaign adds its own, it does not log step 0 again.
    step = len(client.get_metric_history(run_id, "campaign/wall_s"))
    now = int(time.time() * 1000)
    metrics = [Metric(f"campaign/{key}", value, now, step) for key, value in shares.items()]
    client.log_batch(run_id, metrics=metrics)
    print(
        f"Campaign {args.name}: {shares['wall_s']:.0f} s; its trials held "
        f"{shares['cpu_busy_fraction']:.0%} of the {cpus:.0f} CPUs' time; trials of two or "
        f"more experiments ran at once {shares['overlap_fraction']:.0%} of the time"
    )
    for name, code in codes.items():
        client.set_tag(run_id, EXIT_TAG + name, str(code))
    client.set_tag(run_id, "vaecam.interrupted", str(bool(stopped)).lower())
    if stopped:
        client.set_terminated(run_id, "KILLED")
        print(f"Interrupted. Resume the campaign with:\n  {resume_command(args)}")
        return 128 + stopped[0]
    failed = [name for name, code in codes.items() if code != 0]
    every_one_failed = bool(codes) and len(failed) == len(codes)  # none ran: all finished before
    client.set_terminated(run_id, "FAILED" if every_one_failed else "FINISHED")
    md, page = report.write(client, args.name, folder / "report")
    print(f"Report: {md}\n        {page}")
    experiment_id = client.get_run(run_id).info.experiment_id
    print(f"MLflow: {Tracking(args.tracking_uri, experiment_id, run_id).ui_link()}")
    if failed:
        print(f"Sweeps that did not finish: {', '.join(failed)} (their logs: {folder})")
        print(f"Resume them with:\n  {resume_command(args)}")
        return 1
    return 0
