"""UCSD Anomaly Dataset loader on a tiny synthetic fixture in the real v1p2 layout
(vaecam.data.synthetic), the ``UCSDped1.m`` parser on tricky text, and one clear error per kind
of damaged copy. Offline, a few seconds."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaecam.data import DataFormatError, DataNotFoundError
from vaecam.data.synthetic import ANOMALY_GREY, anomalous_frames, anomaly_ranges, make_ucsd
from vaecam.data.ucsd import (
    SCENES,
    UCSD_URL,
    Clip,
    VideoAnomalyData,
    check_ucsd,
    load_ucsd,
    parse_gt_frames,
    verify_ucsd,
)

N_TRAIN, N_TEST, FRAMES = 4, 3, 12
H, W = 24, 36  # the fixture's native (height, width), like Ped1's 158x238 scaled down
NATIVE = (H, W)
MASKED = (1, 3)  # clip 2 (two anomalous intervals) has frame labels but no pixel masks
N_TEST_FRAMES = N_TEST * FRAMES


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention fixture shared by the tests that do not damage it."""
    return make_ucsd(
        tmp_path_factory.mktemp("ucsd"),
        n_train=N_TRAIN,
        n_test=N_TEST,
        frames=FRAMES,
        size=NATIVE,
        masked_clips=MASKED,
    )


@pytest.fixture(scope="module")
def native(root: Path) -> VideoAnomalyData:
    return load_ucsd(root, NATIVE, val_clips=1)


@pytest.fixture
def damaged(root: Path, tmp_path: Path) -> Path:
    """A private copy of the fixture to delete, corrupt or edit files in."""
    return Path(shutil.copytree(root, tmp_path / "ucsd"))


def scene(root: Path) -> Path:
    return root / "UCSDped1"


def pixels(path: Path) -> torch.Tensor:
    """An 8-bit image file as float32 (H, W) in [0, 1]."""
    return torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255.0)


def m_file(root: Path) -> Path:
    return scene(root) / "Test" / "UCSDped1.m"


def edit_m(root: Path, old: str, new: str) -> Path:
    path = m_file(root)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def test_shapes_dtypes_ranges(root: Path, native: VideoAnomalyData) -> None:
    data = native
    n_fit = (N_TRAIN - 1) * FRAMES
    assert data.train.shape == (n_fit, 1, H, W) and data.train_clip.shape == (n_fit,)
    assert data.val.shape == (FRAMES, 1, H, W) and data.val_clip.shape == (FRAMES,)
    assert data.test_frames.shape == (N_TEST_FRAMES, 1, H, W)
    assert data.test_masks.shape == (N_TEST_FRAMES, H, W)
    for vector in (data.test_labels, data.has_mask, data.test_clip, data.test_frame):
        assert vector.shape == (N_TEST_FRAMES,)
    assert data.train.dtype == data.val.dtype == data.test_frames.dtype == torch.float32
    assert data.test_labels.dtype == data.test_masks.dtype == data.has_mask.dtype == torch.bool
    assert data.train_clip.dtype == data.test_clip.dtype == data.test_frame.dtype == torch.int64
    assert data.original_size == NATIVE
    for frames in (data.train, data.val, data.test_frames):
        assert 0.0 <= frames.min() and frames.max() <= 1.0 and frames.std() > 0.05
    # Clips and frames in numerical order, frames numbered from 1 within each clip.
    assert data.test_clip.tolist() == [c for c in range(1, N_TEST + 1) for _ in range(FRAMES)]
    assert data.test_frame.tolist() == list(range(1, FRAMES + 1)) * N_TEST
    # At the native size the pixels are the file's bytes / 255 exactly.
    torch.testing.assert_close(data.train[0, 0], pixels(scene(root) / "Train/Train001/001.tif"))
    index = FRAMES + 6  # clip 2, frame 7
    torch.testing.assert_close(
        data.test_frames[index, 0], pixels(scene(root) / "Test/Test002/007.tif")
    )


def test_default_size_is_square_100(root: Path) -> None:
    data = load_ucsd(root)  # image_size=100, val_clips=3: the reproduction's setting
    assert data.train.shape == (FRAMES, 1, 100, 100)
    assert data.val.shape == (3 * FRAMES, 1, 100, 100)
    assert data.test_frames.shape == (N_TEST_FRAMES, 1, 100, 100)
    assert data.test_masks.shape == (N_TEST_FRAMES, 100, 100)
    assert data.original_size == NATIVE  # for metrics at the original resolution
    assert 0.0 <= data.train.min() and data.train.max() <= 1.0


def test_frame_labels_match_fixture(native: VideoAnomalyData) -> None:
    labels = native.test_labels.view(N_TEST, FRAMES)
    # Written out (1-based inclusive): clip 1 [5:9], clip 2 [2:4, 9:12], clip 3 [6].
    expected = {1: set(range(5, 10)), 2: {2, 3, 4, 9, 10, 11, 12}, 3: {6}}
    for clip, frames in expected.items():
        assert set((labels[clip - 1].nonzero().flatten() + 1).tolist()) == frames
        assert labels[clip - 1].tolist() == anomalous_frames(clip, FRAMES).tolist()


def test_masks_only_where_has_mask(root: Path, native: VideoAnomalyData) -> None:
    data = native
    assert data.has_mask.tolist() == [clip in MASKED for clip in data.test_clip.tolist()]
    # Clip 2 has anomalous frames but no masks: flagged, not scored as all-normal.
    assert (data.test_labels & ~data.has_mask).any()
    assert not data.test_masks[~data.has_mask].any()
    # In masked clips, a mask is non-empty exactly on the anomalous frames.
    masked = data.has_mask
    assert torch.equal(data.test_masks[masked].flatten(1).any(1), data.test_labels[masked])
    for index in masked.nonzero().flatten().tolist():
        clip, frame = int(data.test_clip[index]), int(data.test_frame[index])
        truth = pixels(scene(root) / f"Test/Test{clip:03d}_gt/{frame:03d}.bmp") > 0
        assert torch.equal(data.test_masks[index], truth)
        if truth.any():  # the anomaly blob is drawn exactly where its mask is
            inside = data.test_frames[index, 0][truth]
            assert torch.all(inside == ANOMALY_GREY / 255.0)


def test_validation_holds_out_whole_clips(root: Path) -> None:
    data = load_ucsd(root, NATIVE, val_clips=2)
    assert set(data.val_clip.tolist()) == {3, 4}  # without a generator: the last clips
    assert set(data.train_clip.tolist()) == {1, 2}
    assert data.train_clip.tolist() == [1] * FRAMES + [2] * FRAMES
    # Every frame of a validation clip is in val, none in train (frames carry noise: unique).
    for clip in (3, 4):
        folder = scene(root) / f"Train/Train{clip:03d}"
        clip_frames = torch.stack([pixels(folder / f"{t:03d}.tif") for t in range(1, FRAMES + 1)])
        assert torch.equal(data.val[data.val_clip == clip, 0], clip_frames)
        assert not (data.train[:, 0, None] == clip_frames[None]).flatten(2).all(2).any()


def test_validation_clips_from_a_generator(root: Path) -> None:
    draws = []
    for seed in range(6):
        data = load_ucsd(root, NATIVE, val_clips=2, generator=torch.Generator().manual_seed(seed))
        val, fit = set(data.val_clip.tolist()), set(data.train_clip.tolist())
        assert len(val) == 2 and not val & fit and val | fit == set(range(1, N_TRAIN + 1))
        assert len(data.val) == 2 * FRAMES and len(data.train) == 2 * FRAMES
        draws.append(tuple(sorted(val)))
    again = load_ucsd(root, NATIVE, val_clips=2, generator=torch.Generator().manual_seed(0))
    assert tuple(sorted(set(again.val_clip.tolist()))) == draws[0]  # reproducible
    assert len(set(draws)) > 1  # and really drawn


def test_val_clips_bounds(root: Path) -> None:
    data = load_ucsd(root, NATIVE, val_clips=0)
    assert data.val.shape == (0, 1, H, W) and data.val_clip.shape == (0,)
    assert len(data.train) == N_TRAIN * FRAMES
    for bad in (N_TRAIN, -1, True, 1.5):
        with pytest.raises(ValueError, match="val_clips"):
            load_ucsd(root, NATIVE, val_clips=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [(H // 2, W // 2), 16, (48, 72)])  # shrink, square, enlarge
def test_resize(root: Path, native: VideoAnomalyData, size: int | tuple[int, int]) -> None:
    data = load_ucsd(root, size, val_clips=1)
    height, width = (size, size) if isinstance(size, int) else size
    assert data.train.shape[1:] == (1, height, width)
    assert data.test_masks.shape[1:] == (height, width)
    assert 0.0 <= data.train.min() and data.train.max() <= 1.0
    # Masks by nearest neighbour at pixel centres: a 2x shrink keeps the odd pixels, a 2x
    # enlargement repeats each pixel in a 2x2 block; a blurred mask would fail both.
    if size == (H // 2, W // 2):
        assert torch.equal(data.test_masks, native.test_masks[:, 1::2, 1::2])
    if size == (48, 72):
        enlarged = native.test_masks.repeat_interleave(2, 1).repeat_interleave(2, 2)
        assert torch.equal(data.test_masks, enlarged)
    assert torch.equal(data.test_masks.flatten(1).any(1), native.test_masks.flatten(1).any(1))
    # Frames are resampled smoothly (antialiased): each frame's mean brightness is kept.
    torch.testing.assert_close(
        data.test_frames.mean(dim=(1, 2, 3)),
        native.test_frames.mean(dim=(1, 2, 3)),
        atol=0.02,
        rtol=0,
    )


def test_deterministic(root: Path, native: VideoAnomalyData) -> None:
    again = load_ucsd(root, NATIVE, val_clips=1, workers=1)
    for name, value in native._asdict().items():
        other = getattr(again, name)
        assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other


def test_stray_files_ignored(damaged: Path, native: VideoAnomalyData) -> None:
    """Archive and OS debris beside the frames changes nothing."""
    base = scene(damaged)
    (base / "Train" / "Train001" / "._001.tif").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (base / "Train" / "Train001" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (base / "Train" / "._Train001").write_bytes(b"\x00\x05\x16\x07")
    (base / "Test" / "Test002" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (base / "Test" / "Test001_gt" / "._003.bmp").write_bytes(b"\x00\x05\x16\x07")
    (base / "Test" / "Test001_gt" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (base / "Test" / "Test001" / "notes.txt").write_text("not a frame")
    (base / "Test" / "Test001" / "001.bmp").write_bytes(b"not a frame either")
    (base / "Test" / "._Test001_gt").write_bytes(b"\x00\x05\x16\x07")
    (base / "Test" / "Test002.avi").write_bytes(b"RIFF")
    (damaged / ".DS_Store").write_bytes(b"\x00")
    data = load_ucsd(damaged, NATIVE, val_clips=1)
    for name, value in native._asdict().items():
        other = getattr(data, name)
        assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other


def encode(mask: np.ndarray, encoding: str) -> Image.Image:
    """A bool mask (H, W) as a 1-bit, 0/1-valued gray, palette or RGB image."""
    if encoding == "1-bit":
        return Image.fromarray(mask)
    if encoding == "0/1 gray":
        return Image.fromarray(mask.astype(np.uint8), "L")
    if encoding == "palette":  # index 1 is white; an unused red entry keeps it a colour palette
        image = Image.fromarray(mask.astype(np.uint8), "P")
        image.putpalette([0, 0, 0, 255, 255, 255, 255, 0, 0])
        return image
    return Image.fromarray(mask.astype(np.uint8) * 255, "L").convert("RGB")


@pytest.mark.parametrize("encoding", ["1-bit", "0/1 gray", "palette", "RGB"])
def test_mask_encodings(damaged: Path, native: VideoAnomalyData, encoding: str) -> None:
    """A mask stored another way (1-bit, values 0/1, palette, RGB) reads the same."""
    for path in (scene(damaged) / "Test" / "Test001_gt").glob("*.bmp"):
        image = encode(np.asarray(Image.open(path)) > 0, encoding)
        image.save(path)
        assert Image.open(path).mode == image.mode
    data = load_ucsd(damaged, NATIVE, val_clips=1)
    assert torch.equal(data.test_masks, native.test_masks)


def test_check_ucsd_finds_without_decoding(damaged: Path) -> None:
    frame = scene(damaged) / "Train" / "Train002" / "004.tif"
    frame.write_bytes(b"garbage")  # only decoding notices this: check_ucsd must not
    train, test = check_ucsd(damaged)
    assert [clip.number for clip in train] == list(range(1, N_TRAIN + 1))
    assert [clip.number for clip in test] == list(range(1, N_TEST + 1))
    assert all(isinstance(clip, Clip) and clip.labels is None for clip in train)
    assert train[1].frames[3] == frame and len(train[1].frames) == FRAMES
    assert [clip.masks is not None for clip in test] == [c in MASKED for c in (1, 2, 3)]
    assert test[0].masks is not None and test[0].masks[0].name == "001.bmp"
    assert test[1].labels is not None
    assert test[1].labels.tolist() == anomalous_frames(2, FRAMES).tolist()
    with pytest.raises(DataFormatError, match=re.escape(str(frame))):
        load_ucsd(damaged, NATIVE)


def test_ped2_scene(tmp_path: Path) -> None:
    root = make_ucsd(tmp_path, n_train=2, n_test=2, frames=6, size=(12, 18), scene="UCSDped2")
    data = load_ucsd(root, 8, val_clips=1, scene="UCSDped2")
    assert data.train.shape == (6, 1, 8, 8) and data.original_size == (12, 18)
    assert "UCSDped1" in SCENES and "UCSDped2" in SCENES


# --------------------------------------------------------------------------------------------
# The .m parser
# --------------------------------------------------------------------------------------------


def test_parse_gt_frames_of_fixture(root: Path) -> None:
    expected = {clip: anomaly_ranges(clip, FRAMES) for clip in range(1, N_TEST + 1)}
    assert parse_gt_frames(m_file(root).read_text()) == expected
    assert expected[2] == ((2, 4), (9, 12)) and expected[3] == ((6, 6),)


def test_parse_tricky_text() -> None:
    text = "\r\n".join(
        [
            "% UCSD Ped1 frame-level ground truth  [not: an entry{1} = [1:2];]",
            "TestDataset = {};   % header",
            "TestDataset.gt_frame = cell(1, 36);",
            "",
            "TestDataset.gt_frame{1} = [60:152];",
            "  TestDataset.gt_frame{ 2 }=[ 50 : 175 ]   % no semicolon",
            "\tTestDataset.gt_frame{3} = [7];",
            "TestDataset.gt_frame{4} = [31:168, 172:200];",
            "TestDataset.gt_frame{5} = [1:3 9,  12 :14 ];  % spaces separate elements too",
            "TestDataset.gt_frame{6} = 42;",
            "TestDataset.gt_frame{7} = 5:8;",
            "TestDataset.gt_frame{8} = [];",
            "TestDataset . gt_frame {10} = [ 1:200 ] ;",
            "gt_frame{9} = [3:4, 3:6];",
            "TestDataset.name = 'UCSDped1';",
        ]
    )
    assert parse_gt_frames(text) == {
        1: ((60, 152),),
        2: ((50, 175),),
        3: ((7, 7),),
        4: ((31, 168), (172, 200)),
        5: ((1, 3), (9, 9), (12, 14)),
        6: ((42, 42),),
        7: ((5, 8),),
        8: (),
        10: ((1, 200),),
        9: ((3, 4), (3, 6)),
    }


@pytest.mark.parametrize(
    "line",
    [
        "TestDataset.gt_frame{2} = [5:];",
        "TestDataset.gt_frame{2} = [a:b];",
        "TestDataset.gt_frame{2} = [9:5];",  # reversed: empty in MATLAB, a typo here
        "TestDataset.gt_frame{2} = [0:4];",  # frames are 1-based
        "TestDataset.gt_frame{2} = [1:2:9];",  # a stepped range is not a frame range
        "TestDataset.gt_frame{2} = [1:4,,6:8];",
        "TestDataset.gt_frame{2} = [1:4",  # unclosed
        "TestDataset.gt_frame{2} = 1:4, 6:8;",  # without brackets these are two statements
        "TestDataset.gt_frame(2) = [1:4];",
        "TestDataset.gt_frame{0} = [1:4];",
        "TestDataset.gt_frame{} = [1:4];",
        "TestDataset.gt_frame = {[1:4], [5:6]};",
        "[60:152];",
        "garbage here",
    ],
)
def test_parse_malformed_names_source_and_line(line: str) -> None:
    text = f"TestDataset.gt_frame{{1}} = [1:3];\n{line}\n"
    with pytest.raises(DataFormatError) as error:
        parse_gt_frames(text, "some/UCSDped1.m")
    message = str(error.value)
    assert "some/UCSDped1.m, line 2" in message and line.strip() in message


def test_parse_duplicate_clip() -> None:
    text = "TestDataset.gt_frame{1} = [1:3];\n% x\nTestDataset.gt_frame{1} = [4:5];\n"
    with pytest.raises(DataFormatError, match=r"x\.m, line 3.*already labelled on line 1"):
        parse_gt_frames(text, "x.m")


def test_parse_empty_text() -> None:
    assert parse_gt_frames("% nothing\n\n") == {}


# --------------------------------------------------------------------------------------------
# Errors: each names the offending path
# --------------------------------------------------------------------------------------------


def test_unknown_scene_and_bad_size(root: Path) -> None:
    with pytest.raises(ValueError, match="'UCSDped3'.*UCSDped1, UCSDped2"):
        load_ucsd(root, NATIVE, scene="UCSDped3")
    for size in (0, -4, (24,), (0, 5), (24, 36, 1), 2.5, True):
        with pytest.raises(ValueError, match="image_size"):
            load_ucsd(root, size)  # type: ignore[arg-type]


def test_missing_root(tmp_path: Path) -> None:
    absent = tmp_path / "absent"
    with pytest.raises(DataNotFoundError) as error:
        load_ucsd(absent)
    assert str(absent) in str(error.value) and UCSD_URL in str(error.value)


@pytest.mark.parametrize("missing", ["UCSDped1", "UCSDped1/Train", "UCSDped1/Test"])
def test_missing_folder(damaged: Path, missing: str) -> None:
    path = damaged / missing
    shutil.rmtree(path)
    with pytest.raises(DataNotFoundError) as error:
        load_ucsd(damaged, NATIVE)
    message = str(error.value)
    assert str(path) in message and UCSD_URL in message
    assert "UCSDped1/Train/Train001/001.tif" in message and "UCSDped1.m" in message


def test_root_is_the_scene_folder(root: Path) -> None:
    with pytest.raises(DataNotFoundError, match=f"pass its parent {re.escape(str(root))}"):
        load_ucsd(scene(root), NATIVE)


def test_no_clip_folders(damaged: Path) -> None:
    train = scene(damaged) / "Train"
    for folder in train.iterdir():
        shutil.rmtree(folder)
    with pytest.raises(DataNotFoundError, match=re.escape(str(train / "Train001"))):
        load_ucsd(damaged, NATIVE)


def test_missing_clip_folder(damaged: Path) -> None:
    shutil.rmtree(scene(damaged) / "Train" / "Train002")
    with pytest.raises(DataNotFoundError) as error:
        load_ucsd(damaged, NATIVE)
    assert str(scene(damaged) / "Train" / "Train002") in str(error.value)


@pytest.mark.parametrize("clip", ["Train/Train002", "Test/Test003"])
def test_missing_frame(damaged: Path, clip: str) -> None:
    folder = scene(damaged) / clip
    (folder / "005.tif").unlink()
    (folder / "008.tif").unlink()
    with pytest.raises(DataNotFoundError) as error:
        load_ucsd(damaged, NATIVE)
    message = str(error.value)
    assert f"{folder} lacks frame 5, {folder / '005.tif'} (and 1 more)" in message


def test_empty_clip(damaged: Path) -> None:
    folder = scene(damaged) / "Test" / "Test002"
    for frame in folder.iterdir():
        frame.unlink()
    with pytest.raises(DataNotFoundError, match=f"no frames .* in {re.escape(str(folder))}"):
        load_ucsd(damaged, NATIVE)


def test_duplicate_frame_number(damaged: Path) -> None:
    folder = scene(damaged) / "Train" / "Train001"
    shutil.copy(folder / "003.tif", folder / "3.tif")
    with pytest.raises(DataFormatError, match=f"{re.escape(str(folder))} has two frames.*3"):
        load_ucsd(damaged, NATIVE)


@pytest.mark.parametrize("change", ["delete last", "add one"])
def test_mask_count_mismatch(damaged: Path, change: str) -> None:
    gt = scene(damaged) / "Test" / "Test003_gt"
    if change == "delete last":
        (gt / f"{FRAMES:03d}.bmp").unlink()
        count = FRAMES - 1
    else:
        shutil.copy(gt / "001.bmp", gt / f"{FRAMES + 1:03d}.bmp")
        count = FRAMES + 1
    with pytest.raises(DataFormatError) as error:
        load_ucsd(damaged, NATIVE)
    message = str(error.value)
    assert str(gt) in message and f"{count} masks" in message and f"{FRAMES} frames" in message


def test_mask_gap(damaged: Path) -> None:
    gt = scene(damaged) / "Test" / "Test001_gt"
    (gt / "004.bmp").unlink()
    with pytest.raises(DataNotFoundError, match=re.escape(f"lacks mask 4, {gt / '004.bmp'}")):
        load_ucsd(damaged, NATIVE)


def test_mask_folder_without_clip(damaged: Path) -> None:
    orphan = scene(damaged) / "Test" / "Test009_gt"
    shutil.copytree(scene(damaged) / "Test" / "Test001_gt", orphan)
    with pytest.raises(DataFormatError, match=re.escape(str(orphan))):
        load_ucsd(damaged, NATIVE)


def test_malformed_m_file(damaged: Path) -> None:
    path = edit_m(damaged, "gt_frame{2} = [2:4, 9:12];", "gt_frame{2} = [2:4; 9:12];")
    with pytest.raises(DataFormatError) as error:
        load_ucsd(damaged, NATIVE)
    assert f"{path}, line 4" in str(error.value) and "[2:4; 9:12]" in str(error.value)


def test_m_file_lacks_a_clip(damaged: Path) -> None:
    path = edit_m(damaged, "TestDataset.gt_frame{2} = [2:4, 9:12];\n", "")
    with pytest.raises(DataFormatError) as error:
        load_ucsd(damaged, NATIVE)
    message = str(error.value)
    assert str(path) in message and str(scene(damaged) / "Test" / "Test002") in message


def test_m_file_beyond_clip_length(damaged: Path) -> None:
    path = edit_m(damaged, "gt_frame{3} = [6];", f"gt_frame{{3}} = [6:{FRAMES + 1}];")
    with pytest.raises(DataFormatError) as error:
        load_ucsd(damaged, NATIVE)
    message = str(error.value)
    assert f"{path}, line 5" in message and f"up to {FRAMES + 1}" in message
    assert f"{scene(damaged) / 'Test' / 'Test003'} has {FRAMES} frames" in message


def test_m_file_labels_absent_clip(damaged: Path) -> None:
    path = m_file(damaged)
    path.write_text(path.read_text() + "TestDataset.gt_frame{4} = [1:2];\n")
    with pytest.raises(DataFormatError) as error:
        load_ucsd(damaged, NATIVE)
    message = str(error.value)
    assert f"{path}, line 6" in message and str(scene(damaged) / "Test" / "Test004") in message


def test_m_file_missing(damaged: Path) -> None:
    path = m_file(damaged)
    path.unlink()
    with pytest.raises(DataNotFoundError, match=re.escape(str(path))):
        load_ucsd(damaged, NATIVE)


@pytest.mark.parametrize(
    "relative",
    [
        "Train/Train001/001.tif",  # the first frame, whose header sets the scene's size
        "Train/Train003/007.tif",
        "Test/Test002/012.tif",
        "Test/Test001_gt/006.bmp",
    ],
)
@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_unreadable_image(damaged: Path, relative: str, damage: str) -> None:
    path = scene(damaged) / relative
    data = path.read_bytes()
    path.write_bytes(
        {"garbage": b"not an image" * 10, "truncated": data[: len(data) // 2]}.get(damage, b"")
    )
    with pytest.raises(DataFormatError) as error:
        load_ucsd(damaged, NATIVE)
    assert str(path) in str(error.value)


def test_sixteen_bit_frame_refused(damaged: Path) -> None:
    path = scene(damaged) / "Test" / "Test001" / "002.tif"
    Image.fromarray(np.full((H, W), 40000, dtype=np.uint16)).save(path)
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + ".*mode") as error:
        load_ucsd(damaged, NATIVE)
    assert "corrupt" not in str(error.value)  # not wrapped as a decoding failure


def test_mask_size_mismatch(damaged: Path) -> None:
    mask = scene(damaged) / "Test" / "Test001_gt" / "003.bmp"
    Image.open(mask).resize((W, H + 4)).save(mask)
    with pytest.raises(DataFormatError) as error:
        load_ucsd(damaged, 16)  # resized or not, the sizes must agree on disk
    message = str(error.value)
    assert str(mask) in message and f"{W}x{H + 4}" in message and f"{W}x{H}" in message
    assert str(scene(damaged) / "Test" / "Test001" / "003.tif") in message


def test_frame_size_mismatch(damaged: Path) -> None:
    frame = scene(damaged) / "Test" / "Test002" / "004.tif"
    Image.open(frame).resize((W + 2, H)).save(frame)
    with pytest.raises(DataFormatError) as error:
        load_ucsd(damaged, 16)
    message = str(error.value)
    assert str(frame) in message and f"{W + 2}x{H}" in message and f"{W}x{H}" in message


def test_verify_decodes_every_frame_and_mask_and_names_a_broken_one(tmp_path: Path) -> None:
    root = make_ucsd(tmp_path / "ucsd", n_test=3, masked_clips=(1,))
    seen: list[tuple[int, int]] = []
    verify_ucsd(root, progress=lambda done, total, what: seen.append((done, total)))
    assert seen[-1][0] == seen[-1][1] == len(seen)  # every file, counted
    mask = sorted((root / "UCSDped1" / "Test" / "Test001_gt").glob("*.bmp"))[3]
    mask.write_bytes(mask.read_bytes()[:40])  # truncated: the header alone passes a listing
    with pytest.raises(DataFormatError, match=re.escape(str(mask))):
        verify_ucsd(root)
