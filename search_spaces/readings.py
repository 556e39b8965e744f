"""The readings of the paper that several search spaces share: data. The two readings of its
anomaly localisation that the MVTec AD and UCSD Ped1 claims are each reported under
(``orchestrator.report``), and the presets that read it the same way in every space."""

#: Why each reading: what it computes and whose it is (the report says it beside the row).
WHY = {
    "the paper's equations": "The paper's Grad-CAM per latent dim (ReLU, mean over dims) of its "
    "Eq. 4 read as a draw of the normal-difference variable, through which the normal data's "
    "statistics reach the map.",
    "the reproduction's code": "What the reproduction's code computed for its numbers: one "
    "backward of sum(mu), one RMS over the batch, mean_k |alpha_k A^k|, at its layer and on its "
    "encoder.",
}

#: ``--preset paper`` of every anomaly space: the paper's equations (per_dim) of Eq. 4, read
#: literally (normal_difference) and drawn (normal_difference_z).
PAPER_PRESET = {
    "scoring": {
        "formulation": ["per_dim"],
        "quantity": ["normal_difference", "normal_difference_z"],
    }
}
#: ``--preset authors`` where the authors' code has no layer of its own (it covers MNIST only):
#: their attention recipe (one backward of sum(mu), one RMS over the batch).
AUTHORS_PRESET = {"scoring": {"formulation": ["authors"], "quantity": ["mu"]}}
