"""The one registry of datasets, by name: each is one module of this package, named after it,
that says what it is (:class:`~vaecam.experiments.common.Dataset`): its settings and plug-in,
where it lies under a data root, its download and its stand-in. The anomaly and
disentanglement experiments, ``python -m vaecam.data.fetch`` and the campaign all read it here.

Adding a dataset is adding its module and one line below (and a search space to sweep it):
README.md, "Adding a dataset".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vaecam.data.dsprites import GroundTruthData
from vaecam.experiments import dsprites, mnist, mvtec, ucsd
from vaecam.experiments.common import Benchmark, Dataset
from vaecam.registry import Registry

#: Every dataset by name, in the order of PAPER.md (a campaign runs them in this order), each
#: stand-in after its dataset.
DATASETS: Registry[Dataset] = Registry(
    "dataset",
    {
        dataset.name: dataset
        for dataset in (
            mnist.MNIST,
            mnist.DIGITS,
            mvtec.MVTEC,
            ucsd.UCSD,
            dsprites.DSPRITES,
            dsprites.PROCEDURAL,
        )
    },
)


def benchmarks() -> Registry[Benchmark]:
    """The anomaly experiments' datasets: name -> plug-in."""
    plugins = {name: dataset.benchmark for name, dataset in DATASETS.items()}
    return Registry("dataset", {name: p for name, p in plugins.items() if p is not None})


def ground_truths() -> Registry[Callable[[Path], GroundTruthData]]:
    """The disentanglement experiment's datasets: name -> ``(data root) -> ground truth``."""
    plugins = {name: dataset.ground_truth for name, dataset in DATASETS.items()}
    return Registry("ground-truth dataset", {n: p for n, p in plugins.items() if p is not None})
