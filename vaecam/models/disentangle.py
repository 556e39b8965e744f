"""The disentanglement family for dSprites (PAPER.md sections 2 and 3): beta-VAE, FactorVAE and
AD-FactorVAE. Each is the :class:`~vaecam.models.conv.ConvVAE` with more terms in
:meth:`~vaecam.models.vae.VAE.regularisers`; FactorVAE also trains its discriminator in
:meth:`~vaecam.models.vae.VAE.after_step`. Training is the shared
:func:`vaecam.training.train_step`: no model here has a loop of its own.

The defaults are the FactorVAE paper's dSprites model (Kim & Mnih 2018, Table 1): 1 x 64 x 64
inputs, convs 1 -> 32 -> 32 -> 64 -> 64 (k4 s2 p1) at ``encoder.0``, ``encoder.2``,
``encoder.4``, ``encoder.6`` (sides 32, 16, 8, 4), FC -> 128 -> 2 x 10 latents::

    model = MODELS["ad_factor_vae"](in_channels=1, image_size=64, latent_dim=10, lam=40.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)  # the discriminator has its own
    terms = train_step(model, optimizer, x, generator)
    # {'loss', 'recon', 'kl', 'tc', 'ad', 'discriminator_loss', 'discriminator_accuracy'}

Reported terms are unweighted (``kl`` the plain KL, ``tc`` the TC estimate, ``ad`` the mean
overlap in [0, 1]); ``loss = recon + sum_k regulariser_weights[k] * term_k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaecam.attention import FORMULATIONS, LayerActivations, attention_maps
from vaecam.models.conv import ConvVAE
from vaecam.models.vae import VAEOutput

#: The FactorVAE paper's dSprites model (Kim & Mnih 2018, Table 1), as :class:`ConvVAE`'s
#: arguments: the defaults of every model here, which a caller's arguments override.
DSPRITES_MODEL: dict[str, Any] = {
    "image_size": 64,
    "latent_dim": 10,
    "widths": (32, 32, 64, 64),
    "hidden": 128,
}


# --- the attention-disentanglement loss (PAPER.md section 2) -------------------------------


#: How :func:`ad_loss` reduces over a batch: ``per_image`` (ours, the mean of per-image
#: overlaps) or ``reproduction`` (one overlap pooled over the batch, divided by ``B``).
AD_REDUCTIONS = ("per_image", "reproduction")


def ad_loss(
    maps_i: Tensor, maps_j: Tensor, eps: float = 1e-8, reduction: str = "per_image"
) -> Tensor:
    """The attention-disentanglement loss of two non-negative maps (PAPER.md section 2)::

        L_AD(M^i, M^j) = 2 * sum_p min(M^i_p, M^j_p) / sum_p (M^i_p + M^j_p)

    a soft overlap in [0, 1]: 1 for identical maps, 0 for disjoint supports. ``maps_i`` and
    ``maps_j`` are ``(..., B, H, W)`` (e.g. ``(B, H, W)``, or ``(k, B, H, W)`` for k pairs); the
    sum runs over ``H, W``. ``reduction``:

    - ``"per_image"``: the ratio per image, averaged over the leading dims;
    - ``"reproduction"``: as the reproduction's code, the sums pooled over the batch into one
      ratio, divided by the batch size ``B`` (then averaged over other leading dims). It is
      about ``B`` times smaller, so the same ``lam`` is ``B`` times weaker than ``per_image``'s.

    A pair of all-zero maps (every ReLU off) has no overlap: the denominator is clamped at
    ``eps``, giving 0.
    """
    overlap = torch.minimum(maps_i, maps_j).sum(dim=(-2, -1))  # (..., B)
    total = (maps_i + maps_j).sum(dim=(-2, -1))
    if reduction == "per_image":
        return (2 * overlap / total.clamp_min(eps)).mean()
    if reduction == "reproduction":
        batch = overlap.shape[-1]
        return (2 * overlap.sum(-1) / total.sum(-1).clamp_min(eps) / batch).mean()
    raise ValueError(f"reduction must be one of {', '.join(AD_REDUCTIONS)}, got {reduction!r}")


ADPairs = Literal["random", "reproduction", "all"] | int


def _pair_count(latent_dim: int, ad_pairs: ADPairs) -> int:
    """How many pairs :func:`latent_pairs` returns; a bad option raises ``ValueError``."""
    if latent_dim < 2:
        raise ValueError(f"the AD loss needs at least 2 latent dims, got latent_dim={latent_dim}")
    total = latent_dim * (latent_dim - 1) // 2
    if ad_pairs == "all":
        return total
    if ad_pairs in ("random", "reproduction"):
        return 1
    if isinstance(ad_pairs, int) and not isinstance(ad_pairs, bool) and 1 <= ad_pairs <= total:
        return ad_pairs
    raise ValueError(
        f"ad_pairs must be 'random', 'reproduction', 'all' or an int in [1, {total}] "
        f"(latent_dim={latent_dim}), got {ad_pairs!r}"
    )


def latent_pairs(
    latent_dim: int, ad_pairs: ADPairs, generator: torch.Generator | None = None
) -> Tensor:
    """The pairs of latent dims ``(i, j)``, ``i < j``, whose maps enter the AD loss in one step,
    as a long tensor ``(k, 2)`` on the CPU:

    - ``"random"``: one pair of distinct dims drawn uniformly;
    - ``"reproduction"``: two dims drawn independently, so they may be the same dim (then
      ``i == j``), as the reproduction's ``solver.py`` draws them (``randint(0, z_dim,
      size=2)``);
    - ``k`` (an int): ``k`` distinct pairs drawn uniformly without replacement;
    - ``"all"``: all ``n (n - 1) / 2`` pairs, in lexicographic order (draws nothing).

    Draws use ``generator`` (torch's global RNG when ``None``). The loss is symmetric in
    ``(i, j)``, so unordered pairs suffice.
    """
    k = _pair_count(latent_dim, ad_pairs)
    if ad_pairs == "reproduction":
        return torch.randint(latent_dim, (1, 2), generator=generator)
    pairs = torch.combinations(torch.arange(latent_dim), 2)  # (n (n - 1) / 2, 2)
    if ad_pairs == "all":
        return pairs
    return pairs[torch.randperm(len(pairs), generator=generator)[:k]]


# --- the total-correlation discriminator (Kim & Mnih 2018) ---------------------------------


def permute_dims(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each latent dim (column) of ``z`` ``(B, n)`` permuted across the batch independently:
    if the rows are samples of ``q(z)``, the result's are samples of ``prod_j q(z_j)``
    (Kim & Mnih 2018, Algorithm 1). Permutations are drawn on the CPU with ``generator``.
    """
    B, n = z.shape
    order = torch.stack([torch.randperm(B, generator=generator) for _ in range(n)], dim=1)
    return z.gather(0, order.to(z.device))


def tc_discriminator(latent_dim: int, hidden: int = 1000, layers: int = 6) -> nn.Sequential:
    """FactorVAE's discriminator (Kim & Mnih 2018, Appendix): an MLP of ``layers`` linear
    layers, ``hidden`` units each, LeakyReLU(0.2), ``(B, n) -> (B, 2)`` logits. Class 0 means
    "drawn from ``q(z)``", class 1 "drawn from ``prod_j q(z_j)``" (permuted)."""
    sizes = [latent_dim] + [hidden] * (layers - 1)
    modules: list[nn.Module] = []
    for a, b in pairwise(sizes):
        modules += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
    return nn.Sequential(*modules, nn.Linear(sizes[-1], 2))


# --- the models ----------------------------------------------------------------------------


class BetaVAE(ConvVAE):
    """beta-VAE (Higgins et al. 2017): ``loss = recon + beta * KL``. ``beta = 1`` is the VAE;
    the default 4 is Higgins et al.'s dSprites value (the paper's Fig. 8 sweeps 1..16).

    ``options``: :class:`~vaecam.models.conv.ConvVAE`'s, defaulting to :data:`DSPRITES_MODEL`;
    all arguments are keywords.
    """

    def __init__(self, *, beta: float = 4.0, **options: Any):
        super().__init__(**DSPRITES_MODEL | options)
        self.beta = beta

    @property
    def regulariser_weights(self) -> dict[str, float]:
        return {"kl": self.beta}


class FactorVAE(ConvVAE):
    """FactorVAE (Kim & Mnih 2018): the VAE plus ``gamma`` times the total correlation of
    ``q(z)``, estimated with a discriminator ``D`` by the density-ratio trick::

        loss = recon + KL + gamma * TC,   TC = KL(q(z) || prod_j q(z_j))
                                             ~ mean_b [D(z_b)_0 - D(z_b)_1]

    on the step's sampled ``z`` ``(B, n)``. The TC term's gradient reaches the encoder only:
    ``D``'s parameters enter it detached, so an optimiser over ``model.parameters()`` never
    moves ``D`` (their gradients stay ``None``, and Adam skips them).

    ``D`` (:func:`tc_discriminator`) is trained in :meth:`after_step` by its own Adam
    (``discriminator_lr`` 1e-4, ``discriminator_betas`` (0.5, 0.9), PAPER.md section 3) to tell
    ``z`` (class 0) from :func:`permute_dims` samples (class 1), with cross-entropy, on the
    step's ``z`` (detached; drawn before the VAE's update, so it costs no extra encoder pass).
    Kim & Mnih take the permuted samples from a second batch; ``discriminator_batch`` says how
    one batch stands in for two:

    - ``"split"`` (default): the first half's ``z`` are the joint samples, the second half's,
      permuted, the product samples: independent sets, as in Kim & Mnih's Algorithm 2, at
      half the batch each;
    - ``"same"``: the whole batch's ``z`` against its own permutation: twice the samples, but
      the two sets share their marginal values.

    The discriminator optimiser's state is the module's extra state, so ``state_dict()``
    carries it (only tensors, dicts, lists and numbers: ``torch.load(weights_only=True)``
    loads it) and ``load_state_dict`` restores it.

    ``gamma`` 40 is the reproduction's dSprites value (PAPER.md section 3). ``options``:
    :class:`~vaecam.models.conv.ConvVAE`'s, defaulting to :data:`DSPRITES_MODEL`; all arguments
    are keywords.
    """

    def __init__(
        self,
        *,
        gamma: float = 40.0,
        discriminator_hidden: int = 1000,
        discriminator_layers: int = 6,
        discriminator_lr: float = 1e-4,
        discriminator_betas: Sequence[float] = (0.5, 0.9),
        discriminator_batch: Literal["split", "same"] = "split",
        **options: Any,
    ):
        super().__init__(**DSPRITES_MODEL | options)
        if discriminator_batch not in ("split", "same"):
            raise ValueError(
                f"discriminator_batch must be 'split' or 'same', got {discriminator_batch!r}"
            )
        self.gamma = gamma
        self.discriminator_batch = discriminator_batch
        self.discriminator = tc_discriminator(
            self.latent_dim, discriminator_hidden, discriminator_layers
        )
        beta1, beta2 = discriminator_betas
        self.discriminator_optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=discriminator_lr, betas=(beta1, beta2)
        )

    def total_correlation(self, z: Tensor) -> Tensor:
        """``TC ~ mean_b [D(z_b)_0 - D(z_b)_1]`` for ``z`` ``(B, n)``: a scalar differentiable
        w.r.t. ``z`` only (``D``'s parameters enter detached)."""
        params = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        logits = torch.func.functional_call(self.discriminator, params, (z,))
        return (logits[:, 0] - logits[:, 1]).mean()

    def regularisers(
        self, x: Tensor, out: VAEOutput, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        return super().regularisers(x, out, generator) | {"tc": self.total_correlation(out.z)}

    @property
    def regulariser_weights(self) -> dict[str, float]:
        return {"tc": self.gamma}

    def after_step(
        self, x: Tensor, out: VAEOutput, generator: torch.Generator | None = None
    ) -> dict[str, float]:
        """One discriminator step on ``out.z`` (see the class docstring). Returns
        ``discriminator_loss`` (mean cross-entropy over both classes, Kim & Mnih's
        ``0.5 * (CE_joint + CE_permuted)``) and ``discriminator_accuracy``, before the step."""
        z = out.z.detach()
        if len(z) < 2:
            raise ValueError("the discriminator needs batches of at least 2 to permute")
        if self.discriminator_batch == "split":
            half = len(z) // 2
            joint, product = z[:half], permute_dims(z[half : 2 * half], generator)
        else:
            joint, product = z, permute_dims(z, generator)
        logits = self.discriminator(torch.cat([joint, product]))  # one pass: no batch norm
        labels = torch.cat([torch.zeros(len(joint)), torch.ones(len(product))]).long()
        labels = labels.to(z.device)
        loss = F.cross_entropy(logits, labels)
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.discriminator_optimizer.step()
        accuracy = (logits.detach().argmax(1) == labels).float().mean()
        return {"discriminator_loss": loss.item(), "discriminator_accuracy": accuracy.item()}

    def get_extra_state(self) -> dict[str, Any]:
        """The discriminator optimiser's state (saved with ``state_dict()``)."""
        return {"discriminator_optimizer": self.discriminator_optimizer.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])


class ADFactorVAE(FactorVAE):
    """AD-FactorVAE (Liu et al., CVPR 2020, PAPER.md section 2): FactorVAE plus ``lam`` times
    the attention-disentanglement loss of pairs of per-dimension attention maps of ``x``::

        loss = recon + KL + gamma * TC + lam * mean_{(i, j) in pairs} L_AD(M^i, M^j)

    with :func:`ad_loss` averaged over the batch, and ``M^i`` ``(B, H, W)`` from
    :func:`~vaecam.attention.attention_maps` at ``target_layer`` (``formulation``,
    ``quantity``), differentiable (``create_graph``) so the term trains the encoder. Maps are
    recomputed from ``x`` (one more encoder pass); pairs come from :func:`latent_pairs`
    (``ad_pairs``). Pairs and the sampled ``z`` are drawn with the step's ``generator``; without
    one (validation), with a fresh generator seeded 0, so validation losses are deterministic.
    Under ``torch.no_grad`` (validation) the maps are built without the double-backward graph.

    Defaults: ``target_layer="encoder.4"``, the third conv (8 x 8; PAPER.md lists the first or
    the third conv for dSprites); ``formulation="per_dim"`` (the paper's); ``quantity="z"`` (the
    reproduction's disentanglement code differentiated a sampled ``z``); ``ad_pairs="random"``
    (the reproduction); ``lam=40``, the value of the reproduction's best run of 1, 20, 40 and
    80, but applied to ``ad_reduction="per_image"`` (ours): the reproduction pooled the overlap
    over the batch and divided by ``B`` (``ad_reduction="reproduction"``), so its ``lam=40`` is
    ``B`` (64) times weaker than ours.

    ``options`` are :class:`FactorVAE`'s (``gamma``, the discriminator's, and ConvVAE's); all
    arguments are keywords.
    """

    def __init__(
        self,
        *,
        lam: float = 40.0,
        target_layer: str = "encoder.4",
        formulation: str = "per_dim",
        quantity: Literal["z", "mu"] = "z",
        ad_pairs: ADPairs = "random",
        ad_reduction: str = "per_image",
        **options: Any,
    ):
        super().__init__(**options)
        if ad_reduction not in AD_REDUCTIONS:
            raise ValueError(
                f"ad_reduction must be one of {', '.join(AD_REDUCTIONS)}, got {ad_reduction!r}"
            )
        LayerActivations(self, target_layer)  # unknown layer: fail now, listing names
        FORMULATIONS[formulation]
        if quantity not in ("z", "mu"):
            # the quantities that compare with normal data need its statistics: not here
            raise ValueError(f"quantity for the AD loss must be 'z' or 'mu', got {quantity!r}")
        _pair_count(self.latent_dim, ad_pairs)
        self.lam = lam
        self.target_layer = target_layer
        self.formulation = formulation
        self.quantity = quantity
        self.ad_pairs = ad_pairs
        self.ad_reduction = ad_reduction

    def regularisers(
        self, x: Tensor, out: VAEOutput, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        terms = super().regularisers(x, out, generator)
        if generator is None:
            # validation (``evaluate_loss`` passes none) must be deterministic: fixed draws,
            # without touching torch's global RNG
            generator = torch.Generator().manual_seed(0)
        pairs = latent_pairs(self.latent_dim, self.ad_pairs, generator).tolist()
        dims = sorted({d for pair in pairs for d in pair})  # gradients only for these
        maps = attention_maps(
            self,
            x,
            self.target_layer,
            formulation=self.formulation,
            quantity=self.quantity,
            generator=generator,
            create_graph=torch.is_grad_enabled(),  # the graph only when a backward will follow
            dims=dims,
        ).per_dim.unbind(0)  # one map (B, H, W) per dim in ``dims``
        index = {d: k for k, d in enumerate(dims)}
        # A loop over pairs of unbound maps, not maps[pairs[:, 0]]: the backward of fancy
        # indexing scatters per pair, ~4x slower for all 45 pairs of 10 dims at 64x64 (CPU).
        ad = [
            ad_loss(maps[index[i]], maps[index[j]], reduction=self.ad_reduction) for i, j in pairs
        ]
        return terms | {"ad": torch.stack(ad).mean()}

    @property
    def regulariser_weights(self) -> dict[str, float]:
        return super().regulariser_weights | {"ad": self.lam}
