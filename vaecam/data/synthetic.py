"""Synthetic anomaly datasets written in the real on-disk layouts: for tests, and for sweeps
that must run offline (``sweep all --quick``). Each is labelled: a marker file at its root
(:data:`SYNTHETIC_MARKER`) makes every loader, run and report say the data is synthetic.

    make_mvtec(root)  # <root>/{grid,bottle}/{train,test,ground_truth}/...
    make_ucsd(root)   # <root>/UCSDped1/{Train/TrainNNN, Test/TestNNN[_gt], Test/*.m}
    python -m vaecam.data.synthetic ucsd /tmp/ucsd-synthetic   # a larger set, by hand

MVTec AD: normal images are a smooth sinusoidal texture (random phase per image) plus small
noise; each defective test image adds a saturated bright or dark disc exactly where its
``ground_truth/<defect>/<stem>_mask.png`` is 255. Grayscale ("L") PNGs for grid, screw and
zipper, as in the real set; RGB for the others.

UCSD Ped1: one fixed camera: every frame shows the same textured background (plus sensor noise)
with a few small dark "pedestrians" walking slowly (1 px/frame, vertically, bouncing off the
edges). In a test clip, the anomaly is a larger bright blob moving fast (3 px/frame,
horizontally) that is present exactly in the frames of :func:`anomaly_ranges`;
``TestNNN_gt/NNN.bmp`` (0/255) marks its pixels for the clips in ``masked_clips``, and
``UCSDped1.m`` lists the ranges of every test clip in MATLAB syntax, with a header line, a
comment, multi-range and single-frame entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

#: A file at a dataset's root that says it is synthetic (its text says what it imitates).
SYNTHETIC_MARKER = "VAECAM_SYNTHETIC.txt"


def mark_synthetic(root: Path, imitates: str) -> None:
    (Path(root) / SYNTHETIC_MARKER).write_text(
        f"Synthetic data written by vaecam.data.synthetic in the {imitates} layout: no verdict "
        "about the paper may rest on it.\n"
    )


def is_synthetic(root: Path) -> bool:
    """Whether the dataset at ``root`` was written by this module."""
    return (Path(root) / SYNTHETIC_MARKER).is_file()


def found_at(folder: Path) -> str:
    """What a dataset found at ``folder`` is: real, or one this module generated."""
    return f"synthetic: generated, found at {folder}" if is_synthetic(folder) else "real"


def written_once(root: Path, make: Callable[[Path], Path]) -> Path:
    """``root``, holding the set ``make(root)`` writes: written the first time only (it is
    deterministic), as the generated stand-ins are kept in a cache."""
    if not (root / ".complete").exists():
        make(root)
        (root / ".complete").touch()
    return root


# --- MVTec AD ---------------------------------------------------------------------------------

GRAYSCALE = ("grid", "screw", "zipper")
MVTEC_PERIOD = 8.0  # pixels per cycle of the texture
MVTEC_NOISE = 4.0  # std of the pixel noise, in 0..255 grey levels


def _texture(rng: np.random.Generator, size: int, channels: int) -> np.ndarray:
    """A smooth pattern with small noise: float (size, size, channels) in 0..255."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    planes = []
    for c in range(channels):
        phase_x, phase_y = rng.uniform(0, 2 * np.pi, 2)
        wave = np.sin(2 * np.pi * x / MVTEC_PERIOD + phase_x) * np.sin(
            2 * np.pi * y / MVTEC_PERIOD + phase_y
        )
        planes.append(128 + 30 * c + 50 * wave)  # channels differ in mean, so RGB is not gray
    image = np.stack(planes, axis=-1) + rng.normal(0, MVTEC_NOISE, (size, size, channels))
    return np.clip(image, 0, 255)


def _disc(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random disc (bool (size, size)) of radius size/8..size/5, fully inside the image."""
    radius = rng.uniform(size / 8, size / 5)
    cy, cx = rng.uniform(radius + 1, size - radius - 1, 2)
    y, x = np.mgrid[0:size, 0:size]
    return (y - cy) ** 2 + (x - cx) ** 2 <= radius**2


def _save(path: Path, pixels: np.ndarray) -> None:
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
            _save(base / "train" / "good" / f"{i:03d}.png", _texture(rng, size, channels))
        (base / "test" / "good").mkdir(parents=True, exist_ok=True)
        for i in range(n_good):
            _save(base / "test" / "good" / f"{i:03d}.png", _texture(rng, size, channels))
        for d, defect in enumerate(defects):
            (base / "test" / defect).mkdir(parents=True, exist_ok=True)
            (base / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
            for i in range(n_per_defect):
                image, region = _texture(rng, size, channels), _disc(rng, size)
                image[region] = 255.0 if (d + i) % 2 == 0 else 0.0  # bright or dark blob
                _save(base / "test" / defect / f"{i:03d}.png", image)
                mask = np.where(region, 255, 0).astype(np.uint8)
                Image.fromarray(mask, "L").save(
                    base / "ground_truth" / defect / f"{i:03d}_mask.png"
                )
        (base / "license.txt").write_text("Synthetic data; not MVTec AD data.\n")
        (base / "readme.txt").write_text(f"Synthetic '{category}' in the MVTec AD layout.\n")
    mark_synthetic(root, "MVTec AD")
    return root


# --- UCSD Anomaly Dataset ---------------------------------------------------------------------

UCSD_PERIOD = 7.0  # pixels per cycle of the background texture
UCSD_NOISE = 2.0  # std of the per-frame sensor noise, in 0..255 grey levels
PEDESTRIANS = 3  # per clip
PEDESTRIAN_SHAPE = (3, 2)  # (height, width) in pixels: small, like far-away people
PEDESTRIAN_GREY = 30.0
ANOMALY_SHAPE = (5, 6)  # larger than a pedestrian (a cart, a bike)
ANOMALY_GREY = 240.0
ANOMALY_SPEED = 3  # px/frame, against the pedestrians' 1
MIN_FRAMES = 6  # anomaly_ranges needs room for two separate intervals


def anomaly_ranges(clip: int, frames: int) -> tuple[tuple[int, int], ...]:
    """The anomalous frames of test clip ``clip`` (1-based) as 1-based inclusive ranges.

    Clips cycle through three cases so the ``.m`` file exercises each syntax: one interval
    (``[5:9]`` for 12 frames), two intervals (``[2:4, 9:12]``) and a single frame (``[6]``).
    """
    kind = (clip - 1) % 3
    if kind == 0:
        return ((frames // 3 + 1, frames - frames // 4),)
    if kind == 1:
        return ((2, frames // 3), (frames - frames // 3 + 1, frames))
    return ((frames // 2, frames // 2),)


def anomalous_frames(clip: int, frames: int) -> np.ndarray:
    """(frames,) bool: the frame-level labels of test clip ``clip``."""
    labels = np.zeros(frames, dtype=bool)
    for first, last in anomaly_ranges(clip, frames):
        labels[first - 1 : last] = True
    return labels


def _bounce(position: int, span: int) -> int:
    """``position`` folded into [0, span] by reflecting at the ends (a triangle wave)."""
    if span <= 0:
        return 0
    position %= 2 * span
    return position if position <= span else 2 * span - position


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """float (H, W) 0..255: a smooth pattern and a brightness gradient (the walkway's light)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    phase_x, phase_y = rng.uniform(0, 2 * np.pi, 2)
    wave = np.sin(2 * np.pi * x / UCSD_PERIOD + phase_x) * np.sin(
        2 * np.pi * y / UCSD_PERIOD + phase_y
    )
    return 110 + 35 * wave + 30 * y / height


def _clip(
    rng: np.random.Generator,
    background: np.ndarray,
    frames: int,
    anomalous: np.ndarray | None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The frames (uint8 (H, W)) of one clip and the anomaly mask of each (bool (H, W))."""
    height, width = background.shape
    ph, pw = PEDESTRIAN_SHAPE
    ah, aw = ANOMALY_SHAPE
    starts = [
        (
            int(rng.integers(0, height - ph + 1)),
            int(rng.integers(0, width - pw + 1)),
            rng.choice([-1, 1]),
        )
        for _ in range(PEDESTRIANS)
    ]
    anomaly_row = int(rng.integers(0, height - ah + 1))
    anomaly_start = int(rng.integers(0, width - aw + 1))
    images, masks = [], []
    for t in range(frames):
        image = background + rng.normal(0, UCSD_NOISE, background.shape)
        for row, col, direction in starts:
            top = _bounce(row + direction * t, height - ph)
            image[top : top + ph, col : col + pw] = PEDESTRIAN_GREY
        mask = np.zeros(background.shape, dtype=bool)
        if anomalous is not None and anomalous[t]:
            left = _bounce(anomaly_start + ANOMALY_SPEED * t, width - aw)
            mask[anomaly_row : anomaly_row + ah, left : left + aw] = True
            image[mask] = ANOMALY_GREY
        images.append(np.clip(np.round(image), 0, 255).astype(np.uint8))
        masks.append(mask)
    return images, masks


def _matlab_ranges(ranges: Sequence[tuple[int, int]]) -> str:
    return ", ".join(str(a) if a == b else f"{a}:{b}" for a, b in ranges)


def make_ucsd(
    root: Path,
    n_train: int = 3,
    n_test: int = 3,
    frames: int = 12,
    size: tuple[int, int] = (24, 36),
    masked_clips: Sequence[int] = (1,),
    seed: int = 0,
    scene: str = "UCSDped1",
) -> Path:
    """Write ``<root>/<scene>/Train/Train001/001.tif ...``, ``Test/Test001/001.tif ...``,
    ``Test/TestNNN_gt/001.bmp ...`` for the (1-based) clips in ``masked_clips`` and
    ``Test/<scene>.m``. Frames are 8-bit grayscale TIFFs of ``size = (height, width)`` (the
    real 158x238 scaled down); masks are 8-bit 0/255 BMPs of the same size. Returns ``root``
    (the folder containing ``<scene>``)."""
    if frames < MIN_FRAMES:
        raise ValueError(f"frames must be at least {MIN_FRAMES}, got {frames}")
    if not set(masked_clips) <= set(range(1, n_test + 1)):
        raise ValueError(f"masked_clips {tuple(masked_clips)} must be among 1..{n_test}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    background = _background(rng, *size)
    train_dir, test_dir = root / scene / "Train", root / scene / "Test"

    for clip in range(1, n_train + 1):
        folder = train_dir / f"Train{clip:03d}"
        folder.mkdir(parents=True)
        images, _ = _clip(rng, background, frames, None)
        for t, image in enumerate(images, start=1):
            Image.fromarray(image, "L").save(folder / f"{t:03d}.tif")

    lines = [
        "TestDataset = {};",
        "% Synthetic fixture: 1-based inclusive anomalous frame ranges of each test clip.",
    ]
    for clip in range(1, n_test + 1):
        folder = test_dir / f"Test{clip:03d}"
        folder.mkdir(parents=True)
        images, masks = _clip(rng, background, frames, anomalous_frames(clip, frames))
        for t, image in enumerate(images, start=1):
            Image.fromarray(image, "L").save(folder / f"{t:03d}.tif")
        if clip in masked_clips:
            gt = test_dir / f"Test{clip:03d}_gt"
            gt.mkdir()
            for t, mask in enumerate(masks, start=1):
                Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), "L").save(
                    gt / f"{t:03d}.bmp"
                )
        ranges = _matlab_ranges(anomaly_ranges(clip, frames))
        lines.append(f"TestDataset.gt_frame{{{clip}}} = [{ranges}];")
    (test_dir / f"{scene}.m").write_text("\n".join(lines) + "\n")
    mark_synthetic(root, "UCSD Anomaly Dataset")
    return root


def example_mvtec(root: Path) -> Path:
    """A set large enough to try a sweep on: ``grid`` and ``bottle``, 40 training images of
    64 x 64 each."""
    return make_mvtec(root, categories=("grid", "bottle"), n_train=40, size=64)


def example_ucsd(root: Path) -> Path:
    """A set large enough to try a sweep on: 6 training and 6 test clips of 40 frames of
    119 x 79, three of them with pixel masks."""
    return make_ucsd(root, 6, 6, 40, (79, 119), masked_clips=(1, 2, 3))


if __name__ == "__main__":  # python -m vaecam.data.synthetic {mvtec,ucsd} ROOT
    import argparse

    parser = argparse.ArgumentParser(description="Write a synthetic dataset in a real layout.")
    parser.add_argument("dataset", choices=("mvtec", "ucsd"))
    parser.add_argument("root", type=Path)
    args = parser.parse_args()
    print({"mvtec": example_mvtec, "ucsd": example_ucsd}[args.dataset](args.root))
