"""The VAE contract shared by every model (DESIGN.md, Contracts)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaecam.latent import gaussian_kl, reparameterise


class VAEOutput(NamedTuple):
    """One forward pass. ``recon`` are Bernoulli logits ``(B, C, H, W)``; the rest ``(B, n)``."""

    recon: Tensor
    mu: Tensor
    logvar: Tensor
    z: Tensor


class VAE(nn.Module):
    """Base class: subclasses define ``encoder`` (input -> features), ``fc_mu``, ``fc_logvar``
    and ``decoder`` (z -> logits). Training code never forks on the model: variants (beta-VAE,
    FactorVAE, AD-FactorVAE in :mod:`vaecam.models.disentangle`) extend it through two hooks.

    - :meth:`regularisers` returns named scalar terms (batch means, *unweighted*) and
      :attr:`regulariser_weights` their weights; :meth:`loss` is
      ``recon + sum_k weights[k] * terms[k]`` (weight 1 for a term not named there) and
      reports each term unweighted, so ``kl`` is always the plain KL and a sweep over a weight
      compares like with like.
    - :meth:`after_step` runs after the optimiser's step (FactorVAE trains its discriminator
      there, with its own optimiser) and returns numbers to log.
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

    def regularisers(
        self, x: Tensor, out: VAEOutput, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Named scalar terms added to the reconstruction loss, each a batch mean and unweighted
        (weights: :attr:`regulariser_weights`). The VAE's only term is the prior's,
        ``kl = mean_b KL(q(z|x_b) || N(0, I))``.

        ``x`` ``(B, C, H, W)`` is there for terms that need the input (the AD loss recomputes
        attention maps of ``x``); ``generator`` (CPU) seeds any term that draws. Names must not
        be ``loss`` or ``recon``.
        """
        return {"kl": gaussian_kl(out.mu, out.logvar).mean()}

    @property
    def regulariser_weights(self) -> dict[str, float]:
        """The weight of each term of :meth:`regularisers` in the loss; a term missing here
        weighs 1 (the VAE: none, ``loss = recon + kl``)."""
        return {}

    def loss(
        self, x: Tensor, out: VAEOutput, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Negative ELBO and its extensions, as scalars averaged over the batch:

            loss = recon + sum_k w_k * term_k,   recon = mean_b sum_p BCE(logits_bp, x_bp)

        (Bernoulli reconstruction summed per image; terms and weights ``w_k`` from
        :meth:`regularisers` and :attr:`regulariser_weights`). Returns ``loss``, ``recon`` and
        each term unweighted under its name: exactly ``loss``, ``recon``, ``kl`` for the VAE.
        """
        recon = F.binary_cross_entropy_with_logits(out.recon, x, reduction="none")
        recon = recon.flatten(1).sum(dim=1).mean()
        terms = self.regularisers(x, out, generator)
        weights = self.regulariser_weights
        total = recon + sum(weights.get(name, 1.0) * term for name, term in terms.items())
        return {"loss": total, "recon": recon, **terms}

    def after_step(
        self, x: Tensor, out: VAEOutput, generator: torch.Generator | None = None
    ) -> dict[str, float]:
        """Called by :func:`vaecam.training.train_step` after the optimiser's step on batch
        ``x`` ``(B, C, H, W)`` whose forward pass was ``out`` (computed before the step); returns
        numbers to log. The VAE has nothing to do."""
        return {}
