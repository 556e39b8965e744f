"""Datasets as in-memory tensors: what every loader shares (its errors, resizing, what a trial
reads for its provenance, a validation hold-out); each dataset's file formats in a module of
its own (:mod:`vaecam.data.mnist`, ...). The one registry of datasets, each with its settings,
plug-in, layout, download and stand-in, is :data:`vaecam.experiments.datasets.DATASETS`.

Loaders read the real on-disk layouts and fail with a ``DataNotFoundError`` that names the
missing path and how to obtain the data.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DataFormatError", "DataNotFoundError", "DataSource", "file_lock", "hold_out"]


class DataSource(NamedTuple):
    """Where a trial's data comes from, for its provenance (the run's dataset inputs).

    ``name`` says what it is (``mvtec_ad/grid``); ``files`` are those read, relative to
    ``root`` (None: every file under ``root``; ``()``: generated in memory, nothing read);
    ``url`` is where the data is published; ``synthetic`` marks data generated in the real
    layout (:mod:`vaecam.data.synthetic`) or procedurally, on which no verdict may rest;
    ``selection`` the settings that pick a trial's images from it (``{"inlier": 1}``)."""

    name: str
    root: Path
    files: tuple[str, ...] | None = None
    url: str | None = None
    synthetic: bool = False
    selection: dict[str, Any] = {}


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are not where the loader looked (and could not be downloaded)."""


class DataFormatError(ValueError):
    """A dataset file is present but unreadable, or inconsistent with the files beside it."""


def _resize(images: Tensor, image_size: int) -> Tensor:
    """Bilinear (antialiased) resize of square images (N, C, H, W) to ``image_size``.

    A no-op at the native size, so native-resolution data is bit-exact. Antialiasing matters
    when shrinking (28 -> 16 would alias strokes otherwise) and is harmless when enlarging.
    """
    if images.shape[-2:] == (image_size, image_size):
        return images
    resized = F.interpolate(
        images, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
    )
    # The filter weights are non-negative and sum to one, so only rounding can leave [0, 1].
    return resized.clamp_(0.0, 1.0)


def _check_image_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")


@contextmanager
def file_lock(path: Path | None) -> Iterator[None]:
    """Exclusive between processes on this machine while the block runs, through an advisory
    lock on the file ``path`` (created, with its folder); no lock for None."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# The validation hold-out
# --------------------------------------------------------------------------------------------


def hold_out(
    images: Tensor, val_fraction: float, generator: torch.Generator, what: str
) -> tuple[Tensor, Tensor]:
    """``(train, val)``: ``val_fraction`` of the normal training ``images`` (at least one,
    chosen by ``generator``) held out for validation and early stopping, the rest to train on.
    ``what`` names the images in the error when too few would be left to train on."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = max(1, round(len(images) * val_fraction))
    if n_val >= len(images):
        raise ValueError(
            f"{what} has {len(images)} training images: too few to hold out "
            f"{val_fraction:.0%} for validation and keep any for training"
        )
    order = torch.randperm(len(images), generator=generator)
    return images[order[n_val:]], images[order[:n_val]]
