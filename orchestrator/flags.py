"""The flags several commands share (``sweep``, whose parser a campaign uses too, ``report`` and
``rescore``), each defined once: what a command adds is its own help. Light: commands parse
their flags before the slow imports, so ``--help`` and a mistyped flag answer at once."""

from __future__ import annotations

import argparse
import operator
from collections.abc import Sequence
from pathlib import Path

from orchestrator.names import name_problem


def add_name(parser: argparse.ArgumentParser, help: str, required: bool = True) -> None:
    """``--name``: a sweep's or a campaign's (checked by :func:`problems`)."""
    parser.add_argument("--name", required=required, help=help)


def add_tracking_uri(parser: argparse.ArgumentParser, help: str) -> None:
    """``--tracking-uri``: the MLflow store, by default ``mlflow.db`` here."""
    parser.add_argument(
        "--tracking-uri", default=f"sqlite:///{Path('mlflow.db').resolve()}", help=help
    )


def add_resources(parser: argparse.ArgumentParser, cpus: str, gpus: str) -> None:
    """``--cpus-per-trial`` and ``--gpus-per-trial`` (checked by :func:`problems`)."""
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help=cpus)
    parser.add_argument("--gpus-per-trial", type=float, default=0.0, help=gpus)


def add_scoring(parser: argparse.ArgumentParser, keys: Sequence[str], help: str) -> None:
    """``--scoring KEY=JSON``, repeatable: one list of the scoring grid replaced
    (:func:`orchestrator.space.change_scoring`)."""
    parser.add_argument(
        "--scoring",
        metavar="KEY=JSON",
        action="append",
        default=[],
        help=f"{help}; KEY is one of {', '.join(keys)}",
    )


#: Numeric flags (by their ``args`` names) and the values they take: comparison, bound, note.
BOUNDS: dict[str, tuple[str, float, str]] = {
    "num_samples": (">=", 1, ""),
    "max_concurrent": (">=", 0, " (0: as resources allow)"),
    "cpus_per_trial": (">", 0, ""),
    "gpus_per_trial": (">=", 0, ""),
    "max_failures": (">=", -1, " (-1: unlimited)"),
    "seeds": (">=", 1, ""),
    "grace_period": (">=", 1, ""),
    "checkpoint_every": (">=", 1, ""),
    "system_metrics_every": (">", 0, " seconds"),
    "reduction_factor": (">", 1, ""),
}
COMPARISONS = {">": operator.gt, ">=": operator.ge}


def problems(args: argparse.Namespace, name_limit: int | None = None) -> list[str]:
    """What is wrong with the flags ``args`` has, alone: its name (at most ``name_limit``
    characters where given) and its numbers (:data:`BOUNDS`; one not given is fine)."""
    found = []
    if getattr(args, "name", None) is not None:
        limit = {} if name_limit is None else {"limit": name_limit}
        found += filter(None, [name_problem(args.name, **limit)])
    for dest, (comparison, bound, note) in BOUNDS.items():
        value = getattr(args, dest, None)
        if value is not None and not COMPARISONS[comparison](value, bound):
            flag = "--" + dest.replace("_", "-")
            found.append(f"{flag} {value}: expected {comparison} {bound}{note}")
    return found
