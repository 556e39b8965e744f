"""MNIST one-class anomaly detection (PAPER.md section 3): the paper's first experiment.

Trials train on one digit and score all ten; the sweep selects on validation loss of held-out
images of the inlier digit, never on a test metric.
"""

from ray import tune

#: What Tune optimises: the negative ELBO on held-out *normal* images (PAPER.md section 6).
METRIC = "val_loss"
MODE = "min"

#: One trial's settings: the authors' MNIST setup (PAPER.md section 3), and every ambiguity of
#: the paper as a named option recorded with the run.
CONFIG = {
    "experiment": "one_class",
    "dataset": "mnist",
    "download": True,  # fetch MNIST into the data root when it is missing and the network allows
    "image_size": 28,
    "model": "conv_vae",
    "latent_dim": 32,
    "lr": 1e-3,
    "batch_size": 128,
    "epochs": 100,
    "inlier": 1,
    "val_fraction": 0.1,  # share of the inlier's training images held out for validation
    "target_layer": "encoder.2",  # second conv, 128 x 7 x 7: the authors' choice
    "formulation": "authors",  # vaecam.attention.FORMULATIONS: per_dim | authors | per_channel
    "quantity": "normal_difference",  # vaecam.attention.QUANTITIES; Eq. 4 for anomalies
    "image_score": "mean",  # map -> image score: mean | max
    "max_train_images": None,  # None: all
    "max_test_images": None,
    "figure_examples": 4,  # overlay rows per digit
    "seed": 0,
    "fault_nan_epoch": None,  # fault injection for tests: the loss turns NaN in this epoch
    "fault_exit_epoch": None,  # fault injection: the process dies at this epoch unless resumed
}

#: The full sweep, sized for a GPU cluster: every inlier digit x every formulation.
SPACE = CONFIG | {
    "inlier": tune.grid_search(list(range(10))),
    "formulation": tune.grid_search(["per_dim", "authors", "per_channel"]),
    "target_layer": tune.choice(["encoder.0", "encoder.2"]),
    "latent_dim": tune.choice([16, 32, 64]),
    "lr": tune.loguniform(3e-4, 3e-3),
}
NUM_SAMPLES = 1  # samples of the random dimensions per grid point

#: ``--quick``: minutes on a 2-core CPU, every artifact still produced. The two trials share a
#: seed, so they train the same model and differ only in how the attention is formed.
QUICK = CONFIG | {
    "formulation": tune.grid_search(["per_dim", "authors"]),
    "epochs": 3,
    "max_test_images": 2000,
}
QUICK_NUM_SAMPLES = 1

#: Columns of the sweep's summary (the first is ``METRIC``), and the pair the trial-comparison
#: figure sets side by side: attention score vs the reconstruction baseline.
SUMMARY = [
    METRIC,
    "attention_image_auroc",
    "recon_image_auroc",
    "attention_average_precision",
    "recon_average_precision",
]
COMPARE = {"attention": "attention_image_auroc", "reconstruction": "recon_image_auroc"}
