"""How a score table names a scoring combination, without torch (the commands that read tables
import it in a moment).

Metric names (:meth:`vaecam.scoring.ScoreTable.metrics`, what a run logs) are the combination's
non-empty fields joined by ``/``, then the metric::

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
