"""The experiments as library code: no Ray, no MLflow, a recording reporter."""

import inspect
from pathlib import Path

import pytest
import torch

from search_spaces import SPACES
from vaecam.data import DataNotFoundError
from vaecam.data.synthetic import make_mvtec, make_ucsd
from vaecam.experiments import Experiment, anomaly, disentanglement
from vaecam.experiments.common import NullReporter, build_model, fit
from vaecam.experiments.mnist import DIGITS
from vaecam.experiments.mvtec import MVTEC
from vaecam.models import MODELS, ConvVAE
from vaecam.settings import SettingsError


class Recorder(NullReporter):
    def __init__(self):
        self.reports: list[dict] = []
        self.states: list[dict] = []
        self.finals: list[bool] = []
        self.artifacts: list[str] = []
        self.images: list[tuple[str, int | None, tuple[int, int]]] = []
        self.datasets: list[tuple[str, str, int, dict]] = []

    def report(self, metrics, state, final):
        self.reports.append(metrics)
        self.states.append(state)
        self.finals.append(final)

    def log_artifact(self, path: Path, artifact_path=None):
        assert path.stat().st_size > 0
        self.artifacts.append(f"{artifact_path}/{path.name}")

    def log_image(self, key, image, step):
        self.images.append((key, step, image.size))

    def log_dataset(self, source, split, num_images):
        self.datasets.append((source.name, split, num_images, source.selection.get("inlier")))


def _config(tmp_path, **changes):
    return (
        anomaly.defaults({"dataset": "digits"})
        | {
            "data_root": str(tmp_path),
            "epochs": 2,
            "max_train_images": 60,
            "max_test_images": 120,
            "latent_dim": 8,
        }
        | changes
    )


GRID = {
    "method": ["attention", "recon"],
    "target_layer": ["encoder.0", "encoder.2"],
    "formulation": ["per_dim", "authors"],
    "quantity": ["mu"],
    "normalisation": ["none"],
    "image_score": ["mean", "max"],
}


def test_every_search_spaces_experiment_implements_the_protocol():
    """Each method of :class:`Experiment`, its parameters first and in order, on the module
    every search space names (a module satisfies a protocol as an instance would, without
    self); more only with a default."""
    members = {n: f for n, f in vars(Experiment).items() if not n.startswith("_")}
    assert {"train", "score", "restore", "check"} <= set(members)
    for space in SPACES.values():
        module = space.experiment()
        for name, method in members.items():
            wanted = list(inspect.signature(method).parameters)[1:]  # without self
            found = inspect.signature(vars(module)[name]).parameters.values()
            assert [p.name for p in found][: len(wanted)] == wanted, name
            assert all(p.default is not p.empty for p in list(found)[len(wanted) :]), name


TINY_DSPRITES = {"widths": [4, 4, 8, 8], "hidden": 16}
TINY_FACTOR = TINY_DSPRITES | {"discriminator_hidden": 16}


@pytest.mark.parametrize(
    "model, options, settings",
    [
        ("beta_vae", TINY_DSPRITES, {"beta": 2.5}),
        ("factor_vae", TINY_FACTOR, {"gamma": 7.0}),
        # ad_factor_vae's own arguments end in **options: gamma and the discriminator's are
        # FactorVAE's, and must not be lost on the way (a swept gamma would be ignored)
        ("ad_factor_vae", TINY_FACTOR, {"lam": 3.0, "gamma": 7.0}),
    ],
)
def test_build_model_passes_the_settings_the_model_takes(model, options, settings):
    config = {"model": model, "model_options": options, "latent_dim": 4, **settings}
    built = build_model(disentanglement.check(config), in_channels=1)
    assert type(built) is MODELS[model]
    assert built.encoder[0].out_channels == 4 and built.latent_dim == 4
    for key, value in settings.items():
        assert getattr(built, key) == value


def test_an_option_the_model_does_not_take_is_a_settings_error():
    with pytest.raises(SettingsError, match="model_options.*widthz"):
        build_model(anomaly.check({"dataset": "digits", "model_options": {"widthz": [4]}}), 1)


def test_train_reports_every_epoch_then_logs_the_model_and_its_normal_data(tmp_path):
    recorder = Recorder()
    trained = anomaly.train(_config(tmp_path), recorder)
    assert [r["epoch"] for r in recorder.reports] == [0, 1]
    assert recorder.finals == [False, True]  # the reporter always checkpoints the last epoch
    assert anomaly.rounds(_config(tmp_path)) == 2
    assert {"train_loss", "val_loss", "val_recon", "val_kl"} <= set(recorder.reports[-1])
    assert not any(key.endswith("auroc") for report in recorder.reports for key in report)
    assert recorder.artifacts == ["model/model.pt", "model/normal_data.pt"]
    assert set(recorder.states[-1]) == {"epoch", "metrics", "model", "optimizer", "generator"}
    assert trained.normal.stats.mu.shape == (8,) and trained.normal.mean_recon.shape == (1, 16, 16)
    sizes = {"train": len(trained.data.train), "val": len(trained.data.val), "test": 120}
    assert recorder.datasets == [("sklearn_digits", split, n, 1) for split, n in sizes.items()]
    assert recorder.images == []  # no scoring grid given: no preview


def test_train_previews_the_first_maps_of_the_grid_over_training(tmp_path):
    recorder = Recorder()
    anomaly.train(_config(tmp_path, epochs=20), recorder, scoring=GRID)
    # ten times over training, the last epoch among them; one row per test group
    steps = [step for key, step, _ in recorder.images if key == "training/attention"]
    assert steps == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]
    # sized for MLflow's image grid: square, at most 512 px (ten groups in a 4x4 grid of tiles)
    assert {size for _, _, size in recorder.images} == {(512, 512)}


def test_score_measures_every_combination_on_the_one_model(tmp_path):
    recorder = Recorder()
    trained = anomaly.train(_config(tmp_path), recorder)
    weights = {k: v.clone() for k, v in trained.model.state_dict().items()}
    table = anomaly.score(trained, GRID, recorder)
    # 2 layers x 2 formulations x 1 quantity attention maps + recon, x 2 image scores
    assert len(table.rows) == (2 * 2 + 1) * 2
    for row in table.rows:
        assert 0 <= row["image_auroc"] <= 1 and 0 <= row["average_precision"] <= 1
        per_digit = [k for k in row if k.startswith("image_auroc_vs_") and k[-1].isdigit()]
        assert len(per_digit) == 9 and "image_auroc_vs_1" not in row
        for metric in ("image_auroc", "average_precision", *per_digit):  # each with its interval
            assert 0 <= row[f"{metric}_ci_low"] <= row[f"{metric}_ci_high"] <= 1
        n_test = len(trained.data.test)
        assert row["image_auroc_n_pos"] + row["image_auroc_n_neg"] == n_test
    assert {r["method"] for r in table.rows} == {"attention", "recon"}
    metrics = table.metrics()
    assert "attention/encoder.2/authors/mu/none/max/image_auroc" in metrics
    assert "recon/none/mean/average_precision" in metrics
    assert all(torch.equal(v, trained.model.state_dict()[k]) for k, v in weights.items())
    overlays = {a for a in recorder.artifacts if a.startswith("overlays/")}
    groups = ["inlier_1"] + [f"outlier_{d}" for d in range(10) if d != 1]
    # every map of the grid, in files of at most 8 maps each: 5 maps, one file a group
    assert overlays == {f"overlays/{group}/maps-01-05.png" for group in groups}
    # for the MLflow UI's comparison across runs, at the last epoch's step: one square picture
    # per group and featured map (no reading given: the grid's first attention map, then recon)
    assert {(key, step, size) for key, step, size in recorder.images} == {
        (f"{group}/{name}", None, (512, 512)) for group in groups for name in ("attention", "recon")
    }
    assert "figures/roc.png" in recorder.artifacts


def test_score_features_the_claims_readings_and_splits_big_grids(tmp_path):
    recorder = Recorder()
    trained = anomaly.train(_config(tmp_path, max_test_images=40), recorder)
    grid = GRID | {"quantity": ["mu", "kl_to_normal", "mahalanobis"], "image_score": ["max"]}
    reading = {"method": "attention", "target_layer": "encoder.2", "formulation": "authors"}
    anomaly.score(trained, grid, recorder, readings={"paper_reading": reading | {"quantity": "mu"}})
    files = sorted(a for a in recorder.artifacts if a.startswith("overlays/inlier_1/"))
    # 12 attention maps and recon: 13 maps, 8 then 5
    assert files == ["overlays/inlier_1/maps-01-08.png", "overlays/inlier_1/maps-09-13.png"]
    assert {key for key, _, _ in recorder.images if key.startswith("inlier_1/")} == {
        "inlier_1/paper_reading",
        "inlier_1/recon",
    }


def test_a_restored_model_scores_exactly_as_the_trained_one(tmp_path):
    trained = anomaly.train(_config(tmp_path), Recorder())
    restored = anomaly.restore(
        _config(tmp_path), trained.model.state_dict(), trained.normal.state_dict()
    )
    grid = GRID | {"quantity": ["mu", "z"]}  # z is sampled: the draws must be the same too
    assert anomaly.score(restored, grid, Recorder(), figures=False).metrics() == (
        anomaly.score(trained, grid, Recorder(), figures=False).metrics()
    )


def test_resuming_from_a_checkpoint_reproduces_the_uninterrupted_training(tmp_path):
    config = _config(tmp_path, epochs=3)
    straight = Recorder()
    anomaly.train(config, straight)
    interrupted = Recorder()
    anomaly.train(config | {"epochs": 1}, interrupted)  # stops after epoch 0
    resumed = Recorder()
    anomaly.train(config, resumed, state=interrupted.states[0])
    assert [r["epoch"] for r in resumed.reports] == [1, 2]
    assert resumed.reports == straight.reports[1:]


@pytest.mark.parametrize("unit", ["epoch", "round"])
def test_a_non_finite_loss_fails_the_trial_naming_its_round(unit):
    model = ConvVAE(image_size=8, widths=(4,), hidden=8, latent_dim=2)
    optimizer = torch.optim.Adam(model.parameters())

    def train_round(r):
        if r == 1:
            raise FloatingPointError("training loss became nan")
        return {"loss": 1.0}

    recorder = Recorder()
    with pytest.raises(FloatingPointError, match=f"{unit} 1: training loss became nan"):
        fit(model, optimizer, torch.Generator(), 3, train_round, dict, recorder, None, unit=unit)
    assert [r["epoch"] for r in recorder.reports] == [0]


@pytest.mark.parametrize(
    ("key", "value", "valid"),
    [
        ("image_size", 4, ">= 8"),
        ("model", "resnet", "conv_vae"),
        ("inlier", 10, "<= 9"),
        ("lr", "fast", "a number > 0"),
        ("dataset", "cifar", "digits"),
        ("epochs", 0, ">= 1"),
    ],
)
def test_bad_settings_fail_before_training_and_say_what_is_valid(tmp_path, key, value, valid):
    recorder = Recorder()
    with pytest.raises((SettingsError, KeyError), match=valid):
        anomaly.train(_config(tmp_path, **{key: value}), recorder)
    assert recorder.reports == []


@pytest.mark.parametrize(
    ("grid", "valid"),
    [
        ({"target_layer": ["encoder.9"]}, "encoder.2"),
        ({"image_score": ["median"]}, "max"),
        ({"formulation": ["gradcam"]}, "per_dim"),
        ({"quantity": ["sigma"]}, "normal_difference"),
        ({"normalisation": ["zscore"]}, "validation"),
        ({"method": ["saliency"]}, "recon"),
    ],
)
def test_bad_scoring_choices_fail_before_training_and_list_the_valid_ones(grid, valid):
    config = anomaly.defaults({"dataset": "digits"})
    with pytest.raises((KeyError, ValueError), match=valid):
        anomaly.check_scoring(config, GRID | grid)


def test_validation_uses_held_out_inliers_only(tmp_path):
    data = DIGITS.benchmark.load(anomaly.check(_config(tmp_path)))
    assert len(data.val) > 0
    train = {tuple(x.flatten().tolist()) for x in data.train}
    assert not any(tuple(x.flatten().tolist()) in train for x in data.val)
    again = DIGITS.benchmark.load(anomaly.check(_config(tmp_path)))
    assert torch.equal(again.val, data.val)
    assert data.anomalous.tolist() == (data.classes != 1).tolist()


def _mvtec_config(root, **changes):
    return (
        anomaly.defaults({"dataset": "mvtec"})
        | {
            "data_root": str(root),
            "image_size": 32,
            "batch_size": 5,  # the fixture's 5 training images in one batch: BN needs 2+ values
            "epochs": 2,
            "latent_dim": 4,
        }
        | changes
    )


MVTEC_GRID = {
    "method": ["attention", "recon"],
    "target_layer": ["encoder.layer1.0.conv1", "encoder.layer2.1.conv1"],
    "formulation": ["authors"],
    "quantity": ["normal_difference"],
    "normalisation": ["none", "validation"],
    "image_score": ["max"],
}


def test_mvtec_scores_pixels_and_images_for_every_combination(tmp_path):
    root = make_mvtec(tmp_path / "mvtec", categories=("bottle",), size=32)
    recorder = Recorder()
    trained = anomaly.train(_mvtec_config(root, category="bottle"), recorder)
    assert [r["epoch"] for r in recorder.reports] == [0, 1]
    source = MVTEC.benchmark.source(anomaly.check(_mvtec_config(root, category="bottle")))
    assert source.name == "mvtec_ad/bottle" and source.root == root.resolve() / "bottle"
    assert source.synthetic and source.files is None  # written by vaecam.data.synthetic
    assert [(name, split) for name, split, _, _ in recorder.datasets] == [
        ("mvtec_ad/bottle", split) for split in ("train", "val", "test")
    ]
    table = anomaly.score(trained, MVTEC_GRID, recorder)
    assert len(table.rows) == 3 * 2
    for row in table.rows:
        for metric in ("pixel_auroc", "aupro", "image_auroc"):
            assert 0 <= row[metric] <= 1
            assert 0 <= row[f"{metric}_ci_low"] <= row[f"{metric}_ci_high"] <= 1
        assert row["pixel_auroc_n_pos"] == trained.data.masks.sum()  # pixels
        assert row["image_auroc_n_pos"] == trained.data.anomalous.sum()  # images
    assert {m for m in table.image_level if not m.endswith(("_low", "_high", "_pos", "_neg"))} == {
        "image_auroc"
    }
    metrics = table.metrics()
    assert "attention/encoder.layer2.1.conv1/authors/normal_difference/validation/aupro" in metrics
    assert "recon/none/max/image_auroc" in metrics and "recon/none/pixel_auroc" in metrics
    overlays = {a for a in recorder.artifacts if a.startswith("overlays/")}
    assert any(a.startswith("overlays/good/maps-01-") for a in overlays) and len(overlays) >= 2
    assert "figures/roc.png" in recorder.artifacts


@pytest.mark.parametrize("val_fraction", [0.95, 1.0])
def test_mvtec_keeps_training_images_or_says_why_not(tmp_path, val_fraction):
    root = make_mvtec(tmp_path / "mvtec", categories=("bottle",), size=32)
    config = _mvtec_config(root, category="bottle", val_fraction=val_fraction)
    with pytest.raises(ValueError, match="MVTec AD bottle has 6 training images|< 1"):
        anomaly.train(config, Recorder())


def _ucsd_config(root, **changes):
    return (
        anomaly.defaults({"dataset": "ucsd"})
        | {
            "data_root": str(root),
            "image_size": 24,
            "val_clips": 1,
            "model_options": {"widths": [8, 16, 16], "batch_norm": True, "hidden": 32},
            "latent_dim": 4,
            "batch_size": 8,
            "epochs": 2,
        }
        | changes
    )


def test_ucsd_scores_attention_and_both_baselines_with_every_metric(tmp_path):
    root = make_ucsd(tmp_path / "ucsd")
    recorder = Recorder()
    trained = anomaly.train(_ucsd_config(root), recorder)
    grid = {
        "method": ["attention", "recon", "average_recon"],
        "target_layer": ["encoder.6"],
        "formulation": ["per_dim"],
        "quantity": ["mu"],
        "image_score": ["max", "mean"],
    }
    table = anomaly.score(trained, grid, recorder)
    assert {row["method"] for row in table.rows} == {"attention", "recon", "average_recon"}
    for row in table.rows:
        for metric in ("pixel_auroc", "frame_auroc", "frame_eer", "pixel_criterion_eer"):
            assert 0 <= row[metric] <= 1
            assert 0 <= row[f"{metric}_ci_low"] <= row[f"{metric}_ci_high"] <= 1
    values = {m for m in table.image_level if not m.endswith(("_low", "_high", "_pos", "_neg"))}
    assert values == {"frame_auroc", "frame_eer"}
    assert {"overlays/anomalous/maps-01-03.png", "overlays/normal/maps-01-03.png"} <= set(
        recorder.artifacts
    )


def test_ucsd_prepare_names_a_missing_frame(tmp_path):
    root = make_ucsd(tmp_path / "ucsd")
    (root / "UCSDped1" / "Test" / "Test002" / "005.tif").unlink()
    with pytest.raises(DataNotFoundError, match="Test002"):
        anomaly.prepare(_ucsd_config(root))


def _dsprites_config(**changes):
    return {
        "data_root": "unused",
        "model": "ad_factor_vae",
        "model_options": {"widths": [4, 4, 8, 8], "hidden": 16, "discriminator_hidden": 16},
        "latent_dim": 3,
        "batch_size": 8,
        "iterations": 6,
        "eval_every": 2,
        "metric_every": 1,
        "val_size": 16,
        "metric_num_train": 20,
        "metric_num_eval": 10,
        "metric_num_variance": 64,
        "mig_num_train": 64,
        "figure_examples": 2,
    } | changes


def test_disentanglement_trains_in_the_shared_loop_and_scores_the_metrics():
    recorder = Recorder()
    trained = disentanglement.train(_dsprites_config(), recorder)
    assert [(r["epoch"], r["iteration"]) for r in recorder.reports] == [(0, 2), (1, 4), (2, 6)]
    # metric_every=1: every round but the last has them; score gives the last
    assert all(0 <= r["factor_vae_score"] <= 1 for r in recorder.reports[:-1])
    assert "factor_vae_score" not in recorder.reports[-1]
    assert "train_ad" in recorder.reports[-1] and "train_tc" in recorder.reports[-1]
    table = disentanglement.score(trained, {}, recorder)
    (row,) = table.rows
    assert 0 <= row["factor_vae_score"] <= 1 and 0 <= row["mig"] <= 1
    assert row["recon_error"] == pytest.approx(recorder.reports[-1]["val_recon"])
    assert table.metrics()["factor_vae_score"] == row["factor_vae_score"]
    assert set(recorder.artifacts) == {
        "figures/traversals.png",
        "figures/attention_per_dim.png",
        "model/model.pt",
    }


def test_disentanglement_resume_reproduces_the_uninterrupted_trial():
    straight = Recorder()
    disentanglement.train(_dsprites_config(model="factor_vae"), straight)
    first = Recorder()
    disentanglement.train(_dsprites_config(model="factor_vae", iterations=2), first)
    resumed = Recorder()
    disentanglement.train(_dsprites_config(model="factor_vae"), resumed, state=first.states[0])
    assert resumed.reports == straight.reports[1:]


def test_disentanglement_refuses_iterations_that_are_not_whole_rounds():
    with pytest.raises(SettingsError, match="iterations=5 must be a multiple of eval_every=2"):
        disentanglement.train(_dsprites_config(iterations=5), Recorder())


def test_disentanglement_has_no_scoring_grid():
    with pytest.raises(ValueError, match="no scoring grid"):
        disentanglement.check_scoring(_dsprites_config(), {"formulation": ["per_dim"]})


def test_traversals_sweep_one_latent_dim_per_row():
    model = ConvVAE(image_size=16, widths=(4, 8), hidden=8, latent_dim=3)
    images = disentanglement.traversals(model, torch.rand(1, 1, 16, 16))
    assert images.shape == (3, disentanglement.TRAVERSAL_STEPS, 1, 16, 16)
    assert not torch.allclose(images[0, 0], images[0, -1])  # the row changes along its sweep
