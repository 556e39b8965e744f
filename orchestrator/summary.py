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
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, Run

from orchestrator import results
from orchestrator.headline import headline, headline_rows
from orchestrator.tracking import (
    ERROR_TAG,
    PLANNED_TAG,
    STOPPED_TAG,
    TRIAL_TAG,
    Tracking,
    child_runs,
    flat_scores,
    load_scores,
    log_metrics,
    unparam,
)
from search_spaces.space import SearchSpace
from vaecam.figures import compare_trials, scatter_figure
from vaecam.grid import COLUMNS

#: MLflow run status -> the summary's trial status.
STATUS = {
    "FINISHED": "OK",
    "FAILED": "ERROR",
    "KILLED": "INTERRUPTED",
    "RUNNING": "RUNNING",
    "SCHEDULED": "RUNNING",
}

#: The status of a trial a scheduler stopped early (its MLflow run: KILLED, ``STOPPED_TAG``).
STOPPED = "STOPPED"

#: At most this many training configurations' score tables are printed (all are in scores.csv).
PRINTED_CONFIGURATIONS = 4


def trials(
    runs: list[Run], loaded: pd.DataFrame, search_space: SearchSpace, searched: list[str]
) -> pd.DataFrame:
    """One row per trial of ``runs``, best first by the sweep's metric (failed, stopped and
    unfinished trials last, with their reason): status (``STOPPED``: a scheduler stopped it
    early), the searched settings, epochs done (and planned, for stopped trials), the search
    space's ``summary`` metrics, its ``ours`` and ``compare`` metrics where it has them (from
    the run's metrics, else its score table in ``loaded``: :func:`load_scores`), the MLflow
    run."""
    wanted = {key: key for key in search_space.summary}
    wanted |= search_space.ours | search_space.compare
    for label, key in search_space.ours.items():  # with their intervals
        wanted |= {f"{label} {end}": f"{key}_ci_{end}" for end in ("low", "high")}
    rows = []
    by_run = results.tables_by_run(loaded)
    for run in runs:
        params, tags = run.data.params, run.data.tags
        own = by_run.get(run.info.run_id)
        metrics = (flat_scores(own) if own is not None else {}) | run.data.metrics
        status = STOPPED if STOPPED_TAG in tags else STATUS[run.info.status]
        done = int(metrics["epoch"]) + 1 if "epoch" in metrics else 0
        rows.append(
            {"trial_id": tags.get(TRIAL_TAG, ""), "status": status}
            | {key: unparam(params[key]) if key in params else None for key in searched}
            | {"epochs_done": done, "epochs_planned": int(tags.get(PLANNED_TAG, done))}
            | {label: metrics.get(key, math.nan) for label, key in wanted.items()}
            | {"mlflow_run_id": run.info.run_id, "error": tags.get(ERROR_TAG, "")}
        )
    if not rows:
        return pd.DataFrame(columns=["trial_id", "status", *searched, search_space.metric])
    table = pd.DataFrame(rows)
    table["_order"] = table.status != "OK"
    table = table.sort_values(
        ["_order", search_space.metric], ascending=[True, search_space.mode == "min"]
    )
    return table.drop(columns="_order").reset_index(drop=True)


def scores(loaded: pd.DataFrame, table: pd.DataFrame, searched: list[str]) -> pd.DataFrame:
    """The score tables ``loaded`` (:func:`load_scores`), each row led by its trial id and
    searched settings, in the order of ``table`` (best validation metric first)."""
    frames = []
    by_run = results.tables_by_run(loaded)
    for row in table.itertuples(index=False):
        found = by_run.get(row.mlflow_run_id)
        if found is not None:
            found = found.drop(columns="run_id")
            lead = {"trial_id": row.trial_id} | {key: getattr(row, key) for key in searched}
            frames.append(found.assign(**{k: [v] * len(found) for k, v in lead.items()}))
    if not frames:
        return pd.DataFrame()
    merged = pd.concat(frames, ignore_index=True)
    lead = ["trial_id", *searched]
    return merged[lead + [c for c in merged.columns if c not in lead]]


def publish(
    client: MlflowClient, tracking: Tracking, search_space: SearchSpace
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Print the summary and the score tables and put them, with figures and the search space's
    comparisons and aggregates, on the parent run (see the module doc), whose params say which
    settings were searched and which every trial shares (a fixed model still finds its
    published numbers; AUPRO's chance level needs ``max_fpr``). Returns the trials and
    scores."""
    run_id = tracking.parent_run_id
    params = {key: unparam(value) for key, value in client.get_run(run_id).data.params.items()}
    searched = params.get("searched", [])
    space = {key[len("space.") :]: v for key, v in params.items() if key.startswith("space.")}
    fixed = {key: value for key, value in space.items() if key not in searched}
    runs = child_runs(client, tracking)
    loaded = load_scores(client, tracking.experiment_id, [run.info.run_id for run in runs])
    table = trials(runs, loaded, search_space, searched)
    heading = f"Summary, best first by {search_space.metric} ({search_space.mode})"
    post_table(client, run_id, "summary", table, heading, digits=4)
    saving = scheduler_saving(table)
    if saving:
        print(saving + "\n")
        client.set_tag(run_id, "vaecam.scheduler_saving", saving)
    scored = scores(loaded, table, searched)
    mark_best(client, tracking, runs, table, scored, search_space)
    max_fpr = fixed.get("max_fpr", results.DEFAULT_MAX_FPR)
    if not scored.empty:
        print_scores(scored, search_space.claims, searched, max_fpr)
        client.log_text(run_id, scored.to_csv(index=False), "scores.csv")
        shown = readable(scored, search_space.scores, max_fpr)
        client.log_text(run_id, results.markdown(shown), "scores.md")
    with tempfile.TemporaryDirectory() as tmp:
        path = trials_figure(table, scored, search_space, searched, Path(tmp) / "trials.png")
        if path is not None:
            client.log_artifact(run_id, str(path))

    if search_space.reference_columns:
        heading = f"Best trial per {search_space.group_by} (by {search_space.metric}) vs published"
        post_table(
            client, run_id, "comparison", compare_with_reference(table, search_space), heading
        )
    for over in search_space.aggregate_over if not scored.empty else []:
        name = "_and_".join(f"{key}s" for key in over)
        pooled = aggregate(scored, search_space, searched, over, fixed)
        if pooled.empty or pooled[f"n_{name}"].max() < 2:  # nothing pooled: nothing to say
            continue
        heading = f"Mean and 95% interval (t, over trials) across {name.replace('_', ' ')}"
        shown = readable(pooled, search_space.aggregate, max_fpr)
        print(f"\n{heading}:\n{shown.to_string(index=False)}\n{CHANCE_NOTE}\n")
        client.log_text(run_id, pooled.to_csv(index=False), f"{name}.csv")
        client.log_text(run_id, results.markdown(shown), f"{name}.md")
    if search_space.scatter:
        x, y = search_space.scatter
        over = search_space.aggregate_over[0]
        finished = table[table.status == "OK"]
        points = {
            ", ".join(map(str, label)): (group[x], group[y])
            for label, group in configurations(finished, [k for k in searched if k not in over])
        }
        if points:
            with tempfile.TemporaryDirectory() as tmp:
                title = f"{y} against {x}, one point per trial"
                path = scatter_figure(points, Path(tmp) / "scatter.png", title, x, y)
                client.log_artifact(run_id, str(path))
    return table, scored


#: The parent run's tag naming its best trial's run.
BEST_TRIAL_TAG = "best_trial"


def mark_best(
    client: MlflowClient,
    tracking: Tracking,
    runs: list[Run],
    table: pd.DataFrame,
    scored: pd.DataFrame,
    search_space: SearchSpace,
) -> None:
    """The outcome on the parent run, so its row in the runs table says something: the best
    finished trial (by the sweep's validation metric) as tag ``best_trial`` (its run id), its
    validation metric and headline metrics (:mod:`orchestrator.headline`), and the datasets
    the sweep's trials read (each once)."""
    finished = table[table.status == "OK"] if len(table) else table
    if not len(finished):
        return
    best = finished.iloc[0]
    parent = tracking.parent_run_id
    client.set_tag(parent, BEST_TRIAL_TAG, best.mlflow_run_id)
    rows = scored[scored.trial_id == best.trial_id] if len(scored) else scored
    claims = search_space.claims
    metrics = {key: best[key] for key in search_space.summary if key in best}
    metrics |= headline(rows.to_dict("records"), claims) if len(rows) else {}
    run = next(run for run in runs if run.info.run_id == best.mlflow_run_id)
    step = int(run.data.metrics.get("epoch", 0))
    log_metrics(client, parent, metrics, step)
    inputs = {
        (i.dataset.name, i.dataset.digest): DatasetInput(i.dataset, i.tags)
        for trial in runs
        for i in (trial.inputs.dataset_inputs if trial.inputs else [])
    }
    if inputs:
        client.log_inputs(parent, datasets=list(inputs.values()))


def scheduler_saving(table: pd.DataFrame) -> str | None:
    """What stopping trials early saved, e.g. "The scheduler stopped 2 of 4 trials early: 6
    of 16 planned epochs (38%) were not trained"; None when it stopped none."""
    stopped = table[table.status == STOPPED] if len(table) else table
    if not len(stopped):
        return None
    planned = int(table.epochs_planned.sum())
    saved = int((stopped.epochs_planned - stopped.epochs_done).sum())
    return (
        f"The scheduler stopped {len(stopped)} of {len(table)} trials early (not scored): "
        f"{saved} of {planned} planned epochs ({saved / planned:.0%}) were not trained"
    )


CHANCE_NOTE = (
    "~: the 95% interval contains the chance level (0.5 for AUROC and EER, the positive rate\n"
    "   for AP, max_fpr / 2 for AUPRO): not distinguishable from chance\n"
    "<: the interval lies wholly below chance: worse than a coin, the score ranks normal\n"
    "   images as more anomalous"
)


def readable(frame: pd.DataFrame, metrics: list[str], max_fpr: float) -> pd.DataFrame:
    """``frame`` for reading: each of ``metrics`` that has an interval as one cell
    ``value [low, high]``, marked ``~`` where the interval contains the metric's chance level
    (:data:`CHANCE_NOTE`), with its sizes ``n+/n-`` beside; the interval columns dropped. An
    aggregate's ``<metric>_mean`` is read the same way."""
    out = frame.copy()
    for metric in metrics:
        value = metric if metric in out else f"{metric}_mean"
        low, high = f"{metric}_ci_low", f"{metric}_ci_high"
        if value not in out or low not in out:
            continue
        rows = out.to_dict("records")
        out[value] = [results.interval_text(row, metric, max_fpr, value) for row in rows]
        drop = [low, high, f"{metric}_std"]
        if f"{metric}_n_pos" in out:
            out[f"{metric}_n"] = [results.sizes(row, metric) for row in rows]
            drop += [f"{metric}_n_pos", f"{metric}_n_neg"]
        out = out.drop(columns=[c for c in drop if c in out])
    return out


def print_scores(scored: pd.DataFrame, claims: list, searched: list[str], max_fpr: float) -> None:
    """Per trial (best validation metric first, at most :data:`PRINTED_CONFIGURATIONS`), its
    headline (:mod:`orchestrator.headline`: each claim's metric under the paper's reading and
    its controls) with 95% intervals, one column per trial; the whole grid is in the parent
    run's ``scores.csv`` and each trial's ``scores.json``."""
    trial_ids = list(dict.fromkeys(scored.trial_id))
    columns = {}
    for trial_id in trial_ids[:PRINTED_CONFIGURATIONS]:
        rows = scored[scored.trial_id == trial_id]
        settings = ", ".join(f"{key}={rows[key].iloc[0]}" for key in searched if key != "seed")
        cells = {}
        for name, (row, metric) in headline_rows(rows.to_dict("records"), claims).items():
            cells[name] = results.interval_text(row, metric, max_fpr)
        columns[f"{trial_id}" + (f" ({settings})" if settings else "")] = cells
    if not columns:
        return
    table = pd.DataFrame(columns).fillna("")
    print(
        "\nHeadline per trial (each claim's metric: its reading and its controls, 95% "
        f"interval):\n{table.to_string()}"
    )
    if len(trial_ids) > PRINTED_CONFIGURATIONS:
        print(f"... and {len(trial_ids) - PRINTED_CONFIGURATIONS} more trials")
    print(
        f"Every scoring combination ({len(scored)} rows): scores.csv and scores.md on the "
        "sweep's parent run, scores.json on each trial's run"
    )
    print(CHANCE_NOTE + "\n")


def trials_figure(
    table: pd.DataFrame,
    scored: pd.DataFrame,
    search_space: SearchSpace,
    searched: list[str],
    path: Path,
) -> Path | None:
    """A dot chart, one row per trial (best first): with a score table, each trial's headline
    (:mod:`orchestrator.headline`: per claim, its reading and its controls); else the
    ``compare`` metrics; None when there is neither."""
    if table.empty:
        return None
    names = [
        " ".join([row["trial_id"], *(f"{key}={row[key]}" for key in searched if key != "seed")])
        + ("" if row["status"] == "OK" else f" ({row['status']})")
        for row in table.to_dict("records")
    ]
    claims = search_space.claims
    if not scored.empty and claims:
        per_trial = {
            trial_id: headline(rows.to_dict("records"), claims)
            for trial_id, rows in scored.groupby("trial_id", sort=False)
        }
        series = dict.fromkeys(name for found in per_trial.values() for name in found)
        values = {
            name: [per_trial.get(trial_id, {}).get(name, math.nan) for trial_id in table.trial_id]
            for name in series
        }
        xlabel = "each claim's metric: its reading and its controls"
    elif search_space.compare:
        values = {label: table[label].tolist() for label in search_space.compare}
        xlabel = " / ".join(search_space.compare.values())
    else:  # nothing scored yet (an interrupted sweep)
        return None
    if not values:
        return None
    title = f"{len(table)} trials, best {search_space.metric} first"
    return compare_trials(names, values, path, title, xlabel)


def post_table(
    client: MlflowClient, run_id: str, name: str, table: pd.DataFrame, heading: str, digits: int = 3
) -> None:
    """Print ``table`` under ``heading`` and log it as ``name``.csv and ``name``.md."""
    text = table.to_string(index=False, float_format=lambda v: f"{v:.{digits}f}")
    print(f"\n{heading}:\n{text}\n")
    client.log_text(run_id, table.to_csv(index=False), f"{name}.csv")
    client.log_text(run_id, results.markdown(table), f"{name}.md")


def configurations(finished: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    """Trials grouped by the settings ``keys`` (e.g. every seed of one model), as ``(values,
    rows)`` pairs."""
    if not keys:
        return [(("all",), finished)] if len(finished) else []
    return [
        (values if isinstance(values, tuple) else (values,), group)
        for values, group in finished.groupby(keys, sort=False)
    ]


def compare_with_reference(table: pd.DataFrame, search_space: SearchSpace) -> pd.DataFrame:
    """Per group (e.g. MVTec category): the best finished trial by the sweep's metric (never by
    a test metric), its ``ours`` metrics (and their 95% bootstrap intervals) beside the
    ``REFERENCE`` numbers, and a mean row."""
    finished = table[table.status == "OK"]  # already sorted best first
    best = finished.groupby(search_space.group_by, sort=False).head(1)
    rows = []
    for group, reference in search_space.reference.items():
        found = best[best[search_space.group_by] == group]
        if not len(found):
            continue
        ours = {
            column: found[column].iloc[0]
            for label in search_space.ours
            for column in (label, f"{label} low", f"{label} high")
        }
        rows.append(
            {search_space.group_by: group}
            | ours
            | dict(zip(search_space.reference_columns, reference, strict=True))
            | {"trial_id": found.trial_id.iloc[0]}
        )
    comparison = pd.DataFrame(
        rows,
        columns=[
            search_space.group_by,
            *(c for label in search_space.ours for c in (label, f"{label} low", f"{label} high")),
            *search_space.reference_columns,
            "trial_id",
        ],
    )
    mean = {search_space.group_by: f"mean ({len(comparison)} swept)"}
    mean |= comparison.drop(columns=[search_space.group_by, "trial_id"]).mean().to_dict()
    return pd.concat([comparison, pd.DataFrame([mean | {"trial_id": ""}])], ignore_index=True)


def aggregate(
    scored: pd.DataFrame,
    search_space: SearchSpace,
    searched: list[str],
    over: tuple[str, ...],
    fixed: dict[str, Any],
) -> pd.DataFrame:
    """Per configuration (the searched settings but ``over``, e.g. the seed) and scoring
    combination: the number of trials pooled, and for each ``aggregate`` metric its mean, the
    95% t-interval of the mean over those trials (NaN for one), its standard deviation and the
    mean class sizes of its trials; with the ``REFERENCE`` numbers of its ``REFERENCE_BY`` value
    (from ``fixed`` when every trial shares it)."""
    keys = [k for k in searched if k not in over] + [c for c in COLUMNS if c in scored]
    rows = []
    for values, group in configurations(scored, keys):
        row = dict(zip(keys, values, strict=False)) if keys else {}
        row["n_" + "_and_".join(f"{key}s" for key in over)] = len(group)
        for metric in search_space.aggregate:
            if metric not in group:
                continue
            mean, low, high, std = results.t_interval(group[metric].dropna().to_numpy(dtype=float))
            row |= {
                f"{metric}_mean": mean,
                f"{metric}_ci_low": low,
                f"{metric}_ci_high": high,
                f"{metric}_std": std,
            }
            for size in (f"{metric}_n_pos", f"{metric}_n_neg"):
                if size in group:
                    row[size] = group[size].mean()
        reference = search_space.reference_by
        if reference:
            by = row.get(reference, fixed.get(reference))
            row |= search_space.reference.get(by, {})
        rows.append(row)
    return pd.DataFrame(rows)
