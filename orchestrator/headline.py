"""What a trial logs as MLflow metrics by default: its experiment's headline, a handful of short
names a person can compare runs on, instead of every scoring combination.

Per claim of the search space (``claims``): the claim's metric under its reading (its
``select``, named by :func:`reading_name`: ``pixel_auroc/papers_equations``,
``pixel_auroc/reproductions_code``, ``image_auroc/authors_code``) and under every control the
score table has (every method but ``attention``: ``pixel_auroc/recon``, ``pixel_auroc/random``,
``pixel_auroc/untrained``...), each scored as the reading is (its normalisation and image
score). A control added to the scoring
grid appears without a change here. A claim without a selection (a table of one row, as
dSprites') gets its metric under its own name. Values only: intervals and class sizes are in the
score table (``scores.json``), logged beside.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vaecam.grid import COLUMNS

#: The headline name of a claim's own selection.
PAPER_READING = "paper_reading"
#: The method whose rows are the readings; every other method is a control.
READING_METHOD = "attention"
#: MLflow's column picker and charts show names of up to about this many characters whole.
MAX_NAME = 40


def reading_name(claim: Mapping[str, Any]) -> str:
    """A claim's reading as a headline name: its ``reading`` in words made a name (``the
    paper's equations`` -> ``papers_equations``), else :data:`PAPER_READING`."""
    words = claim.get("reading", "").lower().removeprefix("the ").replace("'", "")
    return re.sub(r"[^a-z0-9]+", "_", words).strip("_") or PAPER_READING


def readings(claim: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Reading name -> its scoring combination: the claim's ``select`` under
    :func:`reading_name` (a claim under several readings is one claim per reading), else none."""
    return {reading_name(claim): claim["select"]} if claim.get("select") else {}


def all_readings(claims: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Every claim's :func:`readings`, by name (the figures feature their maps)."""
    return {name: selection for claim in claims for name, selection in readings(claim).items()}


def _field(row: Mapping[str, Any], column: str) -> Any:
    """A combination column's value, None for none (``scores.csv`` writes none as "")."""
    value = row.get(column)
    return None if value == "" or (isinstance(value, float) and math.isnan(value)) else value


def number(row: Mapping[str, Any], metric: str) -> float | None:
    """``row``'s ``metric`` as a finite number, else None (no value, NaN, text)."""
    value = row.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def closest(
    rows: Iterable[Mapping[str, Any]], method: str, selection: Mapping[str, Any], metric: str
) -> Mapping[str, Any] | None:
    """The row of ``method`` with a value of ``metric`` that agrees with ``selection`` on the
    most combination columns (a control has no layer: it matches on normalisation and image
    score; an image-level control has neither), or None."""
    candidates = [
        row for row in rows if _field(row, "method") == method and number(row, metric) is not None
    ]
    if not candidates:
        return None

    def agreement(row: Mapping[str, Any]) -> int:
        return sum(
            _field(row, column) == selection.get(column)
            for column in COLUMNS
            if _field(row, column) is not None
        )

    return max(candidates, key=agreement)


def matching(
    rows: Iterable[Mapping[str, Any]], selection: Mapping[str, Any], metric: str
) -> Mapping[str, Any] | None:
    """The row that is ``selection`` exactly (every combination column: none of them for a
    table without combinations) with a value of ``metric``, or None."""
    for row in rows:
        if all(_field(row, column) == selection.get(column) for column in COLUMNS):
            return row if number(row, metric) is not None else None
    return None


def controls(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The score table's controls and baselines: every method but the readings', in order."""
    methods = dict.fromkeys(_field(row, "method") for row in rows)
    return [m for m in methods if m is not None and m != READING_METHOD]


def headline_rows(
    rows: Sequence[Mapping[str, Any]], claims: Sequence[Mapping[str, Any]]
) -> dict[str, tuple[Mapping[str, Any], str]]:
    """The headline (module doc) of a score table's ``rows`` for ``claims``: name -> the row
    and the metric it reads (for its interval and class sizes)."""
    found: dict[str, tuple[Mapping[str, Any], str]] = {}
    for claim in claims:
        metric = claim["metric"]
        chosen = readings(claim)
        if not chosen:
            if rows and number(rows[0], metric) is not None:
                found[metric] = (rows[0], metric)
            continue
        for name, selection in chosen.items():
            row = matching(rows, selection, metric)
            if row is not None:
                found[f"{metric}/{name}"] = (row, metric)
            for method in controls(rows):
                row = closest(rows, method, selection, metric)
                if row is not None:
                    found.setdefault(f"{metric}/{method}", (row, metric))
    too_long = [name for name in found if len(name) > MAX_NAME]
    if too_long:  # a search space's reading name: caught by the tests of every space
        raise ValueError(f"headline metric names over {MAX_NAME} characters: {too_long}")
    return found


def headline(rows: Sequence[Mapping[str, Any]], claims: Sequence[Mapping[str, Any]]) -> dict:
    """The headline metrics (module doc) of a score table's ``rows`` for ``claims``: name ->
    value, names of at most :data:`MAX_NAME` characters."""
    return {
        name: number(row, metric) for name, (row, metric) in headline_rows(rows, claims).items()
    }
