"""Tests for vaecam.uncertainty: exact against naive bootstraps that consume the same draws.

The naive references here redraw the resamples from the documented scheme on their own
(``_naive_draws``: one generator, per resample each stratum's units drawn with replacement,
strata in the order negatives-only, positives-only, both) and recompute the exact metric of
:mod:`vaecam.metrics` on the concatenated resampled data, so they check the sampling scheme and
the fast formulas together.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from vaecam import metrics
from vaecam import uncertainty as unc
from vaecam.uncertainty import (
    Interval,
    aupro_interval,
    bootstrap_interval,
    distinguishable_from_chance,
    interval_metrics,
    pixel_auroc_interval,
)


def chance_level(metric: str, n_pos: int, n_neg: int, max_fpr: float = 0.3) -> float:
    """The expected value of ``metric`` for scores independent of the labels: 0.5 for AUROC
    and EER, the positive rate for average precision (precision is the positive rate at every
    threshold), ``max_fpr / 2`` for AUPRO (each region's overlap is then the FPR)."""
    levels = {"auroc": 0.5, "equal_error_rate": 0.5, "aupro": max_fpr / 2}
    return levels.get(metric, n_pos / (n_pos + n_neg))


EXACT = {
    "auroc": metrics.auroc,
    "average_precision": metrics.average_precision,
    "equal_error_rate": metrics.equal_error_rate,
}


def _naive_draws(has_pos: np.ndarray, has_neg: np.ndarray, resamples: int, seed: int) -> list:
    """Each resample's drawn unit indices, written out from the documented scheme."""
    kind = np.where(has_pos & has_neg, 2, np.where(has_pos, 1, 0))
    strata = [np.flatnonzero(kind == k) for k in (0, 1, 2)]
    strata = [s for s in strata if s.size]
    rng = np.random.default_rng(seed)
    return [
        np.concatenate([s[rng.integers(0, s.size, size=s.size)] for s in strata])
        for _ in range(resamples)
    ]


def _quantiles(values: list[float], level: float = 0.95) -> tuple[float, float]:
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _tied_scores(rng: np.random.Generator, n: int, p_pos: float) -> tuple:
    """Integer scores 0..7 (many ties), shifted up for positives; both classes present."""
    labels = rng.random(n) < p_pos
    labels[:2], labels[-2:] = True, False
    scores = rng.integers(0, 8, n) + labels * rng.integers(0, 3, n)
    return scores.astype(np.float32), labels


def _tied_maps(rng: np.random.Generator, n_images: int = 24, n_defective: int = 15) -> tuple:
    """(N, 12, 12) maps on a grid of 1/4 (ties within and across images) and masks with one or
    two rectangular defects in the first ``n_defective`` images; per-image offsets correlate
    the pixels of an image."""
    maps = rng.integers(0, 16, (n_images, 12, 12)) / 4 + rng.integers(0, 3, (n_images, 1, 1))
    masks = np.zeros(maps.shape, dtype=bool)
    for i in range(n_defective):
        y, x = rng.integers(0, 8, 2)
        masks[i, y : y + rng.integers(2, 5), x : x + rng.integers(2, 5)] = True
        if i % 4 == 0:  # a second region in the same image
            masks[i, 10:12, 0:3] = True
    maps[masks] += 1.0
    return maps.astype(np.float32), masks


# ---------------------------------------------------------------------------------------------
# Sample level


@pytest.mark.parametrize("name", sorted(EXACT))
def test_estimate_is_the_exact_metric(name):
    scores, labels = _tied_scores(np.random.default_rng(0), 200, 0.3)
    for metric in (name, EXACT[name]):
        interval = bootstrap_interval(metric, scores, labels, resamples=20)
        assert interval.estimate == EXACT[name](scores, labels)
        assert (interval.n_pos, interval.n_neg) == (labels.sum(), (~labels).sum())


@pytest.mark.parametrize("name", sorted(EXACT))
@pytest.mark.parametrize("ties", [True, False])
def test_sample_bootstrap_equals_naive_bootstrap(name, ties):
    rng = np.random.default_rng(1)
    scores, labels = _tied_scores(rng, 150, 0.3)
    if not ties:
        scores = scores + rng.random(scores.size).astype(np.float32) / 2
    resamples, seed = 300, 5
    naive = [
        EXACT[name](scores[rows], labels[rows])
        for rows in _naive_draws(labels, ~labels, resamples, seed)
    ]
    interval = bootstrap_interval(name, scores, labels, resamples=resamples, seed=seed)
    low, high = _quantiles(naive)
    assert interval.low == pytest.approx(low, abs=1e-12)
    assert interval.high == pytest.approx(high, abs=1e-12)
    assert low < interval.estimate < high  # a real interval, not a point


@pytest.mark.parametrize("name", sorted(EXACT))
def test_grouped_bootstrap_resamples_whole_groups(name):
    rng = np.random.default_rng(2)
    scores, labels = _tied_scores(rng, 240, 0.3)
    # Negatives in clips 0-11, positives in clips 8-15: all three strata occur (negatives
    # only: 0-7, both: 8-11, positives only: 12-15).
    clips = rng.integers(0, 12, scores.size)
    clips[labels] = rng.integers(8, 16, labels.sum())
    _, unit_of = np.unique(clips, return_inverse=True)
    has_pos = np.bincount(unit_of, weights=labels) > 0
    has_neg = np.bincount(unit_of, weights=~labels) > 0
    assert (~has_pos).any() and (~has_neg).any() and (has_pos & has_neg).any()
    naive = []
    for drawn in _naive_draws(has_pos, has_neg, 200, 3):
        rows = np.concatenate([np.flatnonzero(unit_of == u) for u in drawn])
        naive.append(EXACT[name](scores[rows], labels[rows]))
    interval = bootstrap_interval(name, scores, labels, groups=clips, resamples=200, seed=3)
    low, high = _quantiles(naive)
    assert interval.low == pytest.approx(low, abs=1e-12)
    assert interval.high == pytest.approx(high, abs=1e-12)


def test_other_callables_are_bootstrapped_the_same_way():
    scores, labels = _tied_scores(np.random.default_rng(3), 120, 0.4)
    fast = bootstrap_interval("auroc", scores, labels, resamples=200, seed=1)
    slow = bootstrap_interval(
        lambda s, y: metrics.auroc(s, y), scores, labels, resamples=200, seed=1
    )
    assert fast == slow


def test_fast_rows_equal_exact_metrics_bit_for_bit():
    """AUROC and EER from the weighted counts are the same integers divided the same way."""
    rng = np.random.default_rng(4)
    scores, labels = _tied_scores(rng, 300, 0.25)
    unit = np.arange(scores.size)
    draws = np.stack(_naive_draws(labels, ~labels, 50, 0))
    table = unc._sorted_samples(scores, labels, unit)
    p, q = unc._class_counts(table, unc._multiplicities(draws, unit.size).astype(np.float64))
    for name in ("auroc", "equal_error_rate"):
        fast = unc._ROWS[name](p, q)
        assert fast.tolist() == [EXACT[name](scores[d], labels[d]) for d in draws]


def test_stratification_keeps_class_sizes():
    rng = np.random.default_rng(5)
    labels = rng.random(500) < 0.1
    labels[0] = True
    strata = unc._strata(labels, ~labels)
    for chunk in unc._resample_units(strata, 100, 0, 30):
        drawn_pos = labels[chunk].sum(axis=1)
        assert (drawn_pos == labels.sum()).all()
        assert chunk.shape[1] == labels.size
    # Without stratification the positive count would vary (binomial, sd ~ 6.7 here).


def test_draws_do_not_depend_on_the_chunk_size():
    labels = np.arange(40) % 3 == 0
    strata = unc._strata(labels, ~labels)
    one = np.concatenate(list(unc._resample_units(strata, 25, 9, 1)))
    all_at_once = np.concatenate(list(unc._resample_units(strata, 25, 9, 25)))
    np.testing.assert_array_equal(one, all_at_once)
    np.testing.assert_array_equal(one, np.stack(_naive_draws(labels, ~labels, 25, 9)))


def test_random_scores_are_not_distinguishable_from_chance():
    rng = np.random.default_rng(6)
    labels = rng.random(400) < 0.3
    scores = rng.random(400)
    for name in ("auroc", "equal_error_rate", "average_precision"):
        interval = bootstrap_interval(name, scores, labels)
        chance = chance_level(name, interval.n_pos, interval.n_neg)
        assert interval.low < chance < interval.high
        assert not distinguishable_from_chance(interval, chance)


def test_perfect_separator_is_distinguishable_from_chance():
    labels = np.arange(100) < 30
    scores = labels + np.linspace(0, 0.5, 100)
    auc = bootstrap_interval("auroc", scores, labels)
    assert (auc.estimate, auc.low, auc.high) == (1.0, 1.0, 1.0)
    assert distinguishable_from_chance(auc)
    eer = bootstrap_interval("equal_error_rate", scores, labels)
    assert (eer.estimate, eer.low, eer.high) == (0.0, 0.0, 0.0)
    assert distinguishable_from_chance(eer)


def test_fixed_seed_is_deterministic_and_seeds_differ():
    scores, labels = _tied_scores(np.random.default_rng(7), 200, 0.3)
    a = bootstrap_interval("auroc", scores, labels, seed=11)
    assert a == bootstrap_interval("auroc", scores, labels, seed=11)
    assert a != bootstrap_interval("auroc", scores, labels, seed=12)


def test_level_widens_the_interval():
    scores, labels = _tied_scores(np.random.default_rng(8), 200, 0.3)
    narrow = bootstrap_interval("auroc", scores, labels, level=0.5)
    wide = bootstrap_interval("auroc", scores, labels, level=0.99)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_torch_tensors_are_accepted():
    scores, labels = _tied_scores(np.random.default_rng(9), 100, 0.3)
    expected = bootstrap_interval("auroc", scores, labels, resamples=50)
    got = bootstrap_interval(
        "auroc", torch.from_numpy(scores), torch.from_numpy(labels), resamples=50
    )
    assert got == expected
    maps, masks = _tied_maps(np.random.default_rng(9), n_images=8, n_defective=4)
    expected = pixel_auroc_interval(maps, masks, resamples=50)
    got = pixel_auroc_interval(torch.from_numpy(maps), torch.from_numpy(masks), resamples=50)
    assert got == expected


@pytest.mark.slow
def test_auroc_interval_covers_the_true_auroc():
    """Two normals a shift d apart have AUROC Phi(d / sqrt(2)); about 95% of the intervals of
    independent test sets must contain it (binomial sd over 200 sets: ~1.5%)."""
    true_auroc = 0.75
    shift = math.sqrt(2) * norm.ppf(true_auroc)
    rng = np.random.default_rng(2024)
    n_pos, n_neg = 150, 250
    labels = np.arange(n_pos + n_neg) < n_pos
    covered = 0
    for trial in range(200):
        scores = rng.standard_normal(labels.size) + shift * labels
        interval = bootstrap_interval("auroc", scores, labels, resamples=1000, seed=trial)
        covered += interval.low <= true_auroc <= interval.high
    assert 180 <= covered <= 199  # at least 90%, and not trivially wide


# ---------------------------------------------------------------------------------------------
# Pixel level


def _brute_force_pair_counts(maps, masks, unit_of, n_units):
    k = np.zeros((n_units, n_units), dtype=np.int64)
    for i in range(n_units):
        pos = maps[unit_of == i][masks[unit_of == i]]
        for j in range(n_units):
            neg = maps[unit_of == j][~masks[unit_of == j]]
            k[i, j] = 2 * (pos[:, None] > neg).sum() + (pos[:, None] == neg).sum()
    return k


def test_pair_counts_match_brute_force():
    maps, masks = _tied_maps(np.random.default_rng(10), n_images=8, n_defective=5)
    unit_of = np.array([0, 0, 1, 2, 3, 3, 4, 5])
    pairs = unc._pair_counts(maps.reshape(8, -1), masks.reshape(8, -1), unit_of, 6)
    np.testing.assert_array_equal(pairs.k, _brute_force_pair_counts(maps, masks, unit_of, 6))
    assert pairs.n_pos.tolist() == [masks[unit_of == u].sum() for u in range(6)]
    assert pairs.n_neg.tolist() == [(~masks[unit_of == u]).sum() for u in range(6)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8])
def test_pixel_estimate_is_exact_pixel_auroc(dtype):
    maps, masks = _tied_maps(np.random.default_rng(11))
    maps = (maps * 4).astype(dtype)
    interval = pixel_auroc_interval(maps, masks, resamples=10)
    assert interval.estimate == metrics.pixel_auroc(maps, masks)
    assert (interval.n_pos, interval.n_neg) == (masks.sum(), (~masks).sum())


def test_pixel_auroc_interval_equals_naive_image_bootstrap():
    maps, masks = _tied_maps(np.random.default_rng(12))
    has_pos = masks.any(axis=(1, 2))
    resamples, seed = 300, 4
    naive = [
        metrics.pixel_auroc(maps[rows], masks[rows])
        for rows in _naive_draws(has_pos, ~masks.all(axis=(1, 2)), resamples, seed)
    ]
    interval = pixel_auroc_interval(maps, masks, resamples=resamples, seed=seed)
    low, high = _quantiles(naive)
    assert abs(interval.low - low) <= 1e-9 and abs(interval.high - high) <= 1e-9


def test_quadratic_form_values_are_the_exact_resampled_auroc():
    maps, masks = _tied_maps(np.random.default_rng(13))
    n = maps.shape[0]
    has_pos = masks.any(axis=(1, 2))
    draws = np.stack(_naive_draws(has_pos, np.ones(n, dtype=bool), 100, 0))
    pairs = unc._pair_counts(maps.reshape(n, -1), masks.reshape(n, -1), np.arange(n), n)
    values = unc._pixel_auroc_rows(pairs, unc._multiplicities(draws, n))
    assert values.tolist() == [metrics.pixel_auroc(maps[d], masks[d]) for d in draws]


def test_pixel_groups_resample_whole_clips():
    maps, masks = _tied_maps(np.random.default_rng(14), n_images=30, n_defective=12)
    clips = np.repeat(np.arange(10), 3)  # clips 0-3 hold the defective frames
    has_pos = np.array([masks[clips == c].any() for c in range(10)])
    naive = []
    for drawn in _naive_draws(has_pos, np.ones(10, dtype=bool), 200, 8):
        rows = np.concatenate([np.flatnonzero(clips == c) for c in drawn])
        naive.append(metrics.pixel_auroc(maps[rows], masks[rows]))
    interval = pixel_auroc_interval(maps, masks, clips, resamples=200, seed=8)
    low, high = _quantiles(naive)
    assert abs(interval.low - low) <= 1e-9 and abs(interval.high - high) <= 1e-9


def test_image_unit_is_wider_than_pixel_unit_for_correlated_pixels():
    """Why the image is the unit: with a per-image offset the pixels of an image move
    together, and a pixel bootstrap (as if independent) is far too narrow."""
    rng = np.random.default_rng(15)
    maps, masks = _tied_maps(rng, n_images=40, n_defective=20)
    maps = maps + rng.normal(0, 2, (40, 1, 1)).astype(np.float32)
    image = pixel_auroc_interval(maps, masks, resamples=300)
    pixel = bootstrap_interval("auroc", maps.ravel(), masks.ravel(), resamples=300)
    assert image.high - image.low > 2 * (pixel.high - pixel.low)


def test_random_maps_control_is_within_its_interval_of_chance():
    rng = np.random.default_rng(16)
    _, masks = _tied_maps(rng, n_images=40, n_defective=25)
    random_maps = rng.random(masks.shape)
    auc = pixel_auroc_interval(random_maps, masks)
    assert auc.low < 0.5 < auc.high and not distinguishable_from_chance(auc)
    pro = aupro_interval(random_maps, masks)
    chance = chance_level("aupro", pro.n_pos, pro.n_neg)
    assert pro.low < chance < pro.high and not distinguishable_from_chance(pro, chance)


def test_perfect_maps_are_distinguishable_from_chance():
    _, masks = _tied_maps(np.random.default_rng(17))
    perfect = masks.astype(np.float32)
    auc = pixel_auroc_interval(perfect, masks)
    assert (auc.estimate, auc.low, auc.high) == (1.0, 1.0, 1.0)
    pro = aupro_interval(perfect, masks)
    assert pro.estimate == 1.0 and pro.low == pytest.approx(1.0, abs=1e-12)
    assert distinguishable_from_chance(pro, chance_level("aupro", pro.n_pos, pro.n_neg))


def test_pixel_draws_keep_the_number_of_defective_images():
    _, masks = _tied_maps(np.random.default_rng(18), n_images=30, n_defective=11)
    has_pos = masks.any(axis=(1, 2))
    strata = unc._strata(has_pos, np.ones(30, dtype=bool))
    (draws,) = unc._resample_units(strata, 50, 0, 50)
    assert (has_pos[draws].sum(axis=1) == 11).all()


# ---------------------------------------------------------------------------------------------
# AUPRO


@pytest.mark.parametrize("max_fpr", [0.3, 0.5])
def test_aupro_grid_values_are_exact_with_few_anomalous_pixels(max_fpr):
    """Every anomalous score is on the grid (fewer anomalous pixels than ``thresholds``), so
    each bootstrap value is the exact AUPRO of its resample, on continuous scores too."""
    rng = np.random.default_rng(19)
    maps, masks = _tied_maps(rng)
    maps = maps + rng.random(maps.shape).astype(np.float32) / 8  # few ties left
    naive = [
        metrics.aupro(maps[rows], masks[rows], max_fpr)
        for rows in _naive_draws(masks.any(axis=(1, 2)), np.ones(24, dtype=bool), 200, 2)
    ]
    interval = aupro_interval(maps, masks, max_fpr=max_fpr, resamples=200, seed=2)
    assert interval.estimate == metrics.aupro(maps, masks, max_fpr)
    low, high = _quantiles(naive)
    assert abs(interval.low - low) <= 1e-9 and abs(interval.high - high) <= 1e-9


def test_aupro_interval_on_a_coarse_grid_is_centred_on_the_exact_value():
    rng = np.random.default_rng(20)
    maps, masks = _tied_maps(rng, n_images=60, n_defective=40)
    maps = maps + rng.random(maps.shape).astype(np.float32)  # continuous scores
    exact = metrics.aupro(maps, masks)
    n = maps.shape[0]
    grid = unc._pro_grid(
        maps.reshape(n, -1), masks.reshape(n, -1), maps.shape, np.arange(n), n, 50, 0.3
    )
    assert masks.sum() > 50  # the anomalous scores are sampled: the grid is approximate
    on_grid = unc._aupro_rows(grid, np.ones((1, n), dtype=np.int64), 0.3)[0]
    assert 0 < abs(on_grid - exact) < 2e-3
    interval = aupro_interval(maps, masks, thresholds=50)
    assert interval.estimate == exact
    width = interval.high - interval.low
    assert abs((interval.low + interval.high) / 2 - exact) < 0.1 * width


# ---------------------------------------------------------------------------------------------
# Small helpers and bad input


def test_interval_metrics_names_and_types():
    flat = interval_metrics("pixel_auroc", Interval(0.8, 0.75, 0.85, np.int64(10), 90))
    assert flat == {
        "pixel_auroc": 0.8,
        "pixel_auroc_ci_low": 0.75,
        "pixel_auroc_ci_high": 0.85,
        "pixel_auroc_n_pos": 10,
        "pixel_auroc_n_neg": 90,
    }
    assert [type(v) for v in flat.values()] == [float, float, float, int, int]


def test_distinguishable_from_chance_bounds():
    assert not distinguishable_from_chance(Interval(0.6, 0.5, 0.7, 1, 1))  # 0.5 included
    assert distinguishable_from_chance(Interval(0.6, 0.51, 0.7, 1, 1))
    assert distinguishable_from_chance(Interval(0.2, 0.1, 0.4, 1, 1))
    assert not distinguishable_from_chance(Interval(0.2, 0.1, 0.4, 1, 1), chance=0.15)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resamples": 0}, "at least 1"),
        ({"resamples": 2.5}, "integer"),
        ({"resamples": True}, "integer"),
        ({"level": 0.0}, "level"),
        ({"level": 1.0}, "level"),
        ({"level": float("nan")}, "level"),
    ],
)
def test_bad_resampling_settings_raise(kwargs, match):
    scores, labels = _tied_scores(np.random.default_rng(21), 50, 0.3)
    maps, masks = _tied_maps(np.random.default_rng(21), n_images=6, n_defective=3)
    with pytest.raises(ValueError, match=match):
        bootstrap_interval("auroc", scores, labels, **kwargs)
    with pytest.raises(ValueError, match=match):
        pixel_auroc_interval(maps, masks, **kwargs)
    with pytest.raises(ValueError, match=match):
        aupro_interval(maps, masks, **kwargs)


def test_bad_sample_inputs_raise():
    scores, labels = _tied_scores(np.random.default_rng(22), 50, 0.3)
    with pytest.raises(ValueError, match="1-D"):
        bootstrap_interval("auroc", scores.reshape(5, 10), labels.reshape(5, 10))
    with pytest.raises(ValueError, match="same shape"):
        bootstrap_interval("auroc", scores, labels[:-1])
    with pytest.raises(ValueError, match="both classes"):
        bootstrap_interval("auroc", scores, np.zeros(50, dtype=bool))
    with pytest.raises(ValueError, match="binary"):
        bootstrap_interval("auroc", scores, np.full(50, 2))
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_interval("auroc", np.where(labels, np.nan, scores), labels)
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_interval("roc", scores, labels)
    with pytest.raises(ValueError, match="groups must have shape"):
        bootstrap_interval("auroc", scores, labels, groups=np.zeros(49))


def test_bad_pixel_inputs_raise():
    maps, masks = _tied_maps(np.random.default_rng(23), n_images=6, n_defective=3)
    for fn in (pixel_auroc_interval, aupro_interval):
        with pytest.raises(ValueError, match=r"\(N, H, W\)"):
            fn(maps[0], masks[0])
        with pytest.raises(ValueError, match="same shape"):
            fn(maps, masks[:, :-1])
        with pytest.raises(ValueError, match="groups must have shape"):
            fn(maps, masks, np.zeros(5))
        with pytest.raises(ValueError, match="NaN"):
            fn(np.where(masks, np.nan, maps), masks)
    with pytest.raises(ValueError, match="both classes"):
        pixel_auroc_interval(maps, np.zeros_like(masks))
    with pytest.raises(ValueError, match="anomalous region"):
        aupro_interval(maps, np.zeros_like(masks))
    with pytest.raises(ValueError, match="thresholds"):
        aupro_interval(maps, masks, thresholds=1)
    with pytest.raises(ValueError, match="max_fpr"):
        aupro_interval(maps, masks, max_fpr=0.0)


def test_module_knows_nothing_of_the_orchestration():
    source = open(unc.__file__).read()
    for name in ("ray", "mlflow", "pandas"):
        assert f"import {name}" not in source and f"from {name}" not in source
