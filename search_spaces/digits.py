"""The MNIST experiment on scikit-learn's bundled 8x8 handwritten digits: real data that needs
no download, for a first offline try and the end-to-end test in CI. The settings' defaults are
``vaecam.experiments.one_class.DigitsSettings``."""

from ray import tune

from search_spaces import mnist

EXPERIMENT = mnist.EXPERIMENT
METRIC = mnist.METRIC
MODE = mnist.MODE

TRAIN = mnist.TRAIN | {"dataset": "digits"}
NUM_SAMPLES = 1

#: ``--quick``: two trials (two latent sizes, so the runs table, the compare view and the
#: image grid have something side by side), each scored on the whole grid.
QUICK = {"dataset": "digits", "epochs": 30, "latent_dim": tune.grid_search([8, 32])}
QUICK_NUM_SAMPLES = 1
EXPLORE = mnist.EXPLORE

SCORING = mnist.SCORING
PRESETS = mnist.PRESETS
SUMMARY = mnist.SUMMARY
SCORES = mnist.SCORES
AGGREGATE_OVER = mnist.AGGREGATE_OVER
AGGREGATE = mnist.AGGREGATE
CLAIMS = mnist.CLAIMS  # on digits, not MNIST: the report gives no verdict
PAPER_SETTINGS = mnist.PAPER_SETTINGS
FULL_TEST_IMAGES = None  # a stand-in: never the paper's data
