"""MNIST one-class anomaly detection (PAPER.md section 3): the paper's first experiment.

Trials train on one digit and score all ten; the sweep selects on validation loss of held-out
images of the inlier digit, never on a test metric. The settings and their defaults (the
authors' MNIST setup) are ``vaecam.experiments.one_class.OneClassSettings``.
"""

from ray import tune

EXPERIMENT = "anomaly"

#: What Tune optimises: the negative ELBO on held-out *normal* images (PAPER.md section 6).
METRIC = "val_loss"
MODE = "min"

#: The full sweep, sized for a GPU cluster: every inlier digit, samples of the rest.
TRAIN = {
    "dataset": "mnist",
    "inlier": tune.grid_search(list(range(10))),
    "latent_dim": tune.choice([16, 32, 64]),
    "lr": tune.loguniform(3e-4, 3e-3),
}
NUM_SAMPLES = 1  # samples of the random dimensions per grid point

#: ``--quick``: minutes on a 2-core CPU, every artifact still produced.
QUICK = {"dataset": "mnist", "epochs": 3, "max_test_images": 2000}
QUICK_NUM_SAMPLES = 1

#: Every trained model is scored on all of these (PAPER.md section 1): both convs, the three
#: readings of how gradients become maps, what is differentiated, and both image scores.
SCORING = {
    "method": ["attention", "recon"],
    "target_layer": ["encoder.0", "encoder.2"],
    "formulation": ["per_dim", "authors", "per_channel"],
    "quantity": ["mu", "normal_difference"],
    "normalisation": ["none"],
    "image_score": ["mean", "max"],
}

#: The summary's run metrics, the score table's printed columns, the comparison figure's.
SUMMARY = [METRIC]
SCORES = ["image_auroc", "average_precision"]
HEADLINE = "image_auroc"
