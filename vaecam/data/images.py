"""Reading image files with Pillow, each failure one clear error naming the file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from vaecam.data import DataFormatError, DataNotFoundError

#: Told as a data check goes: ``(files done, files in all, what is being checked)``.
Progress = Callable[[int, int, str], None]


@contextmanager
def reading_image(dataset: str, kind: str, path: Path) -> Iterator[None]:
    """Turns what Pillow raises while the block reads ``path`` into one error naming the
    ``dataset``, what the file is (``kind``) and the path: ``DataNotFoundError`` when it does not
    exist, ``DataFormatError`` when it cannot be decoded.

    Pillow opens lazily, so ``load()`` is what surfaces truncated or corrupt data. Its errors
    vary with the damage: ``UnidentifiedImageError``/``OSError`` (not an image, truncated),
    ``SyntaxError`` (broken PNG chunks), ``ValueError``, ``DecompressionBombError``.
    """
    try:
        yield
    except DataFormatError:
        raise  # the block's own check, already naming the file (a ValueError: not Pillow's)
    except FileNotFoundError:
        raise DataNotFoundError(f"{dataset}: {kind} {path} does not exist") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataFormatError(
            f"{dataset}: cannot read {kind} {path} ({type(error).__name__}: {error}); "
            "the file is corrupt or not an image: replace it with the original"
        ) from None


#: Pixel modes that convert to 8-bit gray or RGB without rescaling. 16-bit or float images
#: would be clipped by Pillow's ``convert``, so they are refused rather than silently mis-scaled.
EIGHT_BIT_MODES = ("L", "1", "P", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")


def require_eight_bit(mode: str, dataset: str, kind: str, path: Path) -> None:
    """``DataFormatError`` naming ``path`` unless its pixel ``mode`` is in :data:`EIGHT_BIT_MODES`
    (the datasets' images all are)."""
    if mode not in EIGHT_BIT_MODES:
        raise DataFormatError(
            f"{dataset}: {kind} {path} has pixel mode {mode!r}; the dataset's images are 8-bit, "
            "and converting this mode would clip or mis-scale its values"
        )
