"""MVTec AD (Bergmann et al., CVPR 2019) in its real on-disk layout, decoded once into tensors.

One model is trained per category (PAPER.md section 3) on ``train/good`` and evaluated by
pixel AUROC on ``test`` against the ``ground_truth`` masks::

    <root>/<category>/train/good/000.png ...
    <root>/<category>/test/good/000.png ...             (no masks: every pixel is normal)
    <root>/<category>/test/<defect>/000.png ...
    <root>/<category>/ground_truth/<defect>/000_mask.png ...   (0 normal / 255 defect)

``load_mvtec`` decodes every PNG of a category once, in a thread pool (Pillow releases the GIL
while decoding and resizing), into float tensors held in memory: those tensors are the cache, so
a trial never decodes a PNG again, whatever the number of epochs. At 256x256 a category is at
most ~400 images x 0.75 MiB = ~300 MiB of float32.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vaecam.data import DataFormatError, DataNotFoundError, _check_image_size
from vaecam.data.images import Progress, reading_image, require_eight_bit

__all__ = [
    "CATEGORIES",
    "MVTEC_URL",
    "TEXTURES",
    "DataFormatError",
    "MVTecCategory",
    "load_mvtec",
    "read_image",
]

#: The 15 categories: 5 textures (carpet, grid, leather, tile, wood) and 10 objects.
CATEGORIES = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)
TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
MVTEC_URL = "https://www.mvtec.com/company/research/datasets/mvtec-ad"

GOOD = "good"  # the defect-free folder name, in train/ and test/
MASK_SUFFIX = "_mask"  # ground_truth/<defect>/<stem>_mask.png marks test/<defect>/<stem>.png
MASK_THRESHOLD = 127  # masks are 0/255; anything brighter than mid-grey counts as defect

_LAYOUT = (
    "expected layout: <root>/<category>/train/good/*.png, <root>/<category>/test/<defect>/*.png "
    "and <root>/<category>/ground_truth/<defect>/<name>_mask.png (none for test/good)"
)


class MVTecCategory(NamedTuple):
    """One MVTec AD category, decoded and resized to ``S x S``, in sorted (deterministic) order.

    Images are float32 in [0, 1] with 3 channels: the grayscale categories (grid, screw,
    zipper) have their one channel repeated, so every category fits the same model.
    """

    train: Tensor  # (N, 3, S, S) float32: all of train/good
    test_images: Tensor  # (M, 3, S, S) float32: all of test/, folders in sorted order
    test_masks: Tensor  # (M, S, S) bool: True on defect pixels; all False for test/good
    test_defects: list[str]  # (M,) "good" or the defect type (the test/ subfolder name)
    test_paths: list[str]  # (M,) the test PNGs the rows were decoded from


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def _open(path: Path, kind: str) -> Image.Image:
    """Open and fully decode one PNG; any failure is one error naming it (:func:`reading_image`)."""
    with reading_image("MVTec AD", kind, path):
        # Not ``with``: ``Image.close()`` discards the pixels (checked on Pillow 13), and a
        # single-frame PNG's ``load()`` already closes the file once the pixels are read.
        image = Image.open(path)
        try:
            image.load()
        except BaseException:
            image.close()
            raise
    require_eight_bit(image.mode, "MVTec AD", kind, path)
    return image


def _resized(image: Image.Image, image_size: int, resample: Image.Resampling) -> np.ndarray:
    """``image`` as a uint8 array (H, W) or (H, W, C) at ``image_size x image_size``.

    Pillow's BILINEAR widens its filter by the shrink factor, i.e. it is antialiased like
    ``F.interpolate(..., antialias=True)`` (1024 -> 256 would alias the grid's lines otherwise),
    and its NEAREST samples at pixel centres, so masks stay aligned with the images.
    Resizing the 8-bit image in Pillow keeps the work GIL-free and 4x smaller than in float.
    """
    if image.size != (image_size, image_size):  # native size: bit-exact, no resampling
        image = image.resize((image_size, image_size), resample)
    return np.array(image)  # a writable copy: torch.from_numpy warns on Pillow's read-only view


def _image_pixels(image: Image.Image) -> Image.Image:
    """8-bit gray ("L") or RGB: palette, alpha, CMYK... are converted to RGB."""
    return image if image.mode in ("L", "RGB") else image.convert("RGB")


def _to_image_tensor(pixels: np.ndarray) -> Tensor:
    """uint8 (S, S) or (S, S, 3) -> float32 (3, S, S) in [0, 1]; gray is repeated 3 times."""
    tensor = torch.from_numpy(pixels)
    tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    # contiguous: ``float()`` would keep the permuted (channels-last) strides of RGB input
    return tensor.expand(3, -1, -1).contiguous().float().div_(255.0)


def _to_mask_tensor(pixels: np.ndarray) -> Tensor:
    """uint8 (S, S) 0/255 -> bool (S, S)."""
    return torch.from_numpy(pixels > MASK_THRESHOLD)


def read_image(path: Path, image_size: int) -> Tensor:
    """One MVTec PNG as float32 (3, S, S) in [0, 1], ``S = image_size``.

    Resized bilinearly with antialiasing (a no-op at the native size); grayscale images get
    their channel repeated. Raises ``DataFormatError`` naming the file if it cannot be decoded.
    """
    _check_image_size(image_size)
    image = _image_pixels(_open(Path(path), "image"))
    return _to_image_tensor(_resized(image, image_size, Image.Resampling.BILINEAR))


def _open_pair(image_path: Path, mask_path: Path | None) -> tuple[Image.Image, Image.Image | None]:
    """A test image and its mask (None for test/good), decoded and checked: the mask must have
    its image's size."""
    image = _open(image_path, "image")
    if mask_path is None:
        return image, None
    mask = _open(mask_path, "mask")
    if mask.size != image.size:
        raise DataFormatError(
            f"MVTec AD: mask {mask_path} is {_size(mask)} but its image {image_path} "
            f"is {_size(image)}; a mask must have its image's size, pixel for pixel"
        )
    return image, mask


def _read_pair(image_path: Path, mask_path: Path | None, image_size: int) -> tuple[Tensor, Tensor]:
    """A test image (3, S, S) and its mask (S, S) bool, resized together; ``mask_path`` None
    (test/good) gives an all-False mask."""
    image, mask_image = _open_pair(image_path, mask_path)
    if mask_image is None:
        mask = torch.zeros(image_size, image_size, dtype=torch.bool)
    else:
        mask_image = mask_image.convert("L")
        mask = _to_mask_tensor(_resized(mask_image, image_size, Image.Resampling.NEAREST))
    image = _image_pixels(image)
    return _to_image_tensor(_resized(image, image_size, Image.Resampling.BILINEAR)), mask


def _size(image: Image.Image) -> str:
    width, height = image.size
    return f"{width}x{height} (width x height)"


# --------------------------------------------------------------------------------------------
# The category loader
# --------------------------------------------------------------------------------------------


def _pngs(folder: Path) -> list[Path]:
    """The PNGs in ``folder``, sorted by name (listing order is filesystem-dependent)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not files:
        raise DataNotFoundError(f"MVTec AD: no .png files in {folder}; {_LAYOUT}")
    return files


def _not_found(path: Path, what: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"MVTec AD: {what} {path} not found.\n"
        f"  {_LAYOUT}.\n"
        f"  MVTec AD is obtained (free for non-commercial use) from {MVTEC_URL}; "
        "extract the archive so that each category is a folder of the root;\n"
        "  or let the sweep fetch, verify and extract it there: --download."
    )


def _test_items(category_dir: Path) -> list[tuple[str, Path, Path | None]]:
    """``(defect, image, mask or None)`` for every test image, defect folders sorted by name.
    Every mask is checked to exist before anything is decoded, so the error comes at once."""
    test_dir = category_dir / "test"
    if not test_dir.is_dir():
        raise _not_found(test_dir, "test folder")
    defects = sorted(p.name for p in test_dir.iterdir() if p.is_dir())
    if not defects:
        raise DataNotFoundError(f"MVTec AD: no defect folders (good, ...) in {test_dir}; {_LAYOUT}")
    items: list[tuple[str, Path, Path | None]] = []
    for defect in defects:
        for image_path in _pngs(test_dir / defect):
            mask_path = None
            if defect != GOOD:
                mask_path = (
                    category_dir / "ground_truth" / defect / f"{image_path.stem}{MASK_SUFFIX}.png"
                )
                if not mask_path.is_file():
                    raise DataNotFoundError(
                        f"MVTec AD: defective test image {image_path} has no mask: expected "
                        f"{mask_path} (pixel AUROC needs every defect's mask; an image scored "
                        "without one would silently count as all-normal)"
                    )
            items.append((defect, image_path, mask_path))
    return items


def check_category(
    root: Path, category: str
) -> tuple[list[Path], list[tuple[str, Path, Path | None]]]:
    """Check ``<root>/<category>`` without decoding anything (cheap enough to run for all 15
    categories before a sweep starts): its name, folders, and a mask for every defective test
    image. Returns the training PNGs and ``(defect, image, mask or None)`` per test image.
    Raises as :func:`load_mvtec` does."""
    if category not in CATEGORIES:
        raise ValueError(
            f"unknown MVTec AD category {category!r}; valid names: {', '.join(CATEGORIES)}"
        )
    category_dir = Path(root).expanduser() / category
    if not category_dir.is_dir():
        raise _not_found(category_dir, f"category {category!r}: folder")
    train_dir = category_dir / "train" / GOOD
    if not train_dir.is_dir():
        raise _not_found(train_dir, "training folder")
    return _pngs(train_dir), _test_items(category_dir)


def verify_category(
    root: Path, category: str, progress: Progress | None = None, *, workers: int | None = None
) -> None:
    """:func:`check_category`, then decode every image and mask of the category once, in
    parallel, with the loader's checks (8-bit, masks the size of their images), keeping no
    pixels: a truncated, empty, corrupt or 16-bit file is one error naming it before any trial
    starts. ``progress(done, total, what)`` is told as files are done."""
    train_paths, items = check_category(root, category)
    pairs = [(path, None) for path in train_paths] + [(image, mask) for _, image, mask in items]
    what = f"MVTec AD {category}"
    # ``map`` cancels the queued tasks once a result raises, so a corrupt file fails at once.
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for done, _ in enumerate(pool.map(lambda pair: _open_pair(*pair), pairs), start=1):
            if progress is not None:
                progress(done, len(pairs), what)


def load_mvtec(
    root: Path, category: str, image_size: int = 256, *, workers: int | None = None
) -> MVTecCategory:
    """Decode one MVTec AD category from ``<root>/<category>`` into memory (see the module doc
    for the layout), resized to ``image_size x image_size``: images bilinearly with
    antialiasing, masks by nearest neighbour, each mask from its image's original size.

    Returns train (N, 3, S, S), test images (M, 3, S, S), masks (M, S, S) bool, and the defect
    name and path of each test image, all in sorted order. ``workers`` threads decode the PNGs
    (default: one per CPU; Pillow releases the GIL, so they decode in parallel).

    Raises ``ValueError`` for a category name that is not one of ``CATEGORIES``;
    ``DataNotFoundError`` for a missing category, ``train/good`` or ``test`` folder, an empty
    folder or a defective test image without its mask; ``DataFormatError`` for a file that
    cannot be decoded or a mask whose size differs from its image's. Each names the path.
    """
    _check_image_size(image_size)
    train_paths, items = check_category(root, category)

    # ``map`` cancels the queued tasks once a result raises, so a corrupt file fails at once.
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        train = list(pool.map(partial(read_image, image_size=image_size), train_paths))
        pairs = list(pool.map(lambda item: _read_pair(item[1], item[2], image_size), items))
    return MVTecCategory(
        train=torch.stack(train),
        test_images=torch.stack([image for image, _ in pairs]),
        test_masks=torch.stack([mask for _, mask in pairs]),
        test_defects=[defect for defect, _, _ in items],
        test_paths=[str(image) for _, image, _ in items],
    )
