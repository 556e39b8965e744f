"""The MNIST experiment on scikit-learn's bundled 8x8 handwritten digits: real data that needs
no download, for a first offline try and the end-to-end test in CI."""

from ray import tune

from search_spaces import mnist

METRIC = mnist.METRIC
MODE = mnist.MODE

CONFIG = mnist.CONFIG | {
    "dataset": "digits",
    "download": False,  # ships with scikit-learn
    "image_size": 16,  # 8x8 upsampled: the two convs leave a 4 x 4 map to attend over
    "batch_size": 32,  # ~125 training images per digit
    "epochs": 60,
}

SPACE = CONFIG | {key: mnist.SPACE[key] for key in ("inlier", "formulation", "latent_dim", "lr")}
NUM_SAMPLES = 1

QUICK = CONFIG | {"formulation": tune.grid_search(["per_dim", "authors"]), "epochs": 30}
QUICK_NUM_SAMPLES = 1

SUMMARY = mnist.SUMMARY
COMPARE = mnist.COMPARE
