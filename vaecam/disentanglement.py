"""Disentanglement metrics on ground-truth factor datasets (PAPER.md section 5).

Two metrics, each one pure function that takes its randomness as an argument and returns a
dict of named scores, written step by step after google-research/disentanglement_lib
(``evaluation/metrics/factor_vae.py``, ``mig.py`` and ``utils.py``):

* :func:`factor_vae_score`, the FactorVAE metric of Kim & Mnih, "Disentangling by Factorising"
  (ICML 2018, section 4): a majority-vote classifier maps each representation dim to the
  factor that, when held fixed, most often makes that dim the one of least normalised variance.
  Its accuracy on fresh votes (``eval_accuracy``) is the score.
* :func:`mig`, the Mutual Information Gap of Chen et al., "Isolating Sources of Disentanglement
  in Variational Autoencoders" (NeurIPS 2018, Eq. 6), estimated as disentanglement_lib does:
  codes discretised into equal-width histogram bins, discrete mutual information with
  scikit-learn,

      MIG = 1/K sum_k (I(z_{j(k)}; v_k) - max_{j != j(k)} I(z_j; v_k)) / H(v_k),

  where ``j(k) = argmax_j I(z_j; v_k)``.

Both work against the small ground-truth interface :class:`GroundTruthData` (dSprites in
``vaecam.data.dsprites`` implements it; tests use a dummy one) and a *representation function*
``(N, *observation_shape) -> (N, d)``, the mean encoding ``mu`` for a VAE::

    rs = np.random.RandomState(0)
    factor_vae_score(data, encode_mean, rs)  # {"train_accuracy", "eval_accuracy", ...}
    mig(data, encode_mean, np.random.RandomState(0))  # {"mig", "num_factors"}

The algorithm and the order of random draws are those of the reference, with the reference's
standard settings as defaults (its ``factor_vae_metric.gin`` and ``mig.gin``). What differs,
none of it touching a score:

* ``_compute_variances`` encodes its ``num_variance_estimate`` observations in chunks of
  ``batch_size`` (the reference: of its own ``eval_batch_size``, 64, which is also
  ``batch_size``'s default); the observations and random draws are the same, and so are the
  codes for any encoder that maps each observation independently (an eval-mode VAE).
* ``num_active_dims`` is the number of active dims; the reference returns ``len(active_dims)``
  of a boolean mask, i.e. the total number of dims, whenever at least one dim is active.
* The votes are a ``(num_factors, num_active)`` array; the reference allocates
  ``(num_factors, d)`` but fills only the first ``num_active`` columns (``argmin`` indexes the
  active dims), and the all-zero columns add nothing to either accuracy.
* Inputs that the reference turns into NaN or an ``IndexError`` raise a ``ValueError`` here:
  ``batch_size < 2`` (no sample variance), fewer than two code dims for MIG (no gap), and a
  factor that takes a single value in the MIG sample (zero entropy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

__all__ = [
    "GroundTruthData",
    "RepresentationFunction",
    "discrete_entropy",
    "discrete_mutual_info",
    "factor_vae_score",
    "mig",
]


class GroundTruthData(Protocol):
    """A dataset generated from discrete ground-truth factors (disentanglement_lib's interface).

    ``sample_factors`` returns ``(num, num_factors)`` integer factor values, factor ``k`` in
    ``0 .. factors_num_values[k] - 1``; ``sample_observations_from_factors`` returns one
    observation per row of ``factors``, e.g. ``(num, 1, 64, 64)`` float32 for dSprites. Both
    draw any randomness from ``random_state`` only.
    """

    @property
    def num_factors(self) -> int: ...

    @property
    def factors_num_values(self) -> list[int]: ...

    def sample_factors(self, num: int, random_state: np.random.RandomState) -> np.ndarray: ...

    def sample_observations_from_factors(
        self, factors: np.ndarray, random_state: np.random.RandomState
    ) -> np.ndarray: ...


# Observations (N, *observation_shape) -> representations (N, d); for a VAE the mean encoding.
RepresentationFunction = Callable[[np.ndarray], np.ndarray]


def _sample(
    ground_truth_data: GroundTruthData, num: int, random_state: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray]:
    """Factors ``(num, num_factors)`` and their observations ``(num, ...)``.

    Factors first, then observations, as the reference's ``GroundTruthData.sample``: this fixes
    the order in which ``random_state`` is consumed.
    """
    factors = ground_truth_data.sample_factors(num, random_state)
    return factors, ground_truth_data.sample_observations_from_factors(factors, random_state)


def _represent(
    representation_function: RepresentationFunction, observations: np.ndarray
) -> np.ndarray:
    """The representation of ``observations`` ``(N, ...)`` as a numpy array ``(N, d)``."""
    representations = np.asarray(representation_function(observations))
    if representations.ndim != 2 or representations.shape[0] != len(observations):
        raise ValueError(
            f"representation_function must map {len(observations)} observations to an "
            f"(N, d) array, got shape {representations.shape}"
        )
    return representations


# --------------------------------------------------------------------------------------------
# FactorVAE metric (Kim & Mnih 2018)
# --------------------------------------------------------------------------------------------


def factor_vae_score(
    ground_truth_data: GroundTruthData,
    representation_function: RepresentationFunction,
    random_state: np.random.RandomState,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_threshold: float = 0.05,
) -> dict[str, float]:
    """The FactorVAE disentanglement metric (Kim & Mnih 2018), as disentanglement_lib.

    1. Global variance of every representation dim over ``num_variance_estimate`` random
       observations; dims whose std is below ``prune_threshold`` (collapsed to the prior) are
       dropped.
    2. A vote: pick a factor ``k``, sample ``batch_size`` (the paper's L) factor vectors that
       share the value of ``k``, encode them, and vote for ``(k, argmin_d var_local[d] /
       var_global[d])`` over the active dims.
    3. The classifier maps each active dim ``d`` to ``argmax_k votes[k, d]`` (ties to the lower
       factor index); its accuracy on ``num_train`` votes is ``train_accuracy``, on
       ``num_eval`` fresh votes ``eval_accuracy``, the score.

    Args:
        ground_truth_data: the dataset to sample factors and observations from.
        representation_function: observations ``(N, ...)`` -> mean codes ``(N, d)``; called
            with at most ``batch_size`` observations at a time.
        random_state: the only source of randomness.
        batch_size: observations per vote (L = 64 in the paper and the reference).
        num_train: votes to fit the majority-vote classifier on.
        num_eval: fresh votes to score it on.
        num_variance_estimate: observations for the global variances.
        prune_threshold: minimum global std of an active dim (the reference's
            ``prune_dims.threshold = 0.05``).

    Returns:
        ``{"train_accuracy", "eval_accuracy", "num_active_dims"}``; all three are 0 when no dim
        is active (e.g. a fully collapsed encoder).
    """
    for name, value, least, why in (
        ("batch_size", batch_size, 2, "to estimate a variance"),
        ("num_variance_estimate", num_variance_estimate, 2, "to estimate a variance"),
        ("num_train", num_train, 1, "votes to fit the classifier on"),
        ("num_eval", num_eval, 1, "votes to score it on"),
    ):
        if value < least:
            raise ValueError(f"{name} must be >= {least} {why}, got {value}")
    global_variances = _compute_variances(
        ground_truth_data, representation_function, num_variance_estimate, random_state, batch_size
    )
    active_dims = _prune_dims(global_variances, prune_threshold)
    if not active_dims.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}

    training_votes = _generate_training_batch(
        ground_truth_data,
        representation_function,
        batch_size,
        num_train,
        random_state,
        global_variances,
        active_dims,
    )
    classifier = np.argmax(training_votes, axis=0)  # (num_active,) factor index of each dim
    eval_votes = _generate_training_batch(
        ground_truth_data,
        representation_function,
        batch_size,
        num_eval,
        random_state,
        global_variances,
        active_dims,
    )
    return {
        "train_accuracy": _vote_accuracy(training_votes, classifier),
        "eval_accuracy": _vote_accuracy(eval_votes, classifier),
        "num_active_dims": int(active_dims.sum()),
    }


def _compute_variances(
    ground_truth_data: GroundTruthData,
    representation_function: RepresentationFunction,
    num_points: int,
    random_state: np.random.RandomState,
    batch_size: int,
) -> np.ndarray:
    """Unbiased variance ``(d,)`` of each representation dim over ``num_points`` observations.

    All factors and observations are sampled in one go, as the reference does, so the random
    draws match it; only the encoding is chunked, to bound the encoder's memory.
    """
    _, observations = _sample(ground_truth_data, num_points, random_state)
    representations = np.concatenate(
        [
            _represent(representation_function, observations[start : start + batch_size])
            for start in range(0, num_points, batch_size)
        ]
    )
    return np.var(representations, axis=0, ddof=1)


def _prune_dims(variances: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask ``(d,)`` of the active dims: std ``>= threshold`` (not collapsed)."""
    return np.sqrt(variances) >= threshold


def _generate_training_sample(
    ground_truth_data: GroundTruthData,
    representation_function: RepresentationFunction,
    batch_size: int,
    random_state: np.random.RandomState,
    global_variances: np.ndarray,
    active_dims: np.ndarray,
) -> tuple[int, int]:
    """One vote: ``(factor_index, argmin)``, ``argmin`` indexing the active dims.

    ``global_variances`` is ``(d,)`` and ``active_dims`` a boolean ``(d,)`` mask.
    """
    factor_index = random_state.randint(ground_truth_data.num_factors)
    # A copy, so a dataset that hands out a cached array is not modified by the fixing below.
    factors = np.array(ground_truth_data.sample_factors(batch_size, random_state))
    # The fixed factor takes the first sample's value: uniform over its values, as sampled.
    factors[:, factor_index] = factors[0, factor_index]
    observations = ground_truth_data.sample_observations_from_factors(factors, random_state)
    representations = _represent(representation_function, observations)
    local_variances = np.var(representations, axis=0, ddof=1)
    # Normalising by the global variance makes the vote invariant to each dim's scale.
    argmin = np.argmin(local_variances[active_dims] / global_variances[active_dims])
    return int(factor_index), int(argmin)


def _generate_training_batch(
    ground_truth_data: GroundTruthData,
    representation_function: RepresentationFunction,
    batch_size: int,
    num_points: int,
    random_state: np.random.RandomState,
    global_variances: np.ndarray,
    active_dims: np.ndarray,
) -> np.ndarray:
    """Vote counts ``(num_factors, num_active)`` of ``num_points`` votes."""
    votes = np.zeros((ground_truth_data.num_factors, int(active_dims.sum())), dtype=np.int64)
    for _ in range(num_points):
        factor_index, argmin = _generate_training_sample(
            ground_truth_data,
            representation_function,
            batch_size,
            random_state,
            global_variances,
            active_dims,
        )
        votes[factor_index, argmin] += 1
    return votes


def _vote_accuracy(votes: np.ndarray, classifier: np.ndarray) -> float:
    """Fraction of ``votes`` ``(num_factors, num_active)`` that ``classifier`` gets right."""
    correct = votes[classifier, np.arange(votes.shape[1])].sum()
    return float(correct / votes.sum())


# --------------------------------------------------------------------------------------------
# Mutual Information Gap (Chen et al. 2018)
# --------------------------------------------------------------------------------------------


def mig(
    ground_truth_data: GroundTruthData,
    representation_function: RepresentationFunction,
    random_state: np.random.RandomState,
    num_train: int = 10000,
    batch_size: int = 16,
    num_bins: int = 20,
) -> dict[str, float]:
    """The Mutual Information Gap (Chen et al. 2018, Eq. 6), as disentanglement_lib.

    ``num_train`` factor/code pairs are sampled, each code dim is discretised into ``num_bins``
    equal-width bins over its sampled range, and for every factor ``k`` the gap between the two
    largest mutual informations ``I(z_j; v_k)`` is divided by the entropy ``H(v_k)``; MIG is the
    mean over factors. All information is in nats (it cancels in the ratio).

    Args:
        ground_truth_data: the dataset to sample factors and observations from.
        representation_function: observations ``(N, ...)`` -> mean codes ``(N, d)``, ``d >= 2``;
            called with at most ``batch_size`` observations at a time.
        random_state: the only source of randomness.
        num_train: factor/code pairs to estimate the information from.
        batch_size: observations sampled and encoded per call.
        num_bins: histogram bins per code dim (the reference's ``discretizer.num_bins = 20``).

    Returns:
        ``{"mig", "num_factors"}``; the reference calls the score ``"discrete_mig"``.
    """
    codes, factors = _generate_batch_factor_code(
        ground_truth_data, representation_function, num_train, random_state, batch_size
    )
    if codes.shape[0] < 2:
        raise ValueError(f"MIG needs a representation of at least 2 dims, got {codes.shape[0]}")
    entropy = discrete_entropy(factors)  # (num_factors,)
    if not (entropy > 0).all():
        constant = np.flatnonzero(entropy <= 0).tolist()
        raise ValueError(
            f"factors {constant} take a single value in the sample: zero entropy, MIG undefined"
        )
    m = discrete_mutual_info(_histogram_discretize(codes, num_bins), factors)  # (d, num_factors)
    sorted_m = np.sort(m, axis=0)[::-1]  # descending per factor
    return {
        "mig": float(np.mean((sorted_m[0] - sorted_m[1]) / entropy)),
        "num_factors": factors.shape[0],
    }


def _generate_batch_factor_code(
    ground_truth_data: GroundTruthData,
    representation_function: RepresentationFunction,
    num_points: int,
    random_state: np.random.RandomState,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``(d, num_points)`` and their factors ``(num_factors, num_points)``.

    Sampled and encoded ``batch_size`` at a time (factors, then observations, per batch), as
    the reference's ``utils.generate_batch_factor_code``; rows are variables, as there.
    """
    codes, factors = [], []
    for start in range(0, num_points, batch_size):
        batch_factors, observations = _sample(
            ground_truth_data, min(batch_size, num_points - start), random_state
        )
        factors.append(batch_factors)
        codes.append(_represent(representation_function, observations))
    return np.concatenate(codes).T, np.concatenate(factors).T


def _histogram_discretize(target: np.ndarray, num_bins: int) -> np.ndarray:
    """Bin index ``(d, N)`` of each value in ``num_bins`` equal-width bins over its row's range.

    The left edges of ``np.histogram``'s bins go to ``np.digitize``, so labels run 1 .. num_bins
    and the row's maximum falls in the last bin; a constant row is all in one bin.
    """
    discretized = np.zeros(target.shape, dtype=np.int64)
    for i in range(target.shape[0]):
        edges = np.histogram(target[i], num_bins)[1]
        discretized[i] = np.digitize(target[i], edges[:-1])
    return discretized


def discrete_mutual_info(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Mutual information ``(d, num_factors)`` in nats between discrete variables.

    Args:
        codes: ``(d, N)`` discrete code values (e.g. histogram bin indices).
        factors: ``(num_factors, N)`` discrete factor values.
    """
    # scikit-learn's import takes a second, paid by every trial process: only MIG needs it
    from sklearn.metrics import mutual_info_score

    m = np.zeros((codes.shape[0], factors.shape[0]))
    for i in range(codes.shape[0]):
        for j in range(factors.shape[0]):
            m[i, j] = mutual_info_score(factors[j], codes[i])
    return m


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """Entropy ``(num_factors,)`` in nats of each row of ``factors`` ``(num_factors, N)``.

    ``H(v) = I(v; v)``, computed with the same estimator as :func:`discrete_mutual_info`.
    """
    from sklearn.metrics import mutual_info_score

    return np.array([mutual_info_score(row, row) for row in factors], dtype=np.float64)
