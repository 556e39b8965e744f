"""Search spaces, one module per sweep: ``METRIC``/``MODE`` that Tune optimises, ``CONFIG``
(one trial's defaults), ``SPACE`` and ``NUM_SAMPLES`` (the full sweep), ``QUICK`` and
``QUICK_NUM_SAMPLES`` (a CPU budget of minutes), ``SUMMARY`` (the summary's metric columns)
and ``COMPARE`` (the trial-comparison figure's pair). Sweeps that compare against published
numbers add ``GROUP_BY`` (e.g. the category), ``OURS`` (label -> metric), ``REFERENCE_COLUMNS``
and ``REFERENCE`` (group -> published values). Data only: no training code."""

from search_spaces import digits, dsprites, mnist, mvtec, ucsd
from vaecam.registry import Registry

SPACES = Registry(
    "sweep", {"mnist": mnist, "digits": digits, "mvtec": mvtec, "ucsd": ucsd, "dsprites": dsprites}
)
