"""The authors' MNIST VAE (PAPER.md section 3), parametrised by size, channels and latent dim."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from vaecam.models.vae import VAE


class ConvVAE(VAE):
    """Conv encoder ``C -> 64 -> 128`` (k4 s2 p1), FC ``-> 1024``, ``mu``/``logvar`` heads of
    ``latent_dim``; a mirrored decoder giving logits. With the defaults (28x28, one channel,
    latent 32) it is the authors' MNIST model: ``encoder.2`` is the second conv, 128 x 7 x 7.

    Encoder module names: ``encoder.{0,2,...}`` convs, ``encoder.{1,3,...}`` their ReLUs.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 32,
        widths: Sequence[int] = (64, 128),
        hidden: int = 1024,
    ):
        super().__init__()
        stride = 2 ** len(widths)
        if image_size % stride:
            raise ValueError(
                f"image_size {image_size} must be divisible by {stride} "
                f"(each of the {len(widths)} convs halves it)"
            )
        self.latent_dim = latent_dim
        side = image_size // stride
        flat = widths[-1] * side * side  # 128 * 7 * 7 = 6272 for MNIST

        channels = [in_channels, *widths]
        down: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            down += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.ReLU()]
        self.encoder = nn.Sequential(*down, nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU())
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)

        up: list[nn.Module] = []
        for c_in, c_out in zip(channels[:0:-1], channels[-2::-1], strict=True):
            up += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.ReLU()]
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, flat),
            nn.ReLU(),
            nn.Unflatten(1, (widths[-1], side, side)),
            *up[:-1],  # no ReLU after the last layer: it outputs logits
        )
