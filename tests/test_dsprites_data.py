"""dSprites behind the ground-truth interface: the real file's layout on a tiny fake npz, and the
procedural generator's calibrated sizes. Offline and fast; nothing from ../shared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vaecam.data import DataFormatError, DataNotFoundError, dsprites
from vaecam.data.dsprites import (
    FACTORS_NUM_VALUES,
    NPZ_NAME,
    DSpritesNpz,
    DSpritesProcedural,
    GroundTruthData,
)
from vaecam.experiments.datasets import ground_truths

FAKE_SIZES = (1, 2, 3, 4, 3, 2)  # colour, shape, scale, orientation, pos x, pos y: 144 images
SQUARE, ELLIPSE, HEART = range(3)
BIG, SMALL = 5, 0  # scale indices of scale 1 and scale 0.5


def write_fake_npz(path: Path, sizes: tuple[int, ...] = FAKE_SIZES) -> np.ndarray:
    """A dSprites-shaped npz with the real keys: image k shows k in binary in its first row,
    ``latents_classes`` is the row-major grid, and ``metadata`` is a pickled dict, as in the
    real file (so reading it would need pickle). Returns ``latents_classes``."""
    n = int(np.prod(sizes))
    classes = np.stack(np.unravel_index(np.arange(n), sizes), axis=1).astype(np.int64)
    imgs = np.zeros((n, 64, 64), np.uint8)
    imgs[:, 0, :16] = (np.arange(n)[:, None] >> np.arange(16)) & 1
    imgs[:, 63, 63] = 1  # a corner pixel, so a wrong bit-packing width would show
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        imgs=imgs,
        latents_classes=classes,
        latents_values=classes.astype(np.float64),
        metadata=np.array({"latents_sizes": np.array(sizes)}, dtype=object),
    )
    return classes


def decode(images: np.ndarray) -> np.ndarray:
    """The numbers written by ``write_fake_npz`` back from images (num, 1, 64, 64)."""
    return (images[:, 0, 0, :16].astype(np.int64) << np.arange(16)).sum(axis=1)


@pytest.fixture(scope="module")
def procedural() -> DSpritesProcedural:
    return DSpritesProcedural()


def render_one(data: DSpritesProcedural, *factors: int) -> np.ndarray:
    return data.render(np.array([factors]))[0]


def extent(image: np.ndarray) -> tuple[int, int]:
    """(width, height) in pixels of the "on" pixels' bounding box."""
    rows, cols = np.nonzero(image)
    return int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)


def centroid(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(image)
    return float(cols.mean()), float(rows.mean())


# --------------------------------------------------------------------------------------------
# The interface, on both forms
# --------------------------------------------------------------------------------------------


@pytest.fixture
def fake(tmp_path: Path) -> DSpritesNpz:
    write_fake_npz(tmp_path / "dsprites" / NPZ_NAME)
    return DSpritesNpz(tmp_path)


@pytest.mark.parametrize("form", ["procedural", "npz"])
@pytest.mark.parametrize("random_state", [np.random.RandomState(0), np.random.default_rng(0)])
def test_interface_shapes_dtypes_and_ranges(form, random_state, procedural, fake):
    data = procedural if form == "procedural" else fake
    sizes = list(FACTORS_NUM_VALUES) if form == "procedural" else list(FAKE_SIZES[1:])
    assert isinstance(data, GroundTruthData)
    assert data.num_factors == 5 and data.factors_num_values == sizes
    assert data.observation_shape == (1, 64, 64)

    factors, images = data.sample(200, random_state)
    assert factors.shape == (200, 5) and factors.dtype == np.int64
    assert (factors >= 0).all() and (factors < np.array(sizes)).all()
    assert images.shape == (200, 1, 64, 64) and images.dtype == np.float32
    assert set(np.unique(images)) <= {0.0, 1.0} and images.sum() > 0
    assert data.sample_observations(3, random_state).shape == (3, 1, 64, 64)
    assert data.sample_factors(0, random_state).shape == (0, 5)
    # Every value of every factor turns up in 2000 uniform draws (the largest has 40 values).
    many = data.sample_factors(2000, random_state)
    assert [len(np.unique(column)) for column in many.T] == sizes


@pytest.mark.parametrize("form", ["procedural", "npz"])
def test_observations_are_deterministic(form, procedural, fake):
    data = procedural if form == "procedural" else fake
    factors = data.sample_factors(32, np.random.RandomState(1))
    first = data.sample_observations_from_factors(factors, np.random.RandomState(2))
    again = data.sample_observations_from_factors(factors, np.random.default_rng(3))
    np.testing.assert_array_equal(first, again)


def test_invalid_factors_are_refused(procedural):
    with pytest.raises(ValueError, match="outside 0..2"):
        procedural.render(np.array([[3, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match=r"\(num, 5\)"):
        procedural.render(np.zeros((2, 6), np.int64))
    with pytest.raises(ValueError, match="integer"):
        procedural.render(np.zeros((2, 5)))


# --------------------------------------------------------------------------------------------
# Index <-> factors, in the real file's order
# --------------------------------------------------------------------------------------------


def test_index_order_is_the_real_files(procedural):
    # Row-major over [colour(1), shape(3), scale(6), orientation(40), pos x(32), pos y(32)].
    cases = {
        (0, 0, 0, 0, 1): 1,
        (0, 0, 0, 1, 0): 32,
        (0, 0, 1, 0, 0): 32 * 32,
        (0, 1, 0, 0, 0): 40 * 32 * 32,
        (1, 0, 0, 0, 0): 6 * 40 * 32 * 32,
        (2, 5, 39, 31, 31): 737_279,
    }
    index = procedural.factors_to_index(np.array(list(cases)))
    np.testing.assert_array_equal(index, list(cases.values()))
    assert procedural.num_images == 737_280
    factors = procedural.sample_factors(1000, np.random.RandomState(0))
    np.testing.assert_array_equal(
        procedural.index_to_factors(procedural.factors_to_index(factors)), factors
    )
    everything = np.arange(procedural.num_images)
    np.testing.assert_array_equal(
        procedural.factors_to_index(procedural.index_to_factors(everything)), everything
    )
    with pytest.raises(ValueError):
        procedural.index_to_factors(np.array([737_280]))


def test_npz_rows_agree_with_factors(tmp_path):
    path = tmp_path / "elsewhere.npz"
    classes = write_fake_npz(path)
    data = DSpritesNpz(path)  # a file path works as well as a root
    n = len(classes)
    assert data.num_images == n and data.factors_num_values == list(FAKE_SIZES[1:])
    np.testing.assert_array_equal(data.factors_to_index(classes[:, 1:]), np.arange(n))
    np.testing.assert_array_equal(data.index_to_factors(np.arange(n)), classes[:, 1:])
    # The image returned for factors is the file's row for them.
    order = np.random.RandomState(0).permutation(n)
    images = data.sample_observations_from_factors(classes[order, 1:], np.random.RandomState(0))
    np.testing.assert_array_equal(decode(images), order)
    # Nothing but the written pixels: the bits of each number, and the corner pixel.
    bits = sum(bin(k).count("1") for k in range(n))
    assert (images[:, 0, 63, 63] == 1).all() and images.sum() == bits + n


def test_npz_images_streamed_in_chunks(tmp_path, monkeypatch):
    # Reads of 10 images: 14 full chunks and a partial one, packed into place.
    monkeypatch.setattr(dsprites, "_READ_CHUNK_BYTES", 10 * 64 * 64)
    classes = write_fake_npz(tmp_path / "chunked.npz")
    data = DSpritesNpz(tmp_path / "chunked.npz")
    n = len(classes)
    np.testing.assert_array_equal(decode(data.images(np.arange(n))[:, None]), np.arange(n))


def test_npz_registry_factory_reads_root_layout(tmp_path):
    write_fake_npz(tmp_path / "dsprites" / NPZ_NAME)
    data = ground_truths()["dsprites"](tmp_path)
    assert isinstance(data, DSpritesNpz)
    assert data.path == tmp_path / "dsprites" / NPZ_NAME


def test_missing_npz_names_path_source_and_alternative(tmp_path):
    expected = tmp_path / "dsprites" / NPZ_NAME
    for attempt in (lambda: DSpritesNpz(tmp_path), lambda: ground_truths()["dsprites"](tmp_path)):
        with pytest.raises(DataNotFoundError) as error:
            attempt()
        message = str(error.value)
        assert str(expected.resolve()) in message
        assert "github.com/deepmind/dsprites-dataset" in message
        assert "dsprites_procedural" in message


def test_npz_out_of_grid_order_is_refused(tmp_path):
    path = tmp_path / "shuffled.npz"
    classes = write_fake_npz(path)
    with np.load(path, allow_pickle=True) as npz:
        arrays = dict(npz)
    arrays["latents_classes"] = classes[np.random.RandomState(0).permutation(len(classes))]
    np.savez(path, **arrays)
    with pytest.raises(DataFormatError, match="row-major grid"):
        DSpritesNpz(path)
    arrays["latents_classes"] = np.concatenate([classes, classes[:1]])  # one row too many
    np.savez(path, **arrays)
    with pytest.raises(DataFormatError, match="row-major grid"):
        DSpritesNpz(path)


def test_npz_with_several_colours_is_refused(tmp_path):
    path = tmp_path / "colours.npz"
    write_fake_npz(path, sizes=(2, 1, 1, 2, 2, 2))
    with pytest.raises(DataFormatError, match="colour"):
        DSpritesNpz(path)


def test_registry_names(procedural):
    assert sorted(ground_truths()) == ["dsprites", "dsprites_procedural"]
    assert isinstance(
        ground_truths()["dsprites_procedural"](Path("/nonexistent")), DSpritesProcedural
    )
    with pytest.raises(KeyError, match="valid names: dsprites, dsprites_procedural"):
        ground_truths()["dsprites_colour"]


# --------------------------------------------------------------------------------------------
# The generator's calibration (measured on the real frames: ../shared/data/README.md)
# --------------------------------------------------------------------------------------------


def test_square_sides_and_orientation_zero_axis_aligned(procedural):
    for scale, side in enumerate((10, 12, 14, 16, 18, 20)):
        image = render_one(procedural, SQUARE, scale, 0, 0, 0)
        assert extent(image) == (side, side)
        assert image.sum() == side * side  # a solid axis-aligned square
    # Rotated, the real squares are a little smaller than axis-aligned (368, not 400 pixels).
    rotated = render_one(procedural, SQUARE, BIG, 5, 0, 0)
    assert 355 <= rotated.sum() <= 380


def test_ellipse_size_at_scale_one(procedural):
    image = render_one(procedural, ELLIPSE, BIG, 0, 0, 0)
    assert extent(image) == (26, 14)  # long axis horizontal at orientation 0
    assert abs(int(image.sum()) - 288) <= 6


def test_heart_size_and_point_down(procedural):
    big = render_one(procedural, HEART, BIG, 0, 0, 0)
    assert extent(big) == (20, 17) and abs(int(big.sum()) - 222) <= 4
    small = render_one(procedural, HEART, SMALL, 0, 0, 0)
    assert extent(small) == (10, 9) and abs(int(small.sum()) - 58) <= 3
    rows = np.flatnonzero(big.any(axis=1))
    widths = big[rows].sum(axis=1)
    assert widths[-1] <= 2 and widths[0] >= 8  # a point at the bottom, two lobes at the top
    assert centroid(big)[1] < (rows[0] + rows[-1]) / 2  # the mass is in the upper lobes


def test_rotation_is_counter_clockwise_on_screen(procedural):
    # Ten steps are 92 degrees: the ellipse stands up, and the heart's point turns from
    # down to right (counter-clockwise as seen), so its lobes' mass moves left of centre.
    width, height = extent(render_one(procedural, ELLIPSE, BIG, 10, 0, 0))
    assert height > width
    x, y = centroid(render_one(procedural, HEART, BIG, 10, 0, 0))
    assert x < 15.5 - 1 and abs(y - 15.5) < 1
    # Orientation 39 is 2 pi, the same image as 0, as in dSprites.
    for shape in (SQUARE, ELLIPSE, HEART):
        np.testing.assert_array_equal(
            render_one(procedural, shape, BIG, 0, 7, 9),
            render_one(procedural, shape, BIG, 39, 7, 9),
        )


def test_position_steps_of_about_one_pixel(procedural):
    steps = np.arange(32)
    along_x = procedural.render(np.stack([[SQUARE, BIG, 0, k, 0] for k in steps]))
    along_y = procedural.render(np.stack([[SQUARE, BIG, 0, 0, k] for k in steps]))
    xs = np.array([centroid(image)[0] for image in along_x])
    ys = np.array([centroid(image)[1] for image in along_y])
    for centres in (xs, ys):
        assert centres[0] == pytest.approx(15.5) and centres[-1] == pytest.approx(47.5)
        assert (centres[-1] - centres[0]) / 31 == pytest.approx(1.03, abs=0.01)
        assert (np.diff(centres) >= 0.5).all() and (np.diff(centres) <= 1.5).all()
    # x is the column and y the row: moving in x leaves the rows alone.
    assert all(centroid(image)[1] == pytest.approx(15.5) for image in along_x)
    # The shape stays whole at the far corner.
    far = render_one(procedural, SQUARE, BIG, 0, 31, 31)
    assert far.sum() == 400 and far[:, -1].sum() == 0 and far[-1].sum() == 0
