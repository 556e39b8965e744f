"""Models by name. ``MODELS[name](**kwargs)`` builds one."""

from vaecam.latent import gaussian_kl, reparameterise
from vaecam.models.conv import ConvVAE
from vaecam.models.disentangle import (
    ADFactorVAE,
    BetaVAE,
    FactorVAE,
    ad_loss,
    latent_pairs,
    permute_dims,
)
from vaecam.models.resnet import ResNetVAE
from vaecam.models.vae import VAE, VAEOutput
from vaecam.registry import Registry

MODELS: Registry[type[VAE]] = Registry(
    "model",
    {
        "conv_vae": ConvVAE,
        "resnet_vae": ResNetVAE,
        # the dSprites disentanglement family (PAPER.md sections 2, 3)
        "beta_vae": BetaVAE,
        "factor_vae": FactorVAE,
        "ad_factor_vae": ADFactorVAE,
    },
)

__all__ = [
    "MODELS",
    "VAE",
    "ADFactorVAE",
    "BetaVAE",
    "ConvVAE",
    "FactorVAE",
    "ResNetVAE",
    "VAEOutput",
    "ad_loss",
    "gaussian_kl",
    "latent_pairs",
    "permute_dims",
    "reparameterise",
]
