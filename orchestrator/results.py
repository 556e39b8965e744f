"""A sweep's results as MLflow holds them, and how they are said: one layer under ``summary``
and ``report`` (so ``rescore`` too). Reading (beside :mod:`orchestrator.tracking`): a sweep's or
campaign's top run (:func:`find_run`), score tables by run (:func:`tables_by_run`). Saying: chance
levels (:func:`chance`), intervals (:func:`interval_text`, :func:`t_interval` over seeds) and
Markdown (:class:`Document`, :func:`markdown`), which :mod:`orchestrator.page` makes a page."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from orchestrator.tracking import SWEEP_TAG, sweep_run

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

# --- reading -------------------------------------------------------------------------------------


def find_run(client: MlflowClient, name: str) -> Run:
    """The top run named ``name`` (a sweep's or a campaign's) in a store that exists. Raises
    ``LookupError`` naming what exists when there is none."""
    found = sweep_run(client, name)
    if found is None:
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, "") if experiments else []
        known = sorted({r.data.tags[SWEEP_TAG] for r in runs if SWEEP_TAG in r.data.tags})
        raise LookupError(
            f"--name {name!r}: no sweep or campaign of that name in this MLflow store; "
            f"known: {', '.join(known[-10:]) or 'none'}"
        )
    return found


def tables_by_run(loaded: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Score tables loaded together (:func:`~orchestrator.tracking.load_scores`: a ``run_id``
    column) as run id -> that run's rows."""
    return dict(list(loaded.groupby("run_id", sort=False))) if len(loaded) else {}


# --- saying ---------------------------------------------------------------------------------------

#: AUPRO's integration limit where a sweep does not set one (the MVTec AD benchmark's).
DEFAULT_MAX_FPR = 0.3


def chance(
    metric: str, n_pos: float = 1, n_neg: float = 1, max_fpr: float = DEFAULT_MAX_FPR
) -> float | None:
    """The chance level of a score-table metric, by its name: 0.5 for AUROC (one-vs-one ones
    too) and EER, the positive rate (``n_pos`` of ``n_pos + n_neg``) for average precision,
    ``max_fpr / 2`` for AUPRO; None for other numbers."""
    if metric.endswith("auroc") or "_auroc_vs_" in metric or metric.endswith("eer"):
        return 0.5
    if metric == "average_precision":
        return n_pos / (n_pos + n_neg)
    if metric == "aupro":
        return max_fpr / 2
    return None


def interval_text(
    row: Mapping[str, Any], metric: str, max_fpr: float = DEFAULT_MAX_FPR, value: str = ""
) -> str:
    """``row``'s ``metric`` (its ``value`` column where given, e.g. an aggregate's mean) as
    ``value [low, high]``, marked ``~`` where the interval contains the metric's chance level
    and ``<`` where it lies wholly below it; "" for no value."""
    number, low, high = (
        row.get(k, math.nan) for k in (value or metric, f"{metric}_ci_low", f"{metric}_ci_high")
    )
    if pd.isna(number):
        return ""
    if pd.isna(low):
        return f"{number:.3f}"
    level = chance(metric, row.get(f"{metric}_n_pos", 1), row.get(f"{metric}_n_neg", 1), max_fpr)
    text = f"{number:.3f} [{low:.3f}, {high:.3f}]"
    if level is not None and low <= level <= high:
        text += " ~"
    elif level is not None and high < level:
        text += " <"
    return text


def sizes(row: Mapping[str, Any], metric: str) -> str:
    """``row``'s class sizes for ``metric`` as ``n_pos+/n_neg-``; "" where it has none."""
    positives, negatives = row.get(f"{metric}_n_pos"), row.get(f"{metric}_n_neg")
    return "" if positives is None or pd.isna(positives) else f"{positives:.0f}+/{negatives:.0f}-"


def t_interval(values: Sequence[float]) -> tuple[float, float, float, float]:
    """The mean of ``values`` (one per trial, e.g. per seed), the ends of its 95% t-interval
    and the standard deviation; NaN where there are too few values for them."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return (float(x[0]) if len(x) else math.nan), math.nan, math.nan, math.nan
    from scipy import stats  # only here: a second of import that readers seldom need

    mean, std = float(x.mean()), float(x.std(ddof=1))
    half = stats.t.ppf(0.975, len(x) - 1) * std / math.sqrt(len(x))
    return mean, mean - half, mean + half, std


@dataclass
class Document:
    """Blocks of Markdown: headings, paragraphs, tables and figures (files under the folder
    the text is written to)."""

    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def text(self, text: str) -> None:
        self.blocks.append(("text", text))

    def table(self, header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", (list(map(str, header)), [list(map(str, r)) for r in rows])))

    def figure(self, path: Path, caption: str) -> None:
        self.blocks.append(("figure", (path, caption)))

    def markdown(self, out: Path | None = None) -> str:
        """The text, figures linked relative to ``out``."""
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
                lines += [f"![{caption}]({path.relative_to(out).as_posix()})", "", caption, ""]
        return "\n".join(lines)


def markdown(table: pd.DataFrame) -> str:
    """``table`` as a Markdown table, floats to four places."""
    doc = Document()
    cells = [[f"{v:.4f}" if isinstance(v, float) else v for v in row] for row in table.values]
    doc.table(table.columns, cells)
    return doc.markdown()
