"""A sweep's space: the search space's train space over the experiment's defaults, the
user's ``--set`` and ``--scoring``, every value checked before Ray starts, and the data of
every value that picks data checked once.

The library never sees Tune's formats (``{"grid_search": [...]}``, ``tune.choice``): here each
dimension is expanded into the plain values a trial could get, and the experiment checks those.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from typing import Any

from ray import tune

from search_spaces.space import SearchSpace
from vaecam.data.images import Progress
from vaecam.experiments import Experiment


class SpaceError(ValueError):
    """A bad setting, scoring choice or flag; the message names it and what was expected."""


def is_searched(value: Any) -> bool:
    """A dimension Tune varies: a grid search or a sampled domain."""
    return isinstance(value, tune.search.sample.Domain) or (
        isinstance(value, Mapping) and "grid_search" in value
    )


def searched_keys(space: Mapping[str, Any]) -> list[str]:
    """The dimensions Tune varies, in the space's order."""
    return [key for key, value in space.items() if is_searched(value)]


def candidates(value: Any) -> list[Any]:
    """The plain values a trial can get from one dimension: a grid's values, a choice's
    categories, a numeric domain's bounds (the extremes a sample can reach), else the value."""
    if isinstance(value, Mapping) and "grid_search" in value:
        return list(value["grid_search"])
    if isinstance(value, tune.search.sample.Categorical):
        return list(value.categories)
    if isinstance(value, tune.search.sample.Integer):
        return [value.lower, value.upper - 1]  # randint's upper bound is exclusive
    if isinstance(value, tune.search.sample.Float):
        return [value.lower, value.upper]
    if isinstance(value, tune.search.sample.Domain):
        return [value.sample()]
    return [value]


def corners(space: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Plain configs that together give every candidate of every dimension once: the first
    candidate everywhere, then each other candidate of one dimension at a time. Enough to check
    each value (cross-field rules see it beside the first of the others)."""
    first = {key: candidates(value)[0] for key, value in space.items()}
    yield first
    for key, value in space.items():
        for other in candidates(value)[1:]:
            yield first | {key: other}


def parse_assignment(item: str, option: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE as JSON; text that is not JSON stays a string (the setting's
    check then says whether a string is what it takes)."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise SpaceError(f"{option} {item!r}: expected KEY=VALUE")
    try:
        return key, json.loads(text)
    except json.JSONDecodeError:
        return key, text


def preset(search_space: SearchSpace, name: str | None) -> Mapping[str, Any]:
    """The search space's ``presets[name]`` (``set`` and ``scoring`` overrides), ``{}`` for
    none; an unknown name lists the space's presets."""
    presets = search_space.presets
    if name is not None and name not in presets:
        raise SpaceError(
            f"--preset {name!r}: this sweep's presets are {', '.join(sorted(presets)) or 'none'}"
        )
    return presets.get(name, {}) if name else {}


def build_space(
    search_space: SearchSpace,
    quick: bool,
    overrides: list[str],
    categories: list[str] | None,
    runtime: Mapping[str, Any],
    preset_name: str | None = None,
    seeds: int | None = None,
) -> dict[str, Any]:
    """The param space Tune samples: every setting's default (the experiment's), the search
    space's ``quick`` or ``train`` over them, the preset's settings over that, ``--set
    KEY=VALUE`` over that, the category grid narrowed to ``categories``, a grid of ``seeds``
    seeds (0 .. seeds - 1) and the ``runtime`` settings (data root, device)."""
    train = dict(search_space.quick if quick else search_space.train)
    train |= preset(search_space, preset_name).get("set", {})
    first = {key: candidates(value)[0] for key, value in train.items()}
    space = search_space.experiment().defaults(first) | train
    if categories:
        if "category" not in space:
            raise SpaceError("--categories: this sweep has no category dimension")
        space["category"] = tune.grid_search(categories)
    for item in overrides:
        key, value = parse_assignment(item, "--set")
        if key not in space:
            raise SpaceError(
                f"--set {item!r}: unknown setting {key!r}; valid settings: "
                f"{', '.join(sorted(space))}"
            )
        space[key] = value
    if seeds is not None:
        if any(item.partition("=")[0] == "seed" for item in overrides):
            raise SpaceError("--seeds and --set seed=...: give the seeds one way")
        space["seed"] = tune.grid_search(list(range(seeds)))
    return space | dict(runtime)


def build_scoring(
    search_space: SearchSpace, quick: bool, changes: list[str], preset_name: str | None = None
) -> dict[str, Any]:
    """The scoring grid: the search space's ``quick_scoring`` (``--quick``, when it has one) or
    ``scoring``, the preset's lists over it, then each ``--scoring KEY=JSON`` replacing that
    key's list."""
    quick_grid = search_space.quick_scoring if quick else None
    grid = dict(search_space.scoring if quick_grid is None else quick_grid)
    grid |= preset(search_space, preset_name).get("scoring", {})
    return change_scoring(grid, changes)


def change_scoring(grid: Mapping[str, Any], changes: list[str]) -> dict[str, Any]:
    """``grid`` with each ``--scoring KEY=JSON`` of ``changes`` replacing that key's list (a
    lone name is a list of one)."""
    changed = dict(grid)
    for item in changes:
        key, value = parse_assignment(item, "--scoring")
        changed[key] = [value] if isinstance(value, str) else value
    return changed


def check_space(
    experiment: Experiment, space: Mapping[str, Any], scoring: Mapping[str, Any]
) -> None:
    """Every value a trial can get, and the scoring grid on the model each would build: one
    :class:`SpaceError` naming the first bad one, before anything starts."""
    for config in corners(space):
        try:
            experiment.check(config)
            experiment.check_scoring(config, scoring)
        except (KeyError, ValueError, TypeError) as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
            raise SpaceError(message) from None


def prepare_data(
    experiment: Experiment, space: Mapping[str, Any], progress: Progress | None = None
) -> None:
    """The experiment's ``prepare`` once per combination of the values of the settings that
    pick data (an MVTec category grid: each category's files, each decoded once), so missing or
    bad data is one error before any trial starts."""
    keys = [key for key in experiment.data_settings(next(corners(space))) if key in space]
    plain = {key: candidates(value)[0] for key, value in space.items()}
    for values in itertools.product(*(candidates(space[key]) for key in keys)):
        experiment.prepare(plain | dict(zip(keys, values, strict=True)), progress)
