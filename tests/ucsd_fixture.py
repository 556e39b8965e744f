"""A tiny synthetic UCSD Anomaly Dataset written in the real v1p2 layout, for tests (import it;
it holds no tests).

    from ucsd_fixture import make_ucsd, anomaly_ranges
    root = make_ucsd(tmp_path)  # <root>/UCSDped1/{Train/TrainNNN, Test/TestNNN[_gt], Test/*.m}

One fixed camera: every frame shows the same textured background (plus sensor noise) with a few
small dark "pedestrians" walking slowly (1 px/frame, vertically, bouncing off the edges). In a
test clip, the anomaly is a larger bright blob moving fast (3 px/frame, horizontally) that is
present exactly in the frames of :func:`anomaly_ranges`; ``TestNNN_gt/NNN.bmp`` (0/255) marks
its pixels for the clips in ``masked_clips``, and ``UCSDped1.m`` lists the ranges of every test
clip in MATLAB syntax, with a header line, a comment, multi-range and single-frame entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

PERIOD = 7.0  # pixels per cycle of the background texture
NOISE = 2.0  # std of the per-frame sensor noise, in 0..255 grey levels
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
    wave = np.sin(2 * np.pi * x / PERIOD + phase_x) * np.sin(2 * np.pi * y / PERIOD + phase_y)
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
        image = background + rng.normal(0, NOISE, background.shape)
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
    return root


if __name__ == "__main__":  # a larger synthetic set to try the ucsd sweep on by hand
    import argparse

    parser = argparse.ArgumentParser(description="Write a synthetic UCSD Ped1 (v1p2 layout).")
    parser.add_argument("root", type=Path)
    parser.add_argument("--train", type=int, default=6)
    parser.add_argument("--test", type=int, default=6)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--height", type=int, default=79)
    parser.add_argument("--width", type=int, default=119)
    args = parser.parse_args()
    masked = tuple(range(1, args.test // 2 + 1))  # like the real set: masks for some clips
    size = (args.height, args.width)
    print(make_ucsd(args.root, args.train, args.test, args.frames, size, masked))
