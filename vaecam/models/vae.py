"""The VAE contract shared by every model (DESIGN.md, Contracts)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class VAEOutput(NamedTuple):
    """One forward pass. ``recon`` are Bernoulli logits ``(B, C, H, W)``; the rest ``(B, n)``."""

    recon: Tensor
    mu: Tensor
    logvar: Tensor
    z: Tensor


def reparameterise(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``z = mu + eps * sigma`` with ``eps ~ N(0, I)`` drawn from ``generator`` (on the CPU).

    Drawing on the CPU keeps one seeded generator valid whatever device the model is on.
    """
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    return mu + eps * torch.exp(0.5 * logvar)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, sigma^2) || N(0, I))`` summed over latent dims: ``(B, n) -> (B,)``."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


class VAE(nn.Module):
    """Base class: subclasses define ``encoder`` (input -> features), ``fc_mu``, ``fc_logvar``
    and ``decoder`` (z -> logits). Variants (beta-VAE, FactorVAE, ...) override ``regulariser``
    only; training code never forks on the model.
    """

    latent_dim: int
    encoder: nn.Module
    fc_mu: nn.Module
    fc_logvar: nn.Module
    decoder: nn.Module

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, C, H, W) -> (mu, logvar)``, each ``(B, n)``."""
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        """``(B, n) -> (B, C, H, W)`` Bernoulli logits; ``torch.sigmoid`` gives the image."""
        return self.decoder(z)

    def forward(
        self, x: Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> VAEOutput:
        """Encode, draw ``z`` (or take ``z = mu`` when ``sample`` is false) and decode."""
        mu, logvar = self.encode(x)
        z = reparameterise(mu, logvar, generator) if sample else mu
        return VAEOutput(self.decode(z), mu, logvar, z)

    def regulariser(self, out: VAEOutput) -> Tensor:
        """The prior term of the negative ELBO, ``(B,)``: plain KL for the VAE."""
        return gaussian_kl(out.mu, out.logvar)

    def loss(self, x: Tensor, out: VAEOutput) -> dict[str, Tensor]:
        """Negative ELBO: Bernoulli reconstruction (BCE summed per image) + regulariser,
        each averaged over the batch. Returns scalars ``loss``, ``recon``, ``kl``.
        """
        recon = F.binary_cross_entropy_with_logits(out.recon, x, reduction="none")
        recon = recon.flatten(1).sum(dim=1).mean()
        kl = gaussian_kl(out.mu, out.logvar).mean()
        return {"loss": recon + self.regulariser(out).mean(), "recon": recon, "kl": kl}
