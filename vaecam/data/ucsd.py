"""The UCSD Anomaly Detection Dataset (v1p2; Mahadevan et al., CVPR 2010), decoded into tensors.

PAPER.md section 3: a VAE is trained on the normal training clips of the Ped1 scene (people
walking on a walkway, seen by a fixed camera) and its attention maps are scored by pixel-level
AUROC against the ground-truth masks of the test clips. On disk (``UCSD_Anomaly_Dataset.v1p2``,
from ``UCSD_URL``)::

    <root>/UCSDped1/Train/Train001/001.tif ... 200.tif     34 clips of normal frames only
    <root>/UCSDped1/Test/Test001/001.tif ... 200.tif       36 clips, anomalies in some frames
    <root>/UCSDped1/Test/Test003_gt/001.bmp ... 200.bmp    pixel masks (white = anomalous),
                                                           one per frame, for SOME test clips
    <root>/UCSDped1/Test/UCSDped1.m                        frame labels of EVERY test clip

Frames are 8-bit grayscale, 238x158 (width x height) in Ped1. ``UCSDped1.m`` is a MATLAB script
giving each test clip's anomalous frames as 1-based inclusive ranges::

    TestDataset = {};
    TestDataset.gt_frame{1} = [60:152];
    TestDataset.gt_frame{4} = [31:168, 172:200];

It is parsed (:func:`parse_gt_frames`), never hard-coded. Files that are not frames or masks
(``._001.tif``, ``.DS_Store``, ``Thumbs.db``: archive and OS debris) are ignored; frames and masks
are exactly the files named ``<number>.tif`` / ``<number>.bmp``, numbered 1..N without gaps.
Ped2 (``scene="UCSDped2"``, 360x240, ``UCSDped2.m``) has the same layout.

:func:`load_ucsd` decodes every file once, in a thread pool (Pillow releases the GIL while
decoding and resizing), into tensors held in memory: Ped1's 14,000 frames are 560 MB of float32
at 100x100. Everything that can be checked without decoding (folders, frame numbering, mask
counts, the ``.m`` file against the clips) is checked first by :func:`check_ucsd`, so a broken
dataset fails at once, with one error naming the offending path.

Validation holds out whole training clips (the last ``val_clips`` ones, or a seeded random
choice): consecutive frames are near-duplicates, so random frames would leak into training.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
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
    "SCENES",
    "UCSD_URL",
    "Clip",
    "VideoAnomalyData",
    "check_ucsd",
    "load_ucsd",
    "parse_gt_frames",
]

UCSD_URL = "http://www.svcl.ucsd.edu/projects/anomaly/dataset.htm"
SCENES = ("UCSDped1", "UCSDped2")
# BMP masks are lossless 0/255, so any non-black pixel is anomalous; a mask stored as 0/1 (or
# 1-bit) then still reads correctly, where a mid-grey threshold would silently erase it.
MASK_THRESHOLD = 0

# Only these names are clips, frames and masks: anything else in the folders is debris.
_TRAIN_CLIP = re.compile(r"Train(\d+)")
_TEST_CLIP = re.compile(r"Test(\d+)")
_MASK_CLIP = re.compile(r"Test(\d+)_gt")
_FRAME = re.compile(r"(\d+)\.tif", re.IGNORECASE)
_MASK = re.compile(r"(\d+)\.bmp", re.IGNORECASE)

FrameRanges = tuple[tuple[int, int], ...]  # 1-based inclusive (first, last) frame ranges


def _layout(scene: str) -> str:
    return (
        f"expected layout: <root>/{scene}/Train/Train001/001.tif ..., "
        f"<root>/{scene}/Test/Test001/001.tif ..., pixel masks for some test clips in "
        f"<root>/{scene}/Test/Test003_gt/001.bmp ..., and the frame labels of every test clip "
        f"in <root>/{scene}/Test/{scene}.m"
    )


class VideoAnomalyData(NamedTuple):
    """One UCSD scene, decoded and resized to ``H x W``, clips and frames in numerical order.

    Frames are float32 in [0, 1] with one (gray) channel. Pixel-level metrics must use only
    the test frames with ``has_mask``: the other clips have frame labels but no masks, and
    scoring them as all-normal would be wrong (PAPER.md section 6).
    """

    train: Tensor  # (N, 1, H, W) float32: frames of the training clips not held out
    train_clip: Tensor  # (N,) int64: their clip numbers (Train003 -> 3)
    val: Tensor  # (V, 1, H, W) float32: frames of the held-out (whole) training clips
    val_clip: Tensor  # (V,) int64: their clip numbers
    test_frames: Tensor  # (M, 1, H, W) float32: every frame of every test clip
    test_labels: Tensor  # (M,) bool: frame-level anomaly, from <scene>.m
    test_masks: Tensor  # (M, H, W) bool: True on anomalous pixels; all False where no mask
    has_mask: Tensor  # (M,) bool: the frame's clip has pixel masks (TestNNN_gt)
    test_clip: Tensor  # (M,) int64: clip number (Test003 -> 3)
    test_frame: Tensor  # (M,) int64: 1-based frame number within its clip
    original_size: tuple[int, int]  # (height, width) on disk: (158, 238) for Ped1


class Clip(NamedTuple):
    """One clip as found on disk by :func:`check_ucsd` (nothing decoded)."""

    number: int  # 1-based: Test003 -> 3
    folder: Path
    frames: list[Path]  # 001.tif ... in frame order
    masks: list[Path] | None  # TestNNN_gt/001.bmp ... one per frame; None without masks
    labels: Tensor | None  # (T,) bool frame-level anomaly for test clips; None for training


# --------------------------------------------------------------------------------------------
# The frame-label script, <scene>.m
# --------------------------------------------------------------------------------------------

_EXAMPLE_ENTRY = "TestDataset.gt_frame{4} = [31:168, 172:200];"
# TestDataset.gt_frame{4} = [31:168, 172:200];  (the struct name is optional, ';' too)
_ENTRY = re.compile(
    r"(?:[A-Za-z]\w*\s*\.\s*)?gt_frame\s*\{\s*(?P<clip>\d+)\s*\}\s*=\s*"
    r"(?:\[(?P<list>[^\[\]]*)\]|(?P<bare>\d+(?:\s*:\s*\d+)?))\s*;?"
)
# TestDataset.gt_frame = cell(1, 36);  an empty container set up before the entries
_GT_INIT = re.compile(r"(?:[A-Za-z]\w*\s*\.\s*)?gt_frame\s*=\s*(?:\{\s*\}|cell\s*\([^()]*\))\s*;?")
# TestDataset = {};  TestDataset.name = 'Ped1';  a header assignment that carries no labels
_OTHER_ASSIGNMENT = re.compile(r"[A-Za-z]\w*(?:\s*\.\s*[A-Za-z]\w*)*\s*=[^=].*")
_RANGE = re.compile(r"(\d+)(?::(\d+))?")


def _parse_ranges(body: str) -> FrameRanges:
    """``"31:168, 172:200"`` -> ((31, 168), (172, 200)); ``"7"`` -> ((7, 7),); ``""`` -> ().

    MATLAB separates elements by commas and/or spaces, and ``a : b`` may have spaces around
    the colon. Raises ``ValueError`` (the caller adds the file and line) on anything else,
    including a reversed range ``9:5`` (empty in MATLAB, surely a typo here) and frame 0.
    """
    body = re.sub(r"\s*:\s*", ":", body.strip())
    if not body:
        return ()
    tokens: list[str] = []
    for part in body.split(","):
        if not part.split():
            raise ValueError("an empty element between commas")
        tokens += part.split()
    ranges = []
    for token in tokens:
        match = _RANGE.fullmatch(token)
        if match is None:
            raise ValueError(f"{token!r} is not a frame number or a range first:last")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if first < 1:
            raise ValueError(f"frame numbers are 1-based, got {token!r}")
        if last < first:
            raise ValueError(f"the range {token!r} is reversed (empty)")
        ranges.append((first, last))
    return tuple(ranges)


def _parse_gt_frames_with_lines(text: str, source: str) -> dict[int, tuple[FrameRanges, int]]:
    """Clip number -> (its anomalous frame ranges, the 1-based line they were read from)."""
    entries: dict[int, tuple[FrameRanges, int]] = {}

    def malformed(number: int, line: str, reason: str) -> DataFormatError:
        return DataFormatError(
            f"UCSD: malformed frame labels in {source}, line {number}: {reason}: "
            f"{line.strip()!r}\n  expected lines like {_EXAMPLE_ENTRY!r} (1-based inclusive "
            "frame ranges of each test clip), comments (%) or a header such as "
            "'TestDataset = {};'"
        )

    for number, line in enumerate(text.splitlines(), start=1):
        code = line.split("%", 1)[0].strip()  # MATLAB comments run from % to the line's end
        if not code:
            continue
        entry = _ENTRY.fullmatch(code)
        if entry is None:
            if "gt_frame" in code and _GT_INIT.fullmatch(code) is None:
                raise malformed(number, line, "not a gt_frame{clip} = [ranges] entry")
            if "gt_frame" not in code and _OTHER_ASSIGNMENT.fullmatch(code) is None:
                raise malformed(number, line, "not a MATLAB assignment")
            continue  # a header or initialisation: no labels in it
        clip = int(entry.group("clip"))
        if clip < 1:
            raise malformed(number, line, "clip numbers are 1-based")
        if clip in entries:
            raise malformed(
                number, line, f"clip {clip} was already labelled on line {entries[clip][1]}"
            )
        body = entry.group("list") if entry.group("list") is not None else entry.group("bare")
        try:
            entries[clip] = (_parse_ranges(body), number)
        except ValueError as error:
            raise malformed(number, line, str(error)) from None
    return entries


def parse_gt_frames(text: str, source: str = "<text>") -> dict[int, FrameRanges]:
    """The anomalous frames of each test clip, from the text of a ``UCSDped1.m`` script.

    Returns ``{clip: ((first, last), ...)}`` with 1-based clip numbers and 1-based inclusive
    frame ranges, in the order written (a single frame ``7`` is ``(7, 7)``, ``[]`` is no
    anomalous frame). Comments (``%``), blank lines and header assignments such as
    ``TestDataset = {};`` are skipped. Raises ``DataFormatError`` naming ``source`` and the
    line for anything else: a broken entry, a reversed range, a clip labelled twice.
    """
    return {clip: ranges for clip, (ranges, _) in _parse_gt_frames_with_lines(text, source).items()}


def _read_m_file(path: Path) -> str:
    try:
        # Comments may hold any bytes; undecodable ones can only be in comments that matter
        # to nobody, and a real syntax problem still fails the parse.
        return path.read_text(encoding="utf-8-sig", errors="replace")
    except FileNotFoundError:
        raise DataNotFoundError(
            f"UCSD: the frame-label file {path} does not exist; it labels the anomalous frames "
            f"of every test clip and ships with the dataset ({UCSD_URL})"
        ) from None
    except OSError as error:
        raise DataFormatError(f"UCSD: cannot read {path} ({error})") from None


def _frame_labels(ranges: FrameRanges, n_frames: int) -> Tensor:
    """(n_frames,) bool: True on the frames of ``ranges`` (1-based inclusive)."""
    labels = torch.zeros(n_frames, dtype=torch.bool)
    for first, last in ranges:
        labels[first - 1 : last] = True
    return labels


# --------------------------------------------------------------------------------------------
# Finding clips, frames and masks (no decoding)
# --------------------------------------------------------------------------------------------


def _not_found(path: Path, what: str, scene: str, hint: str = "") -> DataNotFoundError:
    return DataNotFoundError(
        f"UCSD Anomaly Dataset: {what} {path} not found.{hint}\n"
        f"  {_layout(scene)}.\n"
        f"  The dataset (UCSD_Anomaly_Dataset.v1p2.tar.gz) is obtained from {UCSD_URL}; "
        f"extract it and pass the extracted folder (the one containing {scene}) as the root;\n"
        "  or let the sweep fetch, verify and extract it there: --download."
    )


def _numbered(
    folder: Path, pattern: re.Pattern[str], what: str, want_dirs: bool
) -> dict[int, Path]:
    """``{number: path}`` for the entries of ``folder`` whose whole name matches ``pattern``
    (its group 1 is the number) and that are folders (``want_dirs``) or files."""
    found: dict[int, Path] = {}
    for path in folder.iterdir():
        match = pattern.fullmatch(path.name)
        if match is None or not (path.is_dir() if want_dirs else path.is_file()):
            continue
        number = int(match.group(1))
        if number in found:  # 1.tif beside 001.tif: which one is frame 1?
            first, second = sorted((found[number].name, path.name))
            raise DataFormatError(
                f"UCSD: {folder} has two {what}s numbered {number}, {first} and {second}; "
                "remove the stray one"
            )
        found[number] = path
    return found


def _check_contiguous(
    found: dict[int, Path], folder: Path, what: str, name: Callable[[int], str]
) -> list[Path]:
    """``found``'s paths in order, checked to be numbered exactly 1..N (N >= 1); ``name``
    gives the expected file or folder name of a number, for the messages."""
    if not found:
        raise DataNotFoundError(f"UCSD: no {what}s ({name(1)}, {name(2)} ...) in {folder}")
    if 0 in found:
        raise DataFormatError(
            f"UCSD: {found[0]} is numbered 0, but the {what}s of {folder} are numbered from 1"
        )
    last = max(found)
    missing = [number for number in range(1, last + 1) if number not in found]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataNotFoundError(
            f"UCSD: {folder} lacks {what} {missing[0]}, {folder / name(missing[0])}{more}: its "
            f"{what}s must be numbered 1..{last} without gaps; the copy of the dataset is "
            f"incomplete: extract it again from the archive ({UCSD_URL})"
        )
    return [found[number] for number in range(1, last + 1)]


def _frames(folder: Path) -> list[Path]:
    found = _numbered(folder, _FRAME, "frame", want_dirs=False)
    return _check_contiguous(found, folder, "frame", lambda number: f"{number:03d}.tif")


def _masks(folder: Path) -> list[Path]:
    found = _numbered(folder, _MASK, "mask", want_dirs=False)
    return _check_contiguous(found, folder, "mask", lambda number: f"{number:03d}.bmp")


def _clips(split_dir: Path, pattern: re.Pattern[str], scene: str) -> list[Path]:
    prefix = split_dir.name  # Train or Test
    found = _numbered(split_dir, pattern, "clip folder", want_dirs=True)
    if not found:
        raise _not_found(split_dir / f"{prefix}001", f"{prefix} clip folder", scene)
    return _check_contiguous(found, split_dir, "clip folder", lambda n: f"{prefix}{n:03d}")


def _scene_dir(root: Path, scene: str) -> Path:
    """``<root>/<scene>``, or an error that says where the dataset is and how it should look."""
    if not root.is_dir():
        raise _not_found(root, "dataset root", scene)
    scene_dir = root / scene
    if not scene_dir.is_dir():
        hint = ""
        if root.name == scene or (root / "Train").is_dir():
            hint = f" The root looks like the scene folder itself: pass its parent {root.parent}."
        elif (root / "UCSD_Anomaly_Dataset.v1p2" / scene).is_dir():
            hint = f" Pass {root / 'UCSD_Anomaly_Dataset.v1p2'} as the root."
        raise _not_found(scene_dir, f"scene folder ({scene})", scene, hint)
    return scene_dir


def check_ucsd(root: Path, scene: str = "UCSDped1") -> tuple[list[Clip], list[Clip]]:
    """Check ``<root>/<scene>`` without decoding any image (cheap enough for a sweep's start)
    and return its training and test clips, in numerical order.

    Checks: the folders exist; clips and frames are numbered 1..N without gaps (stray files
    ignored); each mask folder belongs to a test clip and has one mask per frame; the ``.m``
    file parses, labels every test clip and nothing else, within each clip's length. Raises
    as :func:`load_ucsd` does.
    """
    if scene not in SCENES:
        raise ValueError(f"unknown UCSD scene {scene!r}; valid names: {', '.join(SCENES)}")
    scene_dir = _scene_dir(Path(root).expanduser(), scene)
    train_dir, test_dir = scene_dir / "Train", scene_dir / "Test"
    for split_dir in (train_dir, test_dir):
        if not split_dir.is_dir():
            raise _not_found(split_dir, f"{split_dir.name} folder", scene)

    train = [
        Clip(number, folder, _frames(folder), None, None)
        for number, folder in enumerate(_clips(train_dir, _TRAIN_CLIP, scene), start=1)
    ]
    test_folders = _clips(test_dir, _TEST_CLIP, scene)
    mask_folders = _numbered(test_dir, _MASK_CLIP, "mask folder", want_dirs=True)
    for number, mask_folder in sorted(mask_folders.items()):
        if not 1 <= number <= len(test_folders):
            raise DataFormatError(
                f"UCSD: mask folder {mask_folder} has no test clip: expected "
                f"{test_dir / mask_folder.name.removesuffix('_gt')} (the test clips are "
                f"{test_folders[0].name}..{test_folders[-1].name})"
            )

    m_path = test_dir / f"{scene}.m"
    gt_frames = _parse_gt_frames_with_lines(_read_m_file(m_path), str(m_path))
    for number, (_, line) in sorted(gt_frames.items()):
        if number > len(test_folders):
            raise DataFormatError(
                f"UCSD: {m_path}, line {line}, labels test clip {number}, but there is no "
                f"such clip folder {test_dir / f'Test{number:03d}'} (the test clips are "
                f"{test_folders[0].name}..{test_folders[-1].name})"
            )

    test = []
    for number, folder in enumerate(test_folders, start=1):
        frames = _frames(folder)
        if number not in gt_frames:
            raise DataFormatError(
                f"UCSD: {m_path} has no frame labels for test clip {number} ({folder}); every "
                f"test clip needs a line 'TestDataset.gt_frame{{{number}}} = [first:last];' "
                "('[]' if no frame is anomalous)"
            )
        ranges, line = gt_frames[number]
        last = max((last for _, last in ranges), default=0)
        if last > len(frames):
            raise DataFormatError(
                f"UCSD: {m_path}, line {line}, labels frames up to {last} of test clip "
                f"{number}, but {folder} has {len(frames)} frames"
            )
        masks = None
        if number in mask_folders:
            mask_folder = mask_folders[number]
            masks = _masks(mask_folder)
            if len(masks) != len(frames):
                raise DataFormatError(
                    f"UCSD: mask folder {mask_folder} has {len(masks)} masks but its clip "
                    f"{folder} has {len(frames)} frames; every frame needs its mask "
                    f"(001.bmp ... {len(frames):03d}.bmp)"
                )
        test.append(Clip(number, folder, frames, masks, _frame_labels(ranges, len(frames))))
    return train, test


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def _decode(
    path: Path, kind: str, size: tuple[int, int], mask: bool
) -> tuple[np.ndarray, tuple[int, int]]:
    """One frame (``.tif``) or mask (``.bmp``) as uint8 (h, w) at ``size = (h, w)``, and its
    (height, width) on disk. Any decoding failure is one ``DataFormatError`` naming it.

    Frames are resized by Pillow's BILINEAR, which widens its filter when shrinking, i.e. is
    antialiased like ``F.interpolate(..., antialias=True)``; masks by NEAREST at pixel centres
    (interpolating would invent partial labels at the anomaly's edge). A no-op at the native
    size, so native-resolution data is bit-exact.
    """
    with reading_image("UCSD", kind, path):
        # ``with`` closes the file (a TIFF keeps it open after load(), for its other pages);
        # the pixels are copied out before the image is closed.
        with Image.open(path) as image:
            image.load()
            mode, on_disk = image.mode, (image.height, image.width)
            require_eight_bit(mode, "UCSD", kind, path)
            gray = image if mode == "L" else image.convert("L")
            if on_disk != size:
                resample = Image.Resampling.NEAREST if mask else Image.Resampling.BILINEAR
                gray = gray.resize((size[1], size[0]), resample)
            pixels = np.array(gray)  # a writable copy (torch warns on read-only arrays)
    return pixels, on_disk


def _size(height_width: tuple[int, int]) -> str:
    return f"{height_width[1]}x{height_width[0]} (width x height)"


def _read_frame(path: Path, size: tuple[int, int], expected: tuple[int, int]) -> np.ndarray:
    """A frame as uint8 (h, w), checked to have the scene's (height, width) ``expected``."""
    pixels, on_disk = _decode(path, "frame", size, mask=False)
    if on_disk != expected:
        raise DataFormatError(
            f"UCSD: frame {path} is {_size(on_disk)} but the scene's frames are "
            f"{_size(expected)}; replace it with the original"
        )
    return pixels


def _read_test_frame(
    path: Path, mask_path: Path | None, size: tuple[int, int], expected: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """A test frame uint8 (h, w) and its mask bool (h, w) (all False when ``mask_path`` is
    None), the mask checked to have its frame's size on disk, pixel for pixel."""
    frame = _read_frame(path, size, expected)
    if mask_path is None:
        return frame, np.zeros(size, dtype=bool)
    mask, on_disk = _decode(mask_path, "mask", size, mask=True)
    if on_disk != expected:
        raise DataFormatError(
            f"UCSD: mask {mask_path} is {_size(on_disk)} but its frame {path} is "
            f"{_size(expected)}; a mask must have its frame's size, pixel for pixel"
        )
    return frame, mask > MASK_THRESHOLD


def verify_ucsd(
    root: Path,
    scene: str = "UCSDped1",
    progress: Progress | None = None,
    *,
    workers: int | None = None,
) -> None:
    """:func:`check_ucsd`, then decode every frame and mask once, in parallel, with the loader's
    checks (8-bit, the scene's size, masks the size of their frames), keeping no pixels: a
    truncated, empty, corrupt or 16-bit file is one error naming it before any trial starts.
    ``progress(done, total, what)`` is told as files are done."""
    train_clips, test_clips = check_ucsd(root, scene)
    expected = _size_on_disk(train_clips[0].frames[0])
    items = [(frame, None) for clip in train_clips for frame in clip.frames]
    items += [
        (frame, None if clip.masks is None else clip.masks[index])
        for clip in test_clips
        for index, frame in enumerate(clip.frames)
    ]
    # ``map`` cancels the queued tasks once a result raises, so a corrupt file fails at once.
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        checked = pool.map(lambda item: _read_test_frame(*item, expected, expected), items)
        for done, _ in enumerate(checked, start=1):
            if progress is not None:
                progress(done, len(items), f"UCSD {scene}")


def _size_on_disk(path: Path) -> tuple[int, int]:
    """(height, width) of an image, from its header only."""
    with reading_image("UCSD", "frame", path), Image.open(path) as image:
        return image.height, image.width


def _parse_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """``image_size`` as (height, width); an int is a square."""
    if isinstance(image_size, tuple | list):
        if len(image_size) != 2:
            raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
        for side in image_size:
            _check_image_size(side)
        return int(image_size[0]), int(image_size[1])
    _check_image_size(image_size)
    return image_size, image_size


def _to_frames(pixels: Sequence[np.ndarray], size: tuple[int, int]) -> Tensor:
    """uint8 arrays (h, w) -> float32 (K, 1, h, w) in [0, 1] (stacked in uint8: 4x less peak
    memory than stacking floats)."""
    if not pixels:
        return torch.zeros(0, 1, *size)
    return torch.from_numpy(np.stack(pixels)).unsqueeze(1).float().div_(255.0)


def _clip_numbers(clips: Sequence[Clip]) -> Tensor:
    """(sum of frames,) int64: each frame's clip number."""
    return torch.tensor([clip.number for clip in clips for _ in clip.frames], dtype=torch.int64)


# --------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------


def load_ucsd(
    root: Path,
    image_size: int | tuple[int, int] = 100,
    val_clips: int = 3,
    scene: str = "UCSDped1",
    *,
    generator: torch.Generator | None = None,
    workers: int | None = None,
) -> VideoAnomalyData:
    """Decode one UCSD scene from ``<root>/<scene>`` (see the module doc for the layout).

    Frames are resized bilinearly with antialiasing to ``image_size`` (an int for a square,
    the reproduction used 100 or 96, or ``(height, width)``; a no-op at the native size);
    masks by nearest neighbour. ``val_clips`` whole training clips are held out for
    validation: the last ones (``generator`` None) or a random choice drawn from
    ``generator``; 0 holds none out. ``workers`` threads decode the files (default: one per
    CPU). See :class:`VideoAnomalyData` for the fields and their shapes.

    Raises ``ValueError`` for an unknown ``scene``, a bad ``image_size`` or ``val_clips``;
    ``DataNotFoundError`` for a missing root, scene, ``Train`` or ``Test`` folder, ``.m``
    file, or a clip, frame or mask missing from the numbering; ``DataFormatError`` for a
    malformed ``.m`` file or one inconsistent with the clips, a mask folder whose count
    differs from its clip's frames, an unreadable image, or a frame or mask of the wrong
    size. Each names the offending path.
    """
    size = _parse_size(image_size)
    if isinstance(val_clips, bool) or not isinstance(val_clips, int):
        raise ValueError(f"val_clips must be an int, got {val_clips!r}")
    train_clips, test_clips = check_ucsd(root, scene)
    if not 0 <= val_clips < len(train_clips):
        raise ValueError(
            f"val_clips must be in [0, {len(train_clips)}): {scene} has {len(train_clips)} "
            f"training clips and at least one must be left for training, got {val_clips}"
        )
    if generator is None:  # deterministic without a generator: the last clips
        held_out = set(range(len(train_clips) - val_clips, len(train_clips)))
    else:
        held_out = set(torch.randperm(len(train_clips), generator=generator)[:val_clips].tolist())
    fit = [clip for index, clip in enumerate(train_clips) if index not in held_out]
    val = [clip for index, clip in enumerate(train_clips) if index in held_out]

    # Every frame and mask must have the scene's size on disk; the first frame sets it.
    expected = _size_on_disk(train_clips[0].frames[0])
    read = partial(_read_frame, size=size, expected=expected)
    test_items = [
        (frame, None if clip.masks is None else clip.masks[index])
        for clip in test_clips
        for index, frame in enumerate(clip.frames)
    ]
    # ``map`` cancels the queued tasks once a result raises, so a corrupt file fails at once.
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        fit_pixels = list(pool.map(read, [frame for clip in fit for frame in clip.frames]))
        val_pixels = list(pool.map(read, [frame for clip in val for frame in clip.frames]))
        pairs = list(pool.map(lambda item: _read_test_frame(*item, size, expected), test_items))

    return VideoAnomalyData(
        train=_to_frames(fit_pixels, size),
        train_clip=_clip_numbers(fit),
        val=_to_frames(val_pixels, size),
        val_clip=_clip_numbers(val),
        test_frames=_to_frames([frame for frame, _ in pairs], size),
        test_labels=torch.cat([clip.labels for clip in test_clips if clip.labels is not None]),
        test_masks=torch.from_numpy(np.stack([mask for _, mask in pairs])),
        has_mask=torch.tensor(
            [clip.masks is not None for clip in test_clips for _ in clip.frames], dtype=torch.bool
        ),
        test_clip=_clip_numbers(test_clips),
        test_frame=torch.tensor(
            [index for clip in test_clips for index in range(1, len(clip.frames) + 1)],
            dtype=torch.int64,
        ),
        original_size=expected,
    )
