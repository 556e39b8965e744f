"""Search algorithms (``orchestrator.search``): grids stay exhaustive, seeds replicate a
configuration and the searcher learns their mean, the state survives a restore; then two tiny
real Ray Tune sweeps, one interrupted and restored."""

from __future__ import annotations

import collections
import math
import os
import signal
import sys
from functools import partial

import pytest
from ray import cloudpickle, tune
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from orchestrator.search import GridSearcher, build_search, split_space

SPACE = {
    "dataset": "mvtec",
    "category": tune.grid_search(["grid", "hazelnut"]),
    "seed": tune.grid_search([0, 1, 2]),
    "latent_dim": tune.choice([16, 32]),
    "lr": tune.loguniform(1e-4, 1e-1),
}


class Recorder(Searcher):
    """A fake inner searcher: samples its domains, records what it is told."""

    def __init__(self):
        super().__init__()
        self.told: list[tuple[str, dict | None, bool]] = []

    def set_search_properties(self, metric, mode, config, **spec):
        self.space = config
        return True

    def suggest(self, trial_id):
        return {key: domain.sample() for key, domain in self.space.items()}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told.append((trial_id, result, error))


def grid_searcher(make=Recorder, num_samples=2, space=SPACE, **kwargs) -> GridSearcher:
    searcher = GridSearcher(make, "loss", "min", num_samples, **kwargs)
    searcher.set_search_properties(None, None, dict(space))
    return searcher


def drain(searcher: GridSearcher, prefix: str = "t", limit: int = 1000) -> dict[str, dict]:
    """Every trial the searcher suggests until FINISHED, in order: trial id -> config."""
    trials = {}
    for number in range(limit):
        config = searcher.suggest(f"{prefix}{number}")
        if config == Searcher.FINISHED:
            return trials
        trials[f"{prefix}{number}"] = config
    raise AssertionError("the searcher never finished")


def test_split_space_keeps_grids_replicates_seeds_explores_domains():
    grids, seeds, explored = split_space(SPACE)
    assert grids == {"category": ["grid", "hazelnut"]} and seeds == [0, 1, 2]
    assert explored == {"latent_dim": SPACE["latent_dim"], "lr": SPACE["lr"]}
    grids, _, explored = split_space(SPACE, explore=["category"])
    assert grids == {} and explored["category"].categories == ["grid", "hazelnut"]
    for bad in ("seed", "lr", "missing"):
        with pytest.raises(ValueError, match=repr(bad)):
            split_space(SPACE, explore=[bad])
    assert split_space({"seed": 3, "lr": SPACE["lr"]})[:2] == ({}, [])  # a constant seed


def test_every_grid_value_runs_each_suggestion_once_per_seed():
    trials = drain(grid_searcher(num_samples=2))
    assert len(trials) == 2 * 2 * 3  # categories x samples x seeds
    runs = collections.Counter(config["category"] for config in trials.values())
    assert runs == {"grid": 6, "hazelnut": 6}
    by_sample = collections.defaultdict(list)
    for config in trials.values():
        by_sample[config["category"], config["lr"], config["latent_dim"]].append(config["seed"])
    assert sorted(by_sample.values()) == [[0, 1, 2]] * 4  # same sampled values on every seed
    assert all("dataset" not in config for config in trials.values())  # Tune's param_space's


def test_searcher_is_told_the_mean_over_seeds_once_every_seed_ended():
    searcher = grid_searcher(num_samples=1, space=SPACE | {"category": "grid"})
    ((_, inner),) = searcher.searchers
    trials = drain(searcher)
    first, second, third = trials
    searcher.on_trial_complete(first, {"loss": 1.0})
    searcher.on_trial_complete(second, {"loss": 2.0})
    assert inner.told == []  # a seed still running
    searcher.on_trial_complete(third, {"loss": 6.0})
    assert inner.told == [(first, {"loss": 3.0}, False)]  # known by its first trial's id
    searcher.on_trial_complete(third, {"loss": 0.0})  # rerun after a restore: not told again
    assert len(inner.told) == 1


def test_failed_seeds_leave_the_mean_of_the_others_or_an_error():
    searcher = grid_searcher(num_samples=2, space=SPACE | {"category": "grid"})
    ((_, inner),) = searcher.searchers
    trials = list(drain(searcher))
    searcher.on_trial_complete(trials[0], {"loss": 1.0})
    searcher.on_trial_complete(trials[1], None, error=True)
    searcher.on_trial_complete(trials[2], {"loss": math.nan})
    for trial in trials[3:]:
        searcher.on_trial_complete(trial, error=True)
    assert inner.told == [(trials[0], {"loss": 1.0}, False), (trials[3], None, True)]


def test_optuna_respects_the_domains_and_learns_each_category_apart():
    target = {"grid": -3.5, "hazelnut": -1.5}  # log10 of each category's best lr
    space = {key: SPACE[key] for key in ("category", "seed", "lr")}
    searcher = grid_searcher(partial(OptunaSearch, seed=0), num_samples=30, space=space)
    distances = collections.defaultdict(list)
    for number in range(10_000):
        trial_id = f"t{number}"
        config = searcher.suggest(trial_id)
        if config == Searcher.FINISHED:
            break
        assert 1e-4 <= config["lr"] <= 1e-1
        distance = abs(math.log10(config["lr"]) - target[config["category"]])
        if config["seed"] == 0:
            distances[config["category"]].append(distance)
        searcher.on_trial_complete(trial_id, {"loss": distance + 0.01 * config["seed"]})
    for category, found in distances.items():
        assert len(found) == 30
        # After TPE's 10 random startup trials (about 1 decade off on average), its last 10 are
        # within half a decade of this category's best: 2 decades from the other's.
        assert sum(found[-10:]) / 10 < min(0.5, sum(found[:10]) / 10), category


def test_save_and_restore_continue_where_the_search_stopped(tmp_path):
    space = {key: SPACE[key] for key in ("category", "seed", "lr")}
    make = partial(OptunaSearch, seed=0)
    searcher = grid_searcher(make, num_samples=3, space=space)
    first = {}
    for number in range(7):  # stops inside a configuration: seed 0 of its third
        first[f"t{number}"] = config = searcher.suggest(f"t{number}")
        if number < 5:
            searcher.on_trial_complete(f"t{number}", {"loss": config["lr"]})
    searcher.save(str(tmp_path / "state.pkl"))
    restored = GridSearcher(make, "loss", "min", 3)  # as Tune unpickles it: no space yet
    restored.restore(str(tmp_path / "state.pkl"))
    for trial_id in ("t5", "t6"):  # the trials the restored sweep reruns
        restored.on_trial_complete(trial_id, {"loss": first[trial_id]["lr"]})
    trials = list(first.values()) + list(drain(restored, prefix="r").values())
    keys = [(config["category"], config["lr"], config["seed"]) for config in trials]
    assert len(keys) == len(set(keys)) == 2 * 3 * 3
    studies = [inner._ot_study.trials for _, inner in restored.searchers]
    assert [len(study) for study in studies] == [3, 3]  # no configuration suggested twice
    assert studies[0][0].value == pytest.approx(first["t0"]["lr"])  # told before the save


def test_missing_optuna_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # what `import optuna` does uninstalled
    with pytest.raises(ImportError, match=r'pip install "vaecam\[optuna\]"'):
        build_search("optuna", SPACE, "loss", "min", 2)
    build_search("random", SPACE, "loss", "min", 2)  # random needs no Optuna


def test_build_search_counts_every_trial_and_checks_what_optuna_can_explore():
    searcher, total = build_search("optuna", SPACE, "loss", "min", 2)
    assert isinstance(searcher, GridSearcher) and total == 2 * 2 * 3
    limited, _ = build_search("optuna", SPACE, "loss", "min", 2, max_concurrent=3)
    assert isinstance(limited, ConcurrencyLimiter) and limited.max_concurrent == 3
    random, total = build_search("random", SPACE, "loss", "min", 2, max_concurrent=3)
    assert isinstance(random, BasicVariantGenerator) and random._constant_grid_search
    assert random.max_concurrent == 3 and total == 2  # Tune's samples of the grid
    grid_only = {key: SPACE[key] for key in ("category", "seed")}
    assert isinstance(build_search("optuna", grid_only, "loss", "min", 1)[0], BasicVariantGenerator)
    with pytest.raises(ValueError, match="random, optuna"):
        build_search("bayes", SPACE, "loss", "min", 2)
    with pytest.raises(ValueError, match="Function"):
        build_search("optuna", SPACE | {"k": tune.sample_from(lambda _: 1)}, "loss", "min", 2)


# Two tiny real sweeps.

RAY_SPACE = {
    "category": tune.grid_search(["grid", "hazelnut"]),
    "seed": tune.grid_search([0, 1]),
    "lr": tune.loguniform(1e-4, 1e-1),
    "epochs": 1,
}


@pytest.fixture
def by_value(ray_session):
    """The session's Ray; its workers cannot import this test module: send it by value."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def loss(config: dict) -> None:
    tune.report({"loss": math.log10(config["lr"]) ** 2 + config["seed"]})


class InterruptOnce(tune.Callback):
    """Sends the driver SIGUSR1 (Tune stops as on Ctrl-C) after ``after`` trials completed,
    once: the flag file keeps the restored sweep, which unpickles this callback, running."""

    def __init__(self, flag: str, after: int):
        self.flag, self.after, self.completed = flag, after, 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.completed += 1
        if self.completed == self.after and not os.path.exists(self.flag):
            open(self.flag, "w").close()
            os.kill(os.getpid(), signal.SIGUSR1)


def tuner(search: str, tmp_path, callbacks=()) -> tune.Tuner:
    search_alg, num_samples = build_search(search, RAY_SPACE, "loss", "min", 2)
    return tune.Tuner(
        loss,
        param_space=RAY_SPACE,
        tune_config=tune.TuneConfig(
            metric="loss",
            mode="min",
            search_alg=search_alg,
            num_samples=num_samples,
            reuse_actors=True,  # seconds, not minutes, on a 2-core machine
        ),
        run_config=tune.RunConfig(
            name="sweep", storage_path=str(tmp_path), verbose=0, callbacks=list(callbacks)
        ),
    )


def replicas(results: tune.ResultGrid) -> dict[float, list[tuple[str, int]]]:
    """Sampled lr -> the (category, seed) it ran on."""
    runs = collections.defaultdict(list)
    for result in results:
        assert result.error is None and result.config["epochs"] == 1
        runs[result.config["lr"]].append((result.config["category"], result.config["seed"]))
    return {lr: sorted(cells) for lr, cells in runs.items()}


@pytest.mark.slow
def test_random_runs_each_sample_on_every_category_and_seed(by_value, tmp_path):
    runs = replicas(tuner("random", tmp_path).fit())
    every = [("grid", 0), ("grid", 1), ("hazelnut", 0), ("hazelnut", 1)]
    assert len(runs) == 2 and all(cells == every for cells in runs.values())


@pytest.mark.slow
def test_optuna_sweep_interrupted_then_restored_runs_every_trial_once(by_value, tmp_path):
    flag = str(tmp_path / "interrupted")
    first = tuner("optuna", tmp_path, [InterruptOnce(flag, after=3)]).fit()
    assert os.path.exists(flag) and len(first) < 8
    path = str(tmp_path / "sweep")
    assert tune.Tuner.can_restore(path)
    results = tune.Tuner.restore(path, loss, resume_errored=True).fit()
    runs = replicas(results)
    assert len(results) == 8 and len(runs) == 4  # 2 categories x 2 samples, each on 2 seeds
    assert all(
        cells in ([("grid", 0), ("grid", 1)], [("hazelnut", 0), ("hazelnut", 1)])
        for cells in runs.values()
    )
    # The searcher saved in the experiment was told each configuration's mean over its seeds.
    saved = GridSearcher(OptunaSearch, "loss", "min", 2)
    saved.restore_from_dir(path)
    told = sorted(t.value for _, inner in saved.searchers for t in inner._ot_study.trials)
    assert told == pytest.approx(sorted(math.log10(lr) ** 2 + 0.5 for lr in runs))
