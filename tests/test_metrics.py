"""Tests for vaecam.metrics against scikit-learn (the reference) and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from vaecam import metrics
from vaecam.metrics import anomaly_metrics, auroc, average_precision, one_vs_each, pixel_auroc


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
    with pytest.raises(ValueError, match="same shape"):
        anomaly_metrics(np.zeros(3), np.array([0, 1]), inlier=0)


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
    with pytest.raises(ValueError, match="NaN"):
        one_vs_each([0.1, np.nan, 0.3], [0, 1, 1], inlier=0)


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


def test_one_vs_each_known_values():
    scores, classes = _small_example()
    result = one_vs_each(scores, classes, inlier=0)
    assert list(result) == [1, 2]
    assert all(type(k) is int for k in result)
    assert result[1] == 1.0
    assert result[2] == pytest.approx(1.5 / 6)  # 0.2: 1 win + 1 tie; 0.05: nothing


def test_anomaly_metrics_known_values_and_keys():
    scores, classes = _small_example()
    out = anomaly_metrics(scores, classes, inlier=0, prefix="test/")
    assert set(out) == {
        "test/image_auroc",
        "test/average_precision",
        "test/image_auroc_vs_1",
        "test/image_auroc_vs_2",
    }
    # Inlier vs all 4 outliers: (6 + 1.5) / 12.
    assert out["test/image_auroc"] == pytest.approx(7.5 / 12)
    assert out["test/image_auroc_vs_1"] == 1.0
    assert out["test/image_auroc_vs_2"] == pytest.approx(0.25)
    is_outlier = classes != 0
    assert out["test/average_precision"] == pytest.approx(
        average_precision_score(is_outlier, scores), abs=1e-12
    )
    # Ranked desc: 0.4+, 0.35+, 0.3-, {0.2+, 0.2-}, 0.1-, 0.05+ ->
    # 1/4*1 + 1/4*1 + 1/4*(3/5) + 1/4*(4/7).
    assert out["test/average_precision"] == pytest.approx(0.25 * (2 + 3 / 5 + 4 / 7))
    assert "image_auroc" in anomaly_metrics(scores, classes, inlier=0)  # default: no prefix


def test_one_vs_each_missing_classes_raise():
    scores, classes = _small_example()
    with pytest.raises(ValueError, match="inlier class 7"):
        one_vs_each(scores, classes, inlier=7)
    with pytest.raises(ValueError, match="no outlier class"):
        anomaly_metrics(scores[:3], classes[:3], inlier=0)
