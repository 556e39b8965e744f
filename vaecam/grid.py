"""A score table's combination columns and metric names, without torch (for the commands that
only read tables). A metric's name (:meth:`vaecam.scoring.ScoreTable.metrics`, what a run logs)
is the combination's non-empty fields joined by ``/``, then the metric::

    attention/encoder.2/per_dim/mu/none/max/image_auroc    # an image-level metric
    attention/encoder.2/per_dim/mu/none/pixel_auroc        # a map-level one: no image score
    recon/none/max/image_auroc                             # a baseline: no layer etc.

i.e. ``method[/target_layer/formulation/quantity]/normalisation[/image_score]/metric``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: The columns that name a combination, in order; then come the metrics.
COLUMNS = ("method", "target_layer", "formulation", "quantity", "normalisation", "image_score")


def metric_name(row: Mapping[str, Any], metric: str, columns: Sequence[str] = COLUMNS) -> str:
    """``row``'s non-empty ``columns`` and ``metric``, joined by ``/``."""
    return "/".join([*(str(row[c]) for c in columns if row.get(c) is not None), metric])
