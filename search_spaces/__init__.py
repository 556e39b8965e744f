"""Search spaces, one a sweep, by the name the sweep is run with (``python -m orchestrator.sweep
SPACE``). Data only: no training code. What one holds: :class:`~search_spaces.space.SearchSpace`.
"""

from search_spaces.digits import DIGITS
from search_spaces.dsprites import DSPRITES
from search_spaces.mnist import MNIST
from search_spaces.mvtec import MVTEC
from search_spaces.space import SearchSpace
from search_spaces.ucsd import UCSD
from vaecam.registry import Registry

SPACES: Registry[SearchSpace] = Registry(
    "space", {"mnist": MNIST, "digits": DIGITS, "mvtec": MVTEC, "ucsd": UCSD, "dsprites": DSPRITES}
)
