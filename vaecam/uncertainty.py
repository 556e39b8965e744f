"""Bootstrap confidence intervals for the metrics of :mod:`vaecam.metrics`, fast and exact.

Every AUROC, average precision, EER and AUPRO we report comes with the class sizes it was
computed on and a 95% *stratified percentile bootstrap* interval (Efron and Tibshirani, "An
Introduction to the Bootstrap", 1993, ch. 13):

* **Resampling unit.** A bootstrap resample draws *independent units* with replacement. For
  image- or frame-level scores the unit is the sample itself. For pixel-level metrics it is the
  *image*: the pixels of one image share its content, its defect and the model's error on it,
  so they are strongly correlated, and resampling pixels as if independent gives intervals far
  too narrow (``tests/test_uncertainty.py`` shows it). A resampled image brings all its pixels.
  Video frames of one clip are correlated too: pass ``groups`` (e.g. the clip of each frame)
  and a whole clip becomes the unit.
* **Stratified.** Units are resampled within strata, keeping each stratum's size: units that
  hold only negatives (normal samples, anomaly-free images), only positives, or both (a
  defective image has anomalous and normal pixels). At the sample level this keeps ``n_pos``
  and ``n_neg`` fixed in every resample, as the test set's design fixes them; every resample
  has both classes, so the metric is always defined.
* **Percentile interval.** The interval at ``level`` is the ``(1 - level) / 2`` and
  ``(1 + level) / 2`` quantiles (``np.quantile``, linear interpolation) of the ``resamples``
  bootstrap values. The point estimate is the metric on the data themselves (the exact
  function of :mod:`vaecam.metrics`), which may, for skewed bootstrap distributions, fall
  slightly outside the percentile interval.
* **Fixed seed.** The draws come from ``np.random.default_rng(seed)``, one row of unit indices
  per resample: a given seed and data layout give the same resamples, so two methods scored on
  the same test set are resampled alike.

A result whose interval contains the chance level is *not distinguishable from chance*
(:func:`distinguishable_from_chance`); the chance level is 0.5 for AUROC and EER, the positive
rate for average precision and ``max_fpr / 2`` for AUPRO (the expected values of scores
independent of the labels).

Speed. No resample is materialised: the data are summarised once into per-unit counts, after
which a resample is a handful of vector operations on its unit multiplicities ``w``.

* Sample level (:func:`bootstrap_interval`): the samples are sorted once; a resample's
  per-distinct-score positive and negative counts (two segment sums of ``w``) give AUROC (the
  weighted Mann-Whitney sum), AP and EER in ``O(n)``, for a batch of resamples at once, in
  exact integers: each bootstrap value equals the :mod:`vaecam.metrics` function on the
  resampled data (concatenated copies of the drawn samples) to the last bit for AUROC and EER
  and to float rounding (~1e-16) for AP.
* Pooled pixel AUROC (:func:`pixel_auroc_interval`): with ``K[i, j] = 2 * #(positive pixel
  of unit i > negative pixel of unit j) + #(ties)``, exact integers, ``P[i]`` positive and
  ``N[j]`` negative pixels, a resample with unit multiplicities ``w`` has

      AUROC(w) = (w^T K w) / (2 (w . P) (w . N)),

  a quadratic form: all resamples at once are ``sum((W @ K) * W, axis=1)``. Each unit's
  negatives are sorted once and counted against the distinct positive scores to build ``K``,
  so 1,000 resamples of 20M pixels cost 3 (scores with ties) to 7 (all distinct) exact AUROCs,
  not a thousand (``bench/bootstrap.py``). The values are again exactly those of
  ``metrics.pixel_auroc`` on the resampled images. ``K`` holds ``G**2`` int64 and costs
  ``O(G * D)`` beyond the sort (``D`` distinct positive scores): for thousands of video
  frames, make the clip the unit.
* AUPRO (:func:`aupro_interval`): the PRO curve is sampled at a fixed grid of thresholds
  (anomalous scores at evenly spaced ranks, each with the next representable value above
  it, and normal scores at evenly spaced false-positive rates up to ``2 * max_fpr``); each
  unit's false-positive counts and summed region overlaps at those thresholds make a
  resample's curve a weighted sum. The grid holds the exact curve's vertices at the sampled
  anomalous scores, so with at most ``thresholds`` anomalous pixels every bootstrap value is
  the exact ``metrics.aupro`` of the resample; beyond, the chords between sampled vertices
  cost little (on the 20M pixels of ``bench/bootstrap.py``, 450k of them anomalous, the grid
  AUPRO of the data is within 3e-7 of the exact one). The point estimate is the exact
  ``metrics.aupro``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage

from vaecam import metrics
from vaecam.metrics import (
    _binary_mask,
    _check_maps_masks,
    _check_no_nan,
    _check_scores,
    _groups,
    _to_numpy,
)

__all__ = [
    "Interval",
    "aupro_interval",
    "bootstrap_interval",
    "distinguishable_from_chance",
    "interval_metrics",
    "pixel_auroc_interval",
]

# Elements per (resamples x samples) temporary of the sample-level bootstrap: 8 MiB of int64.
_CHUNK_ELEMENTS = 2**20

# Strata, by the classes a unit holds; resampled in this order (it fixes the random stream).
_NEG_ONLY, _POS_ONLY, _BOTH = 0, 1, 2


class Interval(NamedTuple):
    """A metric's value with its bootstrap interval and the class sizes it was computed on.

    ``n_pos`` and ``n_neg`` count what the metric counts: samples (images, frames) for
    sample-level metrics, pixels for pixel-level ones (whose bootstrap unit is nonetheless
    the image, see the module docstring).
    """

    estimate: float  # the metric on the data themselves (exact, vaecam.metrics)
    low: float  # lower percentile bound
    high: float  # upper percentile bound
    n_pos: int
    n_neg: int


def interval_metrics(name: str, interval: Interval) -> dict[str, float | int]:
    """The flat dict to log for metric ``name``: its value, interval bounds and class sizes.

    Returns:
        ``{name: estimate, f"{name}_ci_low": low, f"{name}_ci_high": high,
        f"{name}_n_pos": n_pos, f"{name}_n_neg": n_neg}``.
    """
    return {
        name: float(interval.estimate),
        f"{name}_ci_low": float(interval.low),
        f"{name}_ci_high": float(interval.high),
        f"{name}_n_pos": int(interval.n_pos),
        f"{name}_n_neg": int(interval.n_neg),
    }


def distinguishable_from_chance(interval: Interval, chance: float = 0.5) -> bool:
    """False when the interval contains ``chance`` (bounds included), True otherwise.

    ``chance`` is 0.5 for AUROC and EER, the positive rate for AP, ``max_fpr / 2`` for AUPRO.
    """
    return not interval.low <= chance <= interval.high


# ---------------------------------------------------------------------------------------------
# Sampling: stratified draws of units, one row per resample


def _check_resampling(resamples: int, level: float) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)):
        raise ValueError(f"resamples must be an integer, got {resamples!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0.0 < level < 1.0:  # also rejects NaN
        raise ValueError(f"level must be in (0, 1), got {level}")


def _strata(has_pos: np.ndarray, has_neg: np.ndarray) -> list[np.ndarray]:
    """Unit indices of each non-empty stratum (negatives only, positives only, both).

    Args:
        has_pos, has_neg: ``(G,)`` bool, whether each unit holds a positive / a negative.
    """
    kind = np.where(has_pos & has_neg, _BOTH, np.where(has_pos, _POS_ONLY, _NEG_ONLY))
    members = [np.flatnonzero(kind == k) for k in (_NEG_ONLY, _POS_ONLY, _BOTH)]
    return [m for m in members if m.size]


def _resample_units(
    strata: list[np.ndarray], resamples: int, seed: int, chunk: int
) -> Iterator[np.ndarray]:
    """Stratified bootstrap draws, ``chunk`` resamples at a time.

    Each resample draws, within every stratum of ``m`` units, ``m`` of them uniformly with
    replacement. Every row is drawn by its own calls to the generator, so the rows (and hence
    the results) do not depend on ``chunk``.

    Yields:
        ``(c, G)`` int64 arrays of unit indices (``c <= chunk``, ``G`` the number of units),
        each row one resample, strata in the order given.
    """
    rng = np.random.default_rng(seed)
    bounds = np.cumsum([0] + [s.size for s in strata])
    for first in range(0, resamples, chunk):
        out = np.empty((min(chunk, resamples - first), bounds[-1]), dtype=np.int64)
        for row in out:
            for s, lo, hi in zip(strata, bounds[:-1], bounds[1:], strict=True):
                row[lo:hi] = s[rng.integers(0, s.size, size=s.size)]
        yield out


def _multiplicities(draws: np.ndarray, n_units: int) -> np.ndarray:
    """``(c, G)`` int64: how often each unit was drawn in each row of ``draws`` ``(c, m)``."""
    out = np.empty((draws.shape[0], n_units), dtype=np.int64)
    for row, drawn in zip(out, draws, strict=True):
        # Row by row: the counts of one row stay in cache, where one bincount over all rows
        # scatters across the whole (c, G) block.
        row[:] = np.bincount(drawn, minlength=n_units)
    return out


#: Multiplicity matrices of earlier draws, newest last, at most :data:`_DRAWN_BYTES` in all.
_DRAWN: OrderedDict[tuple, np.ndarray] = OrderedDict()
_DRAWN_BYTES = 256 * 2**20


def _drawn_multiplicities(
    strata: list[np.ndarray], n_units: int, resamples: int, seed: int
) -> np.ndarray:
    """``(R, G)`` int32: how often each unit is drawn in each of the ``resamples`` stratified
    resamples of :func:`_resample_units`.

    The draws depend on the labels (the strata), never on the scores: every method and metric
    scored on one test set is resampled alike (a fair comparison), and the draws are made once
    and kept, which is most of a bootstrap's cost when a scoring grid asks for hundreds of
    intervals on the same labels."""
    key = (tuple(s.tobytes() for s in strata), n_units, resamples, seed)
    if key in _DRAWN:
        _DRAWN.move_to_end(key)
        return _DRAWN[key]
    chunk = max(1, _CHUNK_ELEMENTS // n_units)
    drawn = np.concatenate(
        [_multiplicities(d, n_units) for d in _resample_units(strata, resamples, seed, chunk)]
    ).astype(np.int32)
    drawn.flags.writeable = False
    _DRAWN[key] = drawn
    while sum(m.nbytes for m in _DRAWN.values()) > _DRAWN_BYTES and len(_DRAWN) > 1:
        _DRAWN.popitem(last=False)
    return drawn


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    low, high = np.quantile(values, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)


def _unit_ids(groups: Any, n: int, what: str) -> tuple[np.ndarray, int]:
    """``(n,)`` unit index in ``0..G-1`` of each entry and ``G``; default: each its own unit."""
    if groups is None:
        return np.arange(n), n
    groups = _to_numpy(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), one id per {what}, got {groups.shape}")
    _, unit = np.unique(groups, return_inverse=True)
    unit = unit.reshape(-1)  # numpy 2.0 and 2.1 keep the input's shape
    return unit, int(unit.max()) + 1


# ---------------------------------------------------------------------------------------------
# Sample level: AUROC, AP and EER from per-distinct-score class counts


class _SortedSamples(NamedTuple):
    """The samples in ascending score order, summarised for weighting."""

    unit: np.ndarray  # (n,) unit of each sorted sample
    is_pos: np.ndarray  # (n,) bool
    last: np.ndarray | None  # (D,) last sample of each run of tied scores; None: no ties


def _class_counts(table: _SortedSamples, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-distinct-score positive and negative counts of resamples with unit ``weights``.

    The counts, and every sum and product of them below, are integers held in float64 (faster
    than int64 arithmetic in numpy): exact while they stay below 2**53, that is for fewer than
    ~6e7 samples.

    Args:
        weights: ``(c, G)`` float64 unit multiplicities (integers).

    Returns:
        ``p``, ``q``: ``(c, D)`` float64, ``p[r, d]`` the number of positives of resample ``r``
        scoring the ``d``-th smallest distinct value (each copy of a drawn unit counts).
    """
    w = weights[:, table.unit]  # (c, n) multiplicity of each sample
    w_pos = np.where(table.is_pos, w, 0)
    if table.last is None:  # one sample per distinct value
        return w_pos, w - w_pos
    # Run sums as differences of cumulative sums at run ends: np.add.reduceat along the last
    # axis is an order of magnitude slower when the runs are short.
    p = np.diff(np.cumsum(w_pos, axis=1)[:, table.last], axis=1, prepend=0)
    q = np.diff(np.cumsum(w, axis=1)[:, table.last], axis=1, prepend=0) - p
    return p, q


def _auroc_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``(c,)`` AUROC of each row of counts: the weighted Mann-Whitney statistic.

    ``sum_d p_d * (2 * #(neg < v_d) + q_d) / (2 * n_pos * n_neg)``: exact integers (see
    ``_class_counts``), then one division of two integers below 2**53, correctly rounded, as
    in ``metrics.auroc``.
    """
    q_upto = np.cumsum(q, axis=1)  # #(neg <= v_d)
    q_upto += q_upto - q  # 2 * #(neg < v_d) + #(neg == v_d), in place
    total = np.einsum("rd,rd->r", p, q_upto)
    n_pos, n_neg = p.sum(axis=1), q.sum(axis=1)
    return total / (2 * n_pos * n_neg)


def _ap_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``(c,)`` average precision: ``sum_v p(v) / n_pos * TP(v) / (TP(v) + FP(v))``, with
    ``TP(v) = #(pos >= v)`` and ``FP(v) = #(neg >= v)``, as ``metrics.average_precision``
    (distinct values without a positive add exact zeros)."""
    tp = np.cumsum(p[:, ::-1], axis=1)[:, ::-1]  # #(pos >= v_d)
    flagged = np.cumsum((p + q)[:, ::-1], axis=1)[:, ::-1]  # TP + FP
    # Where nothing is flagged there is no positive either (p = 0): the term is 0, not 0 / 0.
    precision = tp / np.maximum(flagged, 1.0)
    return np.einsum("rd,rd->r", p, precision) / tp[:, 0]


def _eer_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``(c,)`` equal error rate of each row, as ``metrics._eer_from_counts`` but batched.

    The ROC vertices are ``(0, 0)`` and ``(FP(v), TP(v))`` (counts of ``score >= v``) for each
    distinct ``v`` descending; a vertex between two on one straight segment (a value without
    positives or without negatives) leaves the crossing unchanged. ``g = fp * n_pos + tp *
    n_neg - n_pos * n_neg`` is non-decreasing; the crossing is interpolated between the last
    vertex with ``g < 0`` and the next, as one ratio of int64 integers (exact while the
    samples number below ~2e6), so the value is correctly rounded.
    """
    zero = np.zeros((p.shape[0], 1))
    tp = np.concatenate((zero, np.cumsum(p[:, ::-1], axis=1)), axis=1)
    fp = np.concatenate((zero, np.cumsum(q[:, ::-1], axis=1)), axis=1)
    n_pos, n_neg = tp[:, -1:], fp[:, -1:]
    g = fp * n_pos + tp * n_neg - n_pos * n_neg  # integers below n**2: exact in float64
    i = np.count_nonzero(g < 0, axis=1)[:, None]  # first vertex with g >= 0 (g[0] < 0)
    # The products below reach n**3: int64, exact, on the two bracketing vertices only.
    g0, g1 = (np.take_along_axis(g, j, 1).astype(np.int64) for j in (i - 1, i))
    fp0, fp1 = (np.take_along_axis(fp, j, 1).astype(np.int64) for j in (i - 1, i))
    n_neg = n_neg.astype(np.int64)
    return ((fp0 * (g1 - g0) - (fp1 - fp0) * g0) / ((g1 - g0) * n_neg))[:, 0]


_ROWS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "auroc": _auroc_rows,
    "average_precision": _ap_rows,
    "equal_error_rate": _eer_rows,
}
_EXACT: dict[str, Callable[[Any, Any], float]] = {
    "auroc": metrics.auroc,
    "average_precision": metrics.average_precision,
    "equal_error_rate": metrics.equal_error_rate,
}


def _metric_name(metric: str | Callable[[Any, Any], float]) -> str | None:
    """The fast path's name for ``metric`` (a name or the function), None for another callable."""
    if isinstance(metric, str):
        if metric not in _EXACT:
            raise ValueError(f"unknown metric {metric!r}; known: {', '.join(_EXACT)}")
        return metric
    for name, fn in _EXACT.items():
        if metric is fn:
            return name
    if not callable(metric):
        raise ValueError(f"metric must be a name or a callable, got {metric!r}")
    return None


def _sorted_samples(scores: np.ndarray, mask: np.ndarray, unit: np.ndarray) -> _SortedSamples:
    order = np.argsort(scores, kind="stable")
    ranked = scores[order]
    _check_no_nan(ranked)
    starts, _ = _groups(ranked)
    last = None if starts.size == ranked.size else np.append(starts[1:], ranked.size) - 1
    return _SortedSamples(unit[order], mask[order], last)


def _weighted_replicates(
    name: str, scores: np.ndarray, mask: np.ndarray, unit: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """``(R,)`` bootstrap values of the metric ``name`` for the unit multiplicities ``weights``
    ``(R, G)``: the sorted samples weighted by their unit's multiplicity, rows in chunks."""
    table = _sorted_samples(scores, mask, unit)
    chunk = max(1, _CHUNK_ELEMENTS // max(scores.size, weights.shape[1]))
    values = [
        _ROWS[name](*_class_counts(table, weights[lo : lo + chunk].astype(np.float64)))
        for lo in range(0, weights.shape[0], chunk)
    ]
    return np.concatenate(values)


def _called_replicates(
    metric: Callable[[Any, Any], float],
    scores: np.ndarray,
    mask: np.ndarray,
    unit: np.ndarray,
    n_units: int,
    draws: Iterator[np.ndarray],
) -> np.ndarray:
    """``(R,)`` values of any ``metric`` called on each resample's concatenated units, one per
    row of the chunks of ``draws``."""
    values = []
    by_unit = np.argsort(unit, kind="stable")  # each unit's samples, contiguous
    sizes = np.bincount(unit, minlength=n_units)
    first = np.cumsum(sizes) - sizes
    for chunk in draws:
        for row in chunk:
            # The samples of the drawn units, in draw order: ranges first[u] .. + sizes[u].
            n = sizes[row]
            shift = np.repeat(first[row] - (np.cumsum(n) - n), n)
            idx = by_unit[shift + np.arange(n.sum())]
            values.append(float(metric(scores[idx], mask[idx])))
    return np.asarray(values)


def bootstrap_interval(
    metric: str | Callable[[Any, Any], float],
    scores: Any,
    labels: Any,
    *,
    groups: Any = None,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Stratified percentile bootstrap interval of a sample-level (image or frame) metric.

    The unit of resampling is the sample, or the group of samples given by ``groups`` (e.g.
    the clip of each video frame, whose frames are correlated). Units are drawn with
    replacement within strata (units with only negatives, only positives, or both), each
    stratum keeping its size; without ``groups`` this resamples positives and negatives
    separately and every resample has exactly ``n_pos`` positives and ``n_neg`` negatives.
    The interval holds the ``(1 -+ level) / 2`` quantiles of the ``resamples`` values.

    ``"auroc"``, ``"average_precision"`` and ``"equal_error_rate"`` (or those functions of
    :mod:`vaecam.metrics`) are computed for all resamples from per-distinct-score counts in
    ``O(n)`` each, with no resample materialised; each bootstrap value equals the exact
    function on the resampled data (AUROC, EER bit for bit; AP to ~1e-16). Any other
    ``metric(scores, labels) -> float`` is called on every resample.

    Args:
        metric: a name above, one of those functions, or another callable.
        scores: ``(n,)`` scores, any real dtype, higher = more anomalous; NaN is rejected.
        labels: ``(n,)`` bool or 0/1; ``True``/1 marks a positive (anomalous) sample.
        groups: ``(n,)`` optional unit id of each sample (any sortable values).
        resamples: number of bootstrap resamples, at least 1.
        level: confidence level in ``(0, 1)``.
        seed: seed of ``np.random.default_rng``: fixed, so results are reproducible.

    Returns:
        ``Interval(estimate, low, high, n_pos, n_neg)``, ``estimate`` the metric on the data.

    Raises:
        ValueError: scores not 1-D (use :func:`pixel_auroc_interval` for maps), shapes differ,
            labels not binary, only one class, NaN, unknown metric name, bad ``resamples`` or
            ``level``.
    """
    _check_resampling(resamples, level)
    name = _metric_name(metric)
    scores, labels = _to_numpy(scores), _to_numpy(labels)
    if scores.ndim != 1:
        raise ValueError(
            f"scores must be 1-D (n,), got shape {scores.shape}; for pixel maps use "
            "pixel_auroc_interval or aupro_interval, which resample whole images"
        )
    metrics._check_same_shape(scores, labels, "scores", "labels")
    _check_scores(scores)
    mask = _binary_mask(labels)
    n_pos = int(np.count_nonzero(mask))
    n_neg = mask.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"a bootstrap interval needs both classes, got {n_pos} positive and {n_neg} "
            "negative labels"
        )
    fn = _EXACT[name] if name is not None else metric
    estimate = float(fn(scores, mask))
    unit, n_units = _unit_ids(groups, scores.size, "sample")
    has_pos = np.bincount(unit, weights=mask, minlength=n_units) > 0
    has_neg = np.bincount(unit, weights=~mask, minlength=n_units) > 0
    strata = _strata(has_pos, has_neg)
    if name is not None:
        weights = _drawn_multiplicities(strata, n_units, resamples, seed)
        values = _weighted_replicates(name, scores, mask, unit, weights)
    else:
        chunk = max(1, _CHUNK_ELEMENTS // max(scores.size, n_units))
        draws = _resample_units(strata, resamples, seed, chunk)
        values = _called_replicates(fn, scores, mask, unit, n_units, draws)
    return Interval(estimate, *_percentile_interval(values, level), n_pos, n_neg)


# ---------------------------------------------------------------------------------------------
# Pooled pixel AUROC: a quadratic form in the unit multiplicities


class _PairCounts(NamedTuple):
    k: np.ndarray  # (G, G) int64: 2 * #(pos of unit i > neg of unit j) + #(ties)
    n_pos: np.ndarray  # (G,) int64 positive pixels per unit
    n_neg: np.ndarray  # (G,) int64 negative pixels per unit


def _pixel_units(
    maps: Any, masks: Any, groups: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Checked ``(N, H*W)`` maps and masks, the unit of each image and the number of units."""
    maps, masks = _check_maps_masks(maps, masks)
    n_images = maps.shape[0]
    unit, n_units = _unit_ids(groups, n_images, "image")
    return maps.reshape(n_images, -1), masks.reshape(n_images, -1), unit, n_units


def _pair_counts(
    maps: np.ndarray, masks: np.ndarray, unit: np.ndarray, n_units: int
) -> _PairCounts:
    """Exact per-unit-pair counts of correctly ordered (positive, negative) pixel pairs.

    With ``w_1 < ... < w_D`` the distinct positive scores and, for unit ``j``,
    ``LR_j[d] = #(neg_j < w_d) + #(neg_j <= w_d) = 2 * #(neg_j < w_d) + #(neg_j == w_d)``,
    ``K[i, j] = sum_d (#positives of unit i scoring w_d) * LR_j[d]``. ``LR_j`` comes from
    unit ``j``'s negatives, sorted once: each distinct negative value ``v`` (with count ``c``)
    falls between two ``w``s (``np.searchsorted``, sorted keys) and adds ``c`` to ``LR_j[d]``
    for every ``w_d > v`` and again for every ``w_d >= v``, a histogram and a cumulative sum.
    So each negative pixel is sorted once and searched once among the distinct positive
    values (the same work as an exact AUROC), and the rest costs ``O(G * (D + E))`` for ``E``
    (unit, distinct positive score) pairs.

    Args:
        maps: ``(N, H*W)`` scores; masks: ``(N, H*W)`` bool; unit: ``(N,)`` in ``0..G-1``.
    """
    pos_per_image = np.count_nonzero(masks, axis=1)
    n_pos = np.bincount(unit, weights=pos_per_image, minlength=n_units).astype(np.int64)
    n_neg = np.bincount(unit, minlength=n_units) * maps.shape[1] - n_pos
    if n_pos.sum() == 0 or n_neg.sum() == 0:
        raise ValueError(
            f"pixel AUROC needs both classes, got {n_pos.sum()} positive and {n_neg.sum()} "
            "negative pixels"
        )
    pos = maps[masks]  # (P,) image by image
    order = np.argsort(pos, kind="stable")
    pos_sorted = pos[order]
    _check_no_nan(pos_sorted)
    starts, counts = _groups(pos_sorted)
    values = pos_sorted[starts]  # (D,) distinct positive scores, ascending
    n_values = values.size
    value_id = np.repeat(np.arange(n_values), counts)
    pos_unit = np.repeat(unit, pos_per_image)[order]
    # One entry per (unit i, distinct value d) pair that occurs, with its number of pixels.
    keys, entry_count = np.unique(pos_unit * n_values + value_id, return_counts=True)
    entry_unit, entry_value = np.divmod(keys, n_values)
    entry_starts, _ = _groups(entry_unit)
    pos_units = entry_unit[entry_starts]
    del pos, order, pos_sorted, value_id, pos_unit, keys

    # Counts are summed in float64 (faster than int64 casts), exact while each sum, at most
    # 2 * n_pos * n_neg, stays below 2**53; past that (~1e8 pixels a side) int64 is used.
    exact_float = 2 * int(n_pos.sum()) * int(n_neg.sum()) < 2**53
    entry_weight = entry_count.astype(np.float64) if exact_float else entry_count
    k = np.zeros((n_units, n_units), dtype=np.int64)
    images_of = np.split(np.argsort(unit, kind="stable"), np.cumsum(np.bincount(unit))[:-1])
    for j, images in enumerate(images_of):
        if n_neg[j] == 0:
            continue
        neg = np.concatenate([maps[i][~masks[i]] for i in images])  # a fresh copy
        neg.sort()
        _check_no_nan(neg)
        run_starts, run_counts = _groups(neg)
        run_values = neg[run_starts]
        # v < w_d iff #(w <= v) <= d: #(neg_j < w_d) is a cumulative histogram of #(w <= v).
        # One search: the w are distinct, so #(w < v) is #(w <= v) less one if w equals v.
        above = np.searchsorted(values, run_values, side="right")  # #(w <= v)
        tied = np.flatnonzero(values[np.maximum(above, 1) - 1] == run_values)
        tied = tied[above[tied] > 0]
        below = np.cumsum(np.bincount(above, weights=run_counts, minlength=n_values + 1))
        lr = 2.0 * below[:n_values]  # 2 * #(neg_j < w_d)
        lr[above[tied] - 1] += run_counts[tied]  # + #(neg_j == w_d)
        if not exact_float:
            lr = lr.astype(np.int64)
        k[pos_units, j] = np.add.reduceat(entry_weight * lr[entry_value], entry_starts)
    return _PairCounts(k, n_pos, n_neg)


def _pixel_auroc_rows(pairs: _PairCounts, weights: np.ndarray) -> np.ndarray:
    """``(R,)`` pooled pixel AUROC of resamples with unit multiplicities ``weights`` ``(R, G)``:
    ``(w^T K w) / (2 (w . P) (w . N))`` per row."""
    pairs2 = 2 * (weights @ pairs.n_pos) * (weights @ pairs.n_neg)  # int64, exact
    if pairs2.max() < 2**53:
        # Every partial sum of w^T K w is a non-negative integer <= pairs2: exact in float64,
        # and BLAS is far faster than numpy's integer matmul.
        wf = weights.astype(np.float64)
        total = np.sum((wf @ pairs.k.astype(np.float64)) * wf, axis=1)
    else:
        total = np.sum((weights @ pairs.k) * weights, axis=1)  # int64: exact below 2**63
    # Two integers below 2**53 (else rounded once each): one correctly rounded division.
    return total / pairs2


def pixel_auroc_interval(
    maps: Any,
    masks: Any,
    groups: Any = None,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Pooled pixel AUROC with an image-level stratified percentile bootstrap interval.

    The resampling unit is the image (or the group of images given by ``groups``, e.g. the
    clip of each video frame), never the pixel: the pixels of an image are not independent.
    Units are drawn with replacement within strata (anomaly-free units, units with anomalous
    and normal pixels, and units with anomalous pixels only), each keeping its size; a
    resample pools all pixels of its drawn units, copies counted again. Each value is exactly
    ``metrics.pixel_auroc`` of the resampled images, computed as the quadratic form
    ``w^T K w / (2 (w . P) (w . N))`` of the unit multiplicities ``w`` (see the module
    docstring), so 1,000 resamples cost a few exact AUROCs.

    Args:
        maps: ``(N, H, W)`` per-pixel anomaly scores, any real dtype; NaN is rejected.
        masks: ``(N, H, W)`` ground truth, bool or 0/1; ``True``/1 marks an anomalous pixel.
        groups: ``(N,)`` optional unit id of each image; default: each image is a unit. Time
            and memory grow with the square of the number of units (see the module
            docstring): for thousands of video frames pass their clip ids.
        resamples, level, seed: as :func:`bootstrap_interval`.

    Returns:
        ``Interval(estimate, low, high, n_pos, n_neg)``: ``estimate`` equals
        ``metrics.pixel_auroc(maps, masks)``; ``n_pos``, ``n_neg`` count pixels.

    Raises:
        ValueError: shapes differ or are not ``(N, H, W)``, masks not binary, one class only,
            NaN, ``groups`` not ``(N,)``, bad ``resamples`` or ``level``.
    """
    _check_resampling(resamples, level)
    maps, masks, unit, n_units = _pixel_units(maps, masks, groups)
    pairs = _pair_counts(maps, masks, unit, n_units)
    n_pos, n_neg = int(pairs.n_pos.sum()), int(pairs.n_neg.sum())
    # Python ints: the very division metrics.pixel_auroc makes.
    estimate = int(pairs.k.sum(dtype=np.int64)) / (2 * n_pos * n_neg)
    strata = _strata(pairs.n_pos > 0, pairs.n_neg > 0)
    weights = _drawn_multiplicities(strata, n_units, resamples, seed).astype(np.int64)
    values = _pixel_auroc_rows(pairs, weights)
    return Interval(estimate, *_percentile_interval(values, level), n_pos, n_neg)


# ---------------------------------------------------------------------------------------------
# AUPRO on a threshold grid


class _ProGrid(NamedTuple):
    """Per-unit counts at thresholds ``t_1 > ... > t_T`` (FPR ascending)."""

    false_pos: np.ndarray  # (G, T) normal pixels scoring >= t_k
    overlap: np.ndarray  # (G, T) sum over the unit's regions of |R ∩ {map >= t_k}| / |R|
    n_normal: np.ndarray  # (G,) normal pixels
    n_regions: np.ndarray  # (G,) ground-truth regions


def _grid_thresholds(
    normal_sorted: np.ndarray, anomalous_sorted: np.ndarray, thresholds: int, fpr_span: float
) -> np.ndarray:
    """The grid, ascending and distinct (float dtype of the maps, float64 for integer maps).

    * Anomalous scores ``t`` at ``thresholds`` evenly spaced ranks (all of them if fewer), each
      with the next representable value above it: flagging ``score >= nextafter(t)`` is
      flagging ``score > t``. The exact PRO curve's vertices are the points at ``score > t``
      and ``score >= t`` for the anomalous scores ``t`` (between them only normal pixels
      enter: a straight segment), so when every anomalous score is on the grid, the grid
      curve of *any* resample is its exact curve.
    * Normal scores at ``thresholds`` false-positive rates evenly spaced in
      ``(0, fpr_span]``: where anomalous ranks are sampled, the chords between them are cut
      at every ``fpr_span / thresholds`` of FPR.
    """
    dtype = normal_sorted.dtype if normal_sorted.dtype.kind == "f" else np.dtype(np.float64)
    n = normal_sorted.size
    fpr = fpr_span * np.arange(1, thresholds + 1) / thresholds
    at_fpr = normal_sorted[n - np.maximum(1, np.ceil(fpr * n).astype(np.int64))]
    count = min(thresholds, anomalous_sorted.size)
    ranks = np.linspace(0, anomalous_sorted.size - 1, num=count).round().astype(np.int64)
    at_rank = anomalous_sorted[ranks].astype(dtype)
    above = np.nextafter(at_rank, dtype.type(np.inf))
    return np.unique(np.concatenate((at_fpr.astype(dtype), at_rank, above)))


def _pro_grid(
    maps: np.ndarray,
    masks: np.ndarray,
    shape: tuple[int, int, int],
    unit: np.ndarray,
    n_units: int,
    thresholds: int,
    max_fpr: float,
) -> _ProGrid:
    """Count, per unit and grid threshold, false positives and summed region overlaps.

    Regions are labelled as ``metrics.aupro`` does (8-connected, per image). A pixel scoring
    ``v`` is flagged at the grid thresholds ``t <= v``: with ``b = #(t <= v)`` (a
    ``searchsorted`` in the short grid), per-image histograms of ``b`` and suffix sums give the
    counts at every threshold at once.

    Args:
        maps: ``(N, H*W)``; masks: ``(N, H*W)`` bool; shape: ``(N, H, W)``; unit: ``(N,)``.
    """
    n_images = maps.shape[0]
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connected in each image, never across images (as metrics.aupro)
    regions, n_regions = ndimage.label(masks.reshape(shape), structure=structure)
    if n_regions == 0:
        raise ValueError("AUPRO needs at least one anomalous region, but the masks are all 0")
    region_of = regions.reshape(n_images, -1)[masks]  # (P,) image by image
    del regions
    normal = maps[~masks]
    if normal.size == 0:
        raise ValueError("AUPRO needs normal pixels, but the masks are all 1")
    normal.sort()
    anomalous = maps[masks]
    anomalous_sorted = np.sort(anomalous)
    _check_no_nan(normal, anomalous_sorted)
    grid = _grid_thresholds(normal, anomalous_sorted, thresholds, min(1.0, 2.0 * max_fpr))
    n_grid = grid.size
    del normal, anomalous_sorted

    pos_image = np.repeat(np.arange(n_images), np.count_nonzero(masks, axis=1))
    sizes = np.bincount(region_of)
    weight = 1.0 / sizes[region_of]  # each region's overlap is the mean over its pixels

    def suffix_counts(bins: np.ndarray, image: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        # (N, n_grid + 1) histogram of b per image -> (N, n_grid) counts of b > k, i.e. v >= t_k
        width = n_grid + 1
        hist = np.bincount(image * width + bins, weights=w, minlength=n_images * width)
        return np.cumsum(hist.reshape(n_images, width)[:, ::-1], axis=1)[:, -2::-1]

    pos_bins = np.searchsorted(grid, anomalous, side="right")
    overlap = suffix_counts(pos_bins, pos_image, weight)
    flagged_pos = suffix_counts(pos_bins, pos_image, None)
    # All pixels of each image, sorted row by row: #(pixels >= t) per image and threshold.
    flagged_all = np.empty((n_images, n_grid))
    for i in range(n_images):
        row = np.sort(maps[i])
        flagged_all[i] = row.size - np.searchsorted(row, grid, side="left")
    false_pos = flagged_all - flagged_pos

    region_image = np.zeros(n_regions + 1, dtype=np.int64)
    region_image[region_of] = pos_image
    n_regions_unit = np.bincount(unit[region_image[1:]], minlength=n_units)
    n_normal_unit = np.bincount(
        unit, weights=maps.shape[1] - np.count_nonzero(masks, axis=1), minlength=n_units
    )

    def per_unit(per_image: np.ndarray) -> np.ndarray:
        out = np.zeros((n_units, n_grid))
        np.add.at(out, unit, per_image)
        return out[:, ::-1]  # thresholds descending: FPR ascending

    return _ProGrid(per_unit(false_pos), per_unit(overlap), n_normal_unit, n_regions_unit)


def _trapezoid_rows(x: np.ndarray, y: np.ndarray, x_max: float) -> np.ndarray:
    """``(R,)`` trapezoidal area under each row's polyline on ``[x[:, 0], x_max]``, the last
    piece ending at ``x_max`` with ``y`` interpolated (as ``metrics._trapezoid_up_to``).

    Args:
        x: ``(R, M)`` non-decreasing rows with ``x[:, 0] < x_max <= x[:, -1]``; y: ``(R, M)``.
    """
    x0, x1, y0, y1 = x[:, :-1], x[:, 1:], y[:, :-1], y[:, 1:]
    x_end = np.minimum(x1, x_max)
    width = np.clip(x_end - x0, 0.0, None)  # 0 for segments starting beyond x_max
    run = x1 - x0
    slope = np.divide(y1 - y0, run, out=np.zeros_like(run), where=run > 0)
    y_end = np.where(x1 <= x_max, y1, y0 + slope * (x_end - x0))
    return np.sum(0.5 * (y0 + y_end) * width, axis=1)


def _aupro_rows(grid: _ProGrid, weights: np.ndarray, max_fpr: float) -> np.ndarray:
    """``(R,)`` grid AUPRO of resamples with unit multiplicities ``weights`` ``(R, G)``: the
    pooled FPR and mean region overlap at each threshold are multiplicity-weighted sums."""
    out = np.empty(weights.shape[0])
    step = max(1, _CHUNK_ELEMENTS // grid.false_pos.shape[1])  # bounds the (rows, T) arrays
    for lo in range(0, weights.shape[0], step):
        w = weights[lo : lo + step].astype(np.float64)
        fpr = (w @ grid.false_pos) / (w @ grid.n_normal)[:, None]
        pro = (w @ grid.overlap) / (w @ grid.n_regions)[:, None]
        zeros, ones = np.zeros((w.shape[0], 1)), np.ones((w.shape[0], 1))
        # (0, 0) above every score and (1, 1) below every score close each curve.
        x = np.concatenate((zeros, fpr, ones), axis=1)
        y = np.concatenate((zeros, pro, ones), axis=1)
        out[lo : lo + step] = _trapezoid_rows(x, y, max_fpr) / max_fpr
    return np.clip(out, 0.0, 1.0)  # a perfect curve's area rounds to 1 + 1e-16 otherwise


def aupro_interval(
    maps: Any,
    masks: Any,
    groups: Any = None,
    *,
    max_fpr: float = 0.3,
    thresholds: int = 1000,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """AUPRO (MVTec AD) with an image-level stratified percentile bootstrap interval.

    Resampled as :func:`pixel_auroc_interval` (the image, or the group, is the unit; strata by
    the classes a unit holds). A resample's PRO curve pools its units' normal pixels (FPR) and
    averages over all its regions, copies counted again. Recomputing the exact curve for every
    resample would cost a full AUPRO each, so the bootstrap values are computed on a grid of
    at most ``3 * thresholds`` thresholds, counted once per unit: the anomalous scores at
    ``thresholds`` evenly spaced ranks, each with the next representable value above it (the
    PRO curve's vertices there: ``score >= t`` and ``score > t``), and the normal scores at
    ``thresholds`` FPRs evenly spaced up to ``min(1, 2 * max_fpr)``. Joined by straight lines
    (plus ``(0, 0)`` and ``(1, 1)``) and integrated to ``max_fpr``, the grid curve is the exact
    curve of every resample when there are at most ``thresholds`` anomalous pixels; with more,
    its AUPRO is within ~1e-6 of the exact one at the default size (``bench/bootstrap.py``
    data). The point estimate is the exact ``metrics.aupro``.

    Args:
        maps: ``(N, H, W)`` per-pixel anomaly scores, any real dtype; NaN is rejected.
        masks: ``(N, H, W)`` ground truth, bool or 0/1; ``True``/1 marks an anomalous pixel.
        groups: ``(N,)`` optional unit id of each image; default: each image is a unit.
        max_fpr: integration limit in ``(0, 1]``, 0.3 in MVTec AD.
        thresholds: anomalous ranks and FPR levels of the grid, at least 2.
        resamples, level, seed: as :func:`bootstrap_interval`.

    Returns:
        ``Interval(estimate, low, high, n_pos, n_neg)``, ``n_pos``/``n_neg`` the anomalous and
        normal pixels.

    Raises:
        ValueError: as ``metrics.aupro``; ``groups`` not ``(N,)``, ``thresholds < 2``, bad
            ``resamples`` or ``level``.
    """
    _check_resampling(resamples, level)
    if thresholds < 2:
        raise ValueError(f"thresholds must be at least 2, got {thresholds}")
    maps, masks = _check_maps_masks(maps, masks)
    estimate = metrics.aupro(maps, masks, max_fpr)  # also checks max_fpr, NaN, both classes
    flat_maps, flat_masks, unit, n_units = _pixel_units(maps, masks, groups)
    grid = _pro_grid(flat_maps, flat_masks, maps.shape, unit, n_units, thresholds, max_fpr)
    n_pos = int(np.count_nonzero(flat_masks))
    strata = _strata(grid.n_regions > 0, grid.n_normal > 0)
    values = _aupro_rows(grid, _drawn_multiplicities(strata, n_units, resamples, seed), max_fpr)
    return Interval(estimate, *_percentile_interval(values, level), n_pos, flat_masks.size - n_pos)
