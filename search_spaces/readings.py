"""The two readings of the paper's anomaly localisation that the MVTec AD and UCSD Ped1 claims
are each reported under (``orchestrator.report``): data, shared by both search spaces."""

#: Why each reading: what it computes and whose it is (the report says it beside the row).
WHY = {
    "the paper's equations": "The paper's Grad-CAM per latent dim (ReLU, mean over dims) of its "
    "Eq. 4 read as a draw of the normal-difference variable, through which the normal data's "
    "statistics reach the map.",
    "the reproduction's code": "What the reproduction's code computed for its numbers: one "
    "backward of sum(mu), one RMS over the batch, mean_k |alpha_k A^k|, at its layer and on its "
    "encoder.",
}
