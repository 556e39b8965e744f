"""Models by name. ``MODELS[name](**kwargs)`` builds one."""

from vaecam.models.conv import ConvVAE
from vaecam.models.vae import VAE, VAEOutput, gaussian_kl, reparameterise
from vaecam.registry import Registry

MODELS: Registry[type[VAE]] = Registry("model", {"conv_vae": ConvVAE})

__all__ = ["MODELS", "VAE", "ConvVAE", "VAEOutput", "gaussian_kl", "reparameterise"]
