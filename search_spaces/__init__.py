"""Search spaces, one module per sweep. Data only: no training code.

Each has ``EXPERIMENT`` (a key of ``vaecam.experiments.EXPERIMENTS``), ``METRIC``/``MODE`` that
Tune optimises (validation on held-out normal data, never a test metric), and two parts:

- what changes training, which Tune searches: ``TRAIN`` and ``NUM_SAMPLES`` (the full sweep),
  ``QUICK`` and ``QUICK_NUM_SAMPLES`` (minutes on a CPU). Each overrides only what differs from
  the experiment's defaults (``vaecam``'s settings dataclasses, checked before Ray starts).
  ``EXPLORE`` names the grids a model-based search (``--search optuna``) may explore;
- ``SCORING``: the grid of lists (methods, target layers, formulations, quantities,
  normalisations, image scores) that every trained model is scored on, never trained again
  (``QUICK_SCORING`` for ``--quick`` where it differs).

The summary shows ``SUMMARY`` (run metrics per trial) and its ``SCORES`` columns of the score
tables (``scores.md``); each trial's headline (what it logs as metrics, the console's table and
the trial-comparison figure) is per claim of ``CLAIMS`` its reading and every control
(``orchestrator.headline``), or where a space has no score grid its ``COMPARE`` (label -> run
metric). Sweeps that compare against published numbers add ``GROUP_BY``
(e.g. the category), ``OURS`` (label -> run metric), ``REFERENCE_COLUMNS`` and ``REFERENCE``;
sweeps over seeds ``AGGREGATE_OVER``, ``AGGREGATE``, ``SCATTER``, ``REFERENCE_BY``.
"""

from search_spaces import digits, dsprites, mnist, mvtec, ucsd
from vaecam.registry import Registry

SPACES = Registry(
    "sweep", {"mnist": mnist, "digits": digits, "mvtec": mvtec, "ucsd": ucsd, "dsprites": dsprites}
)
