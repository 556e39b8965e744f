"""A sweep's summary, read from MLflow alone (its parent run and child runs), so that a sweep and a
re-scoring of it (``orchestrator.rescore``, which has no Ray results) write the same thing.

On the parent run: ``summary.csv``/``.md`` (one row per trial, best first by the sweep's
validation metric: never a test metric), ``scores.csv``/``.md`` (every trial's score table, one
row per trial and scoring combination), ``trials.png``, and the search space's comparison with
published numbers (``comparison.*``) or its aggregate over seeds (``seeds.*``, ``scatter.png``).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run

from orchestrator.tracking import ERROR_TAG, TRIAL_TAG, Tracking, read_scores, unparam
from vaecam.figures import compare_trials, scatter_figure
from vaecam.scoring import COLUMNS

#: MLflow run status -> the summary's trial status.
STATUS = {
    "FINISHED": "OK",
    "FAILED": "ERROR",
    "KILLED": "INTERRUPTED",
    "RUNNING": "RUNNING",
    "SCHEDULED": "RUNNING",
}

#: At most this many training configurations' score tables are printed (all are in scores.csv).
PRINTED_CONFIGURATIONS = 4


def child_runs(client: MlflowClient, tracking: Tracking) -> list[Run]:
    return client.search_runs(
        [tracking.experiment_id], f"tags.`mlflow.parentRunId` = '{tracking.parent_run_id}'"
    )


def trials(
    client: MlflowClient, tracking: Tracking, search_space: ModuleType, searched: list[str]
) -> pd.DataFrame:
    """One row per trial, best first by the sweep's metric (failed and unfinished trials last,
    with their reason): status, the searched settings, epochs done, the search space's
    ``SUMMARY`` metrics, its ``OURS`` and ``COMPARE`` metrics where it has them, the MLflow
    run."""
    wanted = {key: key for key in search_space.SUMMARY}
    wanted |= getattr(search_space, "OURS", {}) | getattr(search_space, "COMPARE", {})
    rows = []
    for run in child_runs(client, tracking):
        metrics, params = run.data.metrics, run.data.params
        rows.append(
            {"trial_id": run.data.tags.get(TRIAL_TAG, ""), "status": STATUS[run.info.status]}
            | {key: unparam(params[key]) if key in params else None for key in searched}
            | {"epochs_done": int(metrics["epoch"]) + 1 if "epoch" in metrics else 0}
            | {label: metrics.get(key, math.nan) for label, key in wanted.items()}
            | {"mlflow_run_id": run.info.run_id, "error": run.data.tags.get(ERROR_TAG, "")}
        )
    if not rows:
        return pd.DataFrame(columns=["trial_id", "status", *searched, search_space.METRIC])
    table = pd.DataFrame(rows)
    table["_order"] = table.status != "OK"
    table = table.sort_values(
        ["_order", search_space.METRIC], ascending=[True, search_space.MODE == "min"]
    )
    return table.drop(columns="_order").reset_index(drop=True)


def scores(client: MlflowClient, table: pd.DataFrame, searched: list[str]) -> pd.DataFrame:
    """Every scored trial's ``scores.csv``, each row led by its trial id and searched settings,
    in the order of ``table`` (best validation metric first)."""
    frames = []
    for row in table.itertuples(index=False):
        found = read_scores(client, row.mlflow_run_id)
        if found is not None:
            lead = {"trial_id": row.trial_id} | {key: getattr(row, key) for key in searched}
            frames.append(found.assign(**{k: [v] * len(found) for k, v in lead.items()}))
    if not frames:
        return pd.DataFrame()
    merged = pd.concat(frames, ignore_index=True)
    lead = ["trial_id", *searched]
    return merged[lead + [c for c in merged.columns if c not in lead]]


def publish(
    client: MlflowClient,
    tracking: Tracking,
    search_space: ModuleType,
    searched: list[str],
    fixed: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Print the summary and the score tables and put them, with figures and the search space's
    comparisons, on the parent run (see the module doc). ``fixed`` are the settings every trial
    shares (a fixed model still finds its published numbers). Returns the trials and scores."""
    run_id = tracking.parent_run_id
    table = trials(client, tracking, search_space, searched)
    heading = f"Summary, best first by {search_space.METRIC} ({search_space.MODE})"
    post_table(client, run_id, "summary", table, heading, digits=4)
    scored = scores(client, table, searched)
    if not scored.empty:
        if hasattr(search_space, "SCORES"):
            print_scores(scored, search_space, searched)
        client.log_text(run_id, scored.to_csv(index=False), "scores.csv")
        client.log_text(run_id, markdown(scored), "scores.md")
    with tempfile.TemporaryDirectory() as tmp:
        path = trials_figure(table, scored, search_space, Path(tmp) / "trials.png")
        if path is not None:
            client.log_artifact(run_id, str(path))

    if hasattr(search_space, "REFERENCE_COLUMNS"):
        heading = f"Best trial per {search_space.GROUP_BY} (by {search_space.METRIC}) vs published"
        post_table(
            client, run_id, "comparison", compare_with_reference(table, search_space), heading
        )
    if hasattr(search_space, "AGGREGATE"):
        heading = f"Mean and std over {search_space.AGGREGATE_OVER}s per configuration"
        seeds = aggregate_over_seeds(table, search_space, searched, fixed)
        post_table(client, run_id, "seeds", seeds, heading)
        x, y = search_space.SCATTER
        points = {
            ", ".join(map(str, label)): (group[x], group[y])
            for label, group in configurations(table[table.status == "OK"], search_space, searched)
        }
        if points:
            with tempfile.TemporaryDirectory() as tmp:
                title = f"{y} against {x}, one point per trial"
                path = scatter_figure(points, Path(tmp) / "scatter.png", title, x, y)
                client.log_artifact(run_id, str(path))
    return table, scored


def print_scores(scored: pd.DataFrame, search_space: ModuleType, searched: list[str]) -> None:
    """Per training configuration (a trial), its score table: the combination and the search
    space's ``SCORES`` metric columns."""
    shown = [c for c in (*COLUMNS, *search_space.SCORES) if c in scored]
    trial_ids = list(dict.fromkeys(scored.trial_id))
    for trial_id in trial_ids[:PRINTED_CONFIGURATIONS]:
        rows = scored[scored.trial_id == trial_id]
        settings = ", ".join(f"{key}={rows[key].iloc[0]}" for key in searched)
        text = rows[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}")
        print(f"\nScores of trial {trial_id}{' (' + settings + ')' if settings else ''}:\n{text}")
    if len(trial_ids) > PRINTED_CONFIGURATIONS:
        print(f"\n... and {len(trial_ids) - PRINTED_CONFIGURATIONS} more trials in scores.csv")
    print()


def trials_figure(
    table: pd.DataFrame, scored: pd.DataFrame, search_space: ModuleType, path: Path
) -> Path | None:
    """A grouped bar chart, one group per trial: with a score table, the ``HEADLINE`` metric of
    every map (at the grid's first normalisation and image score); else the ``COMPARE``
    metrics."""
    if table.empty:
        return None
    names = [f"{row.trial_id} ({row.status})" for row in table.itertuples()]
    if not scored.empty and hasattr(search_space, "HEADLINE"):
        first = scored.groupby("trial_id", sort=False).head(1).iloc[0]
        shown = scored[
            (scored.normalisation == first.normalisation)
            & (scored.image_score == first.image_score)
        ]
        variant = ["method", "target_layer", "formulation", "quantity"]
        values = {}
        for key, rows in shown.groupby(variant, sort=False):
            by_trial = dict(zip(rows.trial_id, rows[search_space.HEADLINE], strict=True))
            label = " ".join(part for part in key if part)
            values[label] = [by_trial.get(trial_id, math.nan) for trial_id in table.trial_id]
        ylabel = f"{search_space.HEADLINE} ({first.normalisation}, {first.image_score})"
    else:
        values = {label: table[label].tolist() for label in search_space.COMPARE}
        ylabel = " / ".join(search_space.COMPARE.values())
    title = f"{len(table)} trials, best {search_space.METRIC} first"
    return compare_trials(names, values, path, title, ylabel)


def post_table(
    client: MlflowClient, run_id: str, name: str, table: pd.DataFrame, heading: str, digits: int = 3
) -> None:
    """Print ``table`` under ``heading`` and log it as ``name``.csv and ``name``.md."""
    text = table.to_string(index=False, float_format=lambda v: f"{v:.{digits}f}")
    print(f"\n{heading}:\n{text}\n")
    client.log_text(run_id, table.to_csv(index=False), f"{name}.csv")
    client.log_text(run_id, markdown(table), f"{name}.md")


def configurations(
    finished: pd.DataFrame, search_space: ModuleType, searched: list[str]
) -> list[tuple[tuple, pd.DataFrame]]:
    """Trials grouped by configuration: the searched settings other than ``AGGREGATE_OVER``
    (e.g. every seed of one model), as ``(values, rows)`` pairs."""
    keys = [k for k in searched if k != search_space.AGGREGATE_OVER]
    if not keys:
        return [(("all",), finished)] if len(finished) else []
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
        if not len(found):
            continue
        ours = {label: found[label].iloc[0] for label in search_space.OURS}
        rows.append(
            {search_space.GROUP_BY: group}
            | ours
            | dict(zip(search_space.REFERENCE_COLUMNS, reference, strict=True))
            | {"trial_id": found.trial_id.iloc[0]}
        )
    comparison = pd.DataFrame(
        rows,
        columns=[
            search_space.GROUP_BY,
            *search_space.OURS,
            *search_space.REFERENCE_COLUMNS,
            "trial_id",
        ],
    )
    mean = {search_space.GROUP_BY: f"mean ({len(comparison)} swept)"}
    mean |= comparison.drop(columns=[search_space.GROUP_BY, "trial_id"]).mean().to_dict()
    return pd.concat([comparison, pd.DataFrame([mean | {"trial_id": ""}])], ignore_index=True)


def aggregate_over_seeds(
    table: pd.DataFrame, search_space: ModuleType, searched: list[str], fixed: dict[str, Any]
) -> pd.DataFrame:
    """Per configuration (the searched settings but ``AGGREGATE_OVER``, e.g. the seed): mean and
    standard deviation of the ``AGGREGATE`` metrics over its finished trials, the number of
    them, and the ``REFERENCE`` numbers of its ``REFERENCE_BY`` value (from ``fixed`` when
    every trial shares it)."""
    keys = [k for k in searched if k != search_space.AGGREGATE_OVER]
    rows = []
    for values, group in configurations(table[table.status == "OK"], search_space, searched):
        row = dict(zip(keys, values, strict=False))
        row[f"n_{search_space.AGGREGATE_OVER}s"] = len(group)
        for metric in search_space.AGGREGATE:
            row[f"{metric}_mean"] = group[metric].mean()
            row[f"{metric}_std"] = group[metric].std(ddof=1) if len(group) > 1 else math.nan
        reference_by = row.get(search_space.REFERENCE_BY, fixed.get(search_space.REFERENCE_BY))
        rows.append(row | search_space.REFERENCE.get(reference_by, {}))
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """``table`` as a GitHub-flavoured markdown table (MLflow renders .md artifacts)."""
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in table.values]
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"
