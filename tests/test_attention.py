"""VAE Grad-CAM (vaecam.attention): gradients, formulations, hooks, errors, on tiny models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vaecam.attention import (
    BATCH_DEPENDENT,
    FORMULATIONS,
    GAP_ONLY,
    QUANTITIES,
    SIGN_INVARIANT,
    SLOPES,
    LatentStats,
    LayerActivations,
    attention_maps,
    gap_head,
    latent_gradients,
    latent_stats,
)
from vaecam.models import ConvVAE

TARGET = "encoder.2"
DETERMINISTIC = ["mu", "normal_difference"]


def tiny(dtype: torch.dtype = torch.float32, size: int = 16, latent: int = 6) -> ConvVAE:
    torch.manual_seed(0)
    model = ConvVAE(image_size=size, latent_dim=latent, widths=(4, 8), hidden=16)
    return model.to(dtype).eval()


@pytest.fixture
def model() -> ConvVAE:
    return tiny()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def stats(model: ConvVAE) -> LatentStats:
    train = torch.rand(20, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return latent_stats(*model.encode(train))


def encode(model: ConvVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    with LayerActivations(model, TARGET) as layer:
        mu, logvar = model.encode(x)
    return mu, logvar, layer.activations


@pytest.mark.parametrize("formulation", list(FORMULATIONS))
def test_batched_gradients_equal_a_loop_of_backwards(model, x, stats, formulation):
    mu, logvar, A = encode(model, x)
    q = QUANTITIES["normal_difference"](mu, logvar, stats, None)
    loop = torch.stack(
        [
            torch.autograd.grad(q[:, i].sum(), A, retain_graph=True)[0]
            for i in range(model.latent_dim)
        ]
    )
    batched = latent_gradients(q, A)
    torch.testing.assert_close(batched, loop, rtol=0, atol=1e-5)

    expected = FORMULATIONS[formulation](A.detach(), loop, (16, 16))
    maps = attention_maps(model, x, TARGET, formulation, "normal_difference", stats)
    for got, want in zip(maps, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("quantity", DETERMINISTIC)
@pytest.mark.parametrize("formulation", sorted(set(FORMULATIONS) - BATCH_DEPENDENT))
def test_weights_are_per_image(model, x, stats, formulation, quantity):
    batch = attention_maps(model, x, TARGET, formulation, quantity, stats)
    for b in range(len(x)):
        alone = attention_maps(model, x[b : b + 1], TARGET, formulation, quantity, stats)
        torch.testing.assert_close(batch.per_dim[:, b], alone.per_dim[:, 0], rtol=0, atol=1e-5)
        torch.testing.assert_close(batch.aggregate[b], alone.aggregate[0], rtol=0, atol=1e-5)
    # the images differ, so their maps must too (guards against one image's weights for all)
    assert not torch.allclose(batch.aggregate[0], batch.aggregate[1])


def test_authors_and_reproduction_are_their_codes_on_a_model(model, x):
    # Both codes, transcribed: one backward of sum(mu) over the batch, the gradient divided by
    # ONE RMS over the whole batch tensor (`grads / (sqrt(mean(grads^2)) + 1e-5)`), GAP
    # (`nn.AvgPool2d(map_size)`); the authors: per image sum_k alpha_k A^k (their grouped
    # conv3d), `F.upsample` bilinear (align_corners=False), abs; the reproduction: |alpha_k
    # A^k|, mean over k, then F.interpolate bilinear with align_corners=True.
    mu, _, A = encode(model, x)
    (grads,) = torch.autograd.grad(mu.sum(), A)
    grads = grads / (torch.sqrt(torch.mean(torch.pow(grads, 2))) + 1e-5).item()
    alpha = torch.nn.AvgPool2d(grads.shape[2:])(grads)  # (B, C, 1, 1)
    authors = F.conv3d(A[None], alpha[:, None], groups=len(alpha)).squeeze(0)  # (B, 1, h, w)
    authors = F.interpolate(authors, (16, 16), mode="bilinear", align_corners=False).abs()
    reproduction = torch.mean(torch.abs(A * alpha), dim=1)[:, None]
    reproduction = F.interpolate(reproduction, (16, 16), mode="bilinear", align_corners=True)
    for name, want in (("authors", authors), ("reproduction", reproduction)):
        got = attention_maps(model, x, TARGET, name).aggregate
        torch.testing.assert_close(got, want[:, 0].detach(), rtol=1e-5, atol=1e-6)


def test_authors_maps_ignore_the_sign_of_the_quantity(model, x, stats):
    # normal_difference = stats.mu - mu has the negated gradient; the authors' abs drops it.
    a = attention_maps(model, x, TARGET, "authors", "mu")
    b = attention_maps(model, x, TARGET, "authors", "normal_difference", stats)
    torch.testing.assert_close(a.aggregate, b.aggregate)


# reproduction_disentanglement holds alpha constant (the reproduction's hooked gradients), so
# its maps' gradient is by design not the full derivative: its own test checks that.
@pytest.mark.parametrize(
    "formulation", sorted(set(FORMULATIONS) - {"reproduction_disentanglement"})
)
def test_differentiable_maps_pass_gradcheck(formulation):
    model = tiny(torch.float64, size=8, latent=3)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def maps(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # In a ReLU net dmu/dA is locally constant in x; a sampled z = mu + eps * sigma(x) makes
        # the gradients themselves depend on x, so the second-order path is checked too.
        generator = torch.Generator().manual_seed(4)
        return tuple(attention_maps(model, x, TARGET, formulation, "z", None, generator, True))

    assert torch.autograd.gradcheck(maps, (x.requires_grad_(),), eps=1e-6, atol=1e-9, rtol=1e-5)


def test_differentiable_maps_reach_the_parameters(model, x):
    maps = attention_maps(model, x, TARGET, "per_dim", create_graph=True)
    maps.aggregate.sum().backward()
    # fc_mu enters the maps only through the gradients dmu/dA (second order)
    for param in (model.fc_mu.weight, model.encoder[0].weight):
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_detached_by_default_and_mode_untouched(model, x):
    maps = attention_maps(model, x, TARGET)
    assert not maps.per_dim.requires_grad and not maps.aggregate.requires_grad
    assert not model.training
    model.train()
    attention_maps(model, x, TARGET)
    assert model.training


def test_frozen_model_and_no_grad_context(model, x):
    expected = attention_maps(model, x, TARGET)
    model.requires_grad_(False)
    with torch.no_grad():
        got = attention_maps(model, x, TARGET)
    torch.testing.assert_close(got.aggregate, expected.aggregate)


def test_hooks_are_released(model, x):
    module = model.encoder[2]
    attention_maps(model, x, TARGET)
    assert not module._forward_hooks
    with pytest.raises(RuntimeError, match="boom"):
        with LayerActivations(model, TARGET) as layer:
            model.encode(x)
            assert len(module._forward_hooks) == 1
            raise RuntimeError("boom")
    assert not module._forward_hooks
    assert layer.activations.grad_fn is not None  # activations kept their graph
    with pytest.raises(ValueError):
        attention_maps(model, x, TARGET, quantity="normal_difference")
    assert not module._forward_hooks


def test_bad_names_list_the_valid_ones(model, x, stats):
    with pytest.raises(KeyError, match=r"encoder\.0.*encoder\.2"):
        LayerActivations(model, "encoder.99")
    with pytest.raises(KeyError, match="per_channel, per_dim, reproduction"):
        attention_maps(model, x, TARGET, formulation="gradcam++")
    with pytest.raises(KeyError, match="mahalanobis, mu, normal_difference, normal_difference_z"):
        attention_maps(model, x, TARGET, quantity="sigma")
    for quantity in ("normal_difference", "normal_difference_z", "kl_to_normal", "mahalanobis"):
        with pytest.raises(ValueError, match="latent_stats"):
            attention_maps(model, x, TARGET, quantity=quantity)


@pytest.mark.parametrize("quantity", list(QUANTITIES))
@pytest.mark.parametrize("formulation", list(FORMULATIONS))
def test_shapes(model, x, stats, formulation, quantity):
    maps = attention_maps(
        model, x, TARGET, formulation, quantity, stats, torch.Generator().manual_seed(0)
    )
    assert maps.per_dim.shape == (model.latent_dim, 3, 16, 16)
    assert maps.aggregate.shape == (3, 16, 16)
    assert torch.isfinite(maps.per_dim).all() and (maps.per_dim >= 0).all()


@pytest.mark.parametrize("quantity", ["z", "normal_difference_z"])
def test_sampled_quantities_follow_the_generator(model, x, stats, quantity):
    def maps(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return attention_maps(model, x, TARGET, "per_dim", quantity, stats, generator).per_dim

    torch.testing.assert_close(maps(0), maps(0))
    assert not torch.allclose(maps(0), maps(1))


def test_latent_stats_are_the_aggregate_posterior_moments():
    mu = torch.tensor([[0.0, 2.0], [2.0, 4.0]])
    logvar = torch.tensor([[1.0, 3.0], [1.0, 1.0]]).log()
    stats = latent_stats(mu, logvar)
    torch.testing.assert_close(stats.mu, torch.tensor([1.0, 3.0]))
    # population variance of mu (1, 1) + mean posterior variance (1, 2)
    torch.testing.assert_close(stats.var, torch.tensor([2.0, 3.0]))


@pytest.mark.parametrize("formulation", sorted(FORMULATIONS))
def test_maps_of_chosen_dims_equal_those_dims_of_all_maps(formulation):
    torch.manual_seed(0)
    model = ConvVAE(image_size=16, latent_dim=5, widths=(4, 8), hidden=16).eval()
    x = torch.rand(3, 1, 16, 16)
    full = attention_maps(model, x, "encoder.2", formulation=formulation)
    some = attention_maps(model, x, "encoder.2", formulation=formulation, dims=[3, 1])
    assert some.per_dim.shape == (2, 3, 16, 16)
    assert torch.allclose(some.per_dim, full.per_dim[[3, 1]], atol=1e-6)


def full_gradient_maps(model, x, target, formulation, quantity, stats, create_graph=False):
    """Reference: the formulation on the full (n, B, C, h, w) gradients, never the GAP path."""
    generator = torch.Generator().manual_seed(5)
    with LayerActivations(model, target) as layer:
        mu, logvar = model.encode(x)
    q = QUANTITIES[quantity](mu, logvar, stats, generator)
    grads = latent_gradients(q, layer.activations, create_graph)
    A = layer.activations if create_graph else layer.activations.detach()
    return FORMULATIONS[formulation](A, grads, tuple(x.shape[-2:]))


def test_gap_head_finds_elementwise_then_flatten_then_linear():
    mnist = ConvVAE()
    relu = mnist.encoder[3]
    assert gap_head(mnist, "encoder.2") == ((relu,), "encoder.5")  # conv, ReLU, Flatten, FC
    assert gap_head(mnist, "encoder.3") == ((), "encoder.5")  # from the ReLU itself
    assert gap_head(mnist, "encoder.0") is None  # a conv follows
    assert gap_head(mnist, "encoder.5") is None  # the FC: nothing to flatten
    assert gap_head(mnist, "encoder.99") is None
    assert gap_head(mnist, "fc_mu") is None  # not inside a Sequential
    with_bn = ConvVAE(image_size=16, widths=(4, 8), hidden=16, batch_norm=True)
    assert gap_head(with_bn, "encoder.3") is None  # batch norm in train mode mixes the batch
    bn_relu = (with_bn.encoder[4], with_bn.encoder[5])
    assert gap_head(with_bn.eval(), "encoder.3") == (bn_relu, "encoder.7")
    strided = ConvVAE(image_size=16, widths=(4, 8), hidden=16)
    strided.encoder[4] = torch.nn.Flatten(start_dim=2)
    assert gap_head(strided, "encoder.2") is None


# the target's GapHead.phi: (ReLU,), () and (BatchNorm2d, ReLU)
@pytest.mark.parametrize(
    "batch_norm, target", [(False, "encoder.2"), (False, "encoder.3"), (True, "encoder.3")]
)
@pytest.mark.parametrize("quantity", list(QUANTITIES))
@pytest.mark.parametrize("formulation", sorted(GAP_ONLY))
def test_gap_path_equals_the_full_gradients(formulation, quantity, batch_norm, target):
    torch.manual_seed(0)
    model = ConvVAE(image_size=16, latent_dim=5, widths=(4, 8), hidden=16, batch_norm=batch_norm)
    model.train()(torch.rand(8, 1, 16, 16))  # non-trivial batch-norm running statistics
    model.eval()
    assert gap_head(model, target) is not None
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        stats = latent_stats(*model.encode(torch.rand(10, 1, 16, 16)))
    got = attention_maps(
        model, x, target, formulation, quantity, stats, torch.Generator().manual_seed(5)
    )
    want = full_gradient_maps(model, x, target, formulation, quantity, stats)
    assert not got.per_dim.requires_grad  # detached by default, batch norm's weight too
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not any(module._forward_hooks for module in model.modules())  # all released


def test_gap_path_has_the_full_gradients_second_order_terms(model, x):
    # create_graph: d(maps)/d(parameters) and d(maps)/dx agree between the two paths
    def grads(maps):
        x_ = x.clone().requires_grad_()
        out = maps(x_)
        inputs = [x_, *model.parameters()]
        return torch.autograd.grad((out.aggregate**2).sum(), inputs, allow_unused=True)

    def ours(x_):
        return attention_maps(
            model, x_, TARGET, "per_dim", "z", None, torch.Generator().manual_seed(5), True
        )

    def reference(x_):
        return full_gradient_maps(model, x_, TARGET, "per_dim", "z", None, True)

    got, want = grads(ours), grads(reference)
    assert want[0].abs().sum() > 0 and want[1].abs().sum() > 0  # x and the first conv
    for a, b in zip(got, want, strict=True):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def elementwise_modules() -> list[torch.nn.Module]:
    bn = torch.nn.BatchNorm2d(3)
    bn.train()(torch.randn(8, 3, 4, 4) * 2 + 1)  # running statistics away from (0, 1)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
    modules = [torch.nn.ReLU(), torch.nn.LeakyReLU(0.1), bn, torch.nn.Identity()]
    return [m.eval() for m in [*modules, torch.nn.Dropout(0.5)]]


@pytest.mark.parametrize("module", elementwise_modules(), ids=lambda m: type(m).__name__)
def test_slopes_are_the_elementwise_derivatives(module):
    assert set(SLOPES) == {type(m) for m in elementwise_modules()}
    a = torch.randn(2, 3, 4, 4, requires_grad=True)
    (want,) = torch.autograd.grad(module(a).sum(), a)
    got = torch.as_tensor(SLOPES[type(module)](module, a.detach())).expand_as(a)
    torch.testing.assert_close(got, want)


def test_gap_head_refuses_what_is_not_elementwise():
    model = ConvVAE(image_size=16, widths=(4, 8), hidden=16, batch_norm=True).eval()
    assert gap_head(model, "encoder.3") is not None
    model.encoder[4].running_var = None  # batch statistics even in eval mode
    assert gap_head(model, "encoder.3") is None
    inplace = ConvVAE(image_size=16, widths=(4, 8), hidden=16).eval()
    inplace.encoder[3] = torch.nn.ReLU(inplace=True)  # would overwrite A
    assert gap_head(inplace, "encoder.2") is None
    dropout = ConvVAE(image_size=16, widths=(4, 8), hidden=16)
    dropout.encoder.insert(3, torch.nn.Dropout(0.5))
    assert gap_head(dropout.eval(), "encoder.2") is not None
    assert gap_head(dropout.train(), "encoder.2") is None


# --- what each reading computes (PAPER.md section 1) ------------------------------------------


@pytest.mark.parametrize("formulation", sorted(SIGN_INVARIANT))
def test_normal_difference_equals_mu_under_abs_whatever_the_statistics(model, x, formulation):
    # Eq. 4 read literally: mu_n - mu_x has the gradient -d mu / dA; abs drops the sign, so the
    # normal statistics (even absurd ones) never change the map.
    absurd = LatentStats(torch.full((6,), 1e6), torch.full((6,), 1e-6))
    mu = attention_maps(model, x, TARGET, formulation, "mu")
    difference = attention_maps(model, x, TARGET, formulation, "normal_difference", absurd)
    torch.testing.assert_close(difference.aggregate, mu.aggregate)
    torch.testing.assert_close(difference.per_dim, mu.per_dim)


def test_normal_difference_under_per_dim_is_the_relu_of_the_negated_map(model, x, stats):
    mu, logvar, A = encode(model, x)
    negated = -latent_gradients(mu, A)
    want = FORMULATIONS["per_dim"](A.detach(), negated, (16, 16))
    got = attention_maps(model, x, TARGET, "per_dim", "normal_difference", stats)
    torch.testing.assert_close(got.per_dim, want.per_dim, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("quantity", ["kl_to_normal", "mahalanobis"])
def test_statistics_aware_quantities_are_what_they_say(model, x, stats, quantity):
    mu, logvar, _ = encode(model, x)
    q = QUANTITIES[quantity](mu, logvar, stats, None)
    d2 = (mu - stats.mu) ** 2 / stats.var
    if quantity == "mahalanobis":
        torch.testing.assert_close(q, d2)
    else:  # KL(N(mu, sigma^2) || N(mu_n, sigma_n^2)) per dim, in closed form
        p = torch.distributions.Normal(mu, (0.5 * logvar).exp())
        n = torch.distributions.Normal(stats.mu, stats.var.sqrt())
        torch.testing.assert_close(q, torch.distributions.kl_divergence(p, n))


@pytest.mark.parametrize("quantity", ["kl_to_normal", "mahalanobis"])
@pytest.mark.parametrize("formulation", ["per_dim", "authors"])
def test_statistics_aware_maps_change_with_the_statistics(model, x, stats, quantity, formulation):
    moved = LatentStats(stats.mu + 1.0, stats.var * 3.0)
    before = attention_maps(model, x, TARGET, formulation, quantity, stats).aggregate
    after = attention_maps(model, x, TARGET, formulation, quantity, moved).aggregate
    assert not torch.allclose(before, after, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("quantity", ["kl_to_normal", "mahalanobis"])
def test_statistics_aware_maps_pass_gradcheck(quantity):
    model = tiny(torch.float64, size=8, latent=3)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    train = torch.rand(6, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        stats = latent_stats(*model.encode(train))

    def maps(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(attention_maps(model, x, TARGET, "per_dim", quantity, stats, None, True))

    assert torch.autograd.gradcheck(maps, (x.requires_grad_(),), eps=1e-6, atol=1e-9, rtol=1e-5)


# --- each formulation on hand-made tensors, worked out from its equations step by step -------
#
# Two images (B = 2), two channels (C = 2) of 2x2 activations, two latent dims (n = 2); maps
# upsampled 2x2 -> 4x4. Bilinear upsampling is separable: up(M) = W M W^T with, per axis,
# align_corners=False: output j samples (j + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped);
# align_corners=True: output j samples j / 3 = 0, 1/3, 2/3, 1.

HAND_A = torch.tensor(
    [
        [[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]],
        [[[2.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [1.0, -1.0]]],
    ]
)  # (B, C, h, w)
HAND_GRADS = torch.tensor(
    [
        [  # dim 0: GAPs (image 0) 1, -1; (image 1) 1, 2
            [[[1.0, 1.0], [1.0, 1.0]], [[-2.0, 0.0], [0.0, -2.0]]],
            [[[0.0, 0.0], [0.0, 4.0]], [[2.0, 2.0], [2.0, 2.0]]],
        ],
        [  # dim 1: GAPs (image 0) 1, 1; (image 1) 0, -1
            [[[3.0, -1.0], [-1.0, 3.0]], [[1.0, 1.0], [1.0, 1.0]]],
            [[[0.0, 0.0], [0.0, 0.0]], [[-1.0, -1.0], [-1.0, -1.0]]],
        ],
    ]
)  # (n, B, C, h, w)
W_ALIGN_FALSE = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
W_ALIGN_TRUE = torch.tensor([[1.0, 0.0], [2 / 3, 1 / 3], [1 / 3, 2 / 3], [0.0, 1.0]])


def up(M: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    return W @ M @ W.T


def gap(g: torch.Tensor) -> float:
    return float(g.sum()) / g.numel()


def hand(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    return FORMULATIONS[name](HAND_A, HAND_GRADS, (4, 4))


def test_hand_gaps_are_as_commented():
    gaps = [[[gap(HAND_GRADS[i, b, c]) for c in range(2)] for b in range(2)] for i in range(2)]
    assert gaps == [[[1, -1], [1, 2]], [[1, 1], [0, -1]]]


def test_per_dim_by_hand():
    # M^i = ReLU(sum_k alpha^i_k A^k), alpha = GAP; M = mean_i M^i; align_corners=False
    per_dim, aggregate = hand("per_dim")
    for b in range(2):
        maps = []
        for i in range(2):
            cam = sum(gap(HAND_GRADS[i, b, k]) * HAND_A[b, k] for k in range(2))
            maps.append(up(torch.relu(cam), W_ALIGN_FALSE))
            torch.testing.assert_close(per_dim[i, b], maps[-1])
        torch.testing.assert_close(aggregate[b], (maps[0] + maps[1]) / 2)
    # image 0, dim 0: A^0 - A^1 = [[1, 1], [2, 4]] (no ReLU needed); its top-left 4x4 corner
    torch.testing.assert_close(per_dim[0, 0, 0, 0], torch.tensor(1.0))
    torch.testing.assert_close(
        per_dim[0, 0, 1, 1],
        torch.tensor(0.75 * 0.75 * 1 + 0.75 * 0.25 * 1 + 0.25 * 0.75 * 2 + 0.25 * 0.25 * 4),
    )


def test_per_channel_by_hand():
    # M^i = mean_k |alpha^i_k A^k| (per image, per dim), M = mean_i M^i; align_corners=False
    per_dim, aggregate = hand("per_channel")
    for b in range(2):
        maps = []
        for i in range(2):
            terms = [(gap(HAND_GRADS[i, b, k]) * HAND_A[b, k]).abs() for k in range(2)]
            maps.append(up((terms[0] + terms[1]) / 2, W_ALIGN_FALSE))
            torch.testing.assert_close(per_dim[i, b], maps[-1])
        torch.testing.assert_close(aggregate[b], (maps[0] + maps[1]) / 2)


def test_authors_by_hand_one_rms_for_the_whole_batch():
    # g = sum over dims (one backward of sum(mu)); ONE rms = sqrt(mean(g^2)) + 1e-5 over all 16
    # elements of the batch; alpha = GAP(g) / rms; |upsample(sum_k alpha_k A^k)|, align False
    _, aggregate = hand("authors")
    g = HAND_GRADS[0] + HAND_GRADS[1]  # (B, C, h, w)
    rms = (float((g**2).sum()) / 16) ** 0.5 + 1e-5
    for b in range(2):
        cam = sum(gap(g[b, k]) / rms * HAND_A[b, k] for k in range(2))
        torch.testing.assert_close(aggregate[b], up(cam, W_ALIGN_FALSE).abs())
    # the per-image RMS (today's authors_per_image) would give image 1 another scale
    rms_1 = (float((g[1] ** 2).sum()) / 8) ** 0.5 + 1e-5
    assert abs(rms_1 - rms) > 0.1


def test_authors_per_image_by_hand():
    _, aggregate = hand("authors_per_image")
    g = HAND_GRADS[0] + HAND_GRADS[1]
    for b in range(2):
        rms = (float((g[b] ** 2).sum()) / 8) ** 0.5 + 1e-5  # this image's own 8 elements
        cam = sum(gap(g[b, k]) / rms * HAND_A[b, k] for k in range(2))
        torch.testing.assert_close(aggregate[b], up(cam, W_ALIGN_FALSE).abs())


def test_reproduction_by_hand():
    # g = sum over dims; one batch RMS; alpha = GAP(g) / rms; mean_k |alpha_k A^k| (abs per
    # channel, THEN the channel mean); upsample with align_corners=True
    _, aggregate = hand("reproduction")
    g = HAND_GRADS[0] + HAND_GRADS[1]
    rms = (float((g**2).sum()) / 16) ** 0.5 + 1e-5
    for b in range(2):
        terms = [(gap(g[b, k]) / rms * HAND_A[b, k]).abs() for k in range(2)]
        torch.testing.assert_close(aggregate[b], up((terms[0] + terms[1]) / 2, W_ALIGN_TRUE))
    # image 1 by hand: GAP(g) = (1, 1), rms = sqrt(56 / 16) + 1e-5, and
    # (|A^0| + |A^1|) / 2 = [[1.5, 0.5], [0.5, 1.5]], whose corner stays and whose centre
    # (align_corners=True, 1/3 and 2/3 along both axes) is the mean of the four: 1.0
    assert float((g**2).sum()) == 56
    rms = (56 / 16) ** 0.5 + 1e-5
    torch.testing.assert_close(aggregate[1, 0, 0], torch.tensor(1.5 / rms))
    torch.testing.assert_close(aggregate[1, 0, 3], torch.tensor(0.5 / rms))
    # what `per_channel_reproduction` computed (per-dim RMS, sum over channels before abs,
    # align_corners=False, mean of the dims' maps) is not this
    old = []
    for i in range(2):
        gi = HAND_GRADS[i]
        rms_i = (float((gi**2).sum()) / 16) ** 0.5 + 1e-5
        old.append(up(sum(gap(gi[1, k]) / rms_i * HAND_A[1, k] for k in range(2)), W_ALIGN_FALSE))
    assert not torch.allclose(aggregate[1], ((old[0].abs() + old[1].abs()) / 2))


def test_reproduction_disentanglement_by_hand():
    # per dim M^i = upsample(sum_k ReLU(alpha^i_k A^k)), the channel SUM, align_corners=True;
    # alpha a constant: the map's gradient reaches A only
    grads = HAND_GRADS.clone().requires_grad_()
    A = HAND_A.clone().requires_grad_()
    per_dim, aggregate = FORMULATIONS["reproduction_disentanglement"](A, grads, (4, 4))
    for b in range(2):
        maps = []
        for i in range(2):
            terms = [torch.relu(gap(HAND_GRADS[i, b, k]) * HAND_A[b, k]) for k in range(2)]
            maps.append(up(terms[0] + terms[1], W_ALIGN_TRUE))
            torch.testing.assert_close(per_dim[i, b].detach(), maps[-1])
        torch.testing.assert_close(aggregate[b].detach(), (maps[0] + maps[1]) / 2)
    aggregate.sum().backward()
    assert grads.grad is None and A.grad.abs().sum() > 0


def test_batch_dependent_formulations_are_listed():
    # an image's map changes with its batch-mates exactly for the batch-wide RMS
    for name in FORMULATIONS:
        alone = FORMULATIONS[name](HAND_A[:1], HAND_GRADS[:, :1], (4, 4)).aggregate[0]
        batch = hand(name).aggregate[0]
        assert (name in BATCH_DEPENDENT) == (not torch.allclose(alone, batch)), name
