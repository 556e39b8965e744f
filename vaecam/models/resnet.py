"""The reproduction's MVTec AD VAE (PAPER.md section 3): a ResNet-18 encoder with a fully
connected + transposed-conv decoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

from vaecam.models.vae import VAE

if TYPE_CHECKING:
    from torchvision.models import ResNet18_Weights


#: The encoder stems :class:`ResNetVAE` takes.
STEMS = ("torchvision", "reproduction")


class ResNetVAE(VAE):
    """Encoder: torchvision's ResNet-18 (from scratch unless ``pretrained``) up to its global
    average pool, ``(B, C, H, W) -> (B, 512)``; ``mu``/``logvar`` heads of ``latent_dim``.
    Decoder: FC to ``512 x H/32 x W/32``, then five stride-2 transposed convs back to
    ``(B, C, H, W)`` logits.

    ``stem`` is the encoder's first layers: ``torchvision`` (a 7x7 stride-2 conv and a 3x3
    stride-2 max-pool: ``layer2`` at 1/8 of the input) or ``reproduction`` (the reproduction's
    ``ResNet18Enc``: a 3x3 stride-2 conv, no max-pool: ``layer2`` at 1/4, so
    ``encoder.layer2.1.conv1`` is 64x64 at 256 px, the map their MVTec numbers come from).
    ImageNet weights (``pretrained``) exist for torchvision's stem only.

    Target layers are torchvision's names under ``encoder``, e.g. ``encoder.layer2.1.conv1``
    (the reproduction's choice). Avoid the ``relu`` modules: ResNet blocks call one twice.
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 256,
        latent_dim: int = 32,
        widths: Sequence[int] = (256, 128, 64, 32),
        pretrained: bool = False,
        stem: str = "torchvision",
    ):
        super().__init__()
        if image_size % 32:
            raise ValueError(f"image_size {image_size} must be divisible by 32 (ResNet's stride)")
        if stem not in STEMS:
            raise ValueError(f"stem={stem!r}: expected one of {', '.join(STEMS)}")
        if pretrained and stem != "torchvision":
            raise ValueError(f"pretrained=True needs stem='torchvision' (ImageNet's), not {stem!r}")
        # torchvision's import takes seconds (it brings torch._dynamo): only this model needs it,
        # and every sweep process and Ray worker imports the model registry.
        from torchvision.models import resnet18

        self.latent_dim = latent_dim
        self.encoder = resnet18(weights=_imagenet_weights() if pretrained else None)
        if stem == "reproduction":
            self.encoder.conv1 = nn.Conv2d(in_channels, 64, 3, 2, 1, bias=False)
            self.encoder.maxpool = nn.Identity()
        elif in_channels != 3:
            self.encoder.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.encoder.fc = nn.Identity()  # keep the pooled 512 features
        self.fc_mu = nn.Linear(512, latent_dim)
        self.fc_logvar = nn.Linear(512, latent_dim)

        side = image_size // 32
        channels = [512, *widths]
        up: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            up += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 512 * side * side),
            nn.ReLU(),
            nn.Unflatten(1, (512, side, side)),
            *up,
            nn.ConvTranspose2d(channels[-1], in_channels, 4, 2, 1),  # logits
        )


def _imagenet_weights() -> ResNet18_Weights:
    """ImageNet weights, loaded (and downloaded into torch's hub cache) now, or a clear error."""
    from torchvision.models import ResNet18_Weights

    weights = ResNet18_Weights.IMAGENET1K_V1
    try:
        weights.get_state_dict(progress=False)
    except Exception as error:  # offline: URLError; a corrupt cache: RuntimeError
        raise RuntimeError(
            f"pretrained=True needs torchvision's ImageNet ResNet-18 weights ({weights.url}); "
            f"they could not be loaded ({type(error).__name__}: {error}). Put the file in "
            "$TORCH_HOME/hub/checkpoints (~/.cache/torch/hub/checkpoints) or train from scratch "
            "(pretrained=False, the default)."
        ) from None
    return weights
