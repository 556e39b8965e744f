"""UCSD Ped1 video anomaly localisation (PAPER.md sections 3 and 6): the paper's model against
the reconstruction and average-reconstruction baselines, measured in the same trial."""

from ray import tune

METRIC = "val_loss"  # negative ELBO on frames of held-out normal training clips
MODE = "min"

#: One trial's settings: the reproduction's Ped1 setup (PAPER.md section 3).
CONFIG = {
    "experiment": "video",
    "dataset": "ucsd",
    "scene": "UCSDped1",
    "image_size": 100,  # 100x100 or 96x96: the reproduction's two models
    "val_clips": 3,  # whole training clips held out (consecutive frames are near duplicates)
    "model": "conv_vae",
    "model_options": {"widths": [64, 128, 256], "batch_norm": True, "hidden": 1024},
    "latent_dim": 32,
    "lr": 1e-4,
    "batch_size": 32,
    "epochs": 200,  # the reproduction trained 512
    "target_layer": "encoder.6",  # the third conv block's conv
    "formulation": "authors",
    "quantity": "normal_difference",  # Eq. 4
    "normalisation": "none",  # none | minmax (per frame) | validation (per-pixel z-score)
    "image_score": "max",  # frame score from the map: max | mean
    "figure_examples": 3,  # anomalous and normal frames in the figure
    "seed": 0,
    "fault_nan_epoch": None,  # fault injection for tests: the loss turns NaN in this epoch
    "fault_exit_epoch": None,  # fault injection: the process dies at this epoch unless resumed
}

SPACE = CONFIG | {
    "image_size": tune.grid_search([100, 96]),
    "target_layer": tune.grid_search(["encoder.3", "encoder.6"]),
    "latent_dim": tune.choice([32, 64]),
    "lr": tune.loguniform(3e-5, 3e-4),
    "normalisation": tune.choice(["none", "validation"]),
}
NUM_SAMPLES = 2

QUICK = CONFIG | {"image_size": tune.grid_search([96]), "epochs": 3}
QUICK_NUM_SAMPLES = 1

SUMMARY = [
    METRIC,
    *(
        f"{method}_{metric}"
        for metric in ("pixel_auroc", "frame_auroc", "pixel_criterion_eer")
        for method in ("attention", "recon", "average_recon")
    ),
]
COMPARE = {
    "attention": "attention_pixel_auroc",
    "reconstruction": "recon_pixel_auroc",
    "average recon.": "average_recon_pixel_auroc",
}
