"""Images: reading files with Pillow, each failure one clear error naming the file; and
``Augment``, the optional training-time augmentation (flips, a small rotation) of batches of
image tensors, on whatever device they are."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

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


PaddingMode = Literal["zeros", "border", "reflection"]


@dataclass(frozen=True)
class Augment:
    """Random flips and rotation of a batch of images, drawn per image from a generator.

    ``rotation_degrees`` is the largest absolute rotation, in DEGREES: each image is rotated by
    an angle uniform in ``[-rotation_degrees, rotation_degrees]``. (PAPER.md section 6: a public
    reproduction wrote ``RandomRotation(np.pi / 6)`` meaning 30 degrees, but torchvision reads
    degrees, so it rotated by at most 0.52 degrees.) ``hflip`` / ``vflip`` each flip an image
    with probability 1/2.

    Rotation resamples bilinearly (``affine_grid`` + ``grid_sample``, about the image centre);
    the corners it uncovers are filled by ``padding_mode``: ``"reflection"`` (default) mirrors
    the image, which continues a texture (carpet, grid...) and an object's plain background
    without inventing dark corners the VAE would learn as normal; ``"border"`` repeats the edge
    pixels; ``"zeros"`` fills black.

    The default ``Augment()`` is the identity: it returns ``x`` itself and draws nothing.
    Randomness is drawn on the CPU from ``generator`` (so one seeded CPU generator serves a
    model on any device) and then moved to ``x``'s device.
    """

    hflip: bool = False
    vflip: bool = False
    rotation_degrees: float = 0.0
    padding_mode: PaddingMode = "reflection"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rotation_degrees) and 0.0 <= self.rotation_degrees <= 180.0):
            raise ValueError(
                f"rotation_degrees must be in [0, 180] degrees, got {self.rotation_degrees}"
            )
        if self.padding_mode not in ("zeros", "border", "reflection"):
            raise ValueError(
                f"padding_mode must be 'zeros', 'border' or 'reflection', got {self.padding_mode!r}"
            )

    @property
    def is_identity(self) -> bool:
        return not (self.hflip or self.vflip or self.rotation_degrees > 0.0)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Augment a float batch ``(B, C, H, W)``; returns a new ``(B, C, H, W)`` tensor (or
        ``x`` itself when this is the identity). Each image gets its own flips and angle."""
        if self.is_identity:
            return x
        if x.ndim != 4:
            raise ValueError(f"Augment expects a batch (B, C, H, W), got shape {tuple(x.shape)}")
        batch = x.shape[0]
        if self.hflip:
            x = self._flip(x, self._coins(batch, generator, x.device), dim=-1)
        if self.vflip:
            x = self._flip(x, self._coins(batch, generator, x.device), dim=-2)
        if self.rotation_degrees > 0.0:
            # Uniform in [-max, max], per image, then to radians for cos/sin.
            degrees = (torch.rand(batch, generator=generator, dtype=torch.float64) * 2 - 1) * (
                self.rotation_degrees
            )
            x = self._rotate(x, torch.deg2rad(degrees))
        return x

    @staticmethod
    def _coins(batch: int, generator: torch.Generator, device: torch.device) -> Tensor:
        """(B,) bool, each True with probability 1/2 (drawn on the CPU)."""
        return (torch.rand(batch, generator=generator) < 0.5).to(device)

    @staticmethod
    def _flip(x: Tensor, which: Tensor, dim: int) -> Tensor:
        """Flip the images ``which`` (B,) bool along ``dim``; the others are kept exactly."""
        return torch.where(which.view(-1, 1, 1, 1), x.flip(dim), x)

    def _rotate(self, x: Tensor, radians: Tensor) -> Tensor:
        """Rotate each image (B, C, H, W) about its centre by ``radians`` (B,).

        ``affine_grid`` maps each output pixel to the input in coordinates normalised to
        [-1, 1] per axis, so for H != W the off-diagonal terms are scaled by the aspect ratio
        to keep it a rotation in pixels rather than a rotation + shear.
        """
        _, _, height, width = x.shape
        cos, sin = torch.cos(radians), torch.sin(radians)
        zero = torch.zeros_like(cos)
        theta = torch.stack(
            [
                torch.stack([cos, -sin * height / width, zero], dim=1),
                torch.stack([sin * width / height, cos, zero], dim=1),
            ],
            dim=1,
        ).to(device=x.device, dtype=x.dtype)  # (B, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(
            x, grid, mode="bilinear", padding_mode=self.padding_mode, align_corners=False
        )
