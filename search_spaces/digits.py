"""The MNIST experiment on scikit-learn's bundled 8x8 handwritten digits: real data that needs
no download, for a first offline try and the end-to-end test in CI. The settings' defaults are
``vaecam.experiments.mnist.DigitsSettings``. Its claims are MNIST's, on digits, not MNIST:
the report gives no verdict."""

from dataclasses import replace

from ray import tune

from search_spaces.mnist import MNIST

DIGITS = replace(
    MNIST,
    train=MNIST.train | {"dataset": "digits"},
    num_samples=1,
    # ``--quick``: two trials (two latent sizes, so the runs table, the compare view and the
    # image grid have something side by side), each scored on the whole grid.
    quick={"dataset": "digits", "epochs": 30, "latent_dim": tune.grid_search([8, 32])},
    full_test_images=None,  # a stand-in: never the paper's data
)
