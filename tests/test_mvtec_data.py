"""MVTec AD loader on a tiny fixture in the real layout (vaecam.data.synthetic), its errors on
damaged copies, and the batch augmentation. Offline, a few seconds."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaecam.data import DataNotFoundError
from vaecam.data.images import Augment
from vaecam.data.mvtec import (
    CATEGORIES,
    MVTEC_URL,
    TEXTURES,
    DataFormatError,
    MVTecCategory,
    load_mvtec,
    read_image,
)
from vaecam.data.synthetic import make_mvtec

SIZE = 32  # the fixture's native size
DEFECTS = ("crack", "hole")
N_TRAIN, N_GOOD, N_PER_DEFECT = 6, 2, 2
N_TEST = N_GOOD + len(DEFECTS) * N_PER_DEFECT


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention fixture shared by the tests that do not damage it."""
    return make_mvtec(tmp_path_factory.mktemp("mvtec"), categories=("grid", "bottle"))


@pytest.fixture
def damaged(root: Path, tmp_path: Path) -> Path:
    """A private copy of the fixture to delete, corrupt or resize files in."""
    return Path(shutil.copytree(root, tmp_path / "mvtec"))


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


# --------------------------------------------------------------------------------------------
# Category names
# --------------------------------------------------------------------------------------------


def test_category_lists() -> None:
    assert len(CATEGORIES) == 15 and len(set(CATEGORIES)) == 15
    assert set(TEXTURES) == {"carpet", "grid", "leather", "tile", "wood"} <= set(CATEGORIES)
    assert {"bottle", "metal_nut", "toothbrush", "transistor", "zipper"} <= set(CATEGORIES)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("category", ["grid", "bottle"])  # grayscale and RGB PNGs
def test_shapes_dtypes_ranges(root: Path, category: str) -> None:
    data = load_mvtec(root, category, SIZE)
    assert isinstance(data, MVTecCategory)
    assert data.train.shape == (N_TRAIN, 3, SIZE, SIZE)
    assert data.test_images.shape == (N_TEST, 3, SIZE, SIZE)
    assert data.test_masks.shape == (N_TEST, SIZE, SIZE)
    assert data.train.dtype == data.test_images.dtype == torch.float32
    assert data.test_masks.dtype == torch.bool
    assert len(data.test_defects) == len(data.test_paths) == N_TEST
    for images in (data.train, data.test_images):
        assert 0.0 <= images.min() and images.max() <= 1.0
    # At the native size, pixels are the PNG's bytes / 255 exactly; gray (H, W) -> 3 copies.
    first = png(root / category / "train" / "good" / "000.png")
    expected = np.stack([first] * 3) if first.ndim == 2 else first.transpose(2, 0, 1)
    torch.testing.assert_close(data.train[0], torch.from_numpy(expected.astype(np.float32) / 255))


def test_grayscale_repeated_rgb_kept(root: Path) -> None:
    grid, bottle = load_mvtec(root, "grid", SIZE), load_mvtec(root, "bottle", SIZE)
    assert png(root / "grid" / "train" / "good" / "000.png").ndim == 2  # really 1-channel
    assert torch.equal(grid.train[:, 0], grid.train[:, 1])
    assert torch.equal(grid.train[:, 0], grid.train[:, 2])
    assert not torch.equal(bottle.train[:, 0], bottle.train[:, 1])


def test_defects_masks_and_order(root: Path) -> None:
    data = load_mvtec(root, "bottle", SIZE)
    # Sorted: defect folders by name, then files by name.
    assert data.test_defects == ["crack"] * 2 + ["good"] * 2 + ["hole"] * 2
    expected = [
        str(root / "bottle" / "test" / d / f"{i:03d}.png")
        for d in sorted((*DEFECTS, "good"))
        for i in range(2)
    ]
    assert data.test_paths == expected
    for defect, path, mask in zip(data.test_defects, data.test_paths, data.test_masks, strict=True):
        if defect == "good":
            assert not mask.any()
        else:
            stem = Path(path).stem
            truth = png(root / "bottle" / "ground_truth" / defect / f"{stem}_mask.png") == 255
            assert torch.equal(mask, torch.from_numpy(truth))
            assert mask.any()
    # The blob is where the mask says: saturated inside, textured outside.
    image, mask = data.test_images[0], data.test_masks[0]
    inside = image[:, mask]
    assert torch.all(inside == inside[0, 0]) and inside[0, 0] in (0.0, 1.0)
    assert image[:, ~mask].std() > 0.05


def test_deterministic(root: Path) -> None:
    a, b = load_mvtec(root, "grid", SIZE), load_mvtec(root, "grid", SIZE, workers=1)
    assert torch.equal(a.train, b.train) and torch.equal(a.test_images, b.test_images)
    assert torch.equal(a.test_masks, b.test_masks) and a.test_paths == b.test_paths


@pytest.mark.parametrize("size", [16, 64])  # shrink and enlarge
def test_resize(root: Path, size: int) -> None:
    data = load_mvtec(root, "bottle", size)
    assert data.train.shape == (N_TRAIN, 3, size, size)
    assert data.test_masks.shape == (N_TEST, size, size)
    assert 0.0 <= data.train.min() and data.train.max() <= 1.0
    # Nearest neighbour at pixel centres: a 2x shrink keeps the odd pixels, a 2x enlargement
    # repeats each pixel in a 2x2 block; a blurred mask would fail both.
    truth = torch.from_numpy(png(root / "bottle" / "ground_truth" / "crack" / "000_mask.png") > 127)
    if size == 16:
        expected = truth[1::2, 1::2]
    else:
        expected = truth.repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(data.test_masks[0], expected)
    # Images are resampled smoothly (antialiased): the mean brightness is kept.
    native = load_mvtec(root, "bottle", SIZE)
    torch.testing.assert_close(
        data.train.mean(dim=(2, 3)), native.train.mean(dim=(2, 3)), atol=0.02, rtol=0
    )


def test_read_image(root: Path) -> None:
    image = read_image(root / "grid" / "test" / "crack" / "000.png", 16)
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    data = load_mvtec(root, "grid", 16)
    assert torch.equal(image, data.test_images[0])
    assert data.test_masks[0].dtype == torch.bool and data.test_masks[0].any()


# --------------------------------------------------------------------------------------------
# Errors: each names the offending path
# --------------------------------------------------------------------------------------------


def test_unknown_category(root: Path) -> None:
    with pytest.raises(ValueError, match="'bottel'") as error:
        load_mvtec(root, "bottel", SIZE)
    assert "bottle" in str(error.value) and "zipper" in str(error.value)


def test_bad_image_size(root: Path) -> None:
    with pytest.raises(ValueError, match="image_size"):
        load_mvtec(root, "grid", 0)


@pytest.mark.parametrize(
    "category, missing",
    [
        ("cable", "cable"),  # a valid category that is not on disk
        ("bottle", "bottle/train/good"),
        ("bottle", "bottle/train"),
        ("bottle", "bottle"),
    ],
)
def test_missing_folder(damaged: Path, category: str, missing: str) -> None:
    path = damaged / missing
    if path.exists():
        shutil.rmtree(path)
    with pytest.raises(DataNotFoundError) as error:
        load_mvtec(damaged, category, SIZE)
    message = str(error.value)
    assert str(path) in message and MVTEC_URL in message and "train/good" in message


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path / "absent" / "grid"))):
        load_mvtec(tmp_path / "absent", "grid", SIZE)


def test_empty_folders(damaged: Path) -> None:
    train = damaged / "bottle" / "train" / "good"
    for file in train.iterdir():
        file.unlink()
    with pytest.raises(DataNotFoundError, match=re.escape(str(train))):
        load_mvtec(damaged, "bottle", SIZE)
    hole = damaged / "grid" / "test" / "hole"
    for file in hole.iterdir():
        file.unlink()
    with pytest.raises(DataNotFoundError, match=re.escape(str(hole))):
        load_mvtec(damaged, "grid", SIZE)
    shutil.rmtree(damaged / "grid" / "test")
    with pytest.raises(DataNotFoundError, match=re.escape(str(damaged / "grid" / "test"))):
        load_mvtec(damaged, "grid", SIZE)


def test_missing_mask(damaged: Path) -> None:
    mask = damaged / "grid" / "ground_truth" / "hole" / "001_mask.png"
    mask.unlink()
    with pytest.raises(DataNotFoundError) as error:
        load_mvtec(damaged, "grid", SIZE)
    assert str(mask) in str(error.value)
    assert str(damaged / "grid" / "test" / "hole" / "001.png") in str(error.value)


def test_mask_size_mismatch(damaged: Path) -> None:
    mask = damaged / "bottle" / "ground_truth" / "crack" / "001_mask.png"
    Image.open(mask).resize((SIZE, SIZE + 8)).save(mask)
    with pytest.raises(DataFormatError) as error:
        load_mvtec(damaged, "bottle", 16)  # resized or not, the sizes must agree on disk
    message = str(error.value)
    assert str(mask) in message and f"{SIZE}x{SIZE + 8}" in message and f"{SIZE}x{SIZE}" in message


@pytest.mark.parametrize(
    "relative",
    [
        "bottle/train/good/003.png",
        "bottle/test/good/001.png",
        "bottle/test/hole/000.png",
        "bottle/ground_truth/hole/000_mask.png",
    ],
)
@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_file(damaged: Path, relative: str, damage: str) -> None:
    path = damaged / relative
    data = path.read_bytes()
    path.write_bytes(
        {"garbage": b"not a png" * 10, "truncated": data[: len(data) // 2]}.get(damage, b"")
    )
    with pytest.raises(DataFormatError) as error:
        load_mvtec(damaged, "bottle", SIZE)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("relative", ["bottle/train/good/003.png", "bottle/test/hole/000.png"])
def test_sixteen_bit_image_refused(damaged: Path, relative: str) -> None:
    # convert("RGB") would clip 1000 and 40000 alike to 255
    path = damaged / relative
    size = Image.open(path).size
    Image.fromarray(np.full(size[::-1], 40000, dtype=np.uint16)).save(path)
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + ".*pixel mode") as error:
        load_mvtec(damaged, "bottle", SIZE)
    assert "corrupt" not in str(error.value)  # not wrapped as a decoding failure


def test_read_image_errors(damaged: Path) -> None:
    missing = damaged / "grid" / "train" / "good" / "999.png"
    with pytest.raises(DataNotFoundError, match=re.escape(str(missing))):
        read_image(missing, SIZE)
    corrupt = damaged / "grid" / "ground_truth" / "crack" / "000_mask.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataFormatError, match=re.escape(str(corrupt))):
        load_mvtec(damaged, "grid", SIZE)


# --------------------------------------------------------------------------------------------
# Augment
# --------------------------------------------------------------------------------------------


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def asymmetric_batch(batch: int = 32, size: int = 16) -> torch.Tensor:
    """The same image, asymmetric under both flips, repeated: (batch, 3, size, size)."""
    image = torch.arange(3 * size * size, dtype=torch.float32).reshape(3, size, size)
    image = image / image.max()
    return image.expand(batch, -1, -1, -1).clone()


def bar_angles(images: torch.Tensor) -> torch.Tensor:
    """Angle in degrees (B,) of a thin centred bar, from the slope of its per-column centroid
    over the central half of the columns (away from the corners the rotation uncovers)."""
    _, _, size, _ = images.shape
    columns = torch.arange(size // 4, 3 * size // 4)
    rows = torch.arange(size, dtype=torch.float64)
    weights = images[:, 0][:, :, columns].double()  # (B, H, columns)
    centroid = (weights * rows[None, :, None]).sum(1) / weights.sum(1)  # (B, columns)
    x = columns.double() - columns.double().mean()
    slope = ((centroid - centroid.mean(1, keepdim=True)) * x).sum(1) / (x * x).sum()
    return torch.rad2deg(torch.atan(slope))


def bar_batch(batch: int, size: int = 64) -> torch.Tensor:
    images = torch.zeros(batch, 1, size, size)
    images[:, :, size // 2 - 1 : size // 2 + 1, :] = 1.0  # a horizontal bar through the centre
    return images


def test_augment_identity() -> None:
    x = asymmetric_batch()
    assert Augment().is_identity
    assert Augment()(x, generator()) is x
    state = generator().get_state()
    g = generator()
    assert Augment(rotation_degrees=0.0)(x, g) is x
    assert torch.equal(g.get_state(), state)  # drew nothing


@pytest.mark.parametrize("hflip, vflip", [(True, False), (False, True), (True, True)])
def test_augment_flips_are_exact(hflip: bool, vflip: bool) -> None:
    x = asymmetric_batch(64)
    out = Augment(hflip=hflip, vflip=vflip)(x, generator())
    image = x[0]
    variants = {"none": image, "h": image.flip(-1), "v": image.flip(-2), "hv": image.flip(-1, -2)}
    allowed = {"none", "h"} if not vflip else {"none", "v"} if not hflip else set(variants)
    seen = set()
    for result in out:
        matches = [name for name, variant in variants.items() if torch.equal(result, variant)]
        assert len(matches) == 1 and matches[0] in allowed
        seen.add(matches[0])
    assert seen == allowed  # every variant occurs in 64 draws: per-image, not per-batch


def test_augment_reproducible_and_per_image() -> None:
    x = asymmetric_batch(8)
    augment = Augment(hflip=True, vflip=True, rotation_degrees=20.0)
    a, b = augment(x, generator(3)), augment(x, generator(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, augment(x, generator(4)))
    # Identical inputs, different outputs: each image got its own draw.
    assert len({tuple(image.flatten().tolist()) for image in a}) == len(a)
    assert a.shape == x.shape and a.dtype == x.dtype


@pytest.mark.parametrize("max_degrees", [10.0, 30.0])
def test_augment_rotation_in_degrees(max_degrees: float) -> None:
    angles = bar_angles(Augment(rotation_degrees=max_degrees)(bar_batch(64), generator()))
    # Bounded by the maximum (small tolerance for the centroid estimate), and using the range:
    # radians read as degrees would give at most 0.5 deg here, degrees as radians ~any angle.
    assert angles.abs().max() <= max_degrees + 1.0
    assert angles.abs().max() >= 0.7 * max_degrees
    assert (angles > 0).any() and (angles < 0).any()


def test_augment_rotation_of_symmetric_pattern() -> None:
    size = 64
    y, x = torch.meshgrid(torch.arange(size) - 31.5, torch.arange(size) - 31.5, indexing="ij")
    disc = ((y**2 + x**2) <= 20**2).float().expand(16, 3, size, size)
    out = Augment(rotation_degrees=10.0)(disc, generator())
    assert (out - disc).abs().mean() < 0.01  # a centred disc is rotation-invariant
    assert not torch.equal(out, disc)


def test_augment_rotation_keeps_aspect() -> None:
    """A 90-degree turn is a rotation in pixels: on a square image it is ``rot90``, and on a
    2:1 image a blob 8 px right of the centre ends 8 px above or below it (not 4 or 16)."""
    turn = Augment(rotation_degrees=90.0)._rotate
    square = torch.rand(2, 1, 8, 8)
    turned = turn(square, torch.full((2,), math.pi / 2))
    assert any(torch.allclose(turned, square.rot90(k, (2, 3)), atol=1e-5) for k in (1, -1)), (
        "a 90-degree rotation of a square image must be an exact rot90"
    )
    wide = torch.zeros(1, 1, 32, 64)
    wide[..., 15:17, 39:41] = 1.0  # centre (15.5, 31.5); blob centre (15.5, 39.5)
    out = turn(wide, torch.full((1,), math.pi / 2))[0, 0]
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(64.0), indexing="ij")
    dy = (out * rows).sum() / out.sum() - 15.5
    dx = (out * cols).sum() / out.sum() - 31.5
    assert abs(abs(dy) - 8.0) < 0.1 and abs(dx) < 0.1


def test_augment_validates() -> None:
    with pytest.raises(ValueError, match="rotation_degrees"):
        Augment(rotation_degrees=-1.0)
    with pytest.raises(ValueError, match="padding_mode"):
        Augment(padding_mode="wrap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        Augment(hflip=True)(torch.zeros(3, 8, 8), generator())
