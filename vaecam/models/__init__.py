"""Models by name. ``MODELS[name](**kwargs)`` builds one."""

from vaecam.models.conv import ConvVAE
from vaecam.models.resnet import ResNetVAE
from vaecam.models.vae import VAE, VAEOutput, gaussian_kl, reparameterise
from vaecam.registry import Registry

MODELS: Registry[type[VAE]] = Registry("model", {"conv_vae": ConvVAE, "resnet_vae": ResNetVAE})

__all__ = ["MODELS", "VAE", "ConvVAE", "ResNetVAE", "VAEOutput", "gaussian_kl", "reparameterise"]
