"""Anomaly-detection metrics: exact AUROC and average precision, numpy only.

Every function accepts numpy arrays or torch tensors (converted to numpy on the CPU) and
returns plain Python floats. Higher scores mean *more anomalous*; positives (label 1 /
``True``) are the anomalous samples or pixels.

``auroc`` is the Mann-Whitney statistic with ties counted as one half,

    AUROC = (#(pos > neg) + 0.5 * #(pos == neg)) / (n_pos * n_neg),

which equals the area under the (trapezoidal) ROC curve that scikit-learn computes. It is
built to pool tens of millions of pixels (MVTec AD, UCSD Ped) with no ``argsort`` and no
float64 copy: in the input dtype (float32 stays float32), the smaller class is copied out
and sorted, all scores are sorted once with ``np.sort`` (SIMD), and the pairs are counted
with ``np.searchsorted`` of the smaller class's distinct values in bounded chunks. On 20M
float32 pixels with 5% positives this is ~25x faster than ``sklearn.metrics.roc_auc_score``
at ~1/10 of its peak memory (see ``bench/auroc.py``). ``average_precision`` uses the same
sorted arrays instead of sorting scores with their labels.

``aupro`` is the MVTec AD localisation metric (normalised area under the per-region-overlap
curve up to a false-positive rate of 0.3); it labels the ground-truth regions with
``scipy.ndimage.label`` (scipy ships with scikit-learn) and, like ``auroc``, sorts only what it
must: the anomalous pixels are argsorted, the (many more) normal pixels only ``np.sort``-ed.
``roc_points`` samples an exact ROC curve for plotting.

``equal_error_rate`` is exact on the full ROC curve from the same two sorted arrays, and the
UCSD Ped1 video evaluation builds on it: ``pixel_criterion_scores`` reduces the 40%-coverage
criterion of Mahadevan et al., CVPR 2010 to one score per frame, so that it is an ordinary ROC
curve (frame AUROC and EER are ``auroc`` and ``equal_error_rate`` of the frame scores).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage

__all__ = [
    "aupro",
    "auroc",
    "average_precision",
    "equal_error_rate",
    "pixel_auroc",
    "pixel_criterion_scores",
    "roc_points",
]

# Keys counted per ``np.searchsorted`` call: bounds the int64 temporaries (8 MiB each).
_CHUNK = 2**20


def _to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors are detached and moved to the CPU."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        t = x.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            t = t.float()
        return np.asarray(t)
    return np.asarray(x)


def _check_scores(scores: np.ndarray) -> None:
    if scores.dtype.kind not in "biuf":
        raise ValueError(f"scores must be real numbers, got dtype {scores.dtype}")


def _check_same_shape(a: np.ndarray, b: np.ndarray, a_name: str, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} and {b_name} must have the same shape, "
            f"got {a_name} {a.shape} and {b_name} {b.shape}"
        )


def _binary_mask(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as a bool array; only bool or 0/1 values are accepted."""
    if labels.dtype == np.bool_:
        return labels
    if labels.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be bool or 0/1, got dtype {labels.dtype}")
    mask = labels == 1
    n_zero = np.count_nonzero(labels == 0)
    if np.count_nonzero(mask) + n_zero != labels.size:
        raise ValueError(f"{name} must be binary (bool or 0/1)")
    return mask


def _scores_and_mask(
    scores: Any, labels: Any, names: tuple[str, str] = ("scores", "labels")
) -> tuple[np.ndarray, np.ndarray]:
    """``scores`` and ``labels`` as numpy arrays of one shape, real scores and a bool mask."""
    scores, labels = _to_numpy(scores), _to_numpy(labels)
    _check_same_shape(scores, labels, *names)
    _check_scores(scores)
    return scores, _binary_mask(labels, names[1])


def _check_no_nan(*sorted_parts: np.ndarray) -> None:
    # np.sort puts NaN last, so the last element of each sorted part is enough to check.
    for part in sorted_parts:
        if part.size and part.dtype.kind == "f" and np.isnan(part[-1]):
            raise ValueError("scores contain NaN")


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each run of equal values in the ascending, non-empty ``keys``."""
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return starts, np.diff(np.append(starts, keys.size))


def _sum_left_right(keys: np.ndarray, table: np.ndarray, keys_in_table: bool) -> int:
    """Sum over the ``keys`` k of ``2 * #(table < k) + #(table == k)``, exact (int64).

    Both arrays are ascending. Per chunk of ``_CHUNK`` keys, each run of tied keys is searched
    once and weighted by its length (a coarse score grid costs almost nothing); a run cut by a
    chunk border is just counted in two parts. The int64 temporaries stay bounded.

    With ``keys_in_table`` (``table`` holds every key), the run of a value k in ``table`` has
    at least the ``count`` tied keys of the chunk, so ``#(table <= k) = left + count`` unless
    ``table[left + count] == k``; only those values (ties with the other class, or a run cut by
    the chunk border) need the second, ``side="right"``, search.
    """
    total = 0
    for lo in range(0, keys.size, _CHUNK):
        chunk = keys[lo : lo + _CHUNK]
        starts, counts = _groups(chunk)
        values = chunk[starts]
        left = np.searchsorted(table, values, side="left")  # #(table < k)
        if keys_in_table:
            right = left + counts
            inside = np.flatnonzero(right < table.size)
            longer = inside[table[right[inside]] == values[inside]]
            right[longer] = np.searchsorted(table, values[longer], side="right")
        else:
            right = np.searchsorted(table, values, side="right")  # #(table <= k)
        # left + right = 2 * #(table < k) + #(table == k)
        total += int(np.dot(left + right, counts))  # integer dot: exact
    return total


def _smaller_class(
    scores: np.ndarray, mask: np.ndarray, what: str
) -> tuple[np.ndarray, int, int, bool]:
    """The smaller class's scores, sorted (a fresh 1-D copy: the only class copied out),
    ``n_pos``, ``n_neg`` and whether those keys are the positives. Both classes must occur."""
    n_pos = int(np.count_nonzero(mask))
    n_neg = mask.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"{what} needs both classes, got {n_pos} positive and {n_neg} negative labels"
        )
    keys_are_pos = n_pos <= n_neg
    keys = scores[mask] if keys_are_pos else scores[~mask]
    keys.sort()
    return keys, n_pos, n_neg, keys_are_pos


def _auroc_pooled(scores: np.ndarray, mask: np.ndarray) -> float:
    """AUROC of ``scores`` with positives ``mask`` (same shape), counted over pairs.

    Only the smaller class is copied out; the other class is never extracted: it is counted
    in a sorted copy of *all* scores, whose part due to the smaller class itself is known,

        sum over keys k of 2 * #(keys < k) + #(keys == k) = n_keys ** 2,

    (every ordered pair of keys is counted 2 if strictly ordered, else 1 each way).
    """
    keys, n_pos, n_neg, keys_are_pos = _smaller_class(scores, mask, "AUROC")
    table = np.sort(scores, axis=None)  # flattened sorted copy, in the input dtype
    _check_no_nan(table)
    # 2 * #(other < key) + #(other == key), summed over the keys.
    total = _sum_left_right(keys, table, keys_in_table=True) - keys.size**2
    return _auc_from_total(total, n_pos, n_neg, keys_are_pos)


def _auc_from_total(total: int, n_pos: int, n_neg: int, keys_are_pos: bool) -> float:
    """AUROC from ``total = sum over keys of 2 * #(other class < key) + #(ties)``."""
    pairs2 = 2 * n_pos * n_neg
    if not keys_are_pos:
        # total counted 2 * #(pos < neg) + #(pos == neg); flip to 2 * #(pos > neg) + ties.
        total = pairs2 - total
    return total / pairs2  # Python ints: one correctly rounded division


def auroc(scores: Any, labels: Any) -> float:
    """Exact area under the ROC curve, ties counted as one half.

    Args:
        scores: anomaly scores of any shape ``S`` (e.g. ``(N,)`` or ``(N, H, W)``), any real
            dtype; higher means more anomalous. Flattened; NaN is rejected, +-inf is allowed.
        labels: shape ``S``, bool or 0/1; ``True``/1 marks a positive (anomalous) entry.

    Returns:
        ``(#(pos > neg) + 0.5 * #(pos == neg)) / (n_pos * n_neg)``, identical (up to float
        rounding) to ``sklearn.metrics.roc_auc_score(labels.ravel(), scores.ravel())``.

    Raises:
        ValueError: shapes differ, labels are not binary, only one class is present, or the
            scores contain NaN.
    """
    return _auroc_pooled(*_scores_and_mask(scores, labels))


def pixel_auroc(maps: Any, masks: Any) -> float:
    """Pixel-level AUROC of anomaly maps against ground-truth masks, all pixels pooled.

    Args:
        maps: ``(N, H, W)`` per-pixel anomaly scores (any shape works if ``masks`` matches).
        masks: ``(N, H, W)`` ground truth, bool or 0/1; ``True``/1 marks an anomalous pixel.

    Returns:
        ``auroc(maps, masks)`` over the ``N * H * W`` pooled pixels.

    Raises:
        ValueError: shapes differ, masks are not binary, only one class is present, or the
            maps contain NaN.
    """
    return _auroc_pooled(*_scores_and_mask(maps, masks, ("maps", "masks")))


def average_precision(scores: Any, labels: Any) -> float:
    """Average precision, exactly as ``sklearn.metrics.average_precision_score``.

    ``AP = sum_n (R_n - R_{n-1}) * P_n`` over the distinct score thresholds taken from high
    to low (tied scores form one threshold), with ``R_0 = 0``. Only thresholds equal to a
    positive score raise the recall, so with ``TP(v) = #(pos >= v)``, ``FP(v) = #(neg >= v)``
    and ``c(v) = #(pos == v)``:  ``AP = sum_v c(v) / n_pos * TP(v) / (TP(v) + FP(v))``.

    Args:
        scores: any shape ``S``, real dtype; higher means more anomalous. NaN is rejected.
        labels: shape ``S``, bool or 0/1; ``True``/1 marks a positive (anomalous) entry.

    Returns:
        Average precision in ``[0, 1]``; 1.0 when there are no negatives.

    Raises:
        ValueError: shapes differ, labels are not binary, there is no positive label, or the
            scores contain NaN.
    """
    scores, mask = _scores_and_mask(scores, labels)
    pos = scores[mask]  # a fresh copy: sort in place
    if pos.size == 0:
        raise ValueError("average precision needs at least one positive label, got none")
    pos.sort()
    table = np.sort(scores, axis=None)  # all scores; negatives = all minus positives
    _check_no_nan(table)
    n_pos = pos.size
    n_neg = table.size - n_pos
    starts, counts = _groups(pos)  # distinct positive values v, ascending
    values = pos[starts]
    tp = n_pos - starts  # #(pos >= v)
    fp = n_neg - (np.searchsorted(table, values, side="left") - starts)  # #(neg >= v)
    precision = tp / (tp + fp)
    return float(np.sum(counts / n_pos * precision))


def _pro_curve(maps: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``(fpr, pro)`` of the PRO curve, from threshold +inf down to the lowest score.

    The curve has one point per distinct score ``t`` (ties form one threshold),
    ``(FPR(t), PRO(t))``, plus ``(0, 0)``. Between two consecutive distinct *anomalous* values
    ``u > v`` only normal pixels enter, so the points there lie on the horizontal segment at
    ``PRO(u)``; dropping them changes neither the trapezoidal area nor a linear interpolation.
    The exact vertices are therefore, for each distinct anomalous value ``v`` (descending),

        (#(normal > v) / n_normal, PRO(> v))  and  (#(normal >= v) / n_normal, PRO(>= v)),

    then ``(1, 1)``: only the anomalous pixels need an argsort (to carry their weights); the
    normal pixels are just sorted and counted with ``np.searchsorted``.

    Args:
        maps: ``(N, H, W)`` scores, any real dtype, NaN-free is checked here.
        mask: ``(N, H, W)`` bool ground truth.

    Returns:
        ``fpr`` and ``pro``, float64, both of length ``2 * n_distinct_anomalous_values + 2``;
        ``fpr`` is non-decreasing from 0 to 1, ``pro`` non-decreasing from 0 to 1.
    """
    # 8-connectivity inside each image (the official code's 3x3 all-ones structure), and no
    # connection across images: the middle plane of a 3x3x3 structure labels all N at once.
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    regions, n_regions = ndimage.label(mask, structure=structure)
    if n_regions == 0:
        raise ValueError("AUPRO needs at least one anomalous region, but the masks are all 0")
    region_of = regions[mask]  # (n_anomalous,) ids 1..n_regions, in the order of maps[mask]
    del regions
    neg = maps[~mask]  # a fresh copy: sort in place
    if neg.size == 0:
        raise ValueError("AUPRO needs normal pixels, but the masks are all 1")
    neg.sort()
    pos = maps[mask]
    order = np.argsort(pos, kind="stable")
    pos = pos[order]
    _check_no_nan(neg, pos)

    # Each anomalous pixel adds 1 / (|its region| * n_regions) to PRO = mean region overlap.
    sizes = np.bincount(region_of, minlength=n_regions + 1)[1:]
    region_weight = np.concatenate(([0.0], 1.0 / (sizes * float(n_regions))))
    weights = region_weight[region_of[order]]
    del region_of, order

    starts, _ = _groups(pos)  # runs of tied anomalous scores, ascending
    values = pos[starts][::-1]  # distinct anomalous values, descending
    pro_at = np.cumsum(np.add.reduceat(weights, starts)[::-1])  # PRO(>= v)
    pro_at[-1] = 1.0  # every region fully covered: exact, without the cumsum's rounding
    n_normal = neg.size
    fp_ge = n_normal - np.searchsorted(neg, values, side="left")  # #(normal >= v)
    fp_gt = n_normal - np.searchsorted(neg, values, side="right")  # #(normal > v)

    n = values.size
    fpr = np.empty(2 * n + 2)
    pro = np.empty(2 * n + 2)
    fpr[0], pro[0] = 0.0, 0.0
    fpr[1:-1:2], pro[1:-1:2] = fp_gt, np.concatenate(([0.0], pro_at[:-1]))  # PRO(> v)
    fpr[2:-1:2], pro[2:-1:2] = fp_ge, pro_at
    fpr[-1], pro[-1] = n_normal, 1.0  # the remaining normal pixels, down to the lowest score
    fpr[1:] /= n_normal  # exact counts, one correctly rounded division each
    return fpr, pro


def _trapezoid_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoidal area under ``y(x)`` on ``[x[0], x_max]``, as the MVTec AD ``trapezoid``.

    ``x`` is non-decreasing with ``x[0] < x_max <= x[-1]``. If ``x_max`` is not a vertex, the
    last piece ends at ``x_max`` with ``y`` linearly interpolated on the segment crossing it.
    """
    k = int(np.searchsorted(x, x_max, side="right"))  # x[:k] <= x_max < x[k]; k >= 1
    xs, ys = x[:k], y[:k]
    area = float(np.sum(0.5 * (ys[1:] + ys[:-1]) * (xs[1:] - xs[:-1])))
    if xs[-1] < x_max:  # then k < len(x), since x[-1] >= x_max
        x0, x1, y0, y1 = x[k - 1], x[k], y[k - 1], y[k]
        y_max = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
        area += 0.5 * (y0 + y_max) * (x_max - x0)
    return area


def _check_maps_masks(
    maps: Any, masks: Any, shape: str = "(N, H, W)"
) -> tuple[np.ndarray, np.ndarray]:
    """``maps`` of the 3-d ``shape`` (NaN-free) and ``masks`` of that shape as a bool array
    (``shape`` names the dims in the error: images, or frames ``(F, H, W)``)."""
    maps, masks = _to_numpy(maps), _to_numpy(masks)
    _check_same_shape(maps, masks, "maps", "masks")
    if maps.ndim != 3:
        raise ValueError(f"maps and masks must be {shape}, got shape {maps.shape}")
    _check_scores(maps)
    return maps, _binary_mask(masks, "masks")


def aupro(maps: Any, masks: Any, max_fpr: float = 0.3) -> float:
    """Normalised area under the per-region-overlap (PRO) curve up to ``max_fpr``.

    The MVTec AD localisation metric (Bergmann et al., "The MVTec Anomaly Detection Dataset",
    IJCV 2021, Sec. 4.2; the official evaluation code's ``compute_pro`` + ``trapezoid``). The
    regions are the 8-connected components of each image's ground-truth mask. For a threshold
    ``t`` (a pixel is predicted anomalous when its score is ``>= t``),

        PRO(t) = mean over all regions R of |R ∩ {map >= t}| / |R|,
        FPR(t) = |{map >= t} ∩ normal| / |normal|,

    with "normal" the pixels outside every mask, in all images (anomaly-free ones included).
    The curve joins ``(0, 0)`` and the points of every distinct score; its trapezoidal area
    on ``[0, max_fpr]`` (PRO linearly interpolated at ``max_fpr``) is divided by ``max_fpr``,
    so a perfect map scores 1.0 and a map that ranks every normal pixel above every anomalous
    one 0.0. All thresholds are evaluated exactly at once; the FPR is computed from exact
    counts in float64, where the official code rounds it to float32 (differences ~1e-7).

    Args:
        maps: ``(N, H, W)`` per-pixel anomaly scores, any real dtype; higher means more
            anomalous. NaN is rejected, +-inf is allowed.
        masks: ``(N, H, W)`` ground truth, bool or 0/1; ``True``/1 marks an anomalous pixel.
        max_fpr: the integration limit in ``(0, 1]``; MVTec AD reports 0.3.

    Returns:
        AUPRO in ``[0, 1]``.

    Raises:
        ValueError: shapes differ or are not ``(N, H, W)``, masks are not binary, there is no
            anomalous region or no normal pixel, the maps contain NaN, or ``max_fpr`` is not
            in ``(0, 1]``.
    """
    if not 0.0 < max_fpr <= 1.0:  # also rejects NaN
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    fpr, pro = _pro_curve(*_check_maps_masks(maps, masks))
    return float(_trapezoid_up_to(fpr, pro, float(max_fpr)) / max_fpr)


def _quantile_picks(sorted_values: np.ndarray, count: int) -> np.ndarray:
    """``count`` (at most ``len``) values at evenly spaced ranks, first and last included."""
    n = sorted_values.size
    ranks = np.linspace(0, n - 1, num=min(count, n)).round().astype(np.int64)
    return sorted_values[ranks]


def roc_points(scores: Any, labels: Any, max_points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Points of the ROC curve for plotting: each one exact, at most ``max_points`` of them.

    The thresholds are the scores at evenly spaced ranks of the positives (half of them) and of
    the negatives (the other half; a class with fewer scores leaves the rest to the other), so
    the points are spread evenly in both TPR and FPR, where a curve on all-score quantiles
    would leave a rare class's steep part with a few points. At a
    threshold ``t`` (flagged when ``score >= t``), ``TPR = #(pos >= t) / n_pos`` and
    ``FPR = #(neg >= t) / n_neg``, counted exactly by ``np.searchsorted`` in the two sorted
    classes (two ``np.sort``, no argsort: fine for tens of millions of pixels). When
    ``max_points`` exceeds the number of samples every distinct score is a threshold and the
    result equals ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.

    Args:
        scores: any shape ``S``, real dtype; higher means more anomalous. NaN is rejected.
        labels: shape ``S``, bool or 0/1; ``True``/1 marks a positive (anomalous) entry.
        max_points: the most points returned, >= 3 (``(0, 0)``, one threshold per class).

    Returns:
        ``(fpr, tpr)``, float64 arrays of the same length <= ``max_points``, both
        non-decreasing, from ``(0, 0)`` (threshold above every score) to ``(1, 1)``.

    Raises:
        ValueError: shapes differ, labels are not binary, only one class is present, the
            scores contain NaN, or ``max_points < 3``.
    """
    if max_points < 3:
        raise ValueError(f"max_points must be at least 3, got {max_points}")
    scores, mask = _scores_and_mask(scores, labels)
    pos, neg = scores[mask], scores[~mask]  # fresh copies: sort in place
    if pos.size == 0 or neg.size == 0:
        raise ValueError(
            f"a ROC curve needs both classes, got {pos.size} positive and {neg.size} negative "
            "labels"
        )
    pos.sort()
    neg.sort()
    _check_no_nan(pos, neg)
    n_thresholds = max_points - 1  # (0, 0) is the extra point
    # half each, but what one class cannot use (it has fewer scores) goes to the other
    n_pos_picks = min(pos.size, max(n_thresholds // 2, n_thresholds - neg.size))
    picks = np.concatenate(
        (_quantile_picks(pos, n_pos_picks), _quantile_picks(neg, n_thresholds - n_pos_picks))
    )
    # Descending; both class minima are picked, so the last threshold gives (1, 1).
    thresholds = np.unique(picks)[::-1]
    tpr = (pos.size - np.searchsorted(pos, thresholds, side="left")) / pos.size
    fpr = (neg.size - np.searchsorted(neg, thresholds, side="left")) / neg.size
    return np.concatenate(([0.0], fpr)), np.concatenate(([0.0], tpr))


# ---------------------------------------------------------------------------------------------
# Equal error rate and the UCSD Ped1 video evaluation


def _roc_counts(scores: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Exact vertices of the ROC curve as counts ``(fp, tp)``, ``(0, 0)`` to ``(n_neg, n_pos)``.

    Like ``_pro_curve``, only the smaller class ("keys") is copied out and sorted; the other
    class is counted in a sorted copy of all scores minus the keys. Between two consecutive
    distinct key values only the other class enters, so the operating points there lie on one
    straight (horizontal or vertical) segment and dropping them changes neither the trapezoidal
    area nor a linear interpolation. The exact vertices are thus, for each distinct key value
    ``v`` (descending), the points at ``score > v`` and at ``score >= v``, then the last point.

    Args:
        scores: any shape ``S``, real dtype, NaN-free is checked here.
        mask: shape ``S``, bool; ``True`` marks a positive.

    Returns:
        ``fp``, ``tp`` (int64, both non-decreasing, length ``2 * n_distinct_keys + 2``),
        ``n_pos``, ``n_neg``.
    """
    keys, n_pos, n_neg, keys_are_pos = _smaller_class(scores, mask, "a ROC curve")
    table = np.sort(scores, axis=None)
    _check_no_nan(table)
    starts, counts = _groups(keys)
    starts, counts = starts[::-1], counts[::-1]  # distinct key values, descending
    values = keys[starts]
    key_ge = keys.size - starts  # #(keys >= v)
    key_gt = key_ge - counts  # #(keys > v)
    other_ge = table.size - np.searchsorted(table, values, side="left") - key_ge
    other_gt = table.size - np.searchsorted(table, values, side="right") - key_gt
    n_keys, n_other = (n_pos, n_neg) if keys_are_pos else (n_neg, n_pos)
    key_counts = np.empty(2 * values.size + 2, dtype=np.int64)
    other_counts = np.empty_like(key_counts)
    key_counts[0], other_counts[0] = 0, 0  # threshold above every score
    key_counts[1:-1:2], other_counts[1:-1:2] = key_gt, other_gt
    key_counts[2:-1:2], other_counts[2:-1:2] = key_ge, other_ge
    key_counts[-1], other_counts[-1] = n_keys, n_other  # down to the lowest score
    if keys_are_pos:
        return other_counts, key_counts, n_pos, n_neg
    return key_counts, other_counts, n_pos, n_neg


def _eer_from_counts(fp: np.ndarray, tp: np.ndarray, n_pos: int, n_neg: int) -> float:
    """FPR where the ROC polyline through ``(fp / n_neg, tp / n_pos)`` meets TPR = 1 - FPR.

    ``g = FPR + TPR - 1``, scaled by ``n_pos * n_neg`` to the exact integer
    ``fp * n_pos + tp * n_neg - n_pos * n_neg``, is non-decreasing along the curve, from
    ``-n_pos * n_neg`` at ``(0, 0)`` to ``+n_pos * n_neg`` at ``(1, 1)``. Its first vertex
    ``i`` with ``g >= 0`` and the one before bracket the crossing; the crossing's FP count is
    ``fp0 + (fp1 - fp0) * (-g0) / (g1 - g0)``, formed as one ratio of Python ints, so the
    result is correctly rounded. (A crossing on a vertex, ``g1 = 0``, gives ``fp1`` exactly.)
    """
    g = fp * n_pos + tp * n_neg - n_pos * n_neg  # int64: exact below ~3e9 samples
    i = int(np.searchsorted(g, 0, side="left"))  # 1 <= i < len(g): g[0] < 0 < g[-1]
    g0, g1 = int(g[i - 1]), int(g[i])
    fp0, fp1 = int(fp[i - 1]), int(fp[i])
    return (fp0 * (g1 - g0) - (fp1 - fp0) * g0) / ((g1 - g0) * n_neg)


def equal_error_rate(scores: Any, labels: Any) -> float:
    """Exact equal error rate: the rate at which FPR = FNR (= 1 - TPR) on the ROC curve.

    The ROC curve has one operating point per distinct score ``t`` (flagged when
    ``score >= t``; ties form one threshold), ``(FPR(t), TPR(t))``, plus ``(0, 0)``, joined by
    straight segments (the curve whose trapezoidal area is the AUROC). It starts below the
    anti-diagonal ``TPR = 1 - FPR`` and ends above it, so it crosses it exactly once; the EER
    is the FPR of that crossing, linearly interpolated between the two operating points that
    bracket it (as the common ``brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)`` on
    scikit-learn's ``roc_curve`` does, up to that root finder's tolerance). Perfectly
    separating scores give 0, reversed ones 1, a constant score 0.5.

    Args:
        scores: any shape ``S``, real dtype; higher means more anomalous. NaN is rejected.
        labels: shape ``S``, bool or 0/1; ``True``/1 marks a positive (anomalous) entry.

    Returns:
        The EER in ``[0, 1]``.

    Raises:
        ValueError: shapes differ, labels are not binary, only one class is present, or the
            scores contain NaN.
    """
    return _eer_from_counts(*_roc_counts(*_scores_and_mask(scores, labels)))


def _check_frame_labels(labels: Any, n_frames: int, name: str) -> np.ndarray:
    """``labels`` as a ``(F,)`` bool array, checked against the number of frames."""
    labels = _to_numpy(labels)
    if labels.shape != (n_frames,):
        raise ValueError(f"{name} must have shape ({n_frames},), got {labels.shape}")
    return _binary_mask(labels, name)


def _check_coverage(coverage: float) -> Fraction:
    """``coverage`` as the exact fraction it is written as (0.4 -> 2/5), in ``(0, 1]``."""
    if not 0.0 < coverage <= 1.0:  # also rejects NaN
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    # From the shortest decimal repr, not the binary float: ceil(2/5 * n) is then exact for
    # every mask size n, whatever the rounding of coverage * n in float64.
    return Fraction(repr(float(coverage)))


class CriterionScores(NamedTuple):
    """The pixel-level criterion as one score per frame (:func:`pixel_criterion_scores`)."""

    scores: np.ndarray  # (K,) anomalous frames first (the k-th largest value in the mask)
    is_anomalous: np.ndarray  # (K,) bool
    n_excluded: int  # anomalous frames with an empty mask, left out
    frames: np.ndarray  # (K,) the index of each score's frame in the input


def pixel_criterion_scores(
    maps: Any, masks: Any, frame_labels: Any, coverage: float = 0.4
) -> CriterionScores:
    """The pixel-level criterion of the UCSD Ped1 benchmark as an ordinary ROC problem: one
    score per frame and its label, whose ROC curve (so AUROC and EER, and their intervals over
    frames or clips) is the criterion's.

    Mahadevan, Li, Bhalodia and Vasconcelos, "Anomaly detection in crowded scenes", CVPR 2010:
    at a threshold ``t`` the pixels with ``map >= t`` are detected, and

    * an anomalous frame is a true positive iff at least ``coverage`` (40%) of its
      ground-truth anomalous pixels are detected;
    * a normal frame is a false positive iff any of its pixels is detected (its max >= t).

    Exactly over all thresholds: an anomalous frame ``f`` is a TP exactly when ``t <= d_f``,
    the k-th largest map value inside its mask with ``k = ceil(coverage * |mask_f|)``, and a
    normal frame is an FP exactly when ``t <= max_f``; so the criterion's curve is the ROC
    curve of these per-frame scores. Detected pixels outside the mask of an anomalous frame
    neither help nor hurt, as in the original criterion.

    An anomalous frame with an empty mask (labelled anomalous, no annotated pixel) could never
    meet a coverage rule and would cap the TPR below 1; it is excluded and counted in
    ``n_excluded``. Pass only frames that have ground-truth masks (in UCSD Ped1, the frames of
    the clips with pixel annotations): a frame of an unannotated clip would be taken as normal
    (empty mask) or excluded.

    Args:
        maps: ``(F, H, W)`` per-pixel anomaly scores, any real dtype; higher means more
            anomalous. NaN is rejected, +-inf is allowed.
        masks: ``(F, H, W)`` ground truth, bool (or 0/1); ``True`` marks an anomalous pixel.
        frame_labels: ``(F,)`` bool or 0/1; ``True``/1 marks an anomalous frame. A normal
            frame must have an empty mask.
        coverage: the fraction in ``(0, 1]`` of its anomalous pixels a frame must have
            detected; read as the decimal it is written as (0.4 = 2/5 exactly).

    Returns:
        ``scores`` (anomalous frames first, then normal ones), ``is_anomalous`` (bool, same
        length), the number of anomalous frames excluded for an empty mask, and each score's
        frame.

    Raises:
        ValueError: shapes differ or are not ``(F, H, W)`` / ``(F,)``, masks or labels are not
            binary, a normal frame has mask pixels, NaN, or ``coverage`` not in ``(0, 1]``.
    """
    fraction = _check_coverage(coverage)
    maps, masks = _check_maps_masks(maps, masks, "(F, H, W)")
    is_anom = _check_frame_labels(frame_labels, maps.shape[0], "frame_labels")
    frame_max = maps.max(axis=(1, 2))
    if frame_max.size and frame_max.dtype.kind == "f" and np.isnan(frame_max).any():
        raise ValueError("maps contain NaN")
    sizes = np.count_nonzero(masks, axis=(1, 2))
    wrong = np.flatnonzero(~is_anom & (sizes > 0))
    if wrong.size:
        raise ValueError(
            f"{wrong.size} frame(s) labelled normal have anomalous mask pixels, e.g. frame "
            f"{wrong[0]} ({sizes[wrong[0]]} pixels); frame labels and masks must agree"
        )
    kept = np.flatnonzero(is_anom & (sizes > 0))
    n_excluded = int(np.count_nonzero(is_anom)) - kept.size
    detect_at = np.empty(kept.size, dtype=maps.dtype)
    for i, f in enumerate(kept):
        inside = maps[f][masks[f]]  # (|mask_f|,) a fresh copy: partition in place
        n = inside.size
        k = -((-n * fraction.numerator) // fraction.denominator)  # ceil(coverage * n), exact
        # d_f = the k-th largest value inside the mask: at any t <= d_f at least k of the
        # masked pixels are >= t (detected), at any t > d_f fewer than k are.
        inside.partition(n - k)
        detect_at[i] = inside[n - k]
    normal = np.flatnonzero(~is_anom)  # a normal frame is a false positive once max >= t
    scores = np.concatenate((detect_at, frame_max[normal]))
    is_anomalous = np.zeros(scores.size, dtype=bool)
    is_anomalous[: kept.size] = True
    return CriterionScores(scores, is_anomalous, n_excluded, np.concatenate((kept, normal)))
