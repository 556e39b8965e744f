"""Scoring a trained model on a grid (vaecam.scoring, vaecam.experiments.anomaly.score): every
combination from shared work equals that combination scored alone."""

from dataclasses import replace

import pytest
import torch

from vaecam.attention import BATCH_DEPENDENT, attention_maps
from vaecam.experiments import anomaly
from vaecam.experiments.common import NullReporter
from vaecam.latent import LatentStats
from vaecam.models import ConvVAE
from vaecam.scoring import (
    BASELINES,
    IMAGE_METHODS,
    NORMALISATIONS,
    Model,
    NormalData,
    Pass,
    ScoreTable,
    ScoringGrid,
    Variant,
    anomaly_maps,
    metric_name,
    normal_data,
    scoring_grid,
    untrained_model,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    config = anomaly.defaults({"dataset": "digits"}) | {
        "data_root": str(tmp_path_factory.mktemp("data")),
        "epochs": 2,
        "max_train_images": 60,
        "max_test_images": 100,
        "latent_dim": 6,
    }
    return anomaly.train(config, NullReporter())


GRID = {
    "method": ["attention", "untrained", "recon", "average_recon", "random", "latent_distance"],
    "target_layer": ["encoder.0", "encoder.2"],
    "formulation": ["per_dim", "authors", "per_channel"],
    "quantity": ["mu", "z"],  # z is sampled: its draws must not depend on the rest of the grid
    "normalisation": ["none", "validation"],
    "image_score": ["mean", "max"],
}


def test_every_combination_of_the_grid_equals_it_scored_alone(trained):
    grid = anomaly.score(trained, GRID, NullReporter(), figures=False)
    checked = scoring_grid(GRID)
    # 12 readings, each trained and untrained, 3 baselines; + latent_distance
    assert len(grid.rows) == len(checked) == (12 + 12 + 3) * 2 * 2 + 1
    flat = grid.metrics()
    for row in grid.rows:
        alone = {"method": [row["method"]]}
        if row["normalisation"] is not None:  # an image-level method has neither
            alone |= {key: [row[key]] for key in ("normalisation", "image_score")}
        if row["target_layer"] is not None:
            alone |= {key: [row[key]] for key in ("target_layer", "formulation", "quantity")}
        single = anomaly.score(trained, alone, NullReporter(), figures=False)
        assert len(single.rows) == 1
        for key, value in single.metrics().items():
            assert flat[key] == pytest.approx(value, abs=1e-6), key


def models_of(trained) -> dict[str, Model]:
    untrained = untrained_model(lambda: ConvVAE(image_size=16, latent_dim=6), trained.settings.seed)
    stats = normal_data(untrained, trained.data.train, 32)
    return {"attention": Model(trained.model, trained.normal), "untrained": Model(untrained, stats)}


def test_the_grid_maps_are_the_maps_of_attention_maps(trained):
    test = trained.data.test[:16]
    grid = scoring_grid(GRID | {"quantity": ["mu", "normal_difference"]})
    models = models_of(trained)
    maps = anomaly_maps(models, test, grid, seed=0, batch_size=7, split="test")
    for variant in grid.variants:
        if variant.target_layer is None:
            continue
        model, normal = models[variant.method]
        alone = torch.cat(  # in the same batches: authors' RMS is over the batch
            [
                attention_maps(
                    model,
                    test[start : start + 7],
                    variant.target_layer,
                    variant.formulation,
                    variant.quantity,
                    normal.stats,
                ).aggregate
                for start in range(0, 16, 7)
            ]
        )
        torch.testing.assert_close(maps[variant], alone, rtol=1e-5, atol=1e-6)
    # the untrained model's maps are another model's
    reading = ("encoder.2", "per_dim", "mu")
    assert not torch.allclose(
        maps[Variant("attention", *reading)], maps[Variant("untrained", *reading)]
    )


def test_normal_difference_is_not_scored_twice_under_an_abs_formulation():
    both = scoring_grid(GRID | {"quantity": ["mu", "normal_difference"]})
    assert ("encoder.2", "authors", "normal_difference") not in both.readings
    assert ("encoder.2", "per_dim", "normal_difference") in both.readings  # ReLU: not mu's
    alone = scoring_grid(GRID | {"quantity": ["normal_difference"]})
    assert ("encoder.2", "authors", "normal_difference") in alone.readings


def test_maps_do_not_depend_on_the_batch_size_but_for_the_batch_rms(trained):
    grid = scoring_grid(GRID)
    test = trained.data.test[:20]
    models = {"attention": Model(trained.model, trained.normal)}
    grid = scoring_grid(GRID | {"method": ["attention", "random"]})
    small = anomaly_maps(models, test, grid, seed=3, batch_size=4, split="test")
    large = anomaly_maps(models, test, grid, seed=3, batch_size=20, split="test")
    for variant in grid.variants:
        if variant.quantity == "z" or variant.method == "random":  # these draw per batch
            continue
        if variant.formulation in BATCH_DEPENDENT:
            assert not torch.allclose(small[variant], large[variant])
        else:
            torch.testing.assert_close(small[variant], large[variant], rtol=1e-5, atol=1e-6)


def test_test_and_validation_images_draw_from_different_streams(trained):
    grid = scoring_grid(GRID | {"method": ["attention", "random"], "quantity": ["z"]})
    models = {"attention": Model(trained.model, trained.normal)}
    images = trained.data.test[:8]
    test = anomaly_maps(models, images, grid, seed=3, batch_size=8, split="test")
    val = anomaly_maps(models, images, grid, seed=3, batch_size=8, split="val")
    again = anomaly_maps(models, images, grid, seed=3, batch_size=8, split="test")
    for variant in (Variant("random"), Variant("attention", "encoder.2", "per_dim", "z")):
        assert not torch.allclose(test[variant], val[variant])
        torch.testing.assert_close(test[variant], again[variant])


def test_metric_names_follow_the_documented_scheme():
    rows = [
        {
            "method": "attention",
            "target_layer": "encoder.2",
            "formulation": "per_dim",
            "quantity": "mu",
            "normalisation": "none",
            "image_score": "max",
            "pixel_auroc": 0.7,
            "image_auroc": 0.6,
        },
        {
            "method": "recon",
            "target_layer": None,
            "formulation": None,
            "quantity": None,
            "normalisation": "validation",
            "image_score": "mean",
            "pixel_auroc": 0.8,
            "image_auroc": 0.9,
        },
    ]
    assert ScoreTable(rows, frozenset({"image_auroc"})).metrics() == {
        "attention/encoder.2/per_dim/mu/none/pixel_auroc": 0.7,
        "attention/encoder.2/per_dim/mu/none/max/image_auroc": 0.6,
        "recon/validation/pixel_auroc": 0.8,
        "recon/validation/mean/image_auroc": 0.9,
    }
    assert metric_name({"method": "recon"}, "aupro") == "recon/aupro"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"colour": ["red"]}, "unknown scoring key colour"),
        ({"formulation": []}, "formulation: the list is empty"),
        (
            {"formulation": ["gradcam"]},
            "expected one of authors, authors_per_image, per_channel, per_dim, reproduction",
        ),
        ({"image_score": [3]}, "expected a list of names"),
        ({"method": ["attention"]}, "need at least one target_layer"),
    ],
)
def test_a_bad_grid_names_the_key_and_what_is_valid(values, message):
    with pytest.raises(ValueError, match=message):
        scoring_grid(values)


def test_a_grid_checks_its_layers_against_the_model():
    model = ConvVAE(image_size=16, widths=(4, 8), hidden=8, latent_dim=2)
    scoring_grid({"target_layer": ["encoder.2"]}, model)
    with pytest.raises(KeyError, match="encoder.0, encoder.1"):
        scoring_grid({"target_layer": ["encoder.7"]}, model)


def test_a_lone_name_is_a_list_of_one_and_repeats_are_dropped():
    grid = scoring_grid({"target_layer": "encoder.2", "formulation": ["authors", "authors"]})
    assert grid.target_layer == ("encoder.2",) and grid.formulation == ("authors",)
    assert grid.variants == [Variant("attention", "encoder.2", "authors", "mu"), Variant("recon")]
    assert len(ScoringGrid(target_layer=("a",), image_score=("max", "mean"))) == 4


@pytest.mark.parametrize("name", sorted(NORMALISATIONS))
def test_normalisations_keep_shapes_and_do_what_they_say(name):
    maps = torch.rand(5, 8, 8) * 10
    val = torch.rand(3, 8, 8)
    out = NORMALISATIONS[name](maps, val)
    assert out.shape == maps.shape
    if name == "none":
        assert torch.equal(out, maps)
    if name == "minmax":  # each image spans [0, 1]
        assert torch.allclose(out.flatten(1).amin(1), torch.zeros(5))
        assert torch.allclose(out.flatten(1).amax(1), torch.ones(5))
    if name == "validation":  # a map equal to the validation mean scores 0 everywhere
        same = NORMALISATIONS[name](val.mean(0, keepdim=True), val)
        assert torch.allclose(same, torch.zeros(1, 8, 8), atol=1e-5)


def test_controls_are_what_they_say():
    x = torch.rand(5, 3, 8, 8)
    normal = NormalData(LatentStats(torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.5])), x[0])
    mu = torch.randn(5, 2)
    batch = Pass(x, torch.rand(5, 3, 8, 8), mu, torch.zeros(5, 2))
    generator = torch.Generator().manual_seed(0)
    torch.testing.assert_close(BASELINES["energy"](batch, normal, generator), x.mean(1))
    expected = (x - batch.recon).abs().mean(1)
    torch.testing.assert_close(BASELINES["recon_l1"](batch, normal, generator), expected)
    # central differences inside, one-sided at the border, per channel, then the mean
    dx = torch.empty_like(x)
    dx[..., 1:-1] = (x[..., 2:] - x[..., :-2]) / 2
    dx[..., 0], dx[..., -1] = x[..., 1] - x[..., 0], x[..., -1] - x[..., -2]
    dy = torch.empty_like(x)
    dy[..., 1:-1, :] = (x[..., 2:, :] - x[..., :-2, :]) / 2
    dy[..., 0, :], dy[..., -1, :] = x[..., 1, :] - x[..., 0, :], x[..., -1, :] - x[..., -2, :]
    expected = (dx**2 + dy**2).sqrt().mean(1)
    torch.testing.assert_close(BASELINES["gradient_energy"](batch, normal, generator), expected)
    noise = BASELINES["random"](batch, normal, torch.Generator().manual_seed(0))
    assert noise.shape == (5, 8, 8) and 0 <= noise.min() and noise.max() < 1
    distance = ((mu - normal.stats.mu) ** 2 / normal.stats.var).sum(1).sqrt()
    torch.testing.assert_close(IMAGE_METHODS["latent_distance"](batch, normal), distance)


def test_the_random_map_scores_chance_within_its_interval(trained):
    # A 95% interval misses chance for about 1 seed in 20: over 10 seeds, at most 2 may
    # (binomial: P(3 or more misses) = 1.2%); the seeds are fixed, so the test is too.
    covered = 0
    for seed in range(10):
        reseeded = trained._replace(settings=replace(trained.settings, seed=seed))
        table = anomaly.score(reseeded, {"method": ["random"]}, NullReporter(), figures=False)
        (row,) = table.rows
        covered += row["image_auroc_ci_low"] <= 0.5 <= row["image_auroc_ci_high"]
    assert covered >= 8
    table = anomaly.score(trained, {"method": ["random", "energy"]}, NullReporter(), figures=False)
    for row in table.rows:
        assert 0 <= row["image_auroc"] <= 1
        assert row["image_auroc_n_pos"] + row["image_auroc_n_neg"] == len(trained.data.test)
        if row["method"] == "random":
            for digit in range(10):
                if f"image_auroc_vs_{digit}" in row:
                    low, high = (row[f"image_auroc_vs_{digit}_ci_{e}"] for e in ("low", "high"))
                    assert low < high


def test_an_image_level_method_has_no_normalisation_nor_image_score(trained):
    table = anomaly.score(trained, {"method": ["latent_distance"]}, NullReporter(), figures=False)
    (row,) = table.rows
    assert row["normalisation"] is None and row["image_score"] is None
    metrics = table.metrics()
    assert "latent_distance/image_auroc" in metrics
    assert "latent_distance/image_auroc_ci_low" in metrics


def test_baselines_are_the_reconstruction_errors_they_say():
    model = ConvVAE(image_size=8, widths=(4, 8), hidden=8, latent_dim=2).eval()
    train, x = torch.rand(6, 1, 8, 8), torch.rand(5, 1, 8, 8)
    normal = normal_data(model, train, batch_size=4)
    with torch.no_grad():
        mean_recon = torch.sigmoid(model(train.mean(0, keepdim=True), sample=False).recon)
        mu, logvar = model.encode(x)
        batch = Pass(x, torch.sigmoid(model.decode(mu)), mu, logvar)
    torch.testing.assert_close(normal.mean_recon, mean_recon[0])
    generator = torch.Generator()
    expected = (x - mean_recon).pow(2)[:, 0]
    torch.testing.assert_close(BASELINES["average_recon"](batch, normal, generator), expected)
    expected = (x - batch.recon).pow(2)[:, 0]
    torch.testing.assert_close(BASELINES["recon"](batch, normal, generator), expected)


def test_normal_data_round_trips_through_its_state_dict():
    normal = NormalData(LatentStats(torch.rand(3), torch.rand(3)), torch.rand(1, 4, 4))
    again = NormalData.from_state_dict(normal.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(again.stats, normal.stats, strict=True))
    assert torch.equal(again.mean_recon, normal.mean_recon)
