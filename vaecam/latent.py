"""The latent Gaussian: drawing ``z``, the prior's KL, and the normal data's latent statistics.

Both :mod:`vaecam.models` (training) and :mod:`vaecam.attention` (what is differentiated) use
these, so they live below both, and neither imports the other for them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


def reparameterise(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``z = mu + eps * sigma`` with ``eps ~ N(0, I)`` drawn from ``generator`` (on the CPU).

    Drawing on the CPU keeps one seeded generator valid whatever device the model is on.
    """
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    return mu + eps * torch.exp(0.5 * logvar)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, sigma^2) || N(0, I))`` summed over latent dims: ``(B, n) -> (B,)``."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


class LatentStats(NamedTuple):
    """Latent statistics of the normal training data (PAPER.md section 1, Eq. 4): ``mu`` and
    ``var``, each ``(n,)``."""

    mu: Tensor
    var: Tensor

    def to(self, like: Tensor) -> LatentStats:
        """Both on ``like``'s device and dtype."""
        return LatentStats(self.mu.to(like), self.var.to(like))


def latent_stats(mu: Tensor, logvar: Tensor) -> LatentStats:
    """Moments of the aggregate posterior ``q(z) = 1/N sum_j N(mu_j, sigma_j^2)`` of training
    encodings ``mu``, ``logvar`` ``(N, n)``.

    The paper models normal data per latent dim as ``N(mu_i, sigma_i^2)`` without saying how to
    get them; we take the exact mean and variance of the aggregate posterior (law of total
    variance): ``mu = mean_j mu_j``, ``var = Var_j(mu_j) + mean_j exp(logvar_j)`` (population
    variance over the N encodings). The result is detached: it is a data constant.
    """
    mu, logvar = mu.detach(), logvar.detach()
    return LatentStats(mu.mean(0), mu.var(0, correction=0) + logvar.exp().mean(0))
