"""dSprites behind disentanglement_lib's ground-truth interface: the real file, or a generator.

The FactorVAE metric (PAPER.md section 5) needs a dataset that can draw factor vectors and
render the images they describe. :class:`GroundTruthData` is that interface, as in
google-research/disentanglement_lib (``data/ground_truth/ground_truth_data.py``); two
interchangeable implementations give dSprites (Matthey et al. 2017) through it:

* :class:`DSpritesNpz`: the real ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (26 MB,
  from ``DSPRITES_URL``) at ``<root>/dsprites/``, looked up by index;
* :class:`DSpritesProcedural`: renders any factor combination itself, calibrated against the
  real frames of the dataset's animation (see "Calibration" below); no file needed.

Each is built by a uniform ``(root) -> GroundTruthData`` factory, ``from_root``, which the
datasets ``dsprites`` and ``dsprites_procedural`` (:mod:`vaecam.experiments.dsprites`) are:

>>> data = DSpritesProcedural.from_root(Path("unused"))
>>> factors, images = data.sample(4, np.random.RandomState(0))
>>> factors.shape, images.shape, images.dtype.name
((4, 5), (4, 1, 64, 64), 'float32')

Factors. The file's ``latents_classes`` has six columns, [colour(1), shape(3), scale(6),
orientation(40), pos x(32), pos y(32)], and its ``imgs`` run through them in row-major order
(the last varies fastest). Colour is constant, so it is not a factor: the five latent factors
are shape, scale, orientation, pos x, pos y (``FACTOR_NAMES``, ``FACTORS_NUM_VALUES``), exactly
disentanglement_lib's ``DSprites`` (the reproduction counted colour as a factor; PAPER.md
section 5 says not to). ``factors_to_index`` / ``index_to_factors`` map between factor vectors
and rows of the real file (colour 0), in both implementations.

Calibration (fitted on the 320 real 64x64 frames of the dataset's ``dsprites.gif``; the fit is
checked by ``bench/dsprites_fidelity.py``). A pixel is on iff its centre lies inside the shape:
point sampling, no anti-aliasing (at the frames' own factors, 218 of the 320 come out pixel for
pixel and none is off by more than 5 pixels; thresholding supersampled coverage fits worse).
Pixel (row i, column j) has its centre at (x, y) = (j, i), y pointing down. A shape with factor
values (scale s, orientation t, positions px, py in [0, 1]) is the body shape below, scaled by
s, rotated counter-clockwise *on screen* by t, with its origin at
(x, y) = (15.5 + 32 px, 15.5 + 32 py): 32 steps of 32/31 = 1.03 px, centres 15.5 ... 47.5. We
take pos x as the column and pos y as the row (down); the GIF cannot tell which of the file's
two position factors is which, and the metric does not care. Body shapes, in pixels at scale 1,
v pointing up:

* square: |u|, |v| < 9.6 (= 0.15 * 64): 20 px across when axis-aligned, but 19.2 wide when
  rotated (the rotated frames have 368 pixels, not 400);
* ellipse: (u / 12.76)^2 + (v / 7.22)^2 < 1: 26 x 14 px, 288 pixels at orientation 0;
* heart: the classic parametric heart curve u = 9.6 sin^3 w,
  v = 0.663 (13 cos w - 5 cos 2w - 2 cos 3w - cos 4w) + 1.44 (w in [0, 2 pi)), point down:
  20 x 17 px, 222 pixels at scale 1; 10 x 9 px, 58 pixels at scale 0.5.
"""

from __future__ import annotations

import abc
import zipfile
from pathlib import Path
from typing import TypeAlias

import numpy as np

from vaecam.data import DataFormatError, DataNotFoundError, DataSource

__all__ = [
    "DSPRITES_URL",
    "ELLIPSE_SEMI_AXES",
    "FIRST_CENTRE",
    "HEART_HALF_WIDTH",
    "HEART_V_OFFSET",
    "HEART_V_SCALE",
    "POSITION_SPAN",
    "SQUARE_HALF_SIDE",
    "DSpritesNpz",
    "DSpritesProcedural",
    "FACTORS_NUM_VALUES",
    "FACTOR_NAMES",
    "GroundTruthData",
    "IMAGE_SIZE",
    "NPZ_NAME",
    "NPZ_URL",
    "ORIENTATIONS",
    "POSITIONS",
    "RandomState",
    "SCALES",
    "SHAPES",
]

#: Either numpy random API: disentanglement_lib passes ``RandomState``s, new code ``Generator``s.
RandomState: TypeAlias = np.random.RandomState | np.random.Generator

NPZ_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
DSPRITES_URL = "https://github.com/deepmind/dsprites-dataset"
NPZ_URL = f"{DSPRITES_URL}/raw/master/{NPZ_NAME}"
IMAGE_SIZE = 64

FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTORS_NUM_VALUES = (3, 6, 40, 32, 32)
SHAPES = ("square", "ellipse", "heart")  # shape index 0, 1, 2, as in dSprites
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2 * np.pi, 40)  # as in dSprites: 0 and 2 pi are both present
POSITIONS = np.linspace(0.0, 1.0, 32)

# The file's six columns: colour is column 0 and constant; the latent factors are the rest.
_FILE_COLUMNS = 6
_LATENT_COLUMNS = slice(1, None)

# Calibration, in pixels at scale 1 (module docstring; bench/dsprites_fidelity.py checks it).
SQUARE_HALF_SIDE = 9.6
ELLIPSE_SEMI_AXES = (12.76, 7.22)  # along u (horizontal at orientation 0), along v
HEART_HALF_WIDTH = 9.6
HEART_V_SCALE = 0.663
HEART_V_OFFSET = 1.44
FIRST_CENTRE = 15.5  # pixel coordinate of position 0 (pixel i has its centre at i)
POSITION_SPAN = 32.0  # position 1 is 32 px further: 31 steps of 1.03 px

# Body shapes are tabulated once on a fine grid and looked up per pixel: _BODY_RES cells per
# pixel (a lookup is off by at most 1/64 px, far below the frames' 1 px quantisation) over
# [-_BODY_HALF, _BODY_HALF)^2, which holds every body shape (the square's corner is at 13.6)
# with a margin of empty cells that every out-of-range coordinate is clipped onto.
_BODY_RES = 32
_BODY_HALF = 16.0
_HEART_VERTICES = 4096
_RENDER_CHUNK = 256  # images rendered per vectorised step (bounds the work arrays: ~40 MB)
_READ_CHUNK_BYTES = 32 << 20  # imgs are streamed from the npz in reads of about this size


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------


class GroundTruthData(abc.ABC):
    """A dataset with known generative factors: disentanglement_lib's ``GroundTruthData``.

    Factors are integer class indices, factor ``k`` taking values ``0 .. factors_num_values[k]
    - 1``. Observations are float32 arrays shaped ``(num, *observation_shape)``, channels first
    (for torch). All randomness comes from the ``random_state`` argument.
    """

    @property
    @abc.abstractmethod
    def factors_num_values(self) -> list[int]:
        """How many values each factor takes, e.g. ``[3, 6, 40, 32, 32]``."""

    @property
    @abc.abstractmethod
    def observation_shape(self) -> tuple[int, ...]:
        """Shape of one observation, channels first: ``(1, 64, 64)`` for dSprites."""

    @property
    def num_factors(self) -> int:
        """Number of factors, ``len(factors_num_values)``."""
        return len(self.factors_num_values)

    @abc.abstractmethod
    def sample_factors(self, num: int, random_state: RandomState) -> np.ndarray:
        """Draw ``num`` factor vectors: (num, num_factors) int64."""

    @abc.abstractmethod
    def sample_observations_from_factors(
        self, factors: np.ndarray, random_state: RandomState
    ) -> np.ndarray:
        """The observations of factor vectors (num, num_factors): (num, *observation_shape)."""

    def sample(self, num: int, random_state: RandomState) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``num`` factor vectors and their observations: ((num, F) int64, (num, ...))."""
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)

    def sample_observations(self, num: int, random_state: RandomState) -> np.ndarray:
        """Draw ``num`` observations (num, *observation_shape) of random factors."""
        return self.sample(num, random_state)[1]

    @property
    @abc.abstractmethod
    def source(self) -> DataSource:
        """Where the observations come from (a run's dataset input)."""


def _randint(random_state: RandomState, high: int, size: int) -> np.ndarray:
    """``size`` uniform ints in [0, high) as int64, from either numpy random API."""
    if isinstance(random_state, np.random.Generator):
        return random_state.integers(high, size=size, dtype=np.int64)
    return random_state.randint(high, size=size).astype(np.int64, copy=False)


class _DSpritesFactors(GroundTruthData):
    """What both dSprites forms share: uniform factor sampling, and factor vectors <-> rows of
    the real file (row-major over [colour(1), shape, scale, orientation, pos x, pos y])."""

    def __init__(self, factors_num_values: tuple[int, ...]):
        self._sizes = tuple(int(n) for n in factors_num_values)

    @property
    def factors_num_values(self) -> list[int]:
        return list(self._sizes)

    @property
    def num_images(self) -> int:
        """How many distinct factor vectors (= rows of the file): 737,280 for dSprites."""
        return int(np.prod(self._sizes))

    def sample_factors(self, num: int, random_state: RandomState) -> np.ndarray:
        """Each factor uniform and independent: (num, 5) int64."""
        if num < 0:
            raise ValueError(f"num must be >= 0, got {num}")
        columns = [_randint(random_state, size, num) for size in self._sizes]
        return np.stack(columns, axis=1) if columns else np.zeros((num, 0), np.int64)

    def check_factors(self, factors: np.ndarray) -> np.ndarray:
        """``factors`` as (num, 5) int64, or a ValueError saying what is wrong with them."""
        array = np.asarray(factors)
        if array.ndim != 2 or array.shape[1] != len(self._sizes):
            raise ValueError(f"factors must be (num, {len(self._sizes)}), got {array.shape}")
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"factors must be integer class indices, got dtype {array.dtype}")
        array = array.astype(np.int64, copy=False)
        bad = (array < 0) | (array >= np.asarray(self._sizes))
        if bad.any():
            row, k = np.argwhere(bad)[0]
            raise ValueError(
                f"factor {k} of row {row} is {array[row, k]}, outside 0..{self._sizes[k] - 1}"
            )
        return array

    def factors_to_index(self, factors: np.ndarray) -> np.ndarray:
        """Rows of the real file (num,) int64 for factor vectors (num, 5), colour 0:
        ``index = sum_k factor_k * prod(sizes after k)``."""
        array = self.check_factors(factors)
        if not len(array):
            return np.zeros(0, np.int64)
        return np.ravel_multi_index(tuple(array.T), self._sizes).astype(np.int64)

    def index_to_factors(self, index: np.ndarray) -> np.ndarray:
        """Factor vectors (num, 5) int64 of rows (num,) of the real file."""
        flat = np.asarray(index)
        if flat.ndim != 1 or (flat.size and not np.issubdtype(flat.dtype, np.integer)):
            raise ValueError(f"index must be a 1-D integer array, got {flat.dtype} {flat.shape}")
        if flat.size and (flat.min() < 0 or flat.max() >= self.num_images):
            raise ValueError(f"index outside 0..{self.num_images - 1}")
        return np.stack(np.unravel_index(flat, self._sizes), axis=1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# The real file
# --------------------------------------------------------------------------------------------


def _npz_missing_message(path: Path) -> str:
    return "\n".join(
        [
            f"dSprites not found: looked for {path}",
            f"  it needs {NPZ_NAME} (26 MB) from {DSPRITES_URL}",
            f"To get it: download {NPZ_URL}",
            f"  and put it in <root>/dsprites/ (here: {path.parent}), or let the sweep fetch and",
            "  verify it there: --download (or python -m vaecam.data.fetch dsprites)",
            "Offline alternative: config `dataset: dsprites_procedural` (DSpritesProcedural,",
            "  which renders every factor combination itself, calibrated to the real frames).",
        ]
    )


def _read_packed_images(path: Path) -> tuple[np.ndarray, int]:
    """The npz's ``imgs`` (N, H, W) as bits packed along W: ((N, H, ceil(W / 8)) uint8, W).

    Streamed from the zip in chunks, so the real file's 3 GB of uint8 pixels never sit in
    memory at once: packed they are 377 MB. Refuses object arrays (they would need pickle).
    """
    try:
        with zipfile.ZipFile(path) as archive, archive.open("imgs.npy") as stream:
            version = np.lib.format.read_magic(stream)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = read_header(stream)
            if dtype.hasobject or len(shape) != 3 or fortran_order:
                raise DataFormatError(
                    f"{path}: imgs must be a C-ordered numeric (N, H, W) array, got "
                    f"{dtype} {shape}{' in Fortran order' if fortran_order else ''}"
                )
            n, height, width = shape
            packed = np.empty((n, height, (width + 7) // 8), np.uint8)
            rows = max(1, _READ_CHUNK_BYTES // max(1, height * width * dtype.itemsize))
            for start in range(0, n, rows):
                count = min(rows, n - start)
                raw = stream.read(count * height * width * dtype.itemsize)
                chunk = np.frombuffer(raw, dtype=dtype)
                if chunk.size != count * height * width:
                    raise DataFormatError(f"{path}: imgs is truncated at image {start}")
                packed[start : start + count] = np.packbits(
                    chunk.reshape(count, height, width) != 0, axis=-1
                )
    except DataFormatError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise DataFormatError(f"{path}: not an npz with an imgs array ({error})") from None
    return packed, width


class DSpritesNpz(_DSpritesFactors):
    """The real dSprites file, ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``.

    ``path`` is the file itself, or a data root holding ``dsprites/<NPZ_NAME>``. Only the
    ``imgs`` and ``latents_classes`` arrays are read, without pickle (the file's ``metadata``
    entry is a pickled dict, and is never touched). Factor sizes are read off
    ``latents_classes``, which must be the complete row-major grid over its six columns with a
    constant colour: the real file gives ``[3, 6, 40, 32, 32]``. Images are held bit-packed
    (377 MB for the real file; reading it takes a while: it decompresses 3 GB).

    Raises ``DataNotFoundError`` (naming the path, where to get the file and the procedural
    alternative) when the file is missing, ``DataFormatError`` when it is not dSprites-shaped.
    """

    def __init__(self, path: Path):
        path = Path(path).expanduser()
        if path.is_dir():
            path = path / "dsprites" / NPZ_NAME
        if not path.is_file():
            raise DataNotFoundError(_npz_missing_message(path.resolve()))
        self.path = path
        try:
            with np.load(path, allow_pickle=False) as npz:
                classes = npz["latents_classes"]
        except (KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
            raise DataFormatError(f"{path}: no readable latents_classes array ({error})") from None
        if classes.ndim != 2 or classes.shape[1] != _FILE_COLUMNS or not len(classes):
            raise DataFormatError(
                f"{path}: latents_classes must be (N, {_FILE_COLUMNS}) [colour, shape, scale, "
                f"orientation, pos x, pos y], got {classes.shape}"
            )
        sizes = classes.max(axis=0).astype(np.int64) + 1
        if sizes[0] != 1:
            raise DataFormatError(f"{path}: colour takes {sizes[0]} values; dSprites has one")
        super().__init__(tuple(sizes[_LATENT_COLUMNS]))
        # Rows are looked up by index, so the file must be exactly the row-major grid.
        if len(classes) != self.num_images or not np.array_equal(
            classes, np.stack(np.unravel_index(np.arange(len(classes)), tuple(sizes)), axis=1)
        ):
            raise DataFormatError(
                f"{path}: latents_classes is not the complete row-major grid over the sizes "
                f"{sizes.tolist()}; images cannot be looked up by factors"
            )
        self._packed, self._width = _read_packed_images(path)
        if len(self._packed) != len(classes):
            raise DataFormatError(
                f"{path}: {len(self._packed)} images but {len(classes)} latents_classes rows"
            )

    @property
    def source(self) -> DataSource:
        return DataSource("dsprites", self.path.parent, (self.path.name,), DSPRITES_URL)

    @classmethod
    def from_root(cls, root: Path) -> DSpritesNpz:
        """The file at ``<root>/dsprites/<NPZ_NAME>`` (the registry's factory)."""
        return cls(Path(root).expanduser() / "dsprites" / NPZ_NAME)

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return (1, self._packed.shape[1], self._width)

    def images(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` (num,) of the file's ``imgs``: (num, H, W) uint8 in {0, 1}."""
        flat = np.asarray(index, dtype=np.int64)
        return np.unpackbits(self._packed[flat], axis=-1, count=self._width)

    def sample_observations_from_factors(
        self, factors: np.ndarray, random_state: RandomState
    ) -> np.ndarray:
        """The file's images of ``factors`` (num, 5): (num, 1, H, W) float32 in {0, 1}.

        ``random_state`` is unused: dSprites has no observation noise.
        """
        index = self.factors_to_index(factors)
        return self.images(index)[:, None].astype(np.float32)


# --------------------------------------------------------------------------------------------
# The procedural generator
# --------------------------------------------------------------------------------------------


def _heart_outline() -> np.ndarray:
    """The calibrated heart's outline (_HEART_VERTICES, 2) as (u, v), v up, scale 1."""
    w = np.linspace(0.0, 2 * np.pi, _HEART_VERTICES, endpoint=False)
    u = HEART_HALF_WIDTH * np.sin(w) ** 3
    v = HEART_V_SCALE * (13 * np.cos(w) - 5 * np.cos(2 * w) - 2 * np.cos(3 * w) - np.cos(4 * w))
    return np.stack([u, v + HEART_V_OFFSET], axis=1)


def _inside_polygon(polygon: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Even-odd test of the grid points (v[i], u[j]) against a closed polygon (K, 2):
    (len(v), len(u)) bool. One scanline per v: count the edge crossings to the right."""
    start, end = polygon, np.roll(polygon, -1, axis=0)
    inside = np.zeros((len(v), len(u)), bool)
    for i, row in enumerate(v):
        crosses = (start[:, 1] > row) != (end[:, 1] > row)
        a, b = start[crosses], end[crosses]
        xs = np.sort(a[:, 0] + (row - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1]))
        inside[i] = (len(xs) - np.searchsorted(xs, u, side="right")) % 2 == 1
    return inside


def _body_tables() -> np.ndarray:
    """Each shape at scale 1 sampled on the fine body grid: (3, n, n) bool, n = 32 * _BODY_RES.

    Cell (r, c) is the point v = (r + 0.5) / _BODY_RES - _BODY_HALF (up),
    u = (c + 0.5) / _BODY_RES - _BODY_HALF; the outermost cells are empty by construction.
    """
    centres = (np.arange(int(2 * _BODY_HALF * _BODY_RES)) + 0.5) / _BODY_RES - _BODY_HALF
    u, v = centres[None, :], centres[:, None]
    square = (np.abs(u) < SQUARE_HALF_SIDE) & (np.abs(v) < SQUARE_HALF_SIDE)
    a, b = ELLIPSE_SEMI_AXES
    ellipse = (u / a) ** 2 + (v / b) ** 2 < 1.0
    heart = _inside_polygon(_heart_outline(), centres, centres)
    tables = np.stack([square, ellipse, heart])
    assert not tables[:, [0, -1], :].any() and not tables[:, :, [0, -1]].any(), "grid too small"
    return tables


class DSpritesProcedural(_DSpritesFactors):
    """dSprites rendered on the fly, for any factor combination: no file needed.

    Same factors, sizes, index order and observations' form as :class:`DSpritesNpz`; images
    follow the calibration in the module docstring (median IoU against the real GIF frames is
    in ``bench/dsprites_fidelity.py``). Rendering is vectorised over the batch: each pixel
    centre is mapped into the shape's own frame (undo position, rotation and scale) and looked
    up in a fine table of the body shapes (3 x 1024 x 1024 bools, 3 MB, built once per
    instance in ~20 ms). Pasting 720 pre-rendered sprites at integer offsets would be simpler
    but wrong by up to half a pixel: positions step by 32/31 px, and the real frames are
    point-sampled at those fractional centres. About 50,000 images/s on one core.
    """

    def __init__(self) -> None:
        super().__init__(FACTORS_NUM_VALUES)
        self._tables = _body_tables()
        self._table_size = self._tables.shape[-1]
        self._flat_tables = self._tables.reshape(-1)

    @property
    def source(self) -> DataSource:
        return DataSource("dsprites_procedural", Path("."), (), DSPRITES_URL, synthetic=True)

    @classmethod
    def from_root(cls, root: Path | None = None) -> DSpritesProcedural:
        """The registry's factory; ``root`` is ignored (nothing is read)."""
        return cls()

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return (1, IMAGE_SIZE, IMAGE_SIZE)

    def render(self, factors: np.ndarray) -> np.ndarray:
        """Images of factor vectors (num, 5): (num, 64, 64) bool, pixel [i, j] at (x=j, y=i)."""
        f = self.check_factors(factors)
        images = np.empty((len(f), IMAGE_SIZE, IMAGE_SIZE), bool)
        # In chunks: the per-pixel work arrays take ~160 kB per image, which for the 10,000
        # images of the FactorVAE metric's global variance would be 1.6 GB at once.
        for start in range(0, len(f), _RENDER_CHUNK):
            images[start : start + _RENDER_CHUNK] = self._render(f[start : start + _RENDER_CHUNK])
        return images

    def _render(self, f: np.ndarray) -> np.ndarray:
        """``render`` of checked factors (num, 5), all at once."""
        shape, scale, angle = f[:, 0], SCALES[f[:, 1]], ORIENTATIONS[f[:, 2]]
        centre_x = FIRST_CENTRE + POSITION_SPAN * POSITIONS[f[:, 3]]
        centre_y = FIRST_CENTRE + POSITION_SPAN * POSITIONS[f[:, 4]]
        pixels = np.arange(IMAGE_SIZE, dtype=np.float64)
        dx = pixels[None, None, :] - centre_x[:, None, None]  # (num, 1, 64) rightwards
        dy = centre_y[:, None, None] - pixels[None, :, None]  # (num, 64, 1) upwards
        # Body coordinates: rotate by -angle (the sprite is rotated by +angle, counter-clockwise
        # on screen) and divide by the scale.
        cos = (np.cos(angle) / scale)[:, None, None]
        sin = (np.sin(angle) / scale)[:, None, None]
        u = cos * dx + sin * dy  # (num, 64, 64)
        v = cos * dy - sin * dx
        n = self._table_size
        column = np.clip(np.floor((u + _BODY_HALF) * _BODY_RES), 0, n - 1).astype(np.int64)
        row = np.clip(np.floor((v + _BODY_HALF) * _BODY_RES), 0, n - 1).astype(np.int64)
        flat = (shape[:, None, None] * n + row) * n + column
        return self._flat_tables[flat]

    def sample_observations_from_factors(
        self, factors: np.ndarray, random_state: RandomState
    ) -> np.ndarray:
        """Rendered images of ``factors`` (num, 5): (num, 1, 64, 64) float32 in {0, 1}.

        ``random_state`` is unused: rendering is deterministic, as the real dataset is.
        """
        return self.render(factors)[:, None].astype(np.float32)
