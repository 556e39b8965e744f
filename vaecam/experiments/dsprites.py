"""dSprites (Matthey et al. 2017): the ground-truth dataset of attention disentanglement
(PAPER.md sections 2, 3 and 5), plugged into :mod:`vaecam.experiments.disentanglement` by its
ground-truth interface. Everything known of the dataset is here: :data:`DSPRITES`, the real
file at ``<root>/dsprites/`` with its download, and :data:`PROCEDURAL`, its stand-in rendered
without a file; the file is read and the images rendered by :mod:`vaecam.data.dsprites`.
"""

from __future__ import annotations

from pathlib import Path

from vaecam.data.download import Download, Source
from vaecam.data.dsprites import (
    DSPRITES_URL,
    NPZ_NAME,
    NPZ_URL,
    DSpritesNpz,
    DSpritesProcedural,
)
from vaecam.experiments.common import Dataset, Found

DOWNLOAD = Download(
    name="dsprites",
    title="dSprites",
    folder="dsprites",
    loader_root="parent",
    parts=(NPZ_NAME,),
    kind="file",
    sources=(
        Source(
            NPZ_URL,  # the publisher's repository (deepmind/dsprites-dataset)
            # not published; the file is about 26 MB (the repository's README)
            None,
            # DeepMind publishes no hash: this MD5 is the one widely used loaders check
            # (vaetc's DSprites, latte's dsprites, and several torchvision-style loaders,
            # independently); no SHA-256 of this file is published anywhere we found
            (("md5", "7da33b31b13a06f4b04a70402ce90c2e"),),
        ),
    ),
    licence="Apache License 2.0 (DeepMind)",
    homepage=DSPRITES_URL,
)


def find(root: Path, quick: bool, cache: Path) -> Found | str:
    """The real file under ``<root>/dsprites``, else the procedural stand-in (nothing to
    download: it runs with or without ``quick``)."""
    npz = root / DOWNLOAD.folder / NPZ_NAME
    if npz.exists():
        return Found("dsprites", str(root), "real", settings=('dataset="dsprites"',))
    return Found("dsprites", str(root), f"synthetic: procedural dSprites ({npz} is not there)")


DSPRITES = Dataset("dsprites", ground_truth=DSpritesNpz.from_root, download=DOWNLOAD, find=find)
PROCEDURAL = Dataset("dsprites_procedural", ground_truth=DSpritesProcedural.from_root)
