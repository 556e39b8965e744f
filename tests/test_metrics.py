"""Tests for vaecam.metrics against scikit-learn (the reference) and hand-made cases."""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from vaecam import metrics
from vaecam.experiments.common import AnomalyData
from vaecam.experiments.mnist import OneClassSettings, image_metrics
from vaecam.metrics import (
    aupro,
    auroc,
    average_precision,
    equal_error_rate,
    pixel_auroc,
    pixel_criterion_scores,
    roc_points,
)


def _tied_data(rng: np.random.Generator, n: int, p_pos: float, dtype) -> tuple:
    """Integer scores in 0..5 (many ties), weakly shifted up for positives."""
    labels = rng.random(n) < p_pos
    labels[0], labels[-1] = True, False  # both classes always present
    scores = rng.integers(0, 6, n) + labels * rng.integers(0, 2, n)
    return scores.astype(dtype), labels


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8])
@pytest.mark.parametrize("n", [2, 3, 17, 1000, 20_000])
@pytest.mark.parametrize("p_pos", [0.02, 0.3, 0.5, 0.9])
def test_auroc_matches_sklearn_with_ties(dtype, n, p_pos):
    rng = np.random.default_rng(n * 100 + int(p_pos * 100))
    scores, labels = _tied_data(rng, n, p_pos, dtype)
    expected = roc_auc_score(labels, scores)
    assert auroc(scores, labels) == pytest.approx(expected, abs=1e-12)
    assert auroc(scores, labels.astype(np.int64)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("p_pos", [0.05, 0.5, 0.95])
def test_auroc_matches_sklearn_continuous_float32(p_pos):
    rng = np.random.default_rng(7)
    labels = rng.random(5000) < p_pos
    scores = (rng.standard_normal(5000) + labels).astype(np.float32)
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("p_pos", [0.1, 0.9])  # smaller class positive, then negative
def test_auroc_chunked_counting_matches_sklearn(monkeypatch, p_pos):
    monkeypatch.setattr(metrics, "_CHUNK", 7)  # many chunks, with a ragged last one
    rng = np.random.default_rng(3)
    scores, labels = _tied_data(rng, 2001, p_pos, np.float32)
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_is_exact_fraction_with_ties():
    # pos {1, 2}, neg {1, 0}: pairs (1>0), (1=1), (2>1), (2>0) -> (3 + 0.5) / 4.
    assert auroc([1, 2, 1, 0], [1, 1, 0, 0]) == 3.5 / 4


def test_auroc_hand_made_cases():
    labels = np.array([0, 0, 0, 1, 1])
    assert auroc([0.1, 0.2, 0.3, 0.8, 0.9], labels) == 1.0
    assert auroc([0.9, 0.8, 0.7, 0.2, 0.1], labels) == 0.0
    assert auroc([0.5] * 5, labels) == 0.5
    # pos {inf, 1} vs neg {-inf, 0, inf}: (2.5 + 2) / 6; infinities tie with each other.
    assert auroc(np.array([-np.inf, 0.0, np.inf, np.inf, 1.0]), labels) == 0.75


def test_auroc_signed_zeros_tie_and_inputs_are_not_modified():
    assert auroc(np.array([-0.0, 0.0]), np.array([False, True])) == 0.5
    rng = np.random.default_rng(2)
    scores, labels = _tied_data(rng, 500, 0.2, np.float32)
    scores_copy, labels_copy = scores.copy(), labels.copy()
    auroc(scores, labels)
    average_precision(scores, labels)
    np.testing.assert_array_equal(scores, scores_copy)
    np.testing.assert_array_equal(labels, labels_copy)


def test_auroc_accepts_torch_tensors_and_any_shape():
    rng = np.random.default_rng(0)
    scores, labels = _tied_data(rng, 600, 0.3, np.float32)
    expected = roc_auc_score(labels, scores)
    maps = torch.from_numpy(scores).reshape(6, 10, 10)
    got = auroc(maps, torch.from_numpy(labels).view(6, 10, 10))
    assert got == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="same shape"):  # same size, other shape
        auroc(maps, torch.from_numpy(labels).view(6, 100))
    got = auroc(torch.from_numpy(scores).to(torch.bfloat16), torch.from_numpy(labels))
    assert got == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)  # ints survive bf16


def test_pixel_auroc_matches_sklearn_on_flattened_maps():
    rng = np.random.default_rng(11)
    masks = rng.random((5, 32, 24)) < 0.07
    maps = (np.round(rng.random((5, 32, 24)) * 20) + 3 * masks * rng.random((5, 32, 24))).round()
    maps = maps.astype(np.float32)
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc(maps, masks.astype(np.uint8)) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc(torch.from_numpy(maps), torch.from_numpy(masks)) == pytest.approx(
        expected, abs=1e-12
    )
    # Non-contiguous views are fine too.
    assert pixel_auroc(maps[:, ::2], masks[:, ::2]) == pytest.approx(
        roc_auc_score(masks[:, ::2].ravel(), maps[:, ::2].ravel()), abs=1e-12
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("n", [2, 5, 100, 5000])
@pytest.mark.parametrize("p_pos", [0.05, 0.5, 0.95])
def test_average_precision_matches_sklearn_with_ties(dtype, n, p_pos):
    rng = np.random.default_rng(n + int(p_pos * 1000))
    scores, labels = _tied_data(rng, n, p_pos, dtype)
    expected = average_precision_score(labels, scores)
    assert average_precision(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_average_precision_continuous_and_hand_made():
    rng = np.random.default_rng(5)
    labels = rng.random(3000) < 0.2
    scores = rng.standard_normal(3000) + labels
    assert average_precision(scores, labels) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )
    labels = [0, 0, 1, 1]
    assert average_precision([0.1, 0.2, 0.8, 0.9], labels) == 1.0
    # Ranked 1,0,1 (desc): P = 1 at R = 1/2, P = 2/3 at R = 1 -> 0.5 + 1/3.
    assert average_precision([0.9, 0.5, 0.1, 0.7], [1, 0, 0, 1]) == pytest.approx(1.0)
    assert average_precision([0.9, 0.8, 0.1, 0.7], [1, 0, 0, 1]) == pytest.approx(0.5 + 1 / 3)
    # All tied: one threshold, precision = prevalence.
    assert average_precision([3, 3, 3, 3], [1, 0, 0, 0]) == pytest.approx(0.25)
    assert average_precision([1, 2], [1, 1]) == 1.0  # no negatives


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        auroc(np.zeros(3), np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"maps.*\(2, 4, 4\).*masks.*\(2, 4, 5\)"):
        pixel_auroc(np.zeros((2, 4, 4)), np.zeros((2, 4, 5), dtype=bool))
    with pytest.raises(ValueError, match="same shape"):
        average_precision(np.zeros(3), np.array([0, 1]))


def test_one_class_only_raises():
    with pytest.raises(ValueError, match="both classes"):
        auroc([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match="both classes"):
        pixel_auroc(np.zeros((2, 3, 3)), np.zeros((2, 3, 3), dtype=bool))
    with pytest.raises(ValueError, match="positive"):
        average_precision([0.1, 0.2], [0, 0])


def test_nan_raises():
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.1, np.nan, 0.3, 0.4], [0, 1, 0, 1])
    with pytest.raises(ValueError, match="NaN"):
        auroc(np.array([0.1, 0.2, np.nan, 0.4], dtype=np.float32), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="NaN"):
        average_precision([0.1, np.nan, 0.3], [0, 1, 1])


def test_non_binary_labels_raise():
    with pytest.raises(ValueError, match="binary"):
        auroc([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(ValueError, match="binary"):
        pixel_auroc(np.zeros((1, 2, 2)), np.array([[[0, 0.5], [1, 0]]]))


def _small_example():
    # inlier 0: scores 0.1, 0.2, 0.3; class 1: 0.35, 0.4 (both above every inlier);
    # class 2: 0.2, 0.05 (0.2 ties one inlier and beats one; 0.05 beats none).
    scores = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.2, 0.05])
    classes = np.array([0, 0, 0, 1, 1, 2, 2])
    return scores, classes


def test_one_class_metrics_known_values_and_keys():
    """The MNIST plug-in's image metrics: inlier vs all other digits, and vs each alone."""
    scores, classes = _small_example()
    data = AnomalyData(
        torch.zeros(1),
        torch.zeros(1),
        torch.zeros(1),
        torch.tensor(classes != 0),
        [],
        [],
        classes=torch.tensor(classes),
    )
    out = image_metrics(torch.tensor(scores), data, OneClassSettings(inlier=0))
    names = ("image_auroc", "average_precision", "image_auroc_vs_1", "image_auroc_vs_2")
    assert {
        key for key in out if not key.endswith(("_ci_low", "_ci_high", "_n_pos", "_n_neg"))
    } == set(names)
    # Inlier vs all 4 outliers: (6 + 1.5) / 12.
    assert out["image_auroc"] == pytest.approx(7.5 / 12)
    assert out["image_auroc_vs_1"] == 1.0
    assert out["image_auroc_vs_2"] == pytest.approx(1.5 / 6)  # 0.2: 1 win + 1 tie; 0.05: none
    assert (out["image_auroc_vs_2_n_pos"], out["image_auroc_vs_2_n_neg"]) == (2, 3)
    is_outlier = classes != 0
    assert out["average_precision"] == pytest.approx(
        average_precision_score(is_outlier, scores), abs=1e-12
    )
    # Ranked desc: 0.4+, 0.35+, 0.3-, {0.2+, 0.2-}, 0.1-, 0.05+ ->
    # 1/4*1 + 1/4*1 + 1/4*(3/5) + 1/4*(4/7).
    assert out["average_precision"] == pytest.approx(0.25 * (2 + 3 / 5 + 4 / 7))


# ---------------------------------------------------------------------------------------------
# AUPRO (MVTec AD localisation metric)


def _slow_aupro(maps: np.ndarray, masks: np.ndarray, max_fpr: float) -> float:
    """The obvious computation: binarise at every distinct score, measure every region."""
    structure = np.ones((3, 3), dtype=int)  # 8-connectivity, as the official MVTec AD code
    regions = []
    for mask in masks:
        labeled, n = ndimage.label(mask, structure)
        regions.append([labeled == k for k in range(1, n + 1)])
    normal = ~masks.astype(bool)
    curve = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:  # descending: the predicted set grows
        predicted = maps >= t
        overlaps = [
            np.sum(predicted[i] & region) / np.sum(region)
            for i in range(len(maps))
            for region in regions[i]
        ]
        fpr = np.sum(predicted & normal) / np.sum(normal)
        curve.append((fpr, np.mean(overlaps)))
    # The official ``trapezoid``: cut at x_max, interpolate y there if it is not a vertex.
    x = [c[0] for c in curve]
    y = [c[1] for c in curve]
    correction = 0.0
    if max_fpr not in x:
        i = bisect_right(x, max_fpr)
        y_at = y[i - 1] + (y[i] - y[i - 1]) * (max_fpr - x[i - 1]) / (x[i] - x[i - 1])
        correction = 0.5 * (y_at + y[i - 1]) * (max_fpr - x[i - 1])
    k = sum(v <= max_fpr for v in x)  # x ascends: the vertices up to x_max form a prefix
    area = sum(0.5 * (y[j - 1] + y[j]) * (x[j] - x[j - 1]) for j in range(1, k))
    return (area + correction) / max_fpr


def _aupro_data(seed: int, tied: bool) -> tuple[np.ndarray, np.ndarray]:
    """5 images 12x12: regions of 1 to ~20 pixels (some touching only diagonally), one
    anomaly-free image; scores weakly higher inside the masks, integer-valued when ``tied``."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((5, 12, 12), dtype=bool)
    masks[0, 1:4, 1:5] = True  # 12 pixels
    masks[0, 8, 8] = True  # 1 pixel
    masks[1, 2:7, 3:7] = True  # 20 pixels
    masks[1, 7, 7] = True  # joins the block above only through a corner: one region
    masks[2, 0, 0:3] = True
    masks[2, 5:7, 9:11] = True
    masks[2, 10, 1] = True
    # image 3 is anomaly-free: its pixels count only as normal ones
    masks[4] = rng.random((12, 12)) < 0.15  # scattered regions of random sizes
    noise = rng.random(masks.shape)
    if tied:
        maps = np.floor(noise * 6) + masks * rng.integers(0, 3, masks.shape)
    else:
        maps = noise + 0.4 * masks
    return maps.astype(np.float32), masks


@pytest.mark.parametrize("max_fpr", [0.3, 1.0, 0.05, 0.55])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_aupro_matches_slow_reference(max_fpr, tied, seed):
    maps, masks = _aupro_data(seed, tied)
    expected = _slow_aupro(maps, masks, max_fpr)
    assert aupro(maps, masks, max_fpr=max_fpr) == pytest.approx(expected, abs=1e-12)
    assert aupro(maps, masks.astype(np.uint8), max_fpr) == pytest.approx(expected, abs=1e-12)


def test_aupro_default_is_mvtec_limit_and_accepts_torch():
    maps, masks = _aupro_data(3, tied=True)
    expected = _slow_aupro(maps, masks, 0.3)
    assert aupro(maps, masks) == pytest.approx(expected, abs=1e-12)
    got = aupro(torch.from_numpy(maps), torch.from_numpy(masks))
    assert got == pytest.approx(expected, abs=1e-12)
    maps_copy, masks_copy = maps.copy(), masks.copy()
    aupro(maps, masks)
    np.testing.assert_array_equal(maps, maps_copy)  # inputs are not modified
    np.testing.assert_array_equal(masks, masks_copy)


@pytest.mark.parametrize("max_fpr", [0.3, 1.0])
def test_aupro_perfect_and_reversed_maps(max_fpr):
    _, masks = _aupro_data(0, tied=False)
    perfect = masks + np.random.default_rng(0).random(masks.shape) * 0.5  # every pos > neg
    assert aupro(perfect, masks, max_fpr) == pytest.approx(1.0, abs=1e-12)
    assert aupro(masks.astype(float), masks, max_fpr) == pytest.approx(1.0, abs=1e-12)
    # Every normal pixel above every anomalous one: PRO stays 0 until FPR = 1.
    assert aupro(1.0 - perfect, masks, max_fpr) == 0.0
    # One constant map: the curve jumps from (0, 0) to (1, 1), area 1/2 over [0, 1].
    constant = np.zeros(masks.shape)
    assert aupro(constant, masks, max_fpr) == pytest.approx(max_fpr / 2, abs=1e-12)


def test_aupro_hand_computed():
    # Two 1x4 images. Regions: R1 = image 0 pixels 0-1 (size 2), R2 = image 1 pixel 3 (size 1).
    # Normal pixels: 0.7, 0.1 | 0.3, 0.5, 0.2 -> 5. Thresholds, descending:
    #   0.9 (R1 half):                        FPR 0,   PRO (1/2 + 0) / 2 = 0.25
    #   0.8 (R2):                             FPR 0,   PRO (1/2 + 1) / 2 = 0.75
    #   0.7 (normal):                         FPR 1/5, PRO 0.75
    #   0.5 (tie: R1's other half + normal):  FPR 2/5, PRO 1
    #   0.3, 0.2, 0.1 (normal):               FPR 3/5, 4/5, 1, PRO 1
    # max_fpr = 1: 0.75 * 0.2 + (0.75 + 1) / 2 * 0.2 + 1 * 0.6 = 0.15 + 0.175 + 0.6 = 0.925.
    # max_fpr = 0.3: PRO(0.3) = 0.75 + 0.25 * 0.1 / 0.2 = 0.875 on the diagonal piece, so
    #   (0.15 + (0.75 + 0.875) / 2 * 0.1) / 0.3 = 0.23125 / 0.3.
    # max_fpr = 0.2 is a vertex: 0.15 / 0.2 = 0.75.
    maps = np.array([[[0.9, 0.5, 0.7, 0.1]], [[0.3, 0.5, 0.2, 0.8]]])
    masks = np.array([[[1, 1, 0, 0]], [[0, 0, 0, 1]]])
    assert aupro(maps, masks, max_fpr=1.0) == pytest.approx(0.925, abs=1e-12)
    assert aupro(maps, masks) == pytest.approx(0.23125 / 0.3, abs=1e-12)
    assert aupro(maps, masks, max_fpr=0.2) == pytest.approx(0.75, abs=1e-12)


def test_aupro_regions_are_8_connected():
    # (0, 1) and (1, 2) touch at a corner: one region of 3 pixels, of which only (1, 2) scores
    # above the normal pixels -> PRO 1/3 until FPR 1 -> AUPRO(1.0) = 1/3. With 4-connectivity
    # it would be two regions, PRO (0 + 1) / 2 = 1/2.
    masks = np.array([[[1, 1, 0], [0, 0, 1], [0, 0, 0]]])
    maps = np.array([[[0.0, 0.0, 0.5], [0.5, 0.5, 1.0], [0.5, 0.5, 0.5]]])
    assert aupro(maps, masks, max_fpr=1.0) == pytest.approx(1 / 3, abs=1e-12)


def test_aupro_counts_anomaly_free_images_as_normal_pixels():
    maps, masks = _aupro_data(0, tied=False)
    # High scores on the anomaly-free image 3 are false positives and must lower the score.
    hot = maps.copy()
    hot[3] += 1.0
    assert aupro(hot, masks) < aupro(maps, masks)
    assert aupro(hot, masks) == pytest.approx(_slow_aupro(hot, masks, 0.3), abs=1e-12)


def test_aupro_errors():
    maps, masks = _aupro_data(0, tied=False)
    with pytest.raises(ValueError, match="same shape"):
        aupro(maps, masks[:, :5])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        aupro(maps[0], masks[0])
    with pytest.raises(ValueError, match="anomalous region"):
        aupro(maps, np.zeros_like(masks))
    with pytest.raises(ValueError, match="normal pixels"):
        aupro(maps, np.ones_like(masks))
    with pytest.raises(ValueError, match="binary"):
        aupro(maps, masks * 2.0)
    bad = maps.copy()
    bad[3, 0, 0] = np.nan  # in an anomaly-free image: a normal pixel
    with pytest.raises(ValueError, match="NaN"):
        aupro(bad, masks)
    bad = maps.copy()
    bad[masks] = np.nan  # anomalous pixels
    with pytest.raises(ValueError, match="NaN"):
        aupro(bad, masks)
    for max_fpr in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="max_fpr"):
            aupro(maps, masks, max_fpr=max_fpr)


# ---------------------------------------------------------------------------------------------
# ROC points for plotting


def test_roc_points_small_input_is_sklearns_full_curve():
    rng = np.random.default_rng(4)
    scores, labels = _tied_data(rng, 60, 0.3, np.float64)
    fpr, tpr = roc_points(scores, labels)
    ref_fpr, ref_tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-15)
    np.testing.assert_allclose(tpr, ref_tpr, atol=1e-15)


@pytest.mark.parametrize("n_pos", [1, 2, 38, 39])
def test_roc_points_give_a_small_class_s_unused_points_to_the_other(n_pos):
    # 40 distinct scores and 41 points: every score is a threshold, however unbalanced
    rng = np.random.default_rng(n_pos)
    scores = rng.permutation(40).astype(np.float64)
    labels = np.arange(40) < n_pos
    fpr, tpr = roc_points(scores, labels, max_points=41)
    ref_fpr, ref_tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_array_equal(fpr, ref_fpr)
    np.testing.assert_array_equal(tpr, ref_tpr)


@pytest.mark.parametrize("max_points", [3, 10, 201])
@pytest.mark.parametrize("p_pos", [0.02, 0.5])
def test_roc_points_are_exact_sampled_points(max_points, p_pos):
    rng = np.random.default_rng(9)
    labels = rng.random(20_000) < p_pos
    scores = (rng.standard_normal(20_000) + 1.5 * labels).astype(np.float32)
    fpr, tpr = roc_points(scores, labels, max_points=max_points)
    assert fpr.dtype == tpr.dtype == np.float64
    assert fpr.shape == tpr.shape and 3 <= fpr.size <= max_points
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    # Every point is one of the exact operating points of sklearn's full curve.
    ref_fpr, ref_tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    exact = set(zip(ref_fpr.tolist(), ref_tpr.tolist(), strict=True))
    assert all(p in exact for p in zip(fpr.tolist(), tpr.tolist(), strict=True))
    if max_points == 201:  # points spread in FPR and TPR: the chords hug the curve
        area = float(np.sum(0.5 * (tpr[1:] + tpr[:-1]) * np.diff(fpr)))
        assert area == pytest.approx(auroc(scores, labels), abs=2e-3)


def test_roc_points_errors():
    with pytest.raises(ValueError, match="both classes"):
        roc_points([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        roc_points([0.1, np.nan, 0.3], [0, 1, 1])
    with pytest.raises(ValueError, match="max_points"):
        roc_points([0.1, 0.2], [0, 1], max_points=2)
    with pytest.raises(ValueError, match="same shape"):
        roc_points(np.zeros(3), np.array([0, 1]))


# ---------------------------------------------------------------------------------------------
# Equal error rate, frame level, UCSD Ped1 pixel-level criterion (Mahadevan et al. 2010)


def _slow_eer(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The obvious way: walk the ROC polyline to the first point on or above the anti-diagonal
    TPR = 1 - FPR and interpolate linearly on the segment that reaches it."""
    for j in range(1, len(fpr)):
        if fpr[j] + tpr[j] >= 1.0:
            x0, y0, x1, y1 = fpr[j - 1], tpr[j - 1], fpr[j], tpr[j]
            s = (1.0 - x0 - y0) / ((x1 - x0) + (y1 - y0))  # where x + y = 1 on the segment
            return float(x0 + s * (x1 - x0))
    raise AssertionError("a ROC curve ends at (1, 1)")


def test_equal_error_rate_hand_made_cases():
    labels = np.array([0, 0, 0, 1, 1])
    assert equal_error_rate([0.1, 0.2, 0.3, 0.8, 0.9], labels) == 0.0  # perfectly separated
    assert equal_error_rate([0.9, 0.8, 0.7, 0.2, 0.1], labels) == 1.0  # reversed
    assert equal_error_rate([0.5] * 5, labels) == 0.5  # all tied: (0, 0) -> (1, 1)
    # pos {3, 2, 2, 1}, neg {2, 0, 0}. ROC points (FPR, TPR): t > 3: (0, 0); t = 3: (0, 1/4);
    # t = 2 (two pos tie one neg): (1/3, 3/4); t = 1: (1/3, 1); t = 0: (1, 1).
    # FPR + TPR - 1 is -3/4 at (0, 1/4) and +1/12 at (1/3, 3/4): the crossing is on that
    # segment, at s = (3/4) / (3/4 + 1/12) = 9/10 of it: FPR = 9/10 * 1/3 = 0.3 and
    # TPR = 1/4 + 9/10 * 1/2 = 0.7, so FNR = 0.3 = FPR. EER = 0.3.
    scores = [3, 2, 2, 1, 2, 0, 0]
    assert equal_error_rate(scores, [1, 1, 1, 1, 0, 0, 0]) == pytest.approx(0.3, abs=1e-15)
    # Its AUROC (UCSD's frame AUROC of these frame scores): 3 beats all 3 negatives, each 2
    # beats two and ties one, 1 beats two: (3 + 2.5 + 2.5 + 2) / 12.
    assert auroc(scores, [1, 1, 1, 1, 0, 0, 0]) == pytest.approx(10 / 12, abs=1e-15)
    # Vertical crossing: pos {0.9, 0.4}, neg {0.6, 0.3, 0.1}. Points (0, 1/2), (1/3, 1/2),
    # (1/3, 1): FPR + TPR - 1 goes -1/6 -> +1/3 on the vertical segment at FPR = 1/3.
    got = equal_error_rate([0.9, 0.4, 0.6, 0.3, 0.1], [1, 1, 0, 0, 0])
    assert got == pytest.approx(1 / 3, abs=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("n", [2, 3, 17, 1000, 20_000])
@pytest.mark.parametrize("p_pos", [0.05, 0.5, 0.9])  # keys = positives, then negatives
def test_equal_error_rate_matches_sklearn_roc_curve_with_ties(dtype, n, p_pos):
    rng = np.random.default_rng(n * 10 + int(p_pos * 100))
    scores, labels = _tied_data(rng, n, p_pos, dtype)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    expected = _slow_eer(fpr, tpr)
    assert equal_error_rate(scores, labels) == pytest.approx(expected, abs=1e-12)
    fpr, tpr, _ = roc_curve(labels, scores)  # collinear points dropped: same polyline
    assert equal_error_rate(scores, labels.astype(np.int64)) == pytest.approx(
        _slow_eer(fpr, tpr), abs=1e-12
    )


def test_equal_error_rate_continuous_torch_and_errors():
    from vaecam.metrics import equal_error_rate

    rng = np.random.default_rng(8)
    labels = rng.random(4000) < 0.3
    scores = (rng.standard_normal(4000) + labels).astype(np.float32)
    fpr, tpr, _ = roc_curve(labels, scores)
    expected = _slow_eer(fpr, tpr)
    assert equal_error_rate(scores, labels) == pytest.approx(expected, abs=1e-12)
    got = equal_error_rate(torch.from_numpy(scores), torch.from_numpy(labels))
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0.25 < expected < 0.35  # two unit-variance normals one sigma apart: ~0.31
    with pytest.raises(ValueError, match="both classes"):
        equal_error_rate([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        equal_error_rate([0.1, np.nan, 0.3], [0, 1, 1])
    with pytest.raises(ValueError, match="same shape"):
        equal_error_rate(np.zeros(3), np.array([0, 1]))
    with pytest.raises(ValueError, match="binary"):
        equal_error_rate([0.1, 0.2, 0.3], [0, 1, 2])


def _slow_criterion(maps, masks, labels, coverage=0.4) -> tuple[float, float]:
    """The obvious way: binarise at every distinct map value, apply the rule frame by frame,
    build the (FPR, TPR) curve, trapezoid for the AUROC and the crossing for the EER."""
    anomalous = [f for f in range(len(maps)) if labels[f] and masks[f].any()]  # empty: excluded
    normal = [f for f in range(len(maps)) if not labels[f]]
    fpr, tpr = [0.0], [0.0]  # threshold above every value
    for t in np.unique(maps)[::-1]:
        detected = maps >= t
        tp = sum(detected[f][masks[f]].sum() / masks[f].sum() >= coverage for f in anomalous)
        fp = sum(detected[f].any() for f in normal)
        fpr.append(fp / len(normal))
        tpr.append(tp / len(anomalous))
    fpr, tpr = np.array(fpr), np.array(tpr)
    area = float(np.sum(0.5 * (tpr[1:] + tpr[:-1]) * np.diff(fpr)))
    return area, _slow_eer(fpr, tpr)


def pixel_level_criterion(maps, masks, labels, coverage: float = 0.4) -> dict[str, float]:
    """The criterion's AUROC, EER and exclusions from :func:`pixel_criterion_scores`, as the
    UCSD plug-in's map metrics take their point estimates."""
    criterion = pixel_criterion_scores(maps, masks, labels, coverage)
    return {
        "pixel_criterion_auroc": auroc(criterion.scores, criterion.is_anomalous),
        "pixel_criterion_eer": equal_error_rate(criterion.scores, criterion.is_anomalous),
        "pixel_criterion_excluded": criterion.n_excluded,
    }


def _criterion_example(hot_pixel: bool = True):
    # Four 1x5 frames. A, B anomalous; C, D normal.
    maps = np.array(
        [
            [[0.9, 0.8, 0.2, 0.1, 0.0]],  # A, mask: all 5 pixels -> needs ceil(2.0) = 2
            [[0.7, 0.6, 0.5, 0.3, 0.95]],  # B, mask: first 3 -> needs ceil(1.2) = 2
            [[0.1, 0.1, 0.65 if hot_pixel else 0.1, 0.1, 0.1]],  # C: one hot pixel
            [[0.2, 0.3, 0.4, 0.5, 0.55]],  # D
        ]
    )
    masks = np.zeros(maps.shape, dtype=bool)
    masks[0] = True
    masks[1, 0, :3] = True
    return maps, masks, np.array([1, 1, 0, 0])


def test_pixel_level_criterion_hand_made():
    maps, masks, labels = _criterion_example()
    # Thresholds, descending -> (FPR, TPR):
    #   0.95: only B's pixel outside its mask: neither TP nor FP    (0, 0)
    #   0.9:  A has 1/5 = 20% detected, < 40%                        (0, 0)
    #   0.8:  A has 2/5 = 40%: TP                                    (0, 1/2)
    #   0.7:  B has 1/3 < 40%                                        (0, 1/2)
    #   0.65: C's single hot pixel: FP                               (1/2, 1/2)
    #   0.6:  B has 2/3: TP                                          (1/2, 1)
    #   0.55: D: FP                                                  (1, 1)
    # AUROC = 1/2 * 1/2 + 1/2 * 1 = 0.75; FPR + TPR = 1 at the vertex (1/2, 1/2): EER 0.5.
    out = pixel_level_criterion(maps, masks, labels)
    assert out == {
        "pixel_criterion_auroc": 0.75,
        "pixel_criterion_eer": 0.5,
        "pixel_criterion_excluded": 0,
    }
    assert _slow_criterion(maps, masks, labels) == (0.75, 0.5)
    # Without C's hot pixel, C's max is 0.1: both anomalous frames are found before any FP.
    maps, masks, labels = _criterion_example(hot_pixel=False)
    out = pixel_level_criterion(maps, masks, labels)
    assert (out["pixel_criterion_auroc"], out["pixel_criterion_eer"]) == (1.0, 0.0)
    # coverage = 1: A is a TP only at t <= 0.0 and B at t <= 0.5; normal maxima 0.1 and 0.55.
    # Points: t = 0.55 (D) (1/2, 0); t = 0.5 (B) (1/2, 1/2); t = 0.1 (C) (1, 1/2); t = 0 (1, 1).
    # AUROC = 1/2 * 1/2 = 1/4 (only B > C); FPR + TPR = 1 at the vertex (1/2, 1/2): EER 0.5.
    out = pixel_level_criterion(maps, masks, labels, coverage=1.0)
    assert (out["pixel_criterion_auroc"], out["pixel_criterion_eer"]) == (0.25, 0.5)
    assert _slow_criterion(maps, masks, labels, coverage=1.0) == (0.25, 0.5)


@pytest.mark.parametrize(("size", "needed"), [(100, 40), (15, 6), (5, 2), (3, 2)])
def test_pixel_level_criterion_exactly_40_percent_counts(size, needed):
    # One anomalous frame whose mask is ``size`` pixels, ``hits`` of them at 1.0 and the rest
    # at 0.0; one normal frame at 0.5 everywhere. With ``needed`` = ceil(0.4 * size) hits the
    # anomalous frame is detected at t = 1 (before the normal frame: AUROC 1, EER 0); with
    # one hit fewer (39% for 100 pixels) only at t = 0 (after it: AUROC 0, EER 1).
    for hits, expected in ((needed, (1.0, 0.0)), (needed - 1, (0.0, 1.0))):
        maps = np.zeros((2, 1, size + 4), dtype=np.float32)
        maps[0, 0, :hits] = 1.0
        maps[1] = 0.5
        masks = np.zeros(maps.shape, dtype=bool)
        masks[0, 0, :size] = True
        out = pixel_level_criterion(maps, masks, [1, 0])
        assert (out["pixel_criterion_auroc"], out["pixel_criterion_eer"]) == expected
        assert _slow_criterion(maps, masks, [1, 0]) == expected


def test_pixel_level_criterion_excludes_anomalous_frames_with_empty_masks():
    maps, masks, labels = _criterion_example()
    maps = np.concatenate((maps, np.full((2, 1, 5), 9.0)))  # would be detected first
    masks = np.concatenate((masks, np.zeros((2, 1, 5), dtype=bool)))
    out = pixel_level_criterion(maps, masks, np.array([1, 1, 0, 0, 1, 1]))
    assert out == {
        "pixel_criterion_auroc": 0.75,
        "pixel_criterion_eer": 0.5,
        "pixel_criterion_excluded": 2,
    }


def _video_data(seed: int, n_frames: int = 14, shape=(6, 7), tied: bool = True):
    """Small frames; about half anomalous with a blob mask of 1 to ~20 pixels; some anomalous
    frames with an empty mask; integer-valued maps (ties) when ``tied``."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(n_frames, dtype=bool)
    labels[rng.permutation(n_frames)[: n_frames // 2]] = True
    labels[0], labels[1] = True, False
    masks = np.zeros((n_frames, *shape), dtype=bool)
    h, w = shape
    for f in np.flatnonzero(labels)[:-1]:  # the last anomalous frame keeps an empty mask
        y, x = rng.integers(0, h), rng.integers(0, w)
        dy, dx = rng.integers(1, 4), rng.integers(1, 6)
        masks[f, y : y + dy, x : x + dx] = True
    noise = rng.random(masks.shape)
    if tied:
        maps = np.floor(noise * 8) + masks * rng.integers(0, 4, masks.shape)
    else:
        maps = noise + 0.3 * masks
    return maps.astype(np.float32), masks, labels


@pytest.mark.parametrize("coverage", [0.4, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pixel_level_criterion_matches_slow_reference(coverage, tied, seed):
    maps, masks, labels = _video_data(seed, tied=tied)
    area, eer = _slow_criterion(maps, masks, labels, coverage)
    out = pixel_level_criterion(maps, masks, labels, coverage=coverage)
    assert out["pixel_criterion_auroc"] == pytest.approx(area, abs=1e-12)
    assert out["pixel_criterion_eer"] == pytest.approx(eer, abs=1e-12)
    assert out["pixel_criterion_excluded"] == 1
    got = pixel_level_criterion(
        torch.from_numpy(maps), torch.from_numpy(masks), torch.from_numpy(labels), coverage
    )
    assert got == out


def test_pixel_level_criterion_errors():
    maps, masks, labels = _criterion_example()
    wrong = masks.copy()
    wrong[3, 0, 0] = True  # D is labelled normal
    with pytest.raises(ValueError, match="labelled normal.*frame 3"):
        pixel_level_criterion(maps, wrong, labels)
    for coverage in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="coverage"):
            pixel_level_criterion(maps, masks, labels, coverage=coverage)
    with pytest.raises(ValueError, match="same shape"):
        pixel_level_criterion(maps, masks[:, :, :3], labels)
    with pytest.raises(ValueError, match=r"\(F, H, W\)"):
        pixel_level_criterion(maps[0], masks[0], labels)
    with pytest.raises(ValueError, match=r"frame_labels must have shape \(4,\)"):
        pixel_level_criterion(maps, masks, labels[:3])
    with pytest.raises(ValueError, match="both classes"):  # no normal frame
        pixel_level_criterion(maps[:2], masks[:2], labels[:2])
    with pytest.raises(ValueError, match="both classes"):  # no anomalous frame with a mask
        pixel_level_criterion(maps, np.zeros_like(masks), [1, 0, 0, 0])
    bad = maps.copy()
    bad[0, 0, 4] = np.nan  # inside the mask of an anomalous frame
    with pytest.raises(ValueError, match="NaN"):
        pixel_level_criterion(bad, masks, labels)
    bad = maps.copy()
    bad[2, 0, 0] = np.nan  # a normal frame
    with pytest.raises(ValueError, match="NaN"):
        pixel_level_criterion(bad, masks, labels)
