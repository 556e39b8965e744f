"""VAE Grad-CAM: attention maps from the latent space (Liu et al., CVPR 2020; PAPER.md section 1).

Given the activations ``A`` ``(B, C, h, w)`` of an encoder *target layer* and a differentiated
quantity ``q`` ``(B, n)`` (``mu``, a sampled ``z``, or the paper's Eq. 4 normal difference),
every latent dim ``i`` gets the gradient ``dq_i / dA`` and hence a map. The three readings of
how gradients become maps are registry entries of :data:`FORMULATIONS`; what is differentiated
is one of :data:`QUANTITIES`.

Everything stays in torch, so with ``create_graph=True`` the maps are differentiable w.r.t. the
input and the model's parameters (the attention-disentanglement loss, PAPER.md section 2)::

    maps = attention_maps(model, x, "encoder.2", formulation="per_dim", quantity="mu")
    maps.per_dim.shape, maps.aggregate.shape  # (n, B, H, W), (B, H, W)

    with LayerActivations(model, "encoder.2") as layer:  # the hook alone
        mu, logvar = model.encode(x)
    A = layer.activations  # (B, C, h, w), still attached to the autograd graph
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaecam.models.vae import reparameterise
from vaecam.registry import Registry


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


class LatentStats(NamedTuple):
    """Latent statistics of the normal training data for Eq. 4: ``mu``, ``var`` each ``(n,)``."""

    mu: Tensor
    var: Tensor


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


class AttentionMaps(NamedTuple):
    """``per_dim`` ``(n, B, H, W)`` and ``aggregate`` ``(B, H, W)``, at the input's size, both
    non-negative (ReLU or abs)."""

    per_dim: Tensor
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
            "the normal-difference quantities (Eq. 4) need the normal data's latent statistics: "
            "pass latent_stats=latent_stats(mu, logvar) computed from training data"
        )
    return LatentStats(*(s.to(like) for s in stats))


def _normal_difference(
    mu: Tensor, logvar: Tensor, stats: LatentStats | None, generator: Generator
) -> Tensor:
    # Eq. 4: the normal-difference variable is N(mu_i - mu_x, sigma_i^2 + sigma_x^2); its mean.
    return _require(stats, mu).mu - mu


def _normal_difference_z(
    mu: Tensor, logvar: Tensor, stats: LatentStats | None, generator: Generator
) -> Tensor:
    # A draw from that variable, with reparameterise's CPU-generator convention.
    stats = _require(stats, mu)
    return reparameterise(stats.mu - mu, torch.log(stats.var + logvar.exp()), generator)


QUANTITIES: Registry[Quantity] = Registry(
    "attention quantity",
    {
        "mu": _mu,
        "z": _z,
        "normal_difference": _normal_difference,
        "normal_difference_z": _normal_difference_z,
    },
)


# --- formulations: (A (B,C,h,w), grads (n,B,C,h,w), size (H,W)) -> AttentionMaps ------------

Formulation = Callable[[Tensor, Tensor, tuple[int, int]], AttentionMaps]


def _upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize, ``align_corners=False``: ``(..., h, w) -> (..., H, W)``."""
    flat = maps.reshape(-1, *maps.shape[-3:])
    # channels-last: both the CPU and the CUDA kernels then parallelise over every output
    # (CUDA's NCHW kernel loops over N*C inside each output pixel's thread: 0.4 ms for
    # (32, 64, 7, 7) -> 28x28 on an H200; 5x slower on a CPU too)
    flat = flat.contiguous(memory_format=torch.channels_last)
    up = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return up.reshape(*maps.shape[:-2], *size)


def _gap(grads: Tensor) -> Tensor:
    """Global average pooling ``(..., C, h, w) -> (..., C)``; the pooled gradients
    ``(..., C, 1, 1)`` of :func:`pooled_latent_gradients` are their own GAP (no kernel)."""
    return grads[..., 0, 0] if grads.shape[-2:] == (1, 1) else grads.mean(dim=(-2, -1))


def _per_dim(A: Tensor, grads: Tensor, size: tuple[int, int]) -> AttentionMaps:
    """The paper (PAPER.md section 1): ``alpha^i_k = GAP(dz_i/dA^k)``,
    ``M^i = ReLU(sum_k alpha^i_k A^k)``, ``M = mean_i M^i``."""
    alpha = _gap(grads)  # (n, B, C)
    per_dim = _upsample(torch.relu(torch.einsum("nbc,bchw->nbhw", alpha, A)), size)
    return AttentionMaps(per_dim, per_dim.mean(0))  # upsampling is linear: mean commutes


def _authors_map(A: Tensor, g: Tensor, size: tuple[int, int]) -> Tensor:
    """The authors' recipe for one gradient per image, ``g`` ``(..., B, C, h, w)`` ->
    ``(..., B, H, W)``: RMS-normalise, GAP, weighted sum, upsample, abs.

    The RMS is per image. The authors' code takes it over the whole batch tensor, which makes an
    image's map depend on its batch-mates; the two agree for a batch of one.
    """
    # vector_norm's gradient is 0 (not NaN, as sqrt's) where a dim's gradient vanishes.
    rms = torch.linalg.vector_norm(g, dim=(-3, -2, -1)) / math.sqrt(math.prod(g.shape[-3:]))
    alpha = _gap(g) / (rms.unsqueeze(-1) + 1e-5)  # normalise after GAP: it is linear
    return _upsample(torch.einsum("...bc,bchw->...bhw", alpha, A), size).abs()


def _authors(A: Tensor, grads: Tensor, size: tuple[int, int]) -> AttentionMaps:
    """The authors' code (liuem607/expVAE): one backward of ``sum_i mu_i``, whose gradient is
    ``grads.sum(0)`` by linearity, gives the aggregate; per-dim maps apply the same recipe to
    each dim's own gradient. See :func:`_authors_map` for the per-image RMS."""
    return AttentionMaps(_authors_map(A, grads, size), _authors_map(A, grads.sum(0), size))


def _per_channel(A: Tensor, grads: Tensor, size: tuple[int, int]) -> AttentionMaps:
    """The reproduction's reading: ``M^i = mean_k |alpha^i_k A^k|``, ``M = mean_i M^i``."""
    alpha = _gap(grads)  # (n, B, C)
    per_dim = _upsample((alpha[..., None, None] * A).abs().mean(-3), size)
    return AttentionMaps(per_dim, per_dim.mean(0))


FORMULATIONS: Registry[Formulation] = Registry(
    "attention formulation",
    {"per_dim": _per_dim, "authors": _authors, "per_channel": _per_channel},
)

#: Formulations that read the gradients only through their GAP (:func:`_gap`), so they
#: accept the pooled gradients ``(k, B, C, 1, 1)`` of :func:`pooled_latent_gradients`.
#: (The authors' RMS needs every element of the gradient.)
GAP_ONLY = frozenset({"per_dim", "per_channel"})


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
    B, n = q.shape
    rows = torch.eye(n, dtype=q.dtype, device=q.device)
    if dims is not None:
        rows = rows[list(dims)]
    onehot = rows.unsqueeze(1).expand(len(rows), B, n)
    (grads,) = torch.autograd.grad(
        q, A, grad_outputs=onehot, is_grads_batched=True, create_graph=create_graph
    )
    return grads


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


def _elementwise(module: nn.Module) -> bool:
    if type(module) not in SLOPES or getattr(module, "inplace", False):
        return False
    if isinstance(module, nn.BatchNorm2d):
        return not module.training and module.running_var is not None
    return not (isinstance(module, nn.Dropout) and module.training)


class GapHead(NamedTuple):
    """The modules after an encoder layer up to its first linear layer: ``phi``, elementwise,
    applied in order, then an ``nn.Flatten()`` and the ``nn.Linear`` named ``linear``."""

    phi: tuple[nn.Module, ...]
    linear: str


def gap_head(model: nn.Module, target_layer: str) -> GapHead | None:
    """The :class:`GapHead` after ``target_layer`` when, in the ``nn.Sequential`` holding it,
    the layer is followed only by elementwise modules, then an ``nn.Flatten()`` and an
    ``nn.Linear`` (the authors' MNIST model at ``encoder.2``, the UCSD model at its last conv);
    otherwise ``None``. This is the structure :func:`pooled_latent_gradients` needs."""
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


def pooled_latent_gradients(
    q: Tensor,
    A: Tensor,
    hidden: Tensor,
    phi: Sequence[nn.Module],
    weight: Tensor,
    create_graph: bool = False,
    dims: Sequence[int] | None = None,
) -> Tensor:
    """The GAP of the per-dimension gradients, ``mean_hw dq_i/dA`` as ``(k, B, C, 1, 1)``,
    without forming the ``(k, B, C, h, w)`` gradients, for a :class:`GapHead` structure.

    ``A`` ``(B, C, h, w)`` reaches the linear layer as ``vec(phi(A))`` (``phi`` elementwise,
    ``GapHead.phi``), which gives ``hidden = W vec(phi(A)) + b`` ``(B, J)``; ``weight`` is ``W``
    ``(J, C*h*w)``. Since ``dq_i/dA = phi'(A) * (W^T dq_i/dhidden)``,

        ``GAP(dq_i/dA)_c = 1/(hw) sum_j dq_i/dhidden_j  sum_s W[j, c, s] phi'(A)[c, s]``,

    and contracting ``W`` with ``phi'(A)`` first costs one ``B x J x C*h*w`` product instead of
    ``k`` of them (what the backward through ``W`` costs): about ``k`` times fewer FLOPs.
    """
    B, C, h, w = A.shape
    g = latent_gradients(q, hidden, create_graph, dims)  # (k, B, J)
    with torch.set_grad_enabled(create_graph):
        dphi = _derivative(phi, A)
        # batched matmuls over strided views (no copies): sum_s phi'(A)[b,c,s] W[j,c,s] as
        # (C, B, hw) @ (C, hw, J), then sum_j g[k,b,j] pooled[c,b,j] as (B, k, J) @ (B, J, C)
        pooled_weight = torch.bmm(
            dphi.reshape(B, C, h * w).transpose(0, 1), weight.view(-1, C, h * w).permute(1, 2, 0)
        )  # (C, B, J)
        alpha = torch.bmm(g.transpose(0, 1), pooled_weight.permute(1, 2, 0)).transpose(0, 1)
        return (alpha / (h * w))[..., None, None]


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
    :func:`pooled_latent_gradients`), then ``FORMULATIONS[formulation]``. Returns
    :class:`AttentionMaps` at ``x``'s ``H, W``: detached by default; with
    ``create_graph=True`` differentiable w.r.t. ``x`` and the parameters.

    The model's train/eval mode is left as it is: put models with batch norm in eval mode, or
    an image's map depends on its batch-mates. ``generator`` seeds the sampled quantities.
    ``dims`` restricts the work to those latent dims (``per_dim`` then holds their maps in
    that order, and ``aggregate`` is formed from them only): the AD loss needs two of ``n``.
    """
    form, quant = FORMULATIONS[formulation], QUANTITIES[quantity]  # bad names fail before work
    head = gap_head(model, target_layer) if formulation in GAP_ONLY else None
    with torch.enable_grad():
        with ExitStack() as hooks:
            layers = [
                hooks.enter_context(LayerActivations(model, name))
                for name in (target_layer, *([head.linear] if head else []))
            ]
            mu, logvar = model.encode(x)
        A = layers[0].activations
        if A is None or A.dim() != 4:
            raise ValueError(f"target_layer {target_layer!r} must output (B, C, h, w) in encode")
        q = quant(mu, logvar, latent_stats, generator)
        if head is None:
            grads = latent_gradients(q, A, create_graph, dims)
        else:
            hidden, weight = layers[1].activations, layers[1].module.weight
            grads = pooled_latent_gradients(q, A, hidden, head.phi, weight, create_graph, dims)
        if not create_graph:
            A = A.detach()
        return form(A, grads, tuple(x.shape[-2:]))
