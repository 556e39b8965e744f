"""A tiny MVTec AD written in the real folder layout, for tests (import it; it holds no tests).

    from mvtec_fixture import make_mvtec
    root = make_mvtec(tmp_path)  # <root>/{grid,bottle}/{train,test,ground_truth}/...

Normal images are a smooth sinusoidal texture (random phase per image) plus small noise;
each defective test image adds a saturated bright or dark disc exactly where its
``ground_truth/<defect>/<stem>_mask.png`` is 255. Grayscale ("L") PNGs for grid, screw and
zipper, as in the real set; RGB for the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

GRAYSCALE = ("grid", "screw", "zipper")
PERIOD = 8.0  # pixels per cycle of the texture
NOISE = 4.0  # std of the pixel noise, in 0..255 grey levels


def texture(rng: np.random.Generator, size: int, channels: int) -> np.ndarray:
    """A smooth pattern with small noise: float (size, size, channels) in 0..255."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    planes = []
    for c in range(channels):
        phase_x, phase_y = rng.uniform(0, 2 * np.pi, 2)
        wave = np.sin(2 * np.pi * x / PERIOD + phase_x) * np.sin(2 * np.pi * y / PERIOD + phase_y)
        planes.append(128 + 30 * c + 50 * wave)  # channels differ in mean, so RGB is not gray
    image = np.stack(planes, axis=-1) + rng.normal(0, NOISE, (size, size, channels))
    return np.clip(image, 0, 255)


def disc(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random disc (bool (size, size)) of radius size/8..size/5, fully inside the image."""
    radius = rng.uniform(size / 8, size / 5)
    cy, cx = rng.uniform(radius + 1, size - radius - 1, 2)
    y, x = np.mgrid[0:size, 0:size]
    return (y - cy) ** 2 + (x - cx) ** 2 <= radius**2


def save(path: Path, pixels: np.ndarray) -> None:
    """Save float (H, W, 1|3) 0..255 as an 8-bit "L" or "RGB" PNG."""
    pixels = np.round(pixels).astype(np.uint8)
    image = (
        Image.fromarray(pixels[..., 0], "L")
        if pixels.shape[-1] == 1
        else Image.fromarray(pixels, "RGB")
    )
    image.save(path)


def make_mvtec(
    root: Path,
    categories: Sequence[str] = ("grid", "bottle"),
    n_train: int = 6,
    n_good: int = 2,
    defects: Sequence[str] = ("crack", "hole"),
    n_per_defect: int = 2,
    size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``<root>/<category>/{train/good, test/good, test/<defect>, ground_truth/<defect>}``
    with ``000.png``-style names (masks ``000_mask.png``, "L", 0/255, the image's size) and the
    per-category ``license.txt`` / ``readme.txt``. Returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for category in categories:
        channels = 1 if category in GRAYSCALE else 3
        base = root / category
        (base / "train" / "good").mkdir(parents=True, exist_ok=True)
        for i in range(n_train):
            save(base / "train" / "good" / f"{i:03d}.png", texture(rng, size, channels))
        (base / "test" / "good").mkdir(parents=True, exist_ok=True)
        for i in range(n_good):
            save(base / "test" / "good" / f"{i:03d}.png", texture(rng, size, channels))
        for d, defect in enumerate(defects):
            (base / "test" / defect).mkdir(parents=True, exist_ok=True)
            (base / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
            for i in range(n_per_defect):
                image, region = texture(rng, size, channels), disc(rng, size)
                image[region] = 255.0 if (d + i) % 2 == 0 else 0.0  # bright or dark blob
                save(base / "test" / defect / f"{i:03d}.png", image)
                mask = np.where(region, 255, 0).astype(np.uint8)
                Image.fromarray(mask, "L").save(
                    base / "ground_truth" / defect / f"{i:03d}_mask.png"
                )
        (base / "license.txt").write_text("Synthetic test fixture; not MVTec AD data.\n")
        (base / "readme.txt").write_text(f"Synthetic '{category}' in the MVTec AD layout.\n")
    return root
