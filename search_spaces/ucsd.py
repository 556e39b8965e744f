"""UCSD Ped1 video anomaly localisation (PAPER.md sections 3 and 6): the paper's model against
the reconstruction and average-reconstruction baselines, scored on the same model. The settings
and their defaults (the reproduction's setup) are ``vaecam.experiments.video.UCSDSettings``."""

from ray import tune

EXPERIMENT = "anomaly"
METRIC = "val_loss"  # negative ELBO on frames of held-out normal training clips
MODE = "min"

TRAIN = {
    "dataset": "ucsd",
    "image_size": tune.grid_search([100, 96]),  # the reproduction's two models
    "latent_dim": tune.choice([32, 64]),
    "lr": tune.loguniform(3e-5, 3e-4),
}
NUM_SAMPLES = 2

QUICK = {"dataset": "ucsd", "image_size": 96, "epochs": 3}
QUICK_NUM_SAMPLES = 1

#: The second and third conv blocks, both formulations, Eq. 4; the two baselines of the
#: reproduction beside the paper's maps.
SCORING = {
    "method": ["attention", "recon", "average_recon"],
    "target_layer": ["encoder.3", "encoder.6"],
    "formulation": ["authors", "per_dim"],
    "quantity": ["normal_difference"],
    "normalisation": ["none", "validation"],
    "image_score": ["max", "mean"],
}

SUMMARY = [METRIC]
SCORES = ["pixel_auroc", "frame_auroc", "frame_eer", "pixel_criterion_eer"]
HEADLINE = "pixel_auroc"
