"""MNIST one-class anomaly detection (PAPER.md section 3): the paper's first experiment.

Trials train on one digit and score all ten; the sweep selects on validation loss of held-out
images of the inlier digit, never on a test metric. The settings and their defaults (the
authors' MNIST setup) are ``vaecam.experiments.mnist.OneClassSettings``.
"""

from ray import tune

from search_spaces.readings import PAPER_PRESET
from search_spaces.space import SearchSpace, anomaly

MNIST = SearchSpace(
    experiment=anomaly,
    # Tune optimises the default metric (val_loss): the negative ELBO on held-out *normal*
    # images (PAPER.md section 6).
    #
    # The full sweep, sized for a GPU cluster: every inlier digit, three seeds each (the summary
    # aggregates over both: one inlier's number alone is misleading), samples of the rest.
    train={
        "dataset": "mnist",
        "inlier": tune.grid_search(list(range(10))),
        "seed": tune.grid_search([0, 1, 2]),
        "latent_dim": tune.choice([16, 32, 64]),
        "lr": tune.loguniform(3e-4, 3e-3),
    },
    # ``--quick``: minutes on a 2-core CPU, every artifact still produced.
    quick={"dataset": "mnist", "epochs": 3, "max_test_images": 2000},
    # No ``explore``: each grid names data or a comparison the summary shows whole, and the
    # seed grid replicates.
    # Every trained model is scored on all of these (PAPER.md section 1): both convs; the paper's
    # equations (per_dim), the reproduction's report (per_channel), the authors' code (authors:
    # one RMS over the batch of 128; authors_per_image: each image's own) and the reproduction's
    # code (reproduction); what is differentiated (mu; Eq. 4 read literally, kept under per_dim
    # only: under the abs formulations it is mu's map; two readings in which the normal statistics
    # matter), both image scores; beside them the reconstruction baseline and the controls: input
    # energy, edge energy, a random map, the same readings on an untrained model, and the latent
    # distance (no map).
    scoring={
        "method": [
            "attention",
            "recon",
            "energy",
            "gradient_energy",
            "random",
            "untrained",
            "latent_distance",
        ],
        "target_layer": ["encoder.0", "encoder.2"],
        "formulation": ["per_dim", "authors", "authors_per_image", "per_channel", "reproduction"],
        "quantity": ["mu", "normal_difference", "kl_to_normal", "mahalanobis"],
        "normalisation": ["none"],
        "image_score": ["mean", "max"],
    },
    # ``--preset``: what the paper, the authors' code and the reproduction used (PAPER.md
    # sections 1 and 3; the README's table), applied before ``--set`` and ``--scoring``.
    presets={
        "paper": PAPER_PRESET,
        "authors": {
            "scoring": {
                "target_layer": ["encoder.2"],
                "formulation": ["authors"],
                "quantity": ["mu"],
            }
        },
        "reproduction": {
            "scoring": {
                "method": ["attention", "recon_l1", "untrained"],
                "target_layer": ["encoder.2"],
                "formulation": ["reproduction"],
                "quantity": ["mu"],
            }
        },
    },
    # The summary's run metrics, the score table's printed columns, the comparison figure's.
    summary=["val_loss"],
    scores=["image_auroc", "average_precision"],
    # Mean and 95% interval of the scores over seeds, and over seeds and inlier digits.
    aggregate_over=[("seed",), ("seed", "inlier")],
    aggregate=["image_auroc", "average_precision"],
    # The paper's claims this sweep tests (``orchestrator.report``). The paper shows MNIST maps
    # only; the claim read from them: attention tells the inlier digit from the others, i.e. an
    # image AUROC above chance, with the authors' code (their layer, formulation and
    # quantity: one backward of sum(mu), one RMS over each test batch of 128). ``paper`` is the
    # range the claim asserts (above chance); a number only where one is published.
    claims=[
        {
            "claim": "attention separates the inlier digit from the others (paper: maps only)",
            "dataset": "mnist",
            "metric": "image_auroc",
            "select": {
                "method": "attention",
                "target_layer": "encoder.2",
                "formulation": "authors",
                "quantity": "mu",
                "normalisation": "none",
                "image_score": "mean",
            },
            "group": "inlier",
            "paper": (0.5, 1.0),
            "paper_text": "maps only: above chance",
            "reproduction_text": "maps similar to the paper's",
            "reading": "the authors' code",
            "why": "The paper shows MNIST maps only, made with the authors' code "
            "(liuem607/expVAE): one backward of sum(mu), one RMS over each test batch of 128, abs.",
            "controls": ["recon", "energy", "random", "untrained", "latent_distance"],
        }
    ],
    # What PAPER.md section 3 gives for training (``orchestrator.report``'s deviations): a value,
    # a ``(low, high)`` range, or a list of values each of which is the paper's.
    paper_settings={"epochs": 100, "lr": 1e-3, "batch_size": 128, "latent_dim": 32},
    # The test set's size: a run on fewer images is on a subset (``orchestrator.report``).
    full_test_images=10_000,
)
