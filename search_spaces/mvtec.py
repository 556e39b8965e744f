"""MVTec AD anomaly localisation (PAPER.md sections 3, 4 and 6): one model per category.

The sweep selects on validation loss of held-out defect-free training images only. (The
reproduction picked its target layer by sweeping layers on the *test* set; here the target
layer is a searched hyperparameter like any other, and test metrics are only reported.)
"""

from ray import tune

from vaecam.data.mvtec import CATEGORIES

METRIC = "val_loss"  # negative ELBO on held-out normal images: never a test metric
MODE = "min"

#: One trial's settings: the reproduction's MVTec setup (PAPER.md section 3).
CONFIG = {
    "experiment": "localisation",
    "dataset": "mvtec",
    "category": "grid",
    "image_size": 256,
    "model": "resnet_vae",
    "model_options": {"pretrained": False},  # True: torchvision's ImageNet ResNet-18 weights
    "latent_dim": 32,
    "lr": 1e-4,
    "batch_size": 16,
    "epochs": 300,
    "val_fraction": 0.1,  # share of train/good held out for validation
    "target_layer": "encoder.layer2.1.conv1",  # the reproduction's layer
    "formulation": "authors",  # vaecam.attention.FORMULATIONS: per_dim | authors | per_channel
    "quantity": "normal_difference",  # Eq. 4, the paper's anomaly-localisation reading
    "normalisation": "none",  # maps before scoring: none | minmax (per image) | validation
    "image_score": "max",  # map -> image score: max | mean
    "max_fpr": 0.3,  # AUPRO's integration limit (the MVTec AD benchmark's standard)
    "hflip": False,
    "vflip": False,
    "rotation_degrees": 0.0,  # largest random rotation, in degrees
    "figure_examples": 2,  # test images per defect type in the localisation figure
    "seed": 0,
    "fault_nan_epoch": None,  # fault injection for tests: the loss turns NaN in this epoch
    "fault_exit_epoch": None,  # fault injection: the process dies at this epoch unless resumed
}

#: The full sweep, for a GPU cluster (e.g. ``--gpus-per-trial 0.5``: two trials per GPU, a
#: 256x256 ResNet-18 VAE at batch 16): every category, four samples of the rest.
SPACE = CONFIG | {
    "category": tune.grid_search(list(CATEGORIES)),
    "target_layer": tune.choice(
        ["encoder.layer1.1.conv1", "encoder.layer2.1.conv1", "encoder.layer3.1.conv1"]
    ),
    "latent_dim": tune.choice([32, 64]),
    "lr": tune.loguniform(5e-5, 5e-4),
    "normalisation": tune.choice(["none", "validation"]),
}
NUM_SAMPLES = 4

#: ``--quick``: one category on one CPU in minutes, every artifact still produced.
QUICK = CONFIG | {"category": tune.grid_search(["grid"]), "batch_size": 8, "epochs": 30}
QUICK_NUM_SAMPLES = 1

SUMMARY = [
    METRIC,
    "attention_pixel_auroc",
    "recon_pixel_auroc",
    "attention_aupro",
    "recon_aupro",
    "attention_image_auroc",
    "recon_image_auroc",
]
COMPARE = {"attention": "attention_pixel_auroc", "reconstruction": "recon_pixel_auroc"}

#: After the sweep: per category, the best trial (by METRIC) next to published pixel AUROCs.
GROUP_BY = "category"
OURS = {
    "attention (ours)": "attention_pixel_auroc",
    "recon (ours)": "recon_pixel_auroc",
    "attention AUPRO (ours)": "attention_aupro",
    "recon AUPRO (ours)": "recon_aupro",
}
#: Pixel AUROC as printed in the paper beside the MVTec AD CVPR'19 baselines (PAPER.md 4).
REFERENCE_COLUMNS = ("AE-SSIM", "AE-L2", "AnoGAN", "paper")
REFERENCE = {
    "carpet": (0.87, 0.59, 0.54, 0.78),
    "grid": (0.94, 0.90, 0.58, 0.73),
    "leather": (0.78, 0.75, 0.64, 0.87),
    "tile": (0.59, 0.51, 0.50, 0.93),
    "wood": (0.73, 0.73, 0.62, 0.91),
    "bottle": (0.93, 0.86, 0.86, 0.78),
    "cable": (0.82, 0.86, 0.78, 0.90),
    "capsule": (0.94, 0.88, 0.84, 0.74),
    "hazelnut": (0.97, 0.95, 0.87, 0.98),
    "metal_nut": (0.89, 0.86, 0.76, 0.94),
    "pill": (0.91, 0.85, 0.87, 0.83),
    "screw": (0.96, 0.96, 0.80, 0.97),
    "toothbrush": (0.92, 0.93, 0.90, 0.94),
    "transistor": (0.90, 0.86, 0.80, 0.93),
    "zipper": (0.88, 0.77, 0.78, 0.78),
}
