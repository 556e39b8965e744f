"""The one registry of datasets: every consumer reads it, and adding a dataset is adding its
module (a toy one, :mod:`toy_dataset`, walked through the calls the real ones take)."""

from __future__ import annotations

from pathlib import Path

import pytest
import toy_dataset

from orchestrator import campaign, sweep
from orchestrator.space import build_scoring, build_space, candidates, check_space, prepare_data
from search_spaces import SPACES
from search_spaces.space import SearchSpace
from search_spaces.space import anomaly as anomaly_experiment
from vaecam.data.fetch import downloads, fetch_for_loader
from vaecam.data.synthetic import is_synthetic
from vaecam.experiments import anomaly
from vaecam.experiments.common import NullReporter
from vaecam.experiments.datasets import DATASETS, benchmarks, ground_truths

GRID = {
    "method": ["attention", "recon"],
    "target_layer": ["encoder.2"],
    "formulation": ["per_dim"],
    "quantity": ["mu"],
    "normalisation": ["none"],
    "image_score": ["mean"],
}


def test_one_registry_serves_every_consumer():
    assert list(DATASETS) == ["mnist", "digits", "mvtec", "ucsd", "dsprites", "dsprites_procedural"]
    assert sorted(benchmarks()) == ["digits", "mnist", "mvtec", "ucsd"]
    assert sorted(ground_truths()) == ["dsprites", "dsprites_procedural"]
    assert list(downloads()) == ["mnist", "mvtec", "ucsd", "dsprites"]
    found = [name for name, dataset in DATASETS.items() if dataset.find is not None]
    assert found == ["mnist", "mvtec", "ucsd", "dsprites"]  # the campaign's, in PAPER.md order
    for name, dataset in DATASETS.items():
        assert dataset.name == name
        assert (dataset.benchmark is None) != (dataset.ground_truth is None)  # one plug-in each


def test_each_dataset_a_campaign_finds_runs_a_search_space_of_its_own(tmp_path):
    for name, dataset in DATASETS.items():
        if dataset.find is None:
            continue
        found = dataset.find(tmp_path, True, campaign.generated_cache())
        assert not isinstance(found, str), f"{name}: {found}"
        assert found.space in SPACES and found.space in DATASETS


#: The toy's search space: the anomaly experiment's defaults for it, two epochs, a small grid.
TOY_SPACE = SearchSpace(
    experiment=anomaly_experiment,
    train={"dataset": "toy"},
    quick={"dataset": "toy"},
    scoring=GRID,
    summary=["val_loss"],
)


def test_a_new_dataset_is_one_module_and_one_search_space(tmp_path, monkeypatch):
    """Registered, the toy is found by a campaign; its search space is built, checked and its
    data prepared as a sweep does; it is trained and scored through the anomaly experiment's
    calls, and has nothing to fetch."""
    monkeypatch.setitem(DATASETS, "toy", toy_dataset.TOY)
    members, skipped = campaign.plan(tmp_path, quick=False, strict=False)
    assert skipped["toy"] == f"the toy is not under {tmp_path.resolve() / 'toy'}"
    members, skipped = campaign.plan(tmp_path, quick=True, strict=False)
    toy = members[-1]
    assert (toy.experiment, toy.space) == ("toy", "toy") and toy.data.startswith("synthetic")
    assert is_synthetic(Path(toy.data_root) / "toy")
    toy_dataset.make_toy(tmp_path / "toy")
    members, _ = campaign.plan(tmp_path, quick=False, strict=False)
    assert members[-1].data_root == str(tmp_path.resolve())

    # and one search space: the sweep's own calls build, check and prepare it
    monkeypatch.setitem(SPACES, "toy", TOY_SPACE)
    assert sweep.build_parser().parse_args(["toy", "--quick"]).space == "toy"
    space = build_space(SPACES["toy"], True, [], None, {"data_root": str(tmp_path)})
    grid = build_scoring(SPACES["toy"], True, [])
    check_space(TOY_SPACE.experiment(), space, grid)
    prepare_data(TOY_SPACE.experiment(), space)
    config = {key: candidates(value)[0] for key, value in space.items()}
    assert config["latent_dim"] == 4 and "data_root" in anomaly.data_settings(config)
    assert anomaly.rounds(config) == 2
    trained = anomaly.train(config, NullReporter(), scoring=GRID)
    assert trained.data.train.shape[1:] == (1, 16, 16)
    table = anomaly.score(trained, GRID, NullReporter(), figures=False)
    scores = {row["method"]: row["image_auroc"] for row in table.rows}
    assert set(scores) == {"attention", "recon"} and all(0 <= s <= 1 for s in scores.values())
    assert scores["recon"] > 0.5  # stripes down are not what it learnt to reconstruct
    assert not fetch_for_loader("toy", tmp_path) and "toy" not in downloads()
    with pytest.raises(KeyError, match="unknown dataset 'toys'; valid names: digits, mnist"):
        anomaly.defaults({"dataset": "toys"})
