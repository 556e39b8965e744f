"""The one-class experiment as library code: no Ray, no MLflow, a recording reporter."""

from pathlib import Path

import pytest
import torch
from mvtec_fixture import make_mvtec
from ucsd_fixture import make_ucsd

from search_spaces import digits, dsprites, mvtec, ucsd
from vaecam.data import DataNotFoundError
from vaecam.experiments import EXPERIMENTS, disentanglement, localisation, one_class, video
from vaecam.experiments.common import NORMALISATIONS, build_model
from vaecam.models import MODELS, ConvVAE


class Recorder:
    def __init__(self):
        self.reports: list[dict] = []
        self.states: list[dict] = []
        self.artifacts: list[str] = []

    def report(self, metrics, state):
        self.reports.append(metrics)
        self.states.append(state)

    def log_artifact(self, path: Path, artifact_path=None):
        assert path.stat().st_size > 0
        self.artifacts.append(f"{artifact_path}/{path.name}")


def _config(tmp_path, **changes):
    return (
        digits.CONFIG
        | {
            "data_root": str(tmp_path),
            "device": "cpu",
            "epochs": 2,
            "max_train_images": 60,
            "max_test_images": 120,
            "latent_dim": 8,
        }
        | changes
    )


def test_every_registered_experiment_has_prepare_and_run():
    for module in EXPERIMENTS.values():
        assert callable(module.prepare) and callable(module.run)


TINY_DSPRITES = {"widths": [4, 4, 8, 8], "hidden": 16}
TINY_FACTOR = TINY_DSPRITES | {"discriminator_hidden": 16}


@pytest.mark.parametrize(
    "model, options, settings",
    [
        ("beta_vae", TINY_DSPRITES, {"beta": 2.5}),
        ("factor_vae", TINY_FACTOR, {"gamma": 7.0, "discriminator_batch": "same"}),
        # ad_factor_vae's own arguments end in **options: gamma and the discriminator's are
        # FactorVAE's, and must not be lost on the way (a swept gamma would be ignored)
        ("ad_factor_vae", TINY_FACTOR, {"lam": 3.0, "gamma": 7.0, "discriminator_batch": "same"}),
    ],
)
def test_build_model_passes_the_config_settings_the_model_takes(model, options, settings):
    config = {"model": model, "image_size": 16, "latent_dim": 4, "device": "cpu"}
    config |= {"model_options": options, "lr": 1e-3, **settings}  # lr: no model's argument
    built = build_model(config, in_channels=1)
    assert type(built) is MODELS[model]
    assert built.encoder[0].out_channels == 4 and built.latent_dim == 4
    for key, value in settings.items():
        assert getattr(built, key) == value


def test_one_class_reports_every_epoch_then_test_metrics_figures_and_weights(tmp_path):
    recorder = Recorder()
    final = one_class.run(_config(tmp_path), recorder)
    assert [r["epoch"] for r in recorder.reports] == [0, 1]
    assert "attention_image_auroc" not in recorder.reports[0]  # tests only once, at the end
    assert final is recorder.reports[-1]
    for method in ("attention", "recon"):
        assert 0 <= final[f"{method}_image_auroc"] <= 1
        assert 0 <= final[f"{method}_average_precision"] <= 1
        per_digit = [k for k in final if k.startswith(f"{method}_image_auroc_vs_")]
        assert len(per_digit) == 9 and f"{method}_image_auroc_vs_1" not in final
    overlays = {a for a in recorder.artifacts if a.startswith("overlays/")}
    assert overlays == {"overlays/inlier_1.png"} | {
        f"overlays/outlier_{d}.png" for d in range(10) if d != 1
    }
    assert "model/model.pt" in recorder.artifacts
    assert set(recorder.states[-1]) == {"epoch", "metrics", "model", "optimizer", "generator"}


def test_resuming_from_a_checkpoint_reproduces_the_uninterrupted_trial(tmp_path):
    config = _config(tmp_path, epochs=3)
    straight = Recorder()
    one_class.run(config, straight)
    interrupted = Recorder()
    one_class.run(config | {"epochs": 1}, interrupted)  # stops after epoch 0
    resumed = Recorder()
    one_class.run(config, resumed, state=interrupted.states[0])
    assert [r["epoch"] for r in resumed.reports] == [1, 2]
    assert resumed.reports == straight.reports[1:]


def test_a_nan_loss_fails_the_trial_naming_the_epoch(tmp_path):
    with pytest.raises(FloatingPointError, match="epoch 1: .*nan"):
        one_class.run(_config(tmp_path, fault_nan_epoch=1), Recorder())


@pytest.mark.parametrize(
    ("key", "value", "valid"),
    [
        ("target_layer", "encoder.9", "encoder.2"),
        ("image_score", "median", "max"),
        ("formulation", "gradcam", "per_dim"),
        ("quantity", "sigma", "normal_difference"),
        ("normalisation", "zscore", "validation"),
        ("dataset", "cifar", "digits"),
    ],
)
def test_bad_names_fail_before_training_and_list_the_valid_ones(tmp_path, key, value, valid):
    recorder = Recorder()
    with pytest.raises(KeyError, match=valid):
        one_class.run(_config(tmp_path, **{key: value}), recorder)
    assert recorder.reports == []


def test_validation_uses_held_out_inliers_only(tmp_path):
    split = one_class.select_data(_config(tmp_path))
    assert len(split.val) > 0
    train = {tuple(x.flatten().tolist()) for x in split.train}
    assert not any(tuple(x.flatten().tolist()) in train for x in split.val)
    assert torch.equal(one_class.select_data(_config(tmp_path)).val, split.val)


def _mvtec_config(root, **changes):
    return (
        mvtec.CONFIG
        | {
            "data_root": str(root),
            "device": "cpu",
            "image_size": 32,
            "batch_size": 5,  # the fixture's 5 training images in one batch: BN needs 2+ values
            "epochs": 2,
            "latent_dim": 4,
        }
        | changes
    )


def test_localisation_scores_pixels_by_attention_and_reconstruction(tmp_path):
    root = make_mvtec(tmp_path / "mvtec", categories=("bottle",), size=32)
    recorder = Recorder()
    final = localisation.run(_mvtec_config(root, category="bottle"), recorder)
    assert [r["epoch"] for r in recorder.reports] == [0, 1]
    for method in localisation.METHODS:
        for metric in ("pixel_auroc", "aupro", "image_auroc"):
            assert 0 <= final[f"{method}_{metric}"] <= 1
    assert {
        "figures/localisation_bottle.png",
        "figures/roc_bottle.png",
        "model/model.pt",
    } == set(recorder.artifacts)


@pytest.mark.parametrize("val_fraction", [0.95, 1.0])
def test_localisation_keeps_training_images_or_says_why_not(tmp_path, val_fraction):
    root = make_mvtec(tmp_path / "mvtec", categories=("bottle",), size=32)
    config = _mvtec_config(root, category="bottle", val_fraction=val_fraction)
    with pytest.raises(ValueError, match="MVTec AD bottle has 6 training images|in \\(0, 1\\)"):
        localisation.run(config, Recorder())


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


def test_localisation_prepare_checks_every_category_of_a_grid(tmp_path):
    root = make_mvtec(tmp_path / "mvtec", categories=("grid",), size=32)
    localisation.prepare({"data_root": str(root), "category": {"grid_search": ["grid"]}})
    with pytest.raises(DataNotFoundError, match=str(root / "bottle")):
        localisation.prepare(
            {"data_root": str(root), "category": {"grid_search": ["grid", "bottle"]}}
        )


def _ucsd_config(root, **changes):
    return (
        ucsd.CONFIG
        | {
            "data_root": str(root),
            "device": "cpu",
            "image_size": 24,
            "val_clips": 1,
            "model_options": {"widths": [8, 16, 16], "batch_norm": True, "hidden": 32},
            "latent_dim": 4,
            "batch_size": 8,
            "epochs": 2,
        }
        | changes
    )


def test_video_scores_attention_and_both_baselines_with_every_metric(tmp_path):
    root = make_ucsd(tmp_path / "ucsd")
    recorder = Recorder()
    final = video.run(_ucsd_config(root), recorder)
    assert [r["epoch"] for r in recorder.reports] == [0, 1]
    for method in video.METHODS:
        for metric in ("pixel_auroc", "frame_auroc", "frame_eer"):
            assert 0 <= final[f"{method}_{metric}"] <= 1
        assert 0 <= final[f"{method}_pixel_criterion_eer"] <= 1
    assert set(recorder.artifacts) == {"figures/localisation.png", "model/model.pt"}


def test_average_recon_baseline_is_the_distance_to_the_mean_frame_reconstruction():
    model = ConvVAE(image_size=8, widths=(4, 8), hidden=8, latent_dim=2).eval()
    train = torch.rand(6, 1, 8, 8)
    frames = torch.rand(5, 1, 8, 8)
    maps = video.average_recon_maps(model, train, frames, batch_size=2)
    reference = torch.sigmoid(model(train.mean(0, keepdim=True), sample=False).recon)
    assert torch.allclose(maps, (frames - reference).pow(2)[:, 0])


def test_video_prepare_names_a_missing_frame(tmp_path):
    root = make_ucsd(tmp_path / "ucsd")
    (root / "UCSDped1" / "Test" / "Test002" / "005.tif").unlink()
    with pytest.raises(DataNotFoundError, match="Test002"):
        video.prepare(_ucsd_config(root))


def _dsprites_config(**changes):
    return (
        dsprites.QUICK
        | {
            "data_root": "unused",
            "device": "cpu",
            "seed": 0,
            "model": "ad_factor_vae",
            "model_options": {"widths": [4, 4, 8, 8], "hidden": 16, "discriminator_hidden": 16},
            "latent_dim": 3,
            "batch_size": 8,
            "iterations": 4,
            "eval_every": 2,
            "metric_every": 1,
            "val_size": 16,
            "metric_num_train": 20,
            "metric_num_eval": 10,
            "metric_num_variance": 64,
            "mig_num_train": 64,
            "figure_examples": 2,
        }
        | changes
    )


def test_disentanglement_reports_metrics_traversals_and_per_dim_maps():
    recorder = Recorder()
    final = disentanglement.run(_dsprites_config(), recorder)
    assert [(r["epoch"], r["iteration"]) for r in recorder.reports] == [(0, 2), (1, 4)]
    for report in recorder.reports:  # metric_every=1: every report has them
        assert 0 <= report["factor_vae_score"] <= 1 and 0 <= report["mig"] <= 1
    assert final["recon_error"] == final["val_recon"] > 0
    assert "train_ad" in final and "train_tc" in final
    assert set(recorder.artifacts) == {
        "figures/traversals.png",
        "figures/attention_per_dim.png",
        "model/model.pt",
    }


def test_disentanglement_resume_reproduces_the_uninterrupted_trial():
    straight = Recorder()
    disentanglement.run(_dsprites_config(model="factor_vae"), straight)
    first = Recorder()
    disentanglement.run(_dsprites_config(model="factor_vae", iterations=2), first)
    resumed = Recorder()
    disentanglement.run(_dsprites_config(model="factor_vae"), resumed, state=first.states[0])
    assert resumed.reports == straight.reports[1:]


@pytest.mark.parametrize("iterations, eval_every", [(1, 2), (5, 2), (4, 0)])
def test_disentanglement_refuses_iterations_that_are_not_whole_rounds(iterations, eval_every):
    config = _dsprites_config(iterations=iterations, eval_every=eval_every)
    with pytest.raises(ValueError, match=f"iterations \\({iterations}\\) must be a positive"):
        disentanglement.run(config, Recorder())


def test_traversals_sweep_one_latent_dim_per_row():
    model = ConvVAE(image_size=16, widths=(4, 8), hidden=8, latent_dim=3)
    images = disentanglement.traversals(model, torch.rand(1, 1, 16, 16))
    assert images.shape == (3, disentanglement.TRAVERSAL_STEPS, 1, 16, 16)
    assert not torch.allclose(images[0, 0], images[0, -1])  # the row changes along its sweep
