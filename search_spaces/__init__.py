"""Search spaces, one module per sweep: ``METRIC``/``MODE`` that Tune optimises, ``CONFIG``
(one trial's defaults), ``SPACE`` and ``NUM_SAMPLES`` (the full sweep), ``QUICK`` and
``QUICK_NUM_SAMPLES`` (a CPU budget of minutes). Data only: no training code."""

from search_spaces import digits, mnist
from vaecam.registry import Registry

SPACES = Registry("sweep", {"mnist": mnist, "digits": digits})
