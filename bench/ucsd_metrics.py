"""Benchmark: UCSD Ped1 evaluation, ``vaecam.metrics`` as the UCSD plug-in uses it, vs scikit-learn.

    python bench/ucsd_metrics.py [--clips 36] [--frames 200] [--annotated 10] [--seed 0]

Data (fixed seed), shaped like the UCSD Ped1 test set: 36 clips of 200 frames of 158x238
(7,200 frames, 270.7 M pixels), float32 anomaly maps. Each clip has one anomalous interval
(about half of its frames, like the real set) holding a moving elliptic blob of 100 to 500
pixels; frame labels exist for every clip, pixel masks only for 10 clips (``has_mask``), as
in the real set (masks of the other clips are all zero, as a loader would give them). In two
annotated clips the first two anomalous frames have an empty mask (labelled anomalous, no
pixel annotated: excluded from the 40% criterion and counted). The map is uniform noise plus a
per-frame offset (``N(0, 0.3)``, so frame scores overlap) plus a per-clip strength added
inside the blob.

Each side runs in its own fresh subprocess, which builds the same data and computes the same
six numbers:

* ours: the point estimates of the UCSD plug-in's metrics (:func:`live_metrics`):
  ``pixel_auroc`` and ``pixel_criterion_scores`` over the annotated frames, ``auroc`` and
  ``equal_error_rate`` of every frame's max.
* sklearn, the obvious reference implementation:
  - ``pixel_auroc``: ``roc_auc_score(masks[annotated].ravel(), maps[annotated].ravel())``;
  - ``frame_auroc``: ``roc_auc_score`` of the per-frame max (``maps.max(axis=(1, 2))``);
    ``frame_eer``: ``roc_curve`` of the same, then linear interpolation at the first point
    with ``fpr + tpr >= 1`` (the crossing with the anti-diagonal);
  - the 40% criterion (binarising at every threshold is far too slow at this size): per-frame
    scores built with numpy, one Python loop over the annotated frames: an anomalous frame
    with a non-empty mask gets the k-th largest value inside its mask (a full ``np.sort``,
    ``k = ceil(0.4 * |mask|)`` in integers), a normal one its max; then ``roc_auc_score`` and
    ``roc_curve`` + the same interpolation for the EER.

Measured per side: best wall time of ``--repeats`` calls (ours) / ``--sk-repeats`` (sklearn),
and the peak memory of one call above what the data already hold: the kernel's peak RSS
(VmHWM, reset through /proc/self/clear_refs right before the call, as ``bench/auroc.py``), and
tracemalloc's peak as a cross-check. The last line printed is one JSON object: ``seconds``
(ours), ``peak_mb`` (ours, RSS), ``speedup`` (sklearn s / ours s), ``max_abs_diff`` over the
metric values, both sides' values, seconds and MB.
"""

from __future__ import annotations

import argparse
import gc
import json

import numpy as np
from measure import MB, in_fresh_process, measure

HEIGHT, WIDTH = 158, 238
# The UCSD Ped1 clips with pixel-level ground truth (Test003, 004, 014, 018, 019, 021, 022,
# 023, 024, 032), 0-based; the benchmark only needs 10 of the 36 clips to be annotated.
ANNOTATED_CLIPS = (2, 3, 13, 17, 18, 20, 21, 22, 23, 31)


def make_data(
    n_clips: int, n_frames: int, n_annotated: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return maps float32 (F, H, W), masks bool (F, H, W), has_mask (F,), labels (F,) bool.

    Built clip by clip in place, so the building peak is close to the data's own size.
    """
    rng = np.random.default_rng(seed)
    n_total = n_clips * n_frames
    maps = np.empty((n_total, HEIGHT, WIDTH), dtype=np.float32)
    masks = np.zeros((n_total, HEIGHT, WIDTH), dtype=bool)
    labels = np.zeros(n_total, dtype=bool)
    has_mask = np.zeros(n_total, dtype=bool)
    annotated = [c for c in ANNOTATED_CLIPS if c < n_clips][:n_annotated]
    yy, xx = np.mgrid[:HEIGHT, :WIDTH].astype(np.float32)
    for c in range(n_clips):
        clip = slice(c * n_frames, (c + 1) * n_frames)
        maps[clip] = rng.random((n_frames, HEIGHT, WIDTH), dtype=np.float32)
        offset = rng.normal(0.0, 0.3, n_frames).astype(np.float32)  # overlap frame scores
        maps[clip] += offset[:, None, None]
        start = int(rng.integers(0, n_frames // 2))
        stop = min(n_frames, start + int(rng.integers(n_frames * 3 // 10, n_frames * 7 // 10)))
        labels[clip][start:stop] = True
        # A blob moving in a straight line across the anomalous interval.
        ry, rx = rng.uniform(6, 12), rng.uniform(5, 13)
        y0, y1 = rng.uniform(ry, HEIGHT - ry, 2)
        x0, x1 = rng.uniform(rx, WIDTH - rx, 2)
        strength = np.float32(rng.uniform(0.2, 0.8))
        for i, f in enumerate(range(c * n_frames + start, c * n_frames + stop)):
            a = i / max(stop - start - 1, 1)
            cy, cx = y0 + a * (y1 - y0), x0 + a * (x1 - x0)
            blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
            maps[f][blob] += strength
            if c in annotated:
                masks[f] = blob
        if c in annotated:
            has_mask[clip] = True
            if c in annotated[:2]:  # annotation missing on the first two anomalous frames
                masks[c * n_frames + start : c * n_frames + start + 2] = False
    return maps, masks, has_mask, labels


def _eer_sklearn(labels: np.ndarray, scores: np.ndarray) -> float:
    """``roc_curve``, then linear interpolation at the crossing of FPR + TPR = 1."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    g = fpr + tpr - 1.0  # non-decreasing along the curve, -1 at (0, 0), +1 at (1, 1)
    i = int(np.argmax(g >= 0))
    s = -g[i - 1] / (g[i] - g[i - 1])
    return float(fpr[i - 1] + s * (fpr[i] - fpr[i - 1]))


def sklearn_metrics(
    maps: np.ndarray, masks: np.ndarray, has_mask: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """The same six numbers the obvious way, with scikit-learn (see the module docstring)."""
    from sklearn.metrics import roc_auc_score

    annotated = np.flatnonzero(has_mask)
    frame_scores = maps.max(axis=(1, 2))
    scores, is_anom, excluded = [], [], 0
    for f in annotated:
        if labels[f]:
            inside = np.sort(maps[f][masks[f]])[::-1]  # descending
            if inside.size == 0:
                excluded += 1
                continue
            k = (2 * inside.size + 4) // 5  # ceil(0.4 * n), in integers
            scores.append(inside[k - 1])
            is_anom.append(True)
        else:
            scores.append(frame_scores[f])
            is_anom.append(False)
    scores, is_anom = np.array(scores), np.array(is_anom)
    return {
        "pixel_auroc": float(roc_auc_score(masks[annotated].ravel(), maps[annotated].ravel())),
        "frame_auroc": float(roc_auc_score(labels, frame_scores)),
        "frame_eer": _eer_sklearn(labels, frame_scores),
        "pixel_criterion_auroc": float(roc_auc_score(is_anom, scores)),
        "pixel_criterion_eer": _eer_sklearn(is_anom, scores),
        "pixel_criterion_excluded": excluded,
    }


def live_metrics(
    maps: np.ndarray, masks: np.ndarray, has_mask: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """The six numbers as the UCSD plug-in (``vaecam.experiments.ucsd``) computes the point
    estimates of its map and frame metrics: pixel metrics over the annotated frames (a copy of
    them, as there), frame metrics over every frame's max."""
    from vaecam.metrics import auroc, equal_error_rate, pixel_auroc, pixel_criterion_scores

    annotated = np.flatnonzero(has_mask)
    frame_scores = maps.max(axis=(1, 2))
    maps, masks = maps[annotated], masks[annotated]
    criterion = pixel_criterion_scores(maps, masks, labels[annotated])
    return {
        "pixel_auroc": pixel_auroc(maps, masks),
        "frame_auroc": auroc(frame_scores, labels),
        "frame_eer": equal_error_rate(frame_scores, labels),
        "pixel_criterion_auroc": auroc(criterion.scores, criterion.is_anomalous),
        "pixel_criterion_eer": equal_error_rate(criterion.scores, criterion.is_anomalous),
        "pixel_criterion_excluded": criterion.n_excluded,
    }


def _method(name: str):
    return live_metrics if name == "ours" else sklearn_metrics


def worker(name: str, args: argparse.Namespace, repeats: int) -> dict:
    """Run in a fresh process: build the data, time one method, measure its peak memory."""
    fn = _method(name)
    data = make_data(args.clips, args.frames, args.annotated, args.seed)
    tiny_masks = np.zeros((4, 8, 8), dtype=bool)
    tiny_masks[0, 2:4, 2:4] = True
    tiny = np.random.default_rng(0).random((4, 8, 8), dtype=np.float32)
    fn(tiny, tiny_masks, np.ones(4, dtype=bool), np.array([True, False, False, True]))
    gc.collect()  # import/first-call costs are out of the measurements

    measured = measure(fn, *data, repeats=repeats)
    maps, masks, has_mask, labels = data
    return {
        "method": name,
        "values": measured.pop("value"),
        **measured,
        "data_mb": (maps.nbytes + masks.nbytes) / MB,
        "n_frames": int(maps.shape[0]),
        "n_annotated": int(np.count_nonzero(has_mask)),
        "n_anomalous": int(np.count_nonzero(labels)),
        "n_anomalous_pixels": int(np.count_nonzero(masks)),
    }


def run_child(name: str, args: argparse.Namespace, repeats: int) -> dict:
    return in_fresh_process(
        __file__,
        *("--worker", name, "--clips", args.clips, "--frames", args.frames),
        *("--annotated", args.annotated, "--seed", args.seed, "--repeats", repeats),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=36, help="test clips")
    parser.add_argument("--frames", type=int, default=200, help="frames per clip")
    parser.add_argument("--annotated", type=int, default=10, help="clips with pixel masks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of ours (best kept)")
    parser.add_argument("--sk-repeats", type=int, default=1, help="timed calls of sklearn")
    parser.add_argument("--worker", choices=["ours", "sklearn"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args, args.repeats)))
        return

    ours = run_child("ours", args, args.repeats)
    sk = run_child("sklearn", args, args.sk_repeats)
    keys = list(ours["values"])  # ours' names; the reference gives the same
    diffs = {k: abs(ours["values"][k] - sk["values"][k]) for k in keys}
    result = {
        "seconds": ours["seconds"],
        "peak_mb": ours["peak_rss_mb"],
        "speedup": sk["seconds"] / ours["seconds"],
        "max_abs_diff": max(diffs.values()),
        "sklearn_seconds": sk["seconds"],
        "sklearn_peak_mb": sk["peak_rss_mb"],
        "traced_mb": ours["peak_traced_mb"],
        "sklearn_traced_mb": sk["peak_traced_mb"],
        "ours": ours["values"],
        "sklearn": sk["values"],
        "n_frames": ours["n_frames"],
        "n_annotated_frames": ours["n_annotated"],
        "data_mb": ours["data_mb"],
        "rss_method": ours["rss_method"],
        "seed": args.seed,
    }
    print(
        f"{ours['n_frames']:,} frames of {HEIGHT}x{WIDTH} float32 ({ours['n_anomalous']:,} "
        f"anomalous), {ours['n_annotated']:,} with masks "
        f"({ours['n_annotated'] * HEIGHT * WIDTH:,} pooled pixels, "
        f"{ours['n_anomalous_pixels']:,} anomalous), seed {args.seed}"
    )
    print(f"data itself: {ours['data_mb']:.0f} MB (not counted below)")
    for label, r in (("ours   ", ours), ("sklearn", sk)):
        times = ", ".join(f"{t:.2f}" for t in r["all_seconds"])
        print(
            f"{label}: best {r['seconds']:.2f} s ({times}), peak +{r['peak_rss_mb']:.0f} MB RSS, "
            f"+{r['peak_traced_mb']:.0f} MB traced"
        )
    print(f"RSS measured as: {ours['rss_method']}")
    for k in keys:
        print(f"  {k:26s} ours {ours['values'][k]!r:22}  sklearn {sk['values'][k]!r:22}")
    print(f"speedup {result['speedup']:.1f}x, max |diff| {result['max_abs_diff']:.2e}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
