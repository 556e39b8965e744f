"""A sweep's space (orchestrator.space): Tune's dimensions expanded to the plain values a trial
can get, each checked, and the data of each value that picks data checked once."""

import subprocess
import sys

import pytest
from ray import tune

from orchestrator.space import (
    SpaceError,
    build_scoring,
    build_space,
    candidates,
    check_space,
    corners,
    prepare_data,
    searched_keys,
)
from search_spaces import SPACES
from vaecam.data import DataNotFoundError
from vaecam.data.mvtec import CATEGORIES
from vaecam.data.synthetic import make_mvtec
from vaecam.experiments import anomaly


def test_candidates_are_the_values_a_trial_can_get():
    assert candidates(tune.grid_search([1, 2])) == [1, 2]
    assert candidates(tune.choice(["a", "b"])) == ["a", "b"]
    assert candidates(tune.loguniform(1e-4, 1e-2)) == [1e-4, 1e-2]
    assert candidates(tune.randint(1, 5)) == [1, 4]  # randint's upper bound is exclusive
    assert candidates(3) == [3]


def test_corners_give_every_candidate_once_beside_the_first_of_the_others():
    space = {"a": tune.grid_search([1, 2, 3]), "b": tune.choice(["x", "y"]), "c": 0}
    assert list(corners(space)) == [
        {"a": 1, "b": "x", "c": 0},
        {"a": 2, "b": "x", "c": 0},
        {"a": 3, "b": "x", "c": 0},
        {"a": 1, "b": "y", "c": 0},
    ]
    assert searched_keys(space) == ["a", "b"]


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_search_space_is_valid_in_both_budgets(name, tmp_path):
    search_space = SPACES[name]
    for quick in (False, True):
        runtime = {"data_root": str(tmp_path), "device": "cpu"}
        space = build_space(search_space, quick, [], None, runtime)
        check_space(search_space.experiment(), space, build_scoring(search_space, quick, []))


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_preset_is_valid_and_applies_before_set_and_scoring(name, tmp_path):
    search_space = SPACES[name]
    runtime = {"data_root": str(tmp_path), "device": "cpu"}
    for preset_name, preset in search_space.presets.items():
        space = build_space(search_space, True, [], None, runtime, preset_name)
        scoring = build_scoring(search_space, True, [], preset_name)
        check_space(search_space.experiment(), space, scoring)
        assert all(space[key] == value for key, value in preset.get("set", {}).items())
        assert all(scoring[key] == value for key, value in preset.get("scoring", {}).items())
    space = build_space(search_space, True, ["seed=7"], None, runtime, "reproduction")
    assert space["seed"] == 7  # --set after the preset


def test_an_unknown_preset_names_the_ones_there_are():
    with pytest.raises(SpaceError, match="presets are paper, reproduction"):
        build_space(SPACES["dsprites"], True, [], None, {}, "authors")


def test_set_and_scoring_replace_what_they_name():
    digits = SPACES["digits"]
    space = build_space(digits, True, ["epochs=5", "lr=0.01", "model=conv_vae"], None, {})
    assert (space["epochs"], space["lr"], space["dataset"]) == (5, 0.01, "digits")
    scoring = build_scoring(digits, True, ["formulation=authors", 'image_score=["max"]'])
    assert scoring["formulation"] == ["authors"] and scoring["image_score"] == ["max"]
    assert scoring["target_layer"] == digits.scoring["target_layer"]
    with pytest.raises(SpaceError, match="--set 'epochs': expected KEY=VALUE"):
        build_space(digits, True, ["epochs"], None, {})
    with pytest.raises(SpaceError, match="no category dimension"):
        build_space(digits, True, [], ["grid"], {})


def test_prepare_checks_the_data_of_every_category_of_a_grid(tmp_path):
    root = make_mvtec(tmp_path / "mvtec", categories=("grid",), size=32)
    mvtec = SPACES["mvtec"]
    runtime = {"data_root": str(root), "device": "cpu"}
    prepare_data(mvtec.experiment(), build_space(mvtec, True, [], ["grid"], runtime))
    with pytest.raises(DataNotFoundError, match=str(root / "bottle")):
        prepare_data(mvtec.experiment(), build_space(mvtec, True, [], ["grid", "bottle"], runtime))


def test_search_spaces_are_data_that_import_neither_torch_nor_an_experiment():
    """What only reads the spaces (the report, ``--help``) does not wait for torch (seconds):
    each space names its experiment by a function that imports it when it runs."""
    heavy = "{'torch', 'vaecam.experiments.anomaly'}"
    code = f"import sys, search_spaces; print(sorted({heavy} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert SPACES["mvtec"].experiment() is anomaly
    # the full sweep's category grid: every category of MVTec AD, in the loader's order
    assert tuple(SPACES["mvtec"].full_test_images) == CATEGORIES
    assert SPACES["mvtec"].train["category"] == tune.grid_search(list(CATEGORIES))
