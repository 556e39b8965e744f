"""Fetch the paper's datasets from their official locations into the layouts the loaders read.

    python -m vaecam.data.fetch {mnist,mvtec,ucsd,dsprites,all} --data-root DIR

Under ``DIR`` (the layout of ``python -m orchestrator.sweep all --data-root DIR``)::

    DIR/MNIST/raw/...                              torchvision's layout (torchvision fetches it)
    DIR/mvtec_ad/<category>/{train,test,ground_truth}/...
    DIR/UCSD_Anomaly_Dataset.v1p2/UCSDped1/{Train,Test}/...
    DIR/dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz

What is fetched, from where, and the hashes each file must have are each dataset's
``download`` in the one registry of datasets (:data:`vaecam.experiments.datasets.DATASETS`);
how a fetch goes is :func:`vaecam.data.download.fetch`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from vaecam.data import DataFormatError, DataNotFoundError
from vaecam.data.download import Download, fetch
from vaecam.experiments.datasets import DATASETS

__all__ = ["downloads", "fetch_for_loader", "main"]


def downloads() -> dict[str, Download]:
    """The datasets there is something to fetch of, by name (their stand-ins have nothing)."""
    return {name: dataset.download for name, dataset in DATASETS.items() if dataset.download}


def dataset_folder(download: Download, loader_root: Path) -> Path:
    """The dataset's folder, given the ``--data-root`` a single sweep passes its loader."""
    root = Path(loader_root).expanduser().absolute()
    return root if download.loader_root == "folder" else root / download.folder


def fetch_for_loader(name: str, loader_root: Path, stream: TextIO | None = None) -> bool:
    """:func:`~vaecam.data.download.fetch` the dataset ``name`` where its loader reads
    ``loader_root`` from (nothing for a dataset with nothing to fetch)."""
    download = DATASETS[name].download
    if download is None:
        return False
    return fetch(download, dataset_folder(download, loader_root), stream=stream)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vaecam.data.fetch",
        description="Download, verify and unpack the paper's datasets into the layout "
        "`python -m orchestrator.sweep all --data-root DIR` reads.",
    )
    parser.add_argument("dataset", choices=[*downloads(), "all"])
    parser.add_argument("--data-root", type=Path, default=Path("data"), help="default: ./data")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m vaecam.data.fetch NAME --data-root DIR``: 0 when every dataset is there, 2
    when one could not be fetched (one line on stderr for each)."""
    args = build_parser().parse_args(argv)
    chosen = downloads()
    names = list(chosen) if args.dataset == "all" else [args.dataset]
    status = 0
    for name in names:  # each one that can be fetched is, whatever happens to the others
        download = chosen[name]
        folder = args.data_root.expanduser().absolute() / download.folder
        try:
            fetched = fetch(download, folder)
        except (DataNotFoundError, DataFormatError) as error:
            print(f"error: {download.title}: {error}", file=sys.stderr)
            status = 2
            continue
        print(f"{download.title}: {'fetched into' if fetched else 'already in'} {folder}")
    return status


if __name__ == "__main__":
    sys.exit(main())
