"""Tests for vaecam.disentanglement on a tiny dummy ground-truth dataset.

Sanity bounds as in disentanglement_lib's own tests (an identity representation scores ~1, a
constant one 0, codes independent of the factors score at chance), hand-computed information
values, and equality with slow, obvious re-implementations that consume the same seeded
``RandomState`` in the same order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from vaecam.disentanglement import (
    GroundTruthData,
    discrete_entropy,
    discrete_mutual_info,
    factor_vae_score,
    mig,
)

# Small but not trivial: four factors of different sizes, 4x4 single-channel "images".
FACTORS_NUM_VALUES = [4, 5, 6, 8]
K = len(FACTORS_NUM_VALUES)
SIDE = 4
# A fixed mixing of the factors: each code leans on one factor but leaks others, so the
# FactorVAE score is well below 1 and the comparison with the slow version is not trivial.
MIXING = np.random.RandomState(123).uniform(-1.0, 1.0, size=(K, K)) + np.eye(K)
FAST = {"batch_size": 64, "num_train": 500, "num_eval": 300, "num_variance_estimate": 1000}


class DummyData:
    """Observation = the factors in the first ``K`` pixels, noise in the others.

    The noise is drawn from ``random_state`` so that sampling observations consumes random
    numbers, as on a real dataset; it also gives a representation independent of the factors.
    """

    num_factors = K
    factors_num_values = FACTORS_NUM_VALUES

    def sample_factors(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
        return np.stack(
            [random_state.randint(n, size=num) for n in self.factors_num_values], axis=1
        )

    def sample_observations_from_factors(
        self, factors: np.ndarray, random_state: np.random.RandomState
    ) -> np.ndarray:
        noise = random_state.standard_normal((len(factors), SIDE * SIDE - K))
        flat = np.concatenate([factors, noise], axis=1).astype(np.float32)
        return flat.reshape(len(factors), 1, SIDE, SIDE)


def _pixels(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def identity(x: np.ndarray) -> np.ndarray:
    return _pixels(x)[:, :K]


def scaled_permuted_identity(x: np.ndarray) -> np.ndarray:
    return _pixels(x)[:, [2, 0, 3, 1]] * np.array([0.1, 10.0, 1.0, 3.0])


def constant(x: np.ndarray) -> np.ndarray:
    return np.zeros((len(x), K))


def independent(x: np.ndarray) -> np.ndarray:
    """Codes = the noise pixels: independent of the factors."""
    return _pixels(x)[:, K : 2 * K]


def duplicated(x: np.ndarray) -> np.ndarray:
    return np.hstack([identity(x), identity(x)])


def identity_with_dead_dims(x: np.ndarray) -> np.ndarray:
    """Identity plus a constant dim and a dim of std ~0.01 (both pruned at 0.05)."""
    noise = _pixels(x)[:, K : K + 1]
    return np.hstack([identity(x), np.full((len(x), 1), 3.0), 0.01 * noise])


def mixed(x: np.ndarray) -> np.ndarray:
    """Entangled codes with a little noise: a score strictly between chance and 1."""
    return identity(x) @ MIXING + 0.5 * _pixels(x)[:, K : 2 * K]


def mixed_with_constant(x: np.ndarray) -> np.ndarray:
    return np.hstack([mixed(x), np.full((len(x), 1), -1.0)])


def test_dummy_data_satisfies_the_protocol():
    data: GroundTruthData = DummyData()  # a static check as much as a runtime one
    factors = data.sample_factors(7, np.random.RandomState(0))
    assert factors.shape == (7, K)
    assert data.sample_observations_from_factors(factors, np.random.RandomState(0)).shape == (
        7,
        1,
        SIDE,
        SIDE,
    )


# --------------------------------------------------------------------------------------------
# FactorVAE score: known answers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("representation", [identity, scaled_permuted_identity, duplicated])
def test_factor_vae_disentangled_representations_score_one(representation):
    scores = factor_vae_score(DummyData(), representation, np.random.RandomState(0), **FAST)
    assert scores["train_accuracy"] >= 0.9
    assert scores["eval_accuracy"] >= 0.9
    assert set(scores) == {"train_accuracy", "eval_accuracy", "num_active_dims"}


def test_factor_vae_constant_representation_scores_zero():
    scores = factor_vae_score(DummyData(), constant, np.random.RandomState(0), **FAST)
    assert scores == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}


def test_factor_vae_independent_codes_score_at_chance():
    scores = factor_vae_score(DummyData(), independent, np.random.RandomState(0), **FAST)
    assert scores["num_active_dims"] == K
    assert scores["eval_accuracy"] < 0.5  # chance is 1 / K = 0.25
    # A majority vote is right on at least 1/K of the votes it was fitted on.
    assert scores["train_accuracy"] >= 1.0 / K


def test_factor_vae_prunes_collapsed_dims():
    scores = factor_vae_score(
        DummyData(), identity_with_dead_dims, np.random.RandomState(0), **FAST
    )
    assert scores["num_active_dims"] == K
    assert scores["eval_accuracy"] >= 0.9
    # Unpruned (threshold 0 keeps the constant dim), the constant dim's 0/0 ratio is NaN, which
    # np.argmin picks in every vote: one dim, right for 1/K of the votes.
    with np.errstate(invalid="ignore"):
        unpruned = factor_vae_score(
            DummyData(),
            identity_with_dead_dims,
            np.random.RandomState(0),
            **{**FAST, "prune_threshold": 0.0},
        )
    assert unpruned["num_active_dims"] == K + 2
    assert unpruned["eval_accuracy"] < 0.5


def test_factor_vae_entangled_codes_score_in_between():
    scores = factor_vae_score(DummyData(), mixed, np.random.RandomState(0), **FAST)
    assert 0.4 < scores["eval_accuracy"] < 0.95
    assert 0.05 < mig(DummyData(), mixed, np.random.RandomState(0), **MIG_FAST)["mig"] < 0.6


def test_factor_vae_is_deterministic_given_the_seed_and_leaves_global_rng_alone():
    np.random.seed(1)
    before = np.random.get_state()[1].copy()
    a = factor_vae_score(DummyData(), mixed, np.random.RandomState(5), **FAST)
    b = factor_vae_score(DummyData(), mixed, np.random.RandomState(5), **FAST)
    assert a == b
    assert np.array_equal(np.random.get_state()[1], before)


def test_factor_vae_encodes_at_most_batch_size_observations_per_call():
    sizes: list[int] = []

    def recording(x: np.ndarray) -> np.ndarray:
        sizes.append(len(x))
        return identity(x)

    factor_vae_score(
        DummyData(),
        recording,
        np.random.RandomState(0),
        batch_size=16,
        num_train=5,
        num_eval=5,
        num_variance_estimate=100,
    )
    # 100 variance observations in chunks of 16, then one call of 16 per vote.
    assert sizes == [16] * 6 + [4] + [16] * 10


def test_factor_vae_rejects_bad_inputs():
    with pytest.raises(ValueError, match="batch_size"):
        factor_vae_score(DummyData(), identity, np.random.RandomState(0), batch_size=1)
    # otherwise NaN variances (every dim pruned: a silent score of 0) or an accuracy of 0/0
    for setting in ({"num_variance_estimate": 1}, {"num_train": 0}, {"num_eval": 0}):
        [(name, value)] = setting.items()
        with pytest.raises(ValueError, match=f"{name} must be >= .*, got {value}"):
            factor_vae_score(DummyData(), identity, np.random.RandomState(0), **setting)
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        factor_vae_score(
            DummyData(), lambda x: x[:, 0], np.random.RandomState(0), num_variance_estimate=10
        )


# --------------------------------------------------------------------------------------------
# MIG: known answers
# --------------------------------------------------------------------------------------------

MIG_FAST = {"num_train": 1000, "batch_size": 16, "num_bins": 20}


@pytest.mark.parametrize("representation", [identity, scaled_permuted_identity])
def test_mig_identity_is_high(representation):
    scores = mig(DummyData(), representation, np.random.RandomState(0), **MIG_FAST)
    assert scores["mig"] > 0.8
    assert scores["num_factors"] == K


@pytest.mark.parametrize("representation", [constant, independent])
def test_mig_uninformative_codes_are_near_zero(representation):
    scores = mig(DummyData(), representation, np.random.RandomState(0), **MIG_FAST)
    assert 0.0 <= scores["mig"] < 0.1


def test_mig_duplicated_factor_codes_have_no_gap():
    # Two identical codes per factor share the top mutual information: the gap is exactly 0.
    scores = mig(DummyData(), duplicated, np.random.RandomState(0), **MIG_FAST)
    assert scores["mig"] == pytest.approx(0.0, abs=1e-12)


def test_mig_rejects_undefined_cases():
    with pytest.raises(ValueError, match="at least 2 dims"):
        mig(DummyData(), lambda x: identity(x)[:, :1], np.random.RandomState(0), num_train=50)

    class WithConstantFactor(DummyData):
        factors_num_values = [*FACTORS_NUM_VALUES[:-1], 1]

    with pytest.raises(ValueError, match=r"factors \[3\]"):
        mig(WithConstantFactor(), identity, np.random.RandomState(0), num_train=50)


def test_discrete_information_by_hand():
    ys = np.array([[0, 0, 1, 1], [0, 0, 0, 1]])
    h1 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    np.testing.assert_allclose(discrete_entropy(ys), [math.log(2), h1])
    mus = np.array([[5, 5, 7, 7], [1, 2, 1, 2], [3, 3, 3, 3]])
    # mus[0] relabels ys[0]; mus[1] is independent of ys[0]; mus[2] is constant.
    # I(mus[0]; ys[1]) = H(ys[1]) - H(ys[1] | mus[0]) = h1 - 0.5 * log 2.
    expected = [[math.log(2), h1 - 0.5 * math.log(2)], [0.0, h1 - 0.5 * math.log(2)], [0.0, 0.0]]
    np.testing.assert_allclose(discrete_mutual_info(mus, ys), expected, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Slow, obvious re-implementations: plain loops, the same draws from the same RandomState
# --------------------------------------------------------------------------------------------


def _slow_variance(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def slow_factor_vae(data, representation, rs, batch_size, num_train, num_eval, num_var, thr):
    # Global variances over num_var observations (factors first, then observations).
    factors = data.sample_factors(num_var, rs)
    codes = representation(data.sample_observations_from_factors(factors, rs))
    num_dims = codes.shape[1]
    global_var = [_slow_variance([codes[i][j] for i in range(num_var)]) for j in range(num_dims)]
    active = [j for j in range(num_dims) if math.sqrt(global_var[j]) >= thr]
    if not active:
        return 0.0, 0.0, 0

    def count_votes(num_votes):
        votes = [[0] * len(active) for _ in range(data.num_factors)]
        for _ in range(num_votes):
            k = rs.randint(data.num_factors)
            batch = data.sample_factors(batch_size, rs)
            for i in range(batch_size):
                batch[i][k] = batch[0][k]
            codes = representation(data.sample_observations_from_factors(batch, rs))
            best, best_ratio = None, math.inf
            for position, j in enumerate(active):
                ratio = _slow_variance([codes[i][j] for i in range(batch_size)]) / global_var[j]
                if ratio < best_ratio:  # strict: the first minimum wins, as np.argmin
                    best, best_ratio = position, ratio
            votes[k][best] += 1
        return votes

    def accuracy(votes, classifier):
        right = sum(votes[classifier[p]][p] for p in range(len(active)))
        return right / sum(sum(row) for row in votes)

    train_votes = count_votes(num_train)
    classifier = []
    for p in range(len(active)):
        column = [train_votes[k][p] for k in range(data.num_factors)]
        classifier.append(column.index(max(column)))  # first maximum, as np.argmax
    eval_votes = count_votes(num_eval)
    return accuracy(train_votes, classifier), accuracy(eval_votes, classifier), len(active)


def _slow_entropy(labels: list) -> float:
    n = len(labels)
    return -sum(c / n * math.log(c / n) for c in (labels.count(v) for v in set(labels)))


def _slow_mutual_info(a: list, b: list) -> float:
    n, total = len(a), 0.0
    for x in set(a):
        for y in set(b):
            joint = sum(1 for i in range(n) if a[i] == x and b[i] == y) / n
            if joint > 0:
                total += joint * math.log(joint / (a.count(x) / n * b.count(y) / n))
    return total


def _slow_bins(values: list[float], num_bins: int) -> list[int]:
    lo, hi = min(values), max(values)
    if lo == hi:  # np.histogram widens a degenerate range by 0.5 each side
        lo, hi = lo - 0.5, hi + 0.5
    # Left edges computed as np.linspace does (start + index * step), so values that sit
    # exactly on an edge (integer codes do) fall in the same bin as in the library.
    step = (hi - lo) / num_bins
    left_edges = [b * step + lo for b in range(num_bins)]
    return [sum(1 for e in left_edges if e <= v) for v in values]


def slow_mig(data, representation, rs, num_train, batch_size, num_bins):
    factors, codes = [], []
    done = 0
    while done < num_train:
        n = min(batch_size, num_train - done)
        batch = data.sample_factors(n, rs)
        batch_codes = representation(data.sample_observations_from_factors(batch, rs))
        factors.extend(list(row) for row in batch)
        codes.extend(list(row) for row in batch_codes)
        done += n
    num_dims = len(codes[0])
    binned = [_slow_bins([c[j] for c in codes], num_bins) for j in range(num_dims)]
    gaps = []
    for k in range(data.num_factors):
        factor = [f[k] for f in factors]
        infos = sorted(
            (_slow_mutual_info(binned[j], factor) for j in range(num_dims)), reverse=True
        )
        gaps.append((infos[0] - infos[1]) / _slow_entropy(factor))
    return sum(gaps) / len(gaps)


@pytest.mark.parametrize(
    "representation", [mixed, mixed_with_constant, identity_with_dead_dims, constant]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_factor_vae_matches_slow_reimplementation(representation, seed):
    data = DummyData()
    scores = factor_vae_score(data, representation, np.random.RandomState(seed), **FAST)
    expected = slow_factor_vae(
        data, representation, np.random.RandomState(seed), 64, 500, 300, 1000, 0.05
    )
    # Vote counts are integers, so the accuracies are equal, not just close.
    observed = (scores["train_accuracy"], scores["eval_accuracy"], scores["num_active_dims"])
    assert observed == expected


@pytest.mark.parametrize("representation", [mixed, mixed_with_constant, identity])
@pytest.mark.parametrize("seed", [0, 1])
def test_mig_matches_slow_reimplementation(representation, seed):
    data = DummyData()
    scores = mig(data, representation, np.random.RandomState(seed), **MIG_FAST)
    expected = slow_mig(data, representation, np.random.RandomState(seed), 1000, 16, 20)
    # Same bins and counts; the logarithms are summed in a different order.
    assert scores["mig"] == pytest.approx(expected, rel=1e-10, abs=1e-12)
