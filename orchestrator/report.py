"""The paper's claims beside our measurements, from MLflow alone: ``report.md`` and a
self-contained ``report.html``.

    python -m orchestrator.report --name SWEEP_OR_CAMPAIGN [--tracking-uri URI] [--out DIR]

For a sweep, or for every sweep of a campaign (``sweep all``), each claim its search space lists
(``claims``, PAPER.md section 4) gets one row per group (a category, an inlier digit, a model):
the paper's and the reproduction's numbers, ours with its 95% interval, its controls, and a
verdict by :func:`verdict`. Every number cites the MLflow runs and the row of their score
tables (``scores.json``) it comes from. Ours is the configuration with the best validation
loss in its group (never a test metric), averaged over its seeds; with one seed, the one
trial's bootstrap interval over images.

The report is regenerated, never edited: the same runs give the same files but for the line
that says when it was generated.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator import flags  # noqa: E402  (light: before the slow imports)
from orchestrator.services import ServiceError, check_recorded, probe_argv  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command's flags; parsed before MLflow, torch and Ray are imported (seconds), so
    ``--help`` and a mistyped flag answer at once."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    flags.add_name(parser, "a sweep's or a campaign's name")
    flags.add_tracking_uri(parser, "the MLflow store the sweep recorded into")
    parser.add_argument("--out", type=Path, help="folder for the report (default: report-NAME)")
    args = parser.parse_args(argv)
    for problem in flags.problems(args):
        parser.error(problem)
    return args


if __name__ == "__main__":  # the command: its flags first, then the imports below
    ARGS = parse_args()
    probe_argv(sys.argv[1:], ray=False)  # a service that does not answer: one line, exit 2
    print(f"Reading {ARGS.name} from {ARGS.tracking_uri} ...", flush=True)

import numpy as np  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Run  # noqa: E402
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR  # noqa: E402
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT  # noqa: E402

from orchestrator import page, results  # noqa: E402
from orchestrator.headline import closest, matching, number, readings  # noqa: E402
from orchestrator.tracking import (  # noqa: E402
    SWEEP_TAG,
    Tracking,
    child_runs,
    load_scores,
    nested_runs,
    unparam,
)
from search_spaces import SPACES  # noqa: E402
from search_spaces.space import SearchSpace  # noqa: E402
from vaecam.grid import COLUMNS  # noqa: E402

#: Our interval may be at most this wide for a verdict of *consistent* with a published number.
MAX_WIDTH = 0.2
VERDICT_RULE = (
    "A verdict compares our 95% interval with the paper's value (or range) first: *below* or "
    "*above* when ours lies wholly below or above it, *consistent* when they overlap; "
    f"*inconclusive* only when they overlap and ours is wider than {MAX_WIDTH}, or when the "
    'claim is "above chance" and ours contains chance. Against a baseline (a claim that the '
    "paper's method beats it): *consistent* when our interval lies wholly above the "
    'baseline\'s, *below* when wholly below, *inconclusive* when they overlap. "(at chance)" '
    "marks every verdict whose interval also contains chance. Each verdict names the setting "
    "it stands on (budget, data, seeds); there is none on data other than the paper's "
    "(synthetic, procedural or a stand-in)."
)


def _at_chance(found: str, low: float, high: float, chance: float | None) -> str:
    return f"{found} (at chance)" if chance is not None and low <= chance <= high else found


def verdict(
    low: float,
    high: float,
    paper: tuple[float, float] | None,
    chance: float | None,
    max_width: float = MAX_WIDTH,
) -> str:
    """The verdict on our 95% interval ``[low, high]`` against the paper's ``(low, high)``
    range (one value: equal ends), by :data:`VERDICT_RULE`."""
    if paper is None:
        return "no published number"
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if high < paper[0]:
        found = "below"
    elif low > paper[1]:
        found = "above"
    elif high - low > max_width or (chance is not None and paper[0] <= chance and low <= chance):
        # too wide to mean anything, or "above chance" claimed and chance not excluded
        found = "inconclusive"
    else:
        found = "consistent"
    return _at_chance(found, low, high, chance)


def versus_verdict(
    low: float, high: float, base_low: float, base_high: float, chance: float | None
) -> str:
    """The verdict on a claim that ours beats a baseline: our interval against the baseline's,
    by :data:`VERDICT_RULE`."""
    if any(math.isnan(v) for v in (low, high, base_low, base_high)):
        return "inconclusive"
    if low > base_high:
        found = "consistent"
    elif high < base_low:
        found = "below"
    else:
        found = "inconclusive"
    return _at_chance(found, low, high, chance)


@dataclass
class Estimate:
    """A metric over the trials of one configuration: the mean, its 95% interval (t over the
    trials when there are several, else the one trial's bootstrap interval), over what the
    interval runs, the class sizes, and the runs and score-table row cited."""

    value: float
    low: float
    high: float
    over: str
    runs: list[str]
    cited: str
    n: str = ""

    def cell(self) -> str:
        if math.isnan(self.value):
            return "n/a"
        interval = "" if math.isnan(self.low) else f" [{self.low:.3f}, {self.high:.3f}]"
        return f"{self.value:.3f}{interval}"


#: A score-table row of one run for an estimate: (the run's rows) -> the row, or None.
Pick = Callable[[list[dict[str, Any]]], Mapping[str, Any] | None]


def cite(row: Mapping[str, Any], metric: str) -> str:
    """``metric`` of the score-table row ``row``, by its combination: ``pixel_auroc @
    method=attention, target_layer=..., ...`` (a table without combinations: the metric)."""
    fields = ", ".join(f"{c}={row[c]}" for c in COLUMNS if row.get(c) not in (None, ""))
    return f"{metric} @ {fields}" if fields else metric


def estimate(sweep: Sweep, runs: Sequence[Run], metric: str, pick: Pick) -> Estimate | None:
    """``metric`` of the row ``pick`` chooses in each of ``runs``' score tables (one
    configuration's seeds), or None where no run has one."""
    found = [(run, pick(sweep.tables.get(run.info.run_id, []))) for run in runs]
    found = [(run, row) for run, row in found if row is not None]
    if not found:
        return None
    ids = [run.info.run_id for run, _ in found]
    first = found[0][1]
    n, cited = results.sizes(first, metric), cite(first, metric)
    if len(found) == 1:
        low = number(first, f"{metric}_ci_low")
        high = number(first, f"{metric}_ci_high")
        low, high = (math.nan, math.nan) if low is None or high is None else (low, high)
        over = "one trial: no interval" if math.isnan(low) else "images (bootstrap)"
        return Estimate(float(first[metric]), low, high, over, ids, cited, n)
    mean, low, high, _ = results.t_interval([row[metric] for _, row in found])
    over = f"{len(found)} seeds (t)"
    # Every claim's metric (AUROC, AP, the FactorVAE metric, MIG) lies in [0, 1]; with few
    # seeds the t-interval would reach past it.
    low, high = max(low, 0.0), min(high, 1.0)
    return Estimate(mean, low, high, over, ids, cited, n)


@dataclass
class Sweep:
    """One sweep as MLflow holds it: its parent run, finished trial runs and search space."""

    run: Run
    trials: list[Run]
    space: SearchSpace
    searched: list[str]
    #: Each trial's score table (``scores.json``), by run id: its rows.
    tables: dict[str, list[dict[str, Any]]]

    @property
    def name(self) -> str:
        return self.run.data.tags[SWEEP_TAG]

    @property
    def space_name(self) -> str:
        return unparam(self.run.data.params["space"])

    def param(self, key: str) -> Any:
        return unparam(self.run.data.params.get(f"space.{key}", "null"))

    def datasets(self) -> dict[str, dict[str, int]]:
        """Dataset name -> split -> images, over the trials' dataset inputs."""
        found: dict[str, dict[str, int]] = {}
        for run in self.trials:
            for item in run.inputs.dataset_inputs:
                split = next((t.value for t in item.tags if t.key == "mlflow.data.context"), "")
                profile = unparam(item.dataset.profile or "{}")
                found.setdefault(item.dataset.name, {})[split] = profile.get("num_images", 0)
        return found

    def on_papers_data(self, dataset: str) -> tuple[bool, str]:
        """Whether every trial stands on the paper's ``dataset`` (real, not synthetic, not a
        stand-in), and what they stand on, with image counts."""
        names = self.datasets()
        described = "; ".join(
            f"{name}: " + ", ".join(f"{split} {n}" for split, n in sorted(splits.items()))
            for name, splits in sorted(names.items())
        )
        real = bool(names) and all(
            name.split("/")[0] == dataset and not name.endswith("(synthetic)") for name in names
        )
        return real, described or "no dataset recorded"


def find_sweeps(client: MlflowClient, name: str) -> tuple[Run, list[Sweep]]:
    """The run named ``name`` (a sweep or a campaign, :func:`find_run`) and its sweeps:
    itself, or the sweeps nested under it."""
    top = results.find_run(client, name)
    nested = nested_runs(client, top.info.experiment_id, top.info.run_id)
    sweep_runs = [r for r in nested if SWEEP_TAG in r.data.tags] or [top]
    sweeps = []
    for run in sorted(sweep_runs, key=lambda r: r.data.tags[SWEEP_TAG]):
        sweep = Tracking(client.tracking_uri, run.info.experiment_id, run.info.run_id)
        trials = child_runs(client, sweep)
        finished = [r for r in trials if r.info.status == "FINISHED"]
        finished.sort(key=lambda r: r.info.run_id)
        loaded = load_scores(client, run.info.experiment_id, [r.info.run_id for r in finished])
        tables = {
            key: rows.to_dict("records") for key, rows in results.tables_by_run(loaded).items()
        }
        space = SPACES[unparam(run.data.params["space"])]
        searched = unparam(run.data.params.get("searched", "[]"))
        sweeps.append(Sweep(run, finished, space, searched, tables))
    return top, sweeps


def best_configuration(sweep: Sweep, trials: list[Run]) -> list[Run]:
    """The seeds of the configuration with the best mean validation metric among ``trials``
    (their searched settings but the seed): model selection never sees a test metric."""
    keys = [k for k in sweep.searched if k != "seed"]
    configurations: dict[tuple, list[Run]] = {}
    for run in trials:
        configurations.setdefault(tuple(run.data.params.get(k) for k in keys), []).append(run)
    sign = 1 if sweep.space.mode == "min" else -1

    def score(runs: list[Run]) -> float:
        values = [r.data.metrics.get(sweep.space.metric, math.nan) for r in runs]
        return sign * float(np.nanmean(values)) if not all(map(math.isnan, values)) else math.inf

    return min(configurations.values(), key=score) if configurations else []


@dataclass
class ClaimRow:
    """One claim, under one reading, in one group, measured (``ours`` None where the reading is
    not in the sweep's grid); ``setting`` says what the verdict stands on."""

    space: str  # the search space's name
    claim: str
    reading: str
    group: str
    paper: str
    reproduction: str
    ours: Estimate | None
    controls: dict[str, Estimate]
    verdict: str
    setting: str = ""
    papers_setting: bool = True


def _text(value: Any, group: str) -> str:
    if isinstance(value, Mapping):
        value = value.get(group, "")
    if isinstance(value, tuple):
        return f"{value[0]:.2f}" if value[0] == value[1] else f"{value[0]:.2f}-{value[1]:.2f}"
    return "" if value is None else str(value)


def _paper_range(claim: Mapping[str, Any], group: str) -> tuple[float, float] | None:
    paper = claim.get("paper")
    if isinstance(paper, Mapping):
        paper = paper.get(group)
    if paper is None:
        return None
    return paper if isinstance(paper, tuple) else (float(paper), float(paper))


def budget(sweep: Sweep) -> tuple[str, bool]:
    """The sweep's training budget in words, and whether it is the paper's."""
    params = sweep.run.data.params
    if unparam(params.get("quick", "false")):
        return "quick budget", False
    preset = unparam(params.get("preset", "null"))
    paper = sweep.space.paper_settings
    for key in ("epochs", "iterations"):
        if key in paper:
            ours, theirs = sweep.param(key), paper[key]
            low, high = theirs if isinstance(theirs, tuple) else (theirs, theirs)
            papers = isinstance(ours, int | float) and low <= ours <= high
            theirs = f"{low:g}" if low == high else f"{low:g}-{high:g}"
            shown = f"{key} {ours}" + ("" if papers else f" (paper: {theirs})")
            return (f"preset {preset}, " if preset else "") + shown, papers
    return (f"preset {preset}" if preset else "the search space's budget"), bool(preset)


def data_setting(
    sweep: Sweep, runs: Sequence[Run], on_paper: tuple[bool, str], group: str
) -> tuple[str, bool]:
    """What ``runs`` were tested on in words (the paper's data, whole or a subset with its
    image counts, or not the paper's: ``on_paper`` is :meth:`Sweep.on_papers_data`), and
    whether it is the paper's whole test set."""
    on_paper, described = on_paper
    if not on_paper:
        return f"not the paper's data ({described})", False
    profiles = [unparam(i.dataset.profile or "{}") for r in runs for i in r.inputs.dataset_inputs]
    tested = max((p.get("num_images", 0) for p in profiles if p.get("split") == "test"), default=0)
    full = sweep.space.full_test_images
    full = full.get(group) if isinstance(full, Mapping) else full
    if full is None or not tested:
        return "the paper's data", True
    if tested < full:
        return f"a subset: {tested} of {full} test images", False
    return f"the full test set ({full} images)", True


def seeds_text(runs: Sequence[Run]) -> str:
    """``"3 seeds (0, 1, 2)"``: how many, and which."""
    seeds = sorted({unparam(r.data.params.get("seed", "null")) for r in runs}, key=str)
    return f"{len(seeds)} seed{'s' * (len(seeds) != 1)} ({', '.join(map(str, seeds))})"


def _reading_described(claim: Mapping[str, Any]) -> str:
    select = claim.get("select") or {}
    named = "/".join(
        str(select[k]) for k in ("target_layer", "formulation", "quantity") if k in select
    )
    return f"{claim['reading']}: {named}" if "reading" in claim else named


def measure(sweep: Sweep, claim: Mapping[str, Any]) -> list[ClaimRow]:
    """``claim`` in each group of ``sweep``'s finished trials (:mod:`module doc <orchestrator.
    report>`); a group whose grid lacks the claim's reading gets a row that says so."""
    group_key, metric = claim.get("group"), claim["metric"]
    selection = claim.get("select") or {}
    groups: dict[str, list[Run]] = {}
    for run in sweep.trials:
        value = unparam(run.data.params.get(group_key, "null")) if group_key else "all"
        groups.setdefault(str(value), []).append(run)
    budget_text, papers_budget = budget(sweep)
    on_paper = sweep.on_papers_data(claim["dataset"])  # once: it reads every trial's inputs
    rows = []
    for group in sorted(groups, key=_natural):
        chosen = best_configuration(sweep, groups[group])
        ours = estimate(sweep, chosen, metric, lambda rows: matching(rows, selection, metric))
        data_text, papers_data = data_setting(sweep, chosen, on_paper, group)
        controls = {}
        for method in claim.get("controls", []) if ours else []:
            # scored as the reading is (:func:`orchestrator.headline.closest`)
            found = estimate(
                sweep, chosen, metric, lambda rows, m=method: closest(rows, m, selection, metric)
            )
            if found is not None:
                controls[method] = found
        level = claim["chance"] if "chance" in claim else results.chance(metric)
        if ours is None:
            reading = _reading_described(claim)
            decided = f"not measured under this preset (reading {reading} not in the grid)"
        elif not on_paper[0]:
            decided = "no verdict: not the paper's data"
        elif "versus" in claim:
            base = controls.get(claim["versus"])
            decided = (
                versus_verdict(ours.low, ours.high, base.low, base.high, level)
                if base
                else "inconclusive"
            )
        else:
            decided = verdict(ours.low, ours.high, _paper_range(claim, group), level)
        untrained = controls.get("untrained")
        if ours and untrained and ours.low <= untrained.value <= ours.high:
            decided += "; the untrained model's maps score within our interval: the maps do not "
            decided += "depend on what the model learned"
        label = group if group_key else ""
        shown = claim.get("group_settings", {}).get(group, [])
        if shown:  # e.g. the effective lambda: lam and the AD loss's reduction
            label += " (" + ", ".join(f"{k} {chosen[0].data.params.get(k)}" for k in shown) + ")"
        rows.append(
            ClaimRow(
                sweep.space_name,
                claim["claim"],
                claim.get("reading", ""),
                label,
                _text(claim.get("paper_text", claim.get("paper")), group),
                _reproduction_text(claim, group, chosen[0]),
                ours,
                controls,
                decided,
                f"{budget_text}; {data_text}; {seeds_text(chosen)}",
                papers_budget and papers_data,
            )
        )
    return rows


def _reproduction_text(claim: Mapping[str, Any], group: str, run: Run) -> str:
    """The reproduction's number, where ``run`` was made as theirs was (``reproduction_setting``:
    group -> the params theirs had); else what differs, so nobody compares the two."""
    text = _text(claim.get("reproduction_text"), group)
    required = claim.get("reproduction_setting", {}).get(group, {})
    differs = {k: v for k, v in required.items() if unparam(run.data.params.get(k, "null")) != v}
    if text and differs:
        ours = ", ".join(f"{k} {run.data.params.get(k)}" for k in differs)
        theirs = ", ".join(f"{k} {v}" for k, v in required.items())
        return f"{text}: not comparable (theirs: {theirs}; ours: {ours})"
    return text


def _natural(text: str) -> tuple:
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


def deviations(sweep: Sweep) -> list[str]:
    """Where the sweep's recorded settings differ from what PAPER.md gives (``paper_settings``
    of its search space), and its preset and budget."""
    found = []
    for key, paper in sweep.space.paper_settings.items():
        ours = sweep.param(key)
        if isinstance(ours, Mapping):  # a grid: each value
            ours = ours.get("grid_search", ours)
        values = ours if isinstance(ours, list) else [ours]
        if isinstance(paper, tuple):
            ok = all(paper[0] <= v <= paper[1] for v in values if isinstance(v, int | float))
        elif isinstance(paper, list):
            ok = all(v in paper for v in values)
        else:
            ok = all(v == paper for v in values)
        if not ok:
            shown = f"{paper[0]}-{paper[1]}" if isinstance(paper, tuple) else paper
            found.append(f"`{key}`: ours {ours}, the paper's {shown}")
    params = sweep.run.data.params
    if unparam(params.get("quick", "false")):
        found.append("`--quick`: the small budget (minutes on a CPU), not the paper's")
    preset = unparam(params.get("preset", "null"))
    found.append(f"preset: {preset}" if preset else "preset: none (the search space's defaults)")
    scoring = {k[8:]: unparam(v) for k, v in params.items() if k.startswith("scoring.")}
    if scoring:
        found.append("scoring grid: " + "; ".join(f"{k} {v}" for k, v in sorted(scoring.items())))
    return found


# --- rendering ---------------------------------------------------------------------------------


#: What names a claim row, first in each of the report's tables of them: header -> cell.
ROW_KEYS: dict[str, Callable[[ClaimRow], str]] = {
    "experiment": lambda row: row.space,
    "claim": lambda row: row.claim,
    "reading": lambda row: row.reading,
    "group": lambda row: row.group,
}
#: The verdict table's columns: header -> a claim row's cell.
CLAIM_COLUMNS: dict[str, Callable[[ClaimRow], str]] = ROW_KEYS | {
    "paper": lambda row: row.paper,
    "reproduction": lambda row: row.reproduction,
    "ours [95%]": lambda row: row.ours.cell() if row.ours else "n/a",
    "interval over": lambda row: row.ours.over if row.ours else "",
    "n": lambda row: row.ours.n if row.ours else "",
    "controls": lambda row: "; ".join(f"{name} {e.cell()}" for name, e in row.controls.items()),
    "verdict": lambda row: row.verdict,
    "setting": lambda row: row.setting,
}
#: Where each verdict's number comes from, a row for each of the verdict table's (a table of its
#: own: run ids and a score-table row's keys are long, and the verdicts' words need the width).
SOURCE_COLUMNS: dict[str, Callable[[ClaimRow], str]] = ROW_KEYS | {
    "scores.json row": lambda row: row.ours.cited if row.ours else "",
    "runs": lambda row: " ".join(row.ours.runs) if row.ours else "",
}


def bars(rows: list[ClaimRow], claim: Mapping[str, Any], path: Path) -> Path:
    """Ours and the controls per group, with their intervals, and the paper's value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in rows if row.ours is not None]
    groups = [row.group or "all" for row in rows]
    names = ["ours", *dict.fromkeys(m for row in rows for m in row.controls)]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(groups) * len(names) + 2), 3.6))
    for i, name in enumerate(names):
        estimates = [row.ours if name == "ours" else row.controls.get(name) for row in rows]
        values = [e.value if e else math.nan for e in estimates]
        errors = [
            [e.value - e.low if e and not math.isnan(e.low) else 0 for e in estimates],
            [e.high - e.value if e and not math.isnan(e.high) else 0 for e in estimates],
        ]
        x = np.arange(len(rows)) + i * width
        ax.bar(x, values, width, yerr=errors, label=name, capsize=2)
    for j, row in enumerate(rows):
        paper = _paper_range(claim, row.group)
        if paper:
            ax.hlines(paper, j - 0.1, j + 0.9 - width, colors="k", linestyles="dashed")
    ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2, groups)
    ax.set_ylabel(claim["metric"])
    ax.set_ylim(0, 1.05)
    title = " under ".join(filter(None, (claim["claim"], claim.get("reading"))))
    ax.set_title(textwrap.fill(title, 60), fontsize=9)
    ax.legend(fontsize=7, ncol=len(names), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


#: Figures of a sweep's parent run, shown where they exist; and the folder of its best trial's,
#: every one shown (which a trial writes depends on its experiment: ROC curves, traversals).
PARENT_FIGURES = ("trials.png", "scatter.png")
TRIAL_FIGURES = "figures"


def fetch(client: MlflowClient, run_id: str, path: str, folder: Path) -> Path | None:
    """Artifact ``path`` of ``run_id`` in ``folder``, or None when the run has none."""
    parent = path.rpartition("/")[0]
    if not any(item.path == path for item in client.list_artifacts(run_id, parent or None)):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(folder)))


def build(
    client: MlflowClient, name: str, out: Path
) -> tuple[results.Document, Run, list[ClaimRow]]:
    """The report of ``name`` (a sweep or a campaign) with its figures in ``out/figures``."""
    top, sweeps = find_sweeps(client, name)
    doc = results.Document()
    doc.heading(f"vaecam report: {name}", 1)
    doc.text(
        "Every claim of the paper this run tests, beside our measurement and its controls. "
        "Regenerated from MLflow by `python -m orchestrator.report --name " + name + "`."
    )
    doc.heading("What the numbers stand on")
    stand = []
    for sweep in sweeps:
        dataset = sweep.space.claims[0]["dataset"] if sweep.space.claims else ""
        on_paper, described = sweep.on_papers_data(dataset)
        budget = sweep.param("epochs") or sweep.param("iterations")
        stand.append(
            [
                sweep.space_name,
                sweep.name,
                ("real: " if on_paper else "not the paper's: ") + described,
                str(len(sweep.trials)),
                seeds_text(sweep.trials),
                str(budget),
                sweep.run.data.tags.get(MLFLOW_GIT_COMMIT, "unknown")[:12],
            ]
        )
    campaign = top.data.params
    names = {sweep.name for sweep in sweeps}
    for member in unparam(campaign.get("members", "[]")):
        if f"{name}-{member['experiment']}" not in names:
            stand.append([member["experiment"], "did not start (see its log)", member["data"]])
    for experiment, why in unparam(campaign.get("skipped", "{}")).items():
        stand.append([experiment, "skipped", why])
    header = ["experiment", "sweep", "data", "finished trials", "seeds: how many (which)"]
    header += ["epochs / iterations"]
    doc.table([*header, "commit"], [row + [""] * (len(header) + 1 - len(row)) for row in stand])
    doc.heading("Verdicts")
    doc.text(VERDICT_RULE)
    every: list[ClaimRow] = []
    sections = []
    for sweep in sweeps:
        measured = [(claim, measure(sweep, claim)) for claim in sweep.space.claims]
        every += [row for _, rows in measured for row in rows]
        sections.append((sweep, measured))
    outside = [row for row in every if not row.papers_setting]
    if outside:
        settings = sorted({row.setting for row in outside})
        doc.blocks.insert(
            2,
            (
                "text",
                f"{len(outside)} of {len(every)} claim rows are measured outside the paper's "
                "setting (" + " | ".join(settings) + "): read their verdicts as such.",
            ),
        )
    doc.table(list(CLAIM_COLUMNS), [[cell(r) for cell in CLAIM_COLUMNS.values()] for r in every])
    doc.text(
        "Where each verdict's number comes from, row for row: the score-table row (`scores.json` "
        "on each trial's run) and the runs it is read from."
    )
    doc.table(list(SOURCE_COLUMNS), [[cell(r) for cell in SOURCE_COLUMNS.values()] for r in every])
    figures = out / "figures"
    for sweep, measured in sections:
        doc.heading(f"{sweep.space_name}: {sweep.name}")
        for claim, _ in measured:
            doc.text(ours_sentence(claim))
        folder = figures / sweep.name
        folder.mkdir(parents=True, exist_ok=True)
        for index, (claim, rows) in enumerate(measured):
            if any(row.ours for row in rows):
                path = bars(rows, claim, folder / f"claim{index}.png")
                doc.figure(
                    path, f"{claim['claim']}: ours and its controls per group; dashed: the paper"
                )
        for artifact in PARENT_FIGURES:
            path = fetch(client, sweep.run.info.run_id, artifact, folder)
            if path:
                doc.figure(path, f"{artifact} of the sweep")
        best = best_configuration(sweep, sweep.trials)
        if best:
            run = best[0]
            drawn = client.list_artifacts(run.info.run_id, TRIAL_FIGURES)
            for item in sorted(drawn, key=lambda item: item.path):
                path = fetch(client, run.info.run_id, item.path, folder / run.info.run_id)
                if path:
                    doc.figure(path, f"{item.path} of the selected trial {run.info.run_id}")
            overlay_groups(client, doc, run, folder / run.info.run_id)
        doc.heading("Deviations from the paper", 3)
        for line in deviations(sweep):
            doc.text("- " + line)
    return doc, top, every


def ours_sentence(claim: Mapping[str, Any]) -> str:
    """Which reading is "ours" for ``claim`` and why, in a sentence."""
    chosen = readings(claim)
    if not chosen:
        return (
            f"For *{claim['claim']}*, ours is `{claim['metric']}` of the configuration with the "
            "best validation loss in its group: model selection never sees a test metric."
        )
    described = "; ".join(
        ", ".join(f"{key} `{value}`" for key, value in selection.items() if value)
        for selection in chosen.values()
    )
    reading = claim.get("reading", "the paper's method as this search space reads it")
    why = claim.get("why", "")
    why += (
        " The reading is fixed before any test metric is seen; ours is the configuration with "
        "the best validation loss in its group, and the controls are scored the same way on the "
        "same model."
    )
    return (
        f"For *{claim['claim']}* under **{reading}**, ours is `{claim['metric']}` of "
        f"{described}. {why.strip()}"
    )


def overlay_groups(client: MlflowClient, doc: results.Document, run: Run, folder: Path) -> None:
    """Every overlay group of ``run`` (``overlays/<group>/``, a file per few maps): its first
    file, and how many more the run has."""
    run_id = run.info.run_id
    for group in client.list_artifacts(run_id, "overlays"):
        files = (
            sorted(a.path for a in client.list_artifacts(run_id, group.path))
            if group.is_dir
            else [group.path]
        )
        # a folder per group: every group's first file has the same name
        path = fetch(client, run_id, files[0], folder / Path(group.path).name) if files else None
        if path:
            more = f"; {len(files) - 1} more files of maps in the run" if len(files) > 1 else ""
            doc.figure(path, f"attention maps of {files[0]} (the grid's maps{more})")


def write(client: MlflowClient, name: str, out: Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out`` and log both on the run ``name``."""
    os.environ.setdefault(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, "false")  # one per figure
    out.mkdir(parents=True, exist_ok=True)
    doc, top, _ = build(client, name, out)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    doc.blocks.insert(1, ("text", f"Generated {stamp}."))
    md, html_path = out / "report.md", out / "report.html"
    md.write_text(doc.markdown(out))
    html_path.write_text(page.render(f"vaecam report: {name}", doc.markdown(out), out))
    for path in (md, html_path):
        client.log_artifact(top.info.run_id, str(path))
    return md, html_path


def main(argv: list[str] | None = None, args: argparse.Namespace | None = None) -> int:
    args = args or parse_args(argv)
    out = args.out or Path(f"report-{args.name}")
    try:  # the run is found before anything is written
        check_recorded(args.tracking_uri)
        client = MlflowClient(args.tracking_uri)
        top = results.find_run(client, args.name)
        md, html_path = write(client, args.name, out.resolve())
    except (ServiceError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    link = Tracking(args.tracking_uri, top.info.experiment_id, top.info.run_id).ui_link()
    print(f"Report: {md}\n        {html_path} (self-contained)\nLogged on the run: {link}")
    return 0


if __name__ == "__main__":
    sys.exit(main(args=ARGS))
