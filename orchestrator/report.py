"""The paper's claims beside our measurements, from MLflow alone: ``report.md`` and a
self-contained ``report.html``.

    python -m orchestrator.report --name SWEEP_OR_CAMPAIGN [--tracking-uri URI] [--out DIR]

For a sweep, or for every sweep of a campaign (``sweep all``), each claim its search space lists
(``CLAIMS``, PAPER.md section 4) gets one row per group (a category, an inlier digit, a model):
the paper's and the reproduction's numbers, ours with its 95% interval, its controls, and a
verdict by :func:`verdict`. Every number cites the MLflow runs and the metric key it comes from.
Ours is the configuration with the best validation loss in its group (never a test metric),
averaged over its seeds; with one seed, the one trial's bootstrap interval over images.

The report is regenerated, never edited: the same runs give the same files but for the line
that says when it was generated.
"""

from __future__ import annotations

import argparse
import base64
import html
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if __name__ == "__main__":  # a service that does not answer: one line now, before slow imports
    from orchestrator.services import probe_argv

    probe_argv(sys.argv[1:], ray=False)

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Run  # noqa: E402
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR  # noqa: E402
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT  # noqa: E402
from scipy import stats  # noqa: E402

from orchestrator.names import name_problem  # noqa: E402
from orchestrator.services import ServiceError, check_recorded  # noqa: E402
from orchestrator.tracking import (  # noqa: E402
    SUPERSEDED_TAG,
    SWEEP_TAG,
    Tracking,
    find_sweep,
    nested_runs,
    unparam,
)
from search_spaces import SPACES  # noqa: E402
from vaecam.scoring import COLUMNS, metric_name  # noqa: E402

#: Our interval may be at most this wide for a verdict against a published number.
MAX_WIDTH = 0.2
VERDICT_RULE = (
    "A verdict compares our 95% interval with the paper's value (or range): *consistent* when "
    "they overlap, *above* or *below* when ours lies wholly above or below it; against a "
    "baseline (a claim that the paper's method beats it), *consistent* when our interval lies "
    "wholly above the baseline's, *below* when wholly below. It is *inconclusive* when our "
    f"interval is wider than {MAX_WIDTH} or contains chance, and there is no verdict on data "
    "other than the paper's (synthetic, procedural or a stand-in)."
)


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
    if math.isnan(low) or math.isnan(high) or high - low > max_width:
        return "inconclusive"
    if chance is not None and low <= chance <= high:
        return "inconclusive"
    if high < paper[0]:
        return "below"
    if low > paper[1]:
        return "above"
    return "consistent"


def versus_verdict(
    low: float, high: float, base_low: float, base_high: float, chance: float | None
) -> str:
    """The verdict on a claim that ours beats a baseline: our interval against the baseline's,
    by :data:`VERDICT_RULE`."""
    if any(math.isnan(v) for v in (low, high, base_low, base_high)):
        return "inconclusive"
    if chance is not None and low <= chance <= high:
        return "inconclusive"
    if low > base_high:
        return "consistent"
    if high < base_low:
        return "below"
    return "inconclusive"


@dataclass
class Estimate:
    """A metric over the trials of one configuration: the mean, its 95% interval (t over the
    trials when there are several, else the one trial's bootstrap interval), how many trials
    and over what the interval runs, the class sizes, and the runs and metric key cited."""

    value: float
    low: float
    high: float
    trials: int
    over: str
    runs: list[str]
    key: str
    n: str = ""

    def cell(self) -> str:
        if math.isnan(self.value):
            return "n/a"
        interval = "" if math.isnan(self.low) else f" [{self.low:.3f}, {self.high:.3f}]"
        return f"{self.value:.3f}{interval}"


def estimate(runs: Sequence[Run], key: str) -> Estimate | None:
    """``key`` over ``runs`` (one configuration's seeds), or None where no run has it."""
    having = [run for run in runs if key in run.data.metrics]
    if not having:
        return None
    values = np.array([run.data.metrics[key] for run in having])
    ids = [run.info.run_id for run in having]
    first = having[0].data.metrics
    n = ""
    if f"{key}_n_pos" in first:
        n = f"{int(first[f'{key}_n_pos'])}+/{int(first[f'{key}_n_neg'])}-"
    if len(values) == 1:
        low, high = first.get(f"{key}_ci_low", math.nan), first.get(f"{key}_ci_high", math.nan)
        over = "one trial: no interval" if math.isnan(low) else "images (bootstrap)"
        return Estimate(float(values[0]), low, high, 1, over, ids, key, n)
    mean, half = values.mean(), stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1)
    half /= math.sqrt(len(values))
    over = f"{len(values)} seeds (t)"
    # Every claim's metric (AUROC, AP, the FactorVAE metric, MIG) lies in [0, 1]; with few
    # seeds the t-interval would reach past it.
    low, high = max(mean - half, 0.0), min(mean + half, 1.0)
    return Estimate(float(mean), low, high, len(values), over, ids, key, n)


def metric_key(run: Run, selection: Mapping[str, Any], metric: str) -> str:
    """The flat metric name of ``selection`` (a scoring combination) in ``run``: an image-level
    metric's name has the image score, a map-level one's not, and a baseline's drops what it
    lacks (:meth:`vaecam.scoring.ScoreTable.metrics`)."""
    candidates = [
        metric_name(selection, metric, COLUMNS),
        metric_name(selection, metric, COLUMNS[:-1]),
        metric_name(selection, metric, ("method",)),
    ]
    return next((key for key in candidates if key in run.data.metrics), candidates[0])


def control_selection(selection: Mapping[str, Any], method: str) -> dict[str, Any]:
    """A baseline or control scored as ``selection`` is: no layer, formulation or quantity."""
    return {**selection, "method": method, "target_layer": None, "formulation": None} | {
        "quantity": None
    }


@dataclass
class Sweep:
    """One sweep as MLflow holds it: its parent run, finished trial runs and search space."""

    run: Run
    trials: list[Run]
    space: ModuleType
    searched: list[str]

    @property
    def name(self) -> str:
        return self.run.data.tags[SWEEP_TAG]

    @property
    def experiment(self) -> str:
        return unparam(self.run.data.params["experiment"])

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


def find_run(client: MlflowClient, name: str) -> Run:
    """The top run named ``name`` (a sweep's or a campaign's). Raises ``LookupError`` naming
    what exists when there is none."""
    found = find_sweep(client.tracking_uri, name)
    if found is None:
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, "") if experiments else []
        known = sorted({r.data.tags[SWEEP_TAG] for r in runs if SWEEP_TAG in r.data.tags})
        raise LookupError(
            f"--name {name!r}: no sweep or campaign of that name in this MLflow store; "
            f"known: {', '.join(known[-10:]) or 'none'}"
        )
    return client.get_run(found[0].parent_run_id)


def find_sweeps(client: MlflowClient, name: str) -> tuple[Run, list[Sweep]]:
    """The run named ``name`` (a sweep or a campaign, :func:`find_run`) and its sweeps:
    itself, or the sweeps nested under it."""
    top = find_run(client, name)
    nested = nested_runs(client, top.info.experiment_id, top.info.run_id)
    sweep_runs = [r for r in nested if SWEEP_TAG in r.data.tags] or [top]
    sweeps = []
    for run in sorted(sweep_runs, key=lambda r: r.data.tags[SWEEP_TAG]):
        children = nested_runs(client, run.info.experiment_id, run.info.run_id)
        finished = [
            r for r in children if r.info.status == "FINISHED" and SUPERSEDED_TAG not in r.data.tags
        ]
        finished.sort(key=lambda r: r.info.run_id)
        space = SPACES[unparam(run.data.params["experiment"])]
        searched = unparam(run.data.params.get("searched", "[]"))
        sweeps.append(Sweep(run, finished, space, searched))
    return top, sweeps


def best_configuration(sweep: Sweep, trials: list[Run]) -> list[Run]:
    """The seeds of the configuration with the best mean validation metric among ``trials``
    (their searched settings but the seed): model selection never sees a test metric."""
    keys = [k for k in sweep.searched if k != "seed"]
    configurations: dict[tuple, list[Run]] = {}
    for run in trials:
        configurations.setdefault(tuple(run.data.params.get(k) for k in keys), []).append(run)
    sign = 1 if sweep.space.MODE == "min" else -1

    def score(runs: list[Run]) -> float:
        values = [r.data.metrics.get(sweep.space.METRIC, math.nan) for r in runs]
        return sign * float(np.nanmean(values)) if not all(map(math.isnan, values)) else math.inf

    return min(configurations.values(), key=score) if configurations else []


@dataclass
class ClaimRow:
    """One claim in one group, measured."""

    experiment: str
    claim: str
    group: str
    paper: str
    reproduction: str
    ours: Estimate
    controls: dict[str, Estimate]
    verdict: str


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


def _chance(claim: Mapping[str, Any], metric: str) -> float | None:
    if "chance" in claim:
        return claim["chance"]
    return 0.5 if metric.endswith(("auroc", "eer")) else None


def measure(sweep: Sweep, claim: Mapping[str, Any]) -> list[ClaimRow]:
    """``claim`` in each group of ``sweep``'s finished trials (:mod:`module doc <orchestrator.
    report>`)."""
    group_key, metric = claim.get("group"), claim["metric"]
    groups: dict[str, list[Run]] = {}
    for run in sweep.trials:
        value = unparam(run.data.params.get(group_key, "null")) if group_key else "all"
        groups.setdefault(str(value), []).append(run)
    on_paper, _ = sweep.on_papers_data(claim["dataset"])
    rows = []
    for group in sorted(groups, key=_natural):
        chosen = best_configuration(sweep, groups[group])
        selection = claim.get("select")
        key = metric_key(chosen[0], selection, metric) if selection else metric
        ours = estimate(chosen, key)
        if ours is None:
            continue
        controls = {}
        for method in claim.get("controls", []):
            control_key = metric_key(chosen[0], control_selection(selection, method), metric)
            found = estimate(chosen, control_key)
            if found is not None:
                controls[method] = found
        chance = _chance(claim, metric)
        if not on_paper:
            decided = "no verdict: not the paper's data"
        elif "versus" in claim:
            base = controls.get(claim["versus"])
            decided = (
                versus_verdict(ours.low, ours.high, base.low, base.high, chance)
                if base
                else "inconclusive"
            )
        else:
            decided = verdict(ours.low, ours.high, _paper_range(claim, group), chance)
        rows.append(
            ClaimRow(
                sweep.experiment,
                claim["claim"],
                group if group_key else "",
                _text(claim.get("paper_text", claim.get("paper")), group),
                _text(claim.get("reproduction_text"), group),
                ours,
                controls,
                decided,
            )
        )
    return rows


def _natural(text: str) -> tuple:
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


def deviations(sweep: Sweep) -> list[str]:
    """Where the sweep's recorded settings differ from what PAPER.md gives (``PAPER_SETTINGS``
    of its search space), and its preset and budget."""
    found = []
    for key, paper in getattr(sweep.space, "PAPER_SETTINGS", {}).items():
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


@dataclass
class Document:
    """Blocks of a report, rendered as Markdown and as HTML with the same content."""

    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def text(self, text: str) -> None:
        self.blocks.append(("text", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", (list(header), [list(map(str, r)) for r in rows])))

    def figure(self, path: Path, caption: str) -> None:
        self.blocks.append(("figure", (path, caption)))

    def markdown(self, out: Path) -> str:
        lines = []
        for kind, value in self.blocks:
            if kind == "heading":
                lines += ["#" * value[0] + " " + value[1], ""]
            elif kind == "text":
                lines += [value, ""]
            elif kind == "table":
                header, rows = value
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "---|" * len(header))
                lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
                lines.append("")
            else:
                path, caption = value
                lines += [f"![{caption}]({path.relative_to(out).as_posix()})", ""]
        return "\n".join(lines)

    def html(self, title: str) -> str:
        parts = [
            "<!DOCTYPE html>",
            f'<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
            "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
            "padding:2px 6px;font-size:90%}img{max-width:100%}</style></head><body>",
        ]
        for kind, value in self.blocks:
            if kind == "heading":
                parts.append(f"<h{value[0]}>{html.escape(value[1])}</h{value[0]}>")
            elif kind == "text":
                parts.append(f"<p>{html.escape(value)}</p>")
            elif kind == "table":
                header, rows = value
                parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header))
                for row in rows:
                    cells = "".join(f"<td>{html.escape(c)}</td>" for c in row)
                    parts.append(f"<tr>{cells}</tr>")
                parts.append("</table>")
            else:
                path, caption = value
                data = base64.b64encode(path.read_bytes()).decode()
                parts.append(
                    f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,'
                    f'{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'
                )
        return "\n".join(parts + ["</body></html>", ""])


CLAIM_HEADER = [
    "experiment",
    "claim",
    "group",
    "paper",
    "reproduction",
    "ours [95%]",
    "interval over",
    "n",
    "controls",
    "verdict",
    "metric key",
    "runs",
]


def claim_cells(row: ClaimRow) -> list[str]:
    controls = "; ".join(f"{name} {e.cell()}" for name, e in row.controls.items())
    return [
        row.experiment,
        row.claim,
        row.group,
        row.paper,
        row.reproduction,
        row.ours.cell(),
        row.ours.over,
        row.ours.n,
        controls,
        row.verdict,
        row.ours.key,
        " ".join(row.ours.runs),
    ]


def bars(rows: list[ClaimRow], claim: Mapping[str, Any], path: Path) -> Path:
    """Ours and the controls per group, with their intervals, and the paper's value."""
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
    ax.set_title(claim["claim"], fontsize=9)
    ax.legend(fontsize=7, ncol=len(names), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


#: Figures of a sweep's parent run and of its best trial, shown where they exist.
PARENT_FIGURES = ("trials.png", "scatter.png")
TRIAL_FIGURES = ("figures/roc.png", "figures/localisation.png")


def fetch(client: MlflowClient, run_id: str, path: str, folder: Path) -> Path | None:
    """Artifact ``path`` of ``run_id`` in ``folder``, or None when the run has none."""
    parent = path.rpartition("/")[0]
    if not any(item.path == path for item in client.list_artifacts(run_id, parent or None)):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(folder)))


def build(client: MlflowClient, name: str, out: Path) -> tuple[Document, Run, list[ClaimRow]]:
    """The report of ``name`` (a sweep or a campaign) with its figures in ``out/figures``."""
    top, sweeps = find_sweeps(client, name)
    doc = Document()
    doc.heading(f"vaecam report: {name}", 1)
    doc.text(
        "Every claim of the paper this run tests, beside our measurement and its controls. "
        "Regenerated from MLflow by `python -m orchestrator.report --name " + name + "`."
    )
    doc.heading("What the numbers stand on")
    stand = []
    for sweep in sweeps:
        seeds = sorted({r.data.params.get("seed", "") for r in sweep.trials})
        dataset = sweep.space.CLAIMS[0]["dataset"] if getattr(sweep.space, "CLAIMS", []) else ""
        on_paper, described = sweep.on_papers_data(dataset)
        budget = sweep.param("epochs") or sweep.param("iterations")
        stand.append(
            [
                sweep.experiment,
                sweep.name,
                ("real: " if on_paper else "not the paper's: ") + described,
                str(len(sweep.trials)),
                ",".join(seeds),
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
    header = ["experiment", "sweep", "data", "finished trials", "seeds", "epochs / iterations"]
    doc.table([*header, "commit"], [row + [""] * (len(header) + 1 - len(row)) for row in stand])
    doc.heading("Verdicts")
    doc.text(VERDICT_RULE)
    every: list[ClaimRow] = []
    sections = []
    for sweep in sweeps:
        measured = [(claim, measure(sweep, claim)) for claim in getattr(sweep.space, "CLAIMS", [])]
        every += [row for _, rows in measured for row in rows]
        sections.append((sweep, measured))
    doc.table(CLAIM_HEADER, [claim_cells(row) for row in every])
    figures = out / "figures"
    for sweep, measured in sections:
        doc.heading(f"{sweep.experiment}: {sweep.name}")
        folder = figures / sweep.name
        folder.mkdir(parents=True, exist_ok=True)
        for index, (claim, rows) in enumerate(measured):
            if rows:
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
            for artifact in TRIAL_FIGURES:
                path = fetch(client, run.info.run_id, artifact, folder / run.info.run_id)
                if path:
                    doc.figure(path, f"{artifact} of the selected trial {run.info.run_id}")
            overlays = [a.path for a in client.list_artifacts(run.info.run_id, "overlays")]
            for artifact in sorted(overlays)[:3]:
                path = fetch(client, run.info.run_id, artifact, folder / run.info.run_id)
                if path:
                    doc.figure(path, f"attention maps of {artifact} (every scoring choice)")
        doc.heading("Deviations from the paper", 3)
        for line in deviations(sweep):
            doc.text("- " + line)
    return doc, top, every


def write(client: MlflowClient, name: str, out: Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out`` and log both on the run ``name``."""
    os.environ.setdefault(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, "false")  # one per figure
    out.mkdir(parents=True, exist_ok=True)
    doc, top, _ = build(client, name, out)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    doc.blocks.insert(1, ("text", f"Generated {stamp}."))
    md, page = out / "report.md", out / "report.html"
    md.write_text(doc.markdown(out))
    page.write_text(doc.html(f"vaecam report: {name}"))
    for path in (md, page):
        client.log_artifact(top.info.run_id, str(path))
    return md, page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="a sweep's or a campaign's name")
    parser.add_argument(
        "--tracking-uri",
        default=f"sqlite:///{Path('mlflow.db').resolve()}",
        help="the MLflow store the sweep recorded into",
    )
    parser.add_argument("--out", type=Path, help="folder for the report (default: report-NAME)")
    args = parser.parse_args(argv)
    problem = name_problem(args.name)
    if problem:
        parser.error(problem)
    out = args.out or Path(f"report-{args.name}")
    try:  # the run is found before anything is written
        check_recorded(args.tracking_uri)
        client = MlflowClient(args.tracking_uri)
        top = find_run(client, args.name)
        md, page = write(client, args.name, out.resolve())
    except (ServiceError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    link = Tracking(args.tracking_uri, top.info.experiment_id, top.info.run_id).ui_link()
    print(f"Report: {md}\n        {page} (self-contained)\nLogged on the run: {link}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
