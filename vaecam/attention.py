"""VAE Grad-CAM: attention maps from the latent space (Liu et al., CVPR 2020; PAPER.md section 1).

Given the activations ``A`` ``(B, C, h, w)`` of an encoder *target layer* and a differentiated
quantity ``q`` ``(B, n)`` (``mu``, a sampled ``z``, the paper's Eq. 4 read literally, or a
comparison with the normal data's latent statistics),
every latent dim ``i`` gets the gradient ``dq_i / dA`` and hence a map. The readings of
how gradients become maps are registry entries of :data:`FORMULATIONS`; what is differentiated
is one of :data:`QUANTITIES`.

Everything stays in torch, so with ``create_graph=True`` the maps are differentiable w.r.t. the
input and the model's parameters (the attention-disentanglement loss, PAPER.md section 2)::

    maps = attention_maps(model, x, "encoder.2", formulation="per_dim", quantity="mu")
    maps.per_dim.shape, maps.aggregate.shape  # (n, B, H, W), (B, H, W)

    # every (layer, formulation, quantity) of a scoring grid from one forward pass
    grid = attention_grid(model, x, ["encoder.0", "encoder.2"], ["per_dim", "authors"], ["mu"])
    grid.maps["encoder.2", "authors", "mu"].shape  # (B, H, W)

    with LayerActivations(model, "encoder.2") as layer:  # the hook alone
        mu, logvar = model.encode(x)
    A = layer.activations  # (B, C, h, w), still attached to the autograd graph
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaecam.latent import LatentStats, latent_stats, reparameterise
from vaecam.registry import Registry

__all__ = [
    "BATCH_DEPENDENT",
    "FORMULATIONS",
    "GAP_ONLY",
    "QUANTITIES",
    "AttentionGrid",
    "AttentionMaps",
    "LatentStats",
    "LayerActivations",
    "NEGATED",
    "SIGN_INVARIANT",
    "attention_grid",
    "attention_maps",
    "gap_head",
    "latent_gradients",
    "latent_stats",
]


class LayerActivations:
    """Context manager capturing the output of the module named ``target_layer``.

    One forward hook is registered on entry and always removed on exit, also when the block
    raises. ``activations`` keeps its autograd graph. When the graph would not reach the layer
    (frozen parameters and an input without ``requires_grad``), the hook makes the output a
    leaf that requires grad, so ``d q / d A`` still exists; nothing upstream needs a gradient
    for Grad-CAM.
    """

    def __init__(self, model: nn.Module, target_layer: str):
        try:
            self.module = model.get_submodule(target_layer)
        except AttributeError:
            modules = [name for name, _ in model.named_modules() if name]
            encoder = [name for name in modules if name.startswith("encoder.")]
            raise KeyError(
                f"unknown target_layer {target_layer!r}; valid encoder layers: "
                f"{', '.join(encoder or modules)}"
            ) from None
        self.activations: Tensor | None = None
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def _hook(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        if torch.is_grad_enabled() and not output.requires_grad:
            output = output.detach().requires_grad_()
        self.activations = output
        return output

    def __enter__(self) -> LayerActivations:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class AttentionMaps(NamedTuple):
    """``per_dim`` ``(n, B, H, W)`` and ``aggregate`` ``(B, H, W)``, at the input's size, both
    non-negative (ReLU or abs). ``per_dim`` is None where it was not asked for (a scoring grid
    needs the aggregate only, which is formed without upsampling every dim's map)."""

    per_dim: Tensor | None
    aggregate: Tensor


Generator = torch.Generator | None

# --- what is differentiated: (mu, logvar, stats, generator) -> q (B, n) ---------------------

Quantity = Callable[[Tensor, Tensor, LatentStats | None, Generator], Tensor]


def _mu(mu: Tensor, logvar: Tensor, stats: LatentStats | None, generator: Generator) -> Tensor:
    return mu  # the authors' code


def _z(mu: Tensor, logvar: Tensor, stats: LatentStats | None, generator: Generator) -> Tensor:
    return reparameterise(mu, logvar, generator)  # the reproduction's disentanglement code


def _require(stats: LatentStats | None, like: Tensor) -> LatentStats:
    if stats is None:
        raise ValueError(
            "the quantities that compare with normal data (normal_difference, kl_to_normal, "
            "mahalanobis) need the normal data's latent statistics: pass "
            "latent_stats=latent_stats(mu, logvar) computed from training data"
        )
    return stats.to(like)


def _normal_difference(
    mu: Tensor, logvar: Tensor, stats: LatentStats | None, generator: Generator
) -> Tensor:
    # Eq. 4 read literally: the normal-difference variable N(mu_n - mu_x, sigma_n^2 +
    # sigma_x^2), its mean. The statistics are constants, so its gradient is -d mu / dA: under
    # abs (authors, per_channel) its maps equal mu's, under per_dim they are the ReLU of the
    # negated map. The normal data do not change the map.
    return _require(stats, mu).mu - mu


def _normal_difference_z(
    mu: Tensor, logvar: Tensor, stats: LatentStats | None, generator: Generator
) -> Tensor:
    # A draw from that variable, with reparameterise's CPU-generator convention.
    stats = _require(stats, mu)
    return reparameterise(stats.mu - mu, torch.log(stats.var + logvar.exp()), generator)


def _kl_to_normal(
    mu: Tensor, logvar: Tensor, stats: LatentStats | None, generator: Generator
) -> Tensor:
    # Our reading of "how far from normal" per latent dim: KL(N(mu_x, sigma_x^2) ||
    # N(mu_n, sigma_n^2)) = 1/2 (log sigma_n^2 / sigma_x^2 + (sigma_x^2 + (mu_x - mu_n)^2) /
    # sigma_n^2 - 1), differentiated through mu and logvar; the statistics change the map.
    stats = _require(stats, mu)
    return 0.5 * (
        torch.log(stats.var) - logvar + (logvar.exp() + (mu - stats.mu) ** 2) / stats.var - 1
    )


def _mahalanobis(
    mu: Tensor, logvar: Tensor, stats: LatentStats | None, generator: Generator
) -> Tensor:
    # Per latent dim, the squared standardised distance of mu from the normal data's mean,
    # (mu_x - mu_n)^2 / sigma_n^2: its sum over dims is the squared (diagonal) Mahalanobis
    # distance. Our reading too; the statistics change the map.
    stats = _require(stats, mu)
    return (mu - stats.mu) ** 2 / stats.var


#: What is differentiated, ``(mu, logvar, normal stats, generator) -> q (B, n)``, one map per
#: dim of ``q``. ``mu`` (the authors' code) and a sampled ``z`` (the reproduction's
#: disentanglement code) ignore the normal data. ``normal_difference`` is the paper's Eq. 4 read
#: literally (the mean ``mu_n - mu_x``, whose gradient is ``-d mu``: identical to ``mu`` under
#: abs) and ``normal_difference_z`` a draw of it; ``kl_to_normal`` and ``mahalanobis`` are our
#: readings in which the normal statistics matter (the paper is silent on how).
QUANTITIES: Registry[Quantity] = Registry(
    "attention quantity",
    {
        "mu": _mu,
        "z": _z,
        "normal_difference": _normal_difference,
        "normal_difference_z": _normal_difference_z,
        "kl_to_normal": _kl_to_normal,
        "mahalanobis": _mahalanobis,
    },
)


#: A quantity whose gradient is exactly minus another's (``mu_n - mu_x`` against ``mu``): under
#: a :data:`SIGN_INVARIANT` formulation its maps equal the other's, so a scoring grid that has
#: both scores it once.
NEGATED = {"normal_difference": "mu"}


# --- formulations: (A (B,C,h,w), grads (n,B,C,h,w), size (H,W), per_dim) -> AttentionMaps ---
#
# Each forms the aggregate map without upsampling every dim's map (upsampling is linear, so it
# commutes with the mean over dims); the upsampled per-dim maps only when ``per_dim`` is true.

Formulation = Callable[..., AttentionMaps]


def _upsample(maps: Tensor, size: tuple[int, int], align_corners: bool = False) -> Tensor:
    """Bilinear resize ``(..., h, w) -> (..., H, W)``; ``align_corners=False`` unless a
    formulation reproduces code that set it."""
    flat = maps.reshape(-1, *maps.shape[-3:])
    # channels-last: both the CPU and the CUDA kernels then parallelise over every output
    # (CUDA's NCHW kernel loops over N*C inside each output pixel's thread: 0.4 ms for
    # (32, 64, 7, 7) -> 28x28 on an H200; 5x slower on a CPU too)
    flat = flat.contiguous(memory_format=torch.channels_last)
    up = F.interpolate(flat, size=size, mode="bilinear", align_corners=align_corners)
    return up.reshape(*maps.shape[:-2], *size)


def _gap(grads: Tensor) -> Tensor:
    """Global average pooling ``(..., C, h, w) -> (..., C)``; pooled gradients
    ``(..., C, 1, 1)`` (a :func:`gap_head`'s contraction) are their own GAP (no kernel)."""
    return grads[..., 0, 0] if grads.shape[-2:] == (1, 1) else grads.mean(dim=(-2, -1))


def _mean_of_dims(low: Tensor, size: tuple[int, int], per_dim: bool) -> AttentionMaps:
    """:class:`AttentionMaps` from per-dim maps ``low`` ``(n, B, h, w)`` at the layer's size:
    ``M = mean_i M^i`` upsampled (and each ``M^i`` upsampled when ``per_dim``)."""
    return AttentionMaps(_upsample(low, size) if per_dim else None, _upsample(low.mean(0), size))


def _per_dim(
    A: Tensor, grads: Tensor, size: tuple[int, int], per_dim: bool = True
) -> AttentionMaps:
    """The paper (PAPER.md section 1): ``alpha^i_k = GAP(dz_i/dA^k)``,
    ``M^i = ReLU(sum_k alpha^i_k A^k)``, ``M = mean_i M^i``."""
    alpha = _gap(grads)  # (n, B, C)
    return _mean_of_dims(torch.relu(torch.einsum("nbc,bchw->nbhw", alpha, A)), size, per_dim)


def _per_channel(
    A: Tensor, grads: Tensor, size: tuple[int, int], per_dim: bool = True
) -> AttentionMaps:
    """The reproduction's reading as its report describes it: ``M^i = mean_k |alpha^i_k
    A^k|``, ``M = mean_i M^i`` (per image, per dim; no normalisation)."""
    alpha = _gap(grads)  # (n, B, C)
    return _mean_of_dims((alpha[..., None, None] * A).abs().mean(-3), size, per_dim)


def _rms(g: Tensor, dims: int) -> Tensor:
    """The RMS of ``g`` ``(..., B, C, h, w)`` over its last ``dims`` dims, plus the codes'
    ``1e-5``, shaped to divide ``GAP(g)`` ``(..., B, C)``: ``dims=4`` is the codes' one RMS
    over the whole batch tensor ``(..., 1, 1)``, ``dims=3`` each image's own ``(..., B, 1)``.
    (Both codes divide by ``norm.item()``, a constant, but never differentiate a map; ours
    stay the differentiable function their values are.) ``vector_norm``'s gradient is 0, not
    NaN as ``sqrt``'s, where a gradient vanishes."""
    n = math.sqrt(math.prod(g.shape[-dims:]))
    rms = torch.linalg.vector_norm(g, dim=tuple(range(-dims, 0))) / n + 1e-5
    return rms.reshape(*rms.shape, *[1] * (dims - 2))


def _authors_recipe(A: Tensor, g: Tensor, size: tuple[int, int], rms: Tensor) -> Tensor:
    """``|upsample(sum_k alpha_k A^k)|`` with ``alpha = GAP(g) / rms``: ``g`` ``(..., B, C, h,
    w)``, ``rms`` broadcastable to ``(..., B, 1)`` -> ``(..., B, H, W)``."""
    alpha = _gap(g) / rms  # normalising after GAP: it is linear
    return _upsample(torch.einsum("...bc,bchw->...bhw", alpha, A), size).abs()


def _authors(
    A: Tensor, grads: Tensor, size: tuple[int, int], per_dim: bool = True
) -> AttentionMaps:
    """The authors' code (liuem607/expVAE ``code/gradcam.py``): one backward of ``score =
    sum_b sum_i q_i`` (its gradient is ``g = grads.sum(0)`` by linearity), ``g / (sqrt(mean(
    g^2)) + 1e-5)`` with ONE mean over the whole batch tensor ``(B, C, h, w)``, ``alpha =
    GAP``, ``sum_k alpha_k A^k`` per image, ``F.upsample`` (bilinear, ``align_corners=False``),
    then ``abs``. The batch-wide RMS makes an image's map depend on its batch-mates (it is
    in :data:`BATCH_DEPENDENT`): the authors scored MNIST in batches of 128, in test-set
    order. Per-dim maps apply the same recipe to each dim's own gradient."""
    g = grads.sum(0)
    maps = _authors_recipe(A, grads, size, _rms(grads, 4)) if per_dim else None
    return AttentionMaps(maps, _authors_recipe(A, g, size, _rms(g, 4)))


def _authors_per_image(
    A: Tensor, grads: Tensor, size: tuple[int, int], per_dim: bool = True
) -> AttentionMaps:
    """:func:`_authors` with each image's gradient divided by its own RMS (over ``(C, h,
    w)``) instead of the batch's: a map that does not depend on its batch-mates. It equals
    the authors' code for a batch of one image only."""
    g = grads.sum(0)
    maps = _authors_recipe(A, grads, size, _rms(grads, 3)) if per_dim else None
    return AttentionMaps(maps, _authors_recipe(A, g, size, _rms(g, 3)))


def _reproduction_recipe(A: Tensor, g: Tensor, size: tuple[int, int]) -> Tensor:
    """``upsample(mean_k |alpha_k A^k|)`` with ``alpha = GAP(g / batch RMS)`` and
    ``align_corners=True``: ``g`` ``(..., B, C, h, w)`` -> ``(..., B, H, W)``."""
    alpha = _gap(g) / _rms(g, 4)  # (..., B, C)
    low = (alpha[..., None, None] * A).abs().mean(-3)  # abs per channel, then the channel mean
    return _upsample(low, size, align_corners=True)


def _reproduction(
    A: Tensor, grads: Tensor, size: tuple[int, int], per_dim: bool = True
) -> AttentionMaps:
    """The reproduction's anomaly maps (FrankBrongers/Reproducing_expVAE,
    ``Anomaly_Detection/code/gradcam.py``): one backward of ``sum_b sum_i q_i`` (``g =
    grads.sum(0)``), ``g`` divided by one RMS over the whole batch tensor (``sqrt(mean(g^2)) +
    1e-5``), ``alpha = GAP``, ``mean_k |alpha_k A^k|`` (abs per channel, then the channel
    mean), upsampled bilinearly with ``align_corners=True``. Batch-dependent like
    :func:`_authors`; per-dim maps apply the recipe to each dim's own gradient."""
    maps = _reproduction_recipe(A, grads, size) if per_dim else None
    return AttentionMaps(maps, _reproduction_recipe(A, grads.sum(0), size))


def _reproduction_disentanglement(
    A: Tensor, grads: Tensor, size: tuple[int, int], per_dim: bool = True
) -> AttentionMaps:
    """The reproduction's dSprites maps (``Latent_Space_Disentanglement/gradcam.py``): per dim
    ``M^i = upsample(sum_k ReLU(alpha^i_k A^k))`` (ReLU per channel, then the channel SUM),
    ``align_corners=True``, with ``alpha`` a constant (their gradients come from backward
    hooks, without ``create_graph``: an AD loss trains through ``A`` only); ``M = mean_i
    M^i``."""
    alpha = _gap(grads).detach()  # (n, B, C)
    low = torch.relu(alpha[..., None, None] * A).sum(-3)  # (n, B, h, w)
    maps = _upsample(low, size, align_corners=True)
    return AttentionMaps(maps if per_dim else None, maps.mean(0))


#: Formulations whose map of an image depends on its batch-mates (a batch-wide RMS): scored in
#: the batches of the code they reproduce (``AnomalySettings.score_batch_size``).
BATCH_DEPENDENT = frozenset({"authors", "reproduction"})

#: Formulations that take ``|.|`` of the map or of each channel's term, so ``q`` and ``-q``
#: give the same map: a quantity whose gradient is minus another's (:data:`NEGATED`) adds
#: nothing under them.
SIGN_INVARIANT = frozenset({"authors", "authors_per_image", "per_channel", "reproduction"})

#: How gradients become maps (PAPER.md section 1). The paper's equations: ``per_dim``; the
#: reproduction's report: ``per_channel``; the code of the authors (``authors``, and
#: ``authors_per_image``, its batch-independent variant) and of the reproduction
#: (``reproduction`` for its anomaly maps, ``reproduction_disentanglement`` for its dSprites
#: AD loss), each computing exactly what that code computes.
FORMULATIONS: Registry[Formulation] = Registry(
    "attention formulation",
    {
        "per_dim": _per_dim,
        "per_channel": _per_channel,
        "authors": _authors,
        "authors_per_image": _authors_per_image,
        "reproduction": _reproduction,
        "reproduction_disentanglement": _reproduction_disentanglement,
    },
)

#: Formulations that read the gradients only through their GAP (:func:`_gap`), so they
#: accept the pooled gradients ``(k, B, C, 1, 1)`` of a :func:`gap_head`'s contraction.
#: (The codes' RMS needs every element of the gradient.)
GAP_ONLY = frozenset({"per_dim", "per_channel", "reproduction_disentanglement"})


# --- the entry point -----------------------------------------------------------------------


def latent_gradients(
    q: Tensor, A: Tensor, create_graph: bool = False, dims: Sequence[int] | None = None
) -> Tensor:
    """The per-dimension gradients ``dq_i / dA`` ``(k, B, C, h, w)`` for the ``k`` latent
    dims in ``dims`` (default: all ``n``, in order) from one batched backward (vmap over ``k``
    one-hot cotangents), not ``k`` backward passes.

    ``q`` is ``(B, n)``. The cotangent ``e_i`` sums over the batch, which yields per-image
    gradients because images do not interact (no batch norm in train mode).
    """
    (grads,) = _latent_gradients(q, [A], create_graph, create_graph, dims)
    return grads


def _latent_gradients(
    q: Tensor,
    inputs: Sequence[Tensor],
    create_graph: bool,
    retain_graph: bool,
    dims: Sequence[int] | None = None,
) -> tuple[Tensor, ...]:
    """:func:`latent_gradients` w.r.t. several tensors of one graph in one backward pass
    (``(k, *t.shape)`` each); ``retain_graph`` keeps the graph for a later backward."""
    B, n = q.shape
    rows = torch.eye(n, dtype=q.dtype, device=q.device)
    if dims is not None:
        rows = rows[list(dims)]
    onehot = rows.unsqueeze(1).expand(len(rows), B, n)
    return torch.autograd.grad(
        q,
        list(inputs),
        grad_outputs=onehot,
        is_grads_batched=True,
        create_graph=create_graph,
        retain_graph=retain_graph,
    )


def _batch_norm_slope(bn: nn.BatchNorm2d, a: Tensor) -> Tensor:
    # in eval mode: the per-channel affine map gamma (a - mean) / sqrt(var + eps) + beta
    slope = torch.rsqrt(bn.running_var + bn.eps)
    return (slope if bn.weight is None else slope * bn.weight)[:, None, None]


Slope = Callable[[nn.Module, Tensor], Tensor | float]

#: ``d phi(a) / d a`` of the elementwise modules that the GAP path sees through, by exact type.
#: Batch norm and dropout are elementwise only in eval mode (with running statistics).
SLOPES: dict[type[nn.Module], Slope] = {
    nn.ReLU: lambda m, a: (a > 0).to(a.dtype),
    nn.LeakyReLU: lambda m, a: torch.where(a > 0, 1.0, m.negative_slope).to(a.dtype),
    nn.BatchNorm2d: _batch_norm_slope,
    nn.Identity: lambda m, a: 1.0,
    nn.Dropout: lambda m, a: 1.0,
}


def _elementwise(layer: nn.Module) -> bool:
    if type(layer) not in SLOPES or getattr(layer, "inplace", False):
        return False
    if isinstance(layer, nn.BatchNorm2d):
        return not layer.training and layer.running_var is not None
    return not (isinstance(layer, nn.Dropout) and layer.training)


class GapHead(NamedTuple):
    """The modules after an encoder layer up to its first linear layer: ``phi``, elementwise,
    applied in order, then an ``nn.Flatten()`` and the ``nn.Linear`` named ``linear``."""

    phi: tuple[nn.Module, ...]
    linear: str


def gap_head(model: nn.Module, target_layer: str) -> GapHead | None:
    """The :class:`GapHead` after ``target_layer`` when, in the ``nn.Sequential`` holding it,
    the layer is followed only by elementwise modules, then an ``nn.Flatten()`` and an
    ``nn.Linear`` (the authors' MNIST model at ``encoder.2``, the UCSD model at its last conv);
    otherwise ``None``. This is the structure :func:`_pool_through_head` needs."""
    parent_name, _, child = target_layer.rpartition(".")
    try:
        parent = model.get_submodule(parent_name)
    except AttributeError:
        return None
    children = list(parent.named_children()) if isinstance(parent, nn.Sequential) else []
    names = [name for name, _ in children]
    if child not in names:
        return None
    after = children[names.index(child) + 1 :]
    for i, ((_, module), (name, following)) in enumerate(zip(after, after[1:], strict=False)):
        if isinstance(module, nn.Flatten):
            whole = (module.start_dim, module.end_dim) == (1, -1)
            if not (whole and isinstance(following, nn.Linear)):
                return None
            prefix = f"{parent_name}." if parent_name else ""
            return GapHead(tuple(m for _, m in after[:i]), prefix + name)
        if not _elementwise(module):
            return None
    return None


def _derivative(phi: Sequence[nn.Module], A: Tensor) -> Tensor:
    """``phi'(A)`` ``(B, C, h, w)`` by the chain rule through the elementwise modules ``phi``
    (applied in order) with their :data:`SLOPES`: a few elementwise kernels, where a backward
    call would cost a round trip through the autograd engine (~0.3 ms on a GPU)."""
    slope: Tensor | float = 1.0
    for i, module in enumerate(phi):
        slope = slope * SLOPES[type(module)](module, A)
        if i < len(phi) - 1:  # the last module's output is not needed
            A = module(A)
    return torch.as_tensor(slope, dtype=A.dtype, device=A.device).expand_as(A)


def _pool_through_head(
    g: Tensor, A: Tensor, phi: Sequence[nn.Module], weight: Tensor, create_graph: bool
) -> Tensor:
    """The GAP of the per-dimension gradients, ``mean_hw dq_i/dA`` as ``(k, B, C, 1, 1)``,
    from ``g = dq_i/dhidden`` ``(k, B, J)``, without forming the ``(k, B, C, h, w)`` gradients,
    for a :class:`GapHead` structure.

    ``A`` ``(B, C, h, w)`` reaches the linear layer as ``vec(phi(A))`` (``phi`` elementwise,
    ``GapHead.phi``), which gives ``hidden = W vec(phi(A)) + b`` ``(B, J)``; ``weight`` is ``W``
    ``(J, C*h*w)``. Since ``dq_i/dA = phi'(A) * (W^T dq_i/dhidden)``,

        ``GAP(dq_i/dA)_c = 1/(hw) sum_j dq_i/dhidden_j  sum_s W[j, c, s] phi'(A)[c, s]``,

    and contracting ``W`` with ``phi'(A)`` first costs one ``B x J x C*h*w`` product instead of
    ``k`` of them (what the backward through ``W`` costs): about ``k`` times fewer FLOPs.
    """
    B, C, h, w = A.shape
    with torch.set_grad_enabled(create_graph):
        dphi = _derivative(phi, A)
        # batched matmuls over strided views (no copies): sum_s phi'(A)[b,c,s] W[j,c,s] as
        # (C, B, hw) @ (C, hw, J), then sum_j g[k,b,j] pooled[c,b,j] as (B, k, J) @ (B, J, C)
        pooled_weight = torch.bmm(
            dphi.reshape(B, C, h * w).transpose(0, 1), weight.view(-1, C, h * w).permute(1, 2, 0)
        )  # (C, B, J)
        alpha = torch.bmm(g.transpose(0, 1), pooled_weight.permute(1, 2, 0)).transpose(0, 1)
        return (alpha / (h * w))[..., None, None]


class AttentionGrid(NamedTuple):
    """What :func:`attention_grid` computed from one forward pass: ``maps[layer, formulation,
    quantity]`` (:class:`AttentionMaps`), and the encoding ``mu``, ``logvar`` ``(B, n)`` of
    that pass (detached unless ``create_graph``)."""

    maps: dict[tuple[str, str, str], AttentionMaps]
    mu: Tensor
    logvar: Tensor


def attention_grid(
    model: nn.Module,
    x: Tensor,
    target_layers: Sequence[str],
    formulations: Sequence[str],
    quantities: Sequence[str],
    latent_stats: LatentStats | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    per_dim: bool = False,
    create_graph: bool = False,
    dims: Sequence[int] | None = None,
) -> AttentionGrid:
    """Attention maps of images ``x`` ``(B, C, H, W)`` for every combination of encoder
    ``target_layers``, ``formulations`` and ``quantities``, from shared work: one forward through
    ``model.encode`` with a hook on every layer; per quantity (``q = QUANTITIES[name](mu, logvar,
    latent_stats, generators[name])``, ``(B, n)``) one batched backward to every layer at once;
    every formulation from those same gradients.

    A layer's :data:`GAP_ONLY` formulations read the gradients through their GAP only: at a
    layer with a :func:`gap_head` they get it from :func:`_pool_through_head`'s cheap
    contraction, and the full ``(n, B, C, h, w)`` gradients are formed only for the other
    formulations (``authors``) or where the layer has no such head. Each combination is thus
    computed exactly as :func:`attention_maps` computes it alone.

    Each quantity draws from its own ``generators[name]`` (none: torch's global RNG), so what
    one quantity draws does not depend on which others are in the grid. ``per_dim`` asks for
    the upsampled per-dimension maps too (a scoring grid needs the aggregates only).
    """
    forms = {name: FORMULATIONS[name] for name in formulations}  # bad names fail before work
    quants = {name: QUANTITIES[name] for name in quantities}
    layers = list(dict.fromkeys(target_layers))
    gap = any(name in GAP_ONLY for name in forms)
    heads = {layer: gap_head(model, layer) if gap else None for layer in layers}
    full = {
        layer: heads[layer] is None or any(name not in GAP_ONLY for name in forms)
        for layer in layers
    }
    size = tuple(x.shape[-2:])
    with torch.enable_grad():
        with ExitStack() as hooks:
            names = [*layers, *(head.linear for head in heads.values() if head)]
            captured = {
                name: hooks.enter_context(LayerActivations(model, name))
                for name in dict.fromkeys(names)
            }
            mu, logvar = model.encode(x)
        for layer in layers:
            A = captured[layer].activations
            if A is None or A.dim() != 4:
                raise ValueError(f"target_layer {layer!r} must output (B, C, h, w) in encode")
        # what each quantity is differentiated w.r.t.: A for the full gradients, the head's
        # linear output for the pooled ones
        wanted = {("full", layer): captured[layer].activations for layer in layers if full[layer]}
        wanted |= {
            ("pooled", layer): captured[head.linear].activations
            for layer, head in heads.items()
            if head
        }
        maps: dict[tuple[str, str, str], AttentionMaps] = {}
        for index, (quantity, compute) in enumerate(quants.items()):
            q = compute(mu, logvar, latent_stats, (generators or {}).get(quantity))
            last = index == len(quants) - 1
            grads = dict(
                zip(
                    wanted,
                    _latent_gradients(
                        q, list(wanted.values()), create_graph, create_graph or not last, dims
                    ),
                    strict=True,
                )
            )
            for layer, head in heads.items():
                A = captured[layer].activations
                pooled = None
                if head is not None:
                    weight = captured[head.linear].module.weight
                    pooled = _pool_through_head(
                        grads["pooled", layer], A, head.phi, weight, create_graph
                    )
                A = A if create_graph else A.detach()
                for name, form in forms.items():
                    g = pooled if name in GAP_ONLY and pooled is not None else grads["full", layer]
                    maps[layer, name, quantity] = form(A, g, size, per_dim)
    if not create_graph:
        mu, logvar = mu.detach(), logvar.detach()
    return AttentionGrid(maps, mu, logvar)


def attention_maps(
    model: nn.Module,
    x: Tensor,
    target_layer: str,
    formulation: str = "per_dim",
    quantity: str = "mu",
    latent_stats: LatentStats | None = None,
    generator: torch.Generator | None = None,
    create_graph: bool = False,
    dims: Sequence[int] | None = None,
) -> AttentionMaps:
    """Attention maps of images ``x`` ``(B, C, H, W)`` at the encoder's ``target_layer``.

    One forward through ``model.encode``, ``q = QUANTITIES[quantity](mu, logvar, latent_stats,
    generator)`` ``(B, n)``, all ``n`` gradients from one batched backward (or, for the
    :data:`GAP_ONLY` formulations at a layer with a :func:`gap_head`, only their GAP, by
    :func:`_pool_through_head`), then ``FORMULATIONS[formulation]``: the one-combination
    case of :func:`attention_grid`. Returns :class:`AttentionMaps` at ``x``'s ``H, W``:
    detached by default; with ``create_graph=True`` differentiable w.r.t. ``x`` and the
    parameters.

    The model's train/eval mode is left as it is: put models with batch norm in eval mode, or
    an image's map depends on its batch-mates. ``generator`` seeds the sampled quantities.
    ``dims`` restricts the work to those latent dims (``per_dim`` then holds their maps in
    that order, and ``aggregate`` is formed from them only): the AD loss needs two of ``n``.
    """
    grid = attention_grid(
        model,
        x,
        [target_layer],
        [formulation],
        [quantity],
        latent_stats,
        {quantity: generator} if generator is not None else None,
        per_dim=True,
        create_graph=create_graph,
        dims=dims,
    )
    return grid.maps[target_layer, formulation, quantity]
