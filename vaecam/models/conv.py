"""Conv VAEs: the authors' MNIST model and the reproduction's UCSD Ped1 models (PAPER.md
section 3), one class parametrised by size, channels, widths, batch norm and latent dim."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from vaecam.models.vae import VAE


class ConvVAE(VAE):
    """Conv encoder ``C -> widths`` (k4 s2 p1, each halving the side, ReLU; batch norm before
    the ReLU when ``batch_norm``), FC ``-> hidden``, ``mu``/``logvar`` heads of ``latent_dim``;
    a mirrored decoder giving logits.

    With the defaults (28x28, one channel, widths 64, 128, latent 32) it is the authors' MNIST
    model: ``encoder.2`` is the second conv, 128 x 7 x 7. With ``widths=(64, 128, 256)``,
    ``batch_norm=True`` and 100x100 or 96x96 inputs it is the reproduction's UCSD Ped1 model.
    Sides that do not halve evenly (100 -> 50 -> 25 -> 12) are restored exactly by the
    decoder's ``output_padding``.

    Encoder module names: convs at ``encoder.0``, ``encoder.2``, ... (or ``encoder.0``,
    ``encoder.3``, ... with batch norm), then ``Flatten`` and the FC layer.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 32,
        widths: Sequence[int] = (64, 128),
        hidden: int = 1024,
        batch_norm: bool = False,
    ):
        super().__init__()
        sides = [image_size]
        for _ in widths:
            sides.append((sides[-1] + 2 - 4) // 2 + 1)  # conv k4 s2 p1
        if sides[-1] < 1:
            raise ValueError(
                f"image_size {image_size} is too small for {len(widths)} stride-2 convs"
            )
        self.latent_dim = latent_dim
        side = sides[-1]
        flat = widths[-1] * side * side  # 128 * 7 * 7 = 6272 for MNIST

        def block(conv: nn.Module, channels: int) -> list[nn.Module]:
            return [conv, *([nn.BatchNorm2d(channels)] if batch_norm else []), nn.ReLU()]

        channels = [in_channels, *widths]
        down: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            down += block(nn.Conv2d(c_in, c_out, 4, 2, 1), c_out)
        self.encoder = nn.Sequential(*down, nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU())
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)

        up: list[nn.Module] = []
        pairs = list(zip(channels[:0:-1], channels[-2::-1], strict=True))
        for i, (c_in, c_out) in enumerate(pairs):
            small, large = sides[-1 - i], sides[-2 - i]
            conv = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, output_padding=large - 2 * small)
            up += [conv] if i == len(pairs) - 1 else block(conv, c_out)  # last: logits
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, flat),
            nn.ReLU(),
            nn.Unflatten(1, (widths[-1], side, side)),
            *up,
        )
