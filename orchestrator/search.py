"""How a sweep picks its trials: ``random`` (Tune's variant generator) or ``optuna`` (a
model-based search).

A sweep's space mixes three kinds of dimension, and a search must treat each its own way:

- grids (``category``, ``inlier``, a model family) name *different problems*: every value is
  run, and a model-based search learns each combination of their values apart (one Optuna study
  per category: the best learning rate of ``grid`` says little about ``hazelnut``);
- the seed grid *replicates* a configuration: every configuration runs once per seed with the
  same sampled values, and the search learns from the mean over the seeds;
- sampled domains (``tune.loguniform``, ``tune.choice``) are what the search explores.

Ray's ``OptunaSearch`` refuses grids, and Tune's ``Repeater`` neither keeps grids apart nor saves
its own bookkeeping (a restored sweep loses which trial belongs to which configuration), hence
:class:`GridSearcher`.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from ray import cloudpickle
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchAlgorithm, Searcher
from ray.tune.search.sample import Categorical, Domain

logger = logging.getLogger(__name__)

#: ``--search`` choices.
SEARCHES = ("random", "optuna")

#: What to install when Optuna is missing (``pyproject.toml``'s optional extra).
OPTUNA_EXTRA = 'pip install "vaecam[optuna]"'


def is_grid(value: Any) -> bool:
    return isinstance(value, Mapping) and "grid_search" in value


def split_space(
    space: Mapping[str, Any], seed_key: str = "seed", explore: Collection[str] = ()
) -> tuple[dict[str, list[Any]], list[Any], dict[str, Domain]]:
    """``(grids, seeds, explored)`` of a flat param space: the grid dimensions that stay
    exhaustive (key -> values), the seed grid's values (``[]`` when ``seed_key`` is no grid), and
    the dimensions a model-based search explores as Tune domains: every sampled domain, and each
    grid named in ``explore`` as a choice among its values. Constants are in none of them (Tune's
    ``param_space`` gives them to every trial)."""
    for key in explore:
        if key == seed_key or not is_grid(space.get(key)):
            raise ValueError(
                f"explore: {key!r} is not a grid dimension of this sweep that a search could "
                f"explore (grids: {', '.join(k for k, v in space.items() if is_grid(v)) or 'none'}"
                f"; the seed grid {seed_key!r} replicates, it is never explored)"
            )
    grids, explored = {}, {}
    for key, value in space.items():
        if key in explore:
            explored[key] = Categorical(list(value["grid_search"])).uniform()
        elif isinstance(value, Domain):
            explored[key] = value
        elif is_grid(value) and key != seed_key:
            grids[key] = list(value["grid_search"])
    seed = space.get(seed_key)
    return grids, list(seed["grid_search"]) if is_grid(seed) else [], explored


@dataclass
class _Group:
    """One suggested configuration and its replicas (one trial per seed)."""

    combination: int  # index of its grid values in ``GridSearcher._combinations``
    results: dict[str, float | None] = field(default_factory=dict)  # trial id -> metric
    told: bool = False  # whether its searcher has been told the mean


class GridSearcher(Searcher):
    """A model-based search per combination of the grid values, each suggestion replicated over
    the seed grid.

    Suggestions go round-robin over the combinations, ``num_samples`` each; every suggestion
    becomes one trial per seed, handed out one after the other, with the same sampled values.
    When every replica of a configuration has ended, the combination's searcher is told the mean
    of ``metric`` over the replicas that reported it (finite values only): a failed seed does not
    hold the search back, and the searcher hears the failure (``error=True``) only when every
    seed failed. A replica that ends again after that (``--resume`` of an errored trial) is
    recorded by Tune and MLflow, not told again (the searcher closed that configuration).
    Intermediate results are not forwarded: a searcher must not see one seed's epochs as the
    configuration's.

    Its space comes from Tune's ``param_space`` (:meth:`set_search_properties`), so a sweep
    passes the whole space to Tune as without a searcher, and each trial's config is the
    constants with the suggestion merged over them. Its state, the combinations' searchers
    included, is saved in the experiment checkpoint (:meth:`save`): ``Tuner.restore`` continues
    where the sweep stopped.

    Args:
        make_searcher: a new searcher for one combination, e.g. ``OptunaSearch``; it gets the
            explored dimensions, ``metric`` and ``mode`` through its ``set_search_properties``.
        metric, mode: what Tune reports and whether less or more is better.
        num_samples: suggestions per combination of the grid values.
        seed_key: the grid that replicates each suggestion.
        explore: grid dimensions the search may explore as a choice among their values instead
            of running each (every sampled domain is explored).
    """

    def __init__(
        self,
        make_searcher: Callable[[], Searcher],
        metric: str,
        mode: str,
        num_samples: int,
        seed_key: str = "seed",
        explore: Collection[str] = (),
    ):
        super().__init__(metric=metric, mode=mode)
        self._make_searcher = make_searcher
        self._num_samples = num_samples
        self._seed_key = seed_key
        self._explore = tuple(explore)
        self._combinations: list[dict[str, Any]] = []
        self._replicas: list[dict[str, Any]] = []
        self._searchers: list[Searcher] = []  # not ``searcher``: Tune takes that for a wrapper
        self._suggested: list[int] = []
        self._turn = 0  # the combination whose searcher suggests next
        self._pending: list[dict[str, Any]] = []  # the current suggestion's seeds to hand out
        self._current = ""  # its group id: the trial id its searcher knows it by
        self._groups: dict[str, _Group] = {}
        self._group_of: dict[str, str] = {}  # trial id -> group id

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """Take Tune's ``param_space``: one searcher per combination of its grid values, each
        set to the explored dimensions. (On ``Tuner.restore`` Tune passes no space: the state
        comes from :meth:`restore`.)"""
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        grids, seeds, explored = split_space(config, self._seed_key, self._explore)
        self._combinations = [
            dict(zip(grids, values, strict=True)) for values in itertools.product(*grids.values())
        ]
        self._replicas = [{self._seed_key: seed} for seed in seeds] or [{}]
        self._searchers = [self._make_searcher() for _ in self._combinations]
        for searcher in self._searchers:
            if not searcher.set_search_properties(self.metric, self.mode, dict(explored)):
                raise ValueError(f"{type(searcher).__name__} already has a search space")
        self._suggested = [0] * len(self._combinations)
        return True

    @property
    def searchers(self) -> list[tuple[dict[str, Any], Searcher]]:
        """Each combination of the grid values with its searcher (what each one learned)."""
        return list(zip(self._combinations, self._searchers, strict=True))

    def suggest(self, trial_id: str) -> dict | str | None:
        """The next trial's grid values, seed and sampled values; ``None`` when no searcher can
        suggest now (Tune asks again), ``FINISHED`` when every combination had its samples."""
        if not self._searchers:
            raise RuntimeError("GridSearcher: no param space yet (set_search_properties)")
        if not self._pending:
            for _ in range(len(self._searchers)):
                index, self._turn = self._turn, (self._turn + 1) % len(self._searchers)
                if self._suggested[index] >= self._num_samples:
                    continue
                sampled = self._searchers[index].suggest(trial_id)
                if sampled == Searcher.FINISHED:
                    self._suggested[index] = self._num_samples
                elif sampled is not None:
                    self._suggested[index] += 1
                    self._current, self._groups[trial_id] = trial_id, _Group(index)
                    config = self._combinations[index] | sampled
                    self._pending = [config | replica for replica in self._replicas]
                    break
            else:
                done = all(n >= self._num_samples for n in self._suggested)
                return Searcher.FINISHED if done else None
        self._group_of[trial_id] = self._current
        return self._pending.pop(0)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        """Record one replica's final ``metric``; when every replica has ended, tell the
        combination's searcher their mean (see the class)."""
        group_id = self._group_of.get(trial_id)
        if group_id is None:
            return
        group = self._groups[group_id]
        value = None if error or not result else result.get(self.metric)
        finite = value is not None and math.isfinite(value)
        group.results[trial_id] = float(value) if finite else None
        if group.told:
            logger.info("trial %s ended again; its configuration was already told", trial_id)
            return
        if len(group.results) < len(self._replicas):
            return
        values = [v for v in group.results.values() if v is not None]
        searcher = self._searchers[group.combination]
        if values:
            searcher.on_trial_complete(group_id, {self.metric: sum(values) / len(values)})
        else:
            searcher.on_trial_complete(group_id, None, error=True)
        group.told = True

    def save(self, checkpoint_path: str) -> None:
        # cloudpickle, as Tune's own tuner.pkl: the searchers (Optuna's studies) and the factory
        with open(checkpoint_path, "wb") as file:
            cloudpickle.dump(self.__dict__, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.__dict__.update(cloudpickle.load(file))


def optuna_search() -> type[Searcher]:
    """Ray's ``OptunaSearch`` (TPE), or an ``ImportError`` naming the extra to install."""
    try:
        import optuna  # noqa: F401  (Ray's module imports without it and fails only later)
    except ImportError:
        raise ImportError(f"--search optuna needs Optuna: {OPTUNA_EXTRA}") from None
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch


def build_search(
    name: str,
    space: Mapping[str, Any],
    metric: str,
    mode: str,
    num_samples: int,
    seed_key: str = "seed",
    explore: Collection[str] = (),
    max_concurrent: int = 0,
) -> tuple[Searcher | SearchAlgorithm, int]:
    """The ``search_alg`` and ``num_samples`` of ``tune.TuneConfig`` for search ``name``, with
    ``space`` passed unchanged as Tune's ``param_space``. ``num_samples`` is per combination of
    the grid values; ``max_concurrent`` (0: no limit) is applied here, so pass
    ``max_concurrent_trials=None`` to Tune (it ignores that flag beside a variant generator).

    - ``random``: Tune's variant generator sampling each configuration once and running it on
      every combination of the grids, seeds included (``constant_grid_search``): the same
      hyperparameters on every category and seed. Tune's ``num_samples`` is ``num_samples``.
    - ``optuna``: :class:`GridSearcher` over Ray's ``OptunaSearch``; Tune's ``num_samples`` is
      every trial (combinations x ``num_samples`` x seeds), the searcher ending itself then. A
      space with nothing to explore is only a grid: ``random`` runs it.

    Raises ``ValueError`` for an unknown name or a dimension Optuna cannot explore, and
    ``ImportError`` naming the ``vaecam[optuna]`` extra when Optuna is missing.
    """
    if name not in SEARCHES:
        raise ValueError(f"--search {name!r}: expected one of {', '.join(SEARCHES)}")
    grids, seeds, explored = split_space(space, seed_key, explore)
    if name == "random" or not explored:
        generator = BasicVariantGenerator(constant_grid_search=True, max_concurrent=max_concurrent)
        return generator, num_samples
    optuna = optuna_search()
    optuna.convert_search_space(explored)  # a dimension Optuna cannot take fails now, not in Ray
    searcher = GridSearcher(optuna, metric, mode, num_samples, seed_key, explore)
    combinations = math.prod(len(values) for values in grids.values())
    total = combinations * num_samples * max(1, len(seeds))
    return (ConcurrencyLimiter(searcher, max_concurrent) if max_concurrent else searcher), total
