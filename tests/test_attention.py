"""VAE Grad-CAM (vaecam.attention): gradients, formulations, hooks, errors, on tiny models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vaecam.attention import (
    FORMULATIONS,
    QUANTITIES,
    LatentStats,
    LayerActivations,
    attention_maps,
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
@pytest.mark.parametrize("formulation", list(FORMULATIONS))
def test_weights_are_per_image(model, x, stats, formulation, quantity):
    batch = attention_maps(model, x, TARGET, formulation, quantity, stats)
    for b in range(len(x)):
        alone = attention_maps(model, x[b : b + 1], TARGET, formulation, quantity, stats)
        torch.testing.assert_close(batch.per_dim[:, b], alone.per_dim[:, 0], rtol=0, atol=1e-5)
        torch.testing.assert_close(batch.aggregate[b], alone.aggregate[0], rtol=0, atol=1e-5)
    # the images differ, so their maps must too (guards against one image's weights for all)
    assert not torch.allclose(batch.aggregate[0], batch.aggregate[1])


def test_authors_aggregate_matches_a_straightforward_reimplementation(model, x):
    # liuem607/expVAE: backward of sum(mu) once, RMS-normalise (here per image), GAP, weighted
    # sum of channels, bilinear upsample, abs.
    mu, _, A = encode(model, x)
    (g,) = torch.autograd.grad(mu.sum(), A)
    expected = []
    for b in range(len(x)):
        gb = g[b] / (torch.sqrt(torch.mean(g[b] ** 2)) + 1e-5)
        alpha = F.adaptive_avg_pool2d(gb, 1)  # (C, 1, 1)
        cam = (alpha * A[b]).sum(0, keepdim=True)[None]  # (1, 1, h, w)
        up = F.interpolate(cam, size=(16, 16), mode="bilinear", align_corners=False)
        expected.append(up.abs()[0, 0])
    got = attention_maps(model, x, TARGET, "authors").aggregate
    torch.testing.assert_close(got, torch.stack(expected).detach(), rtol=1e-5, atol=1e-6)


def test_authors_maps_ignore_the_sign_of_the_quantity(model, x, stats):
    # normal_difference = stats.mu - mu has the negated gradient; the authors' abs drops it.
    a = attention_maps(model, x, TARGET, "authors", "mu")
    b = attention_maps(model, x, TARGET, "authors", "normal_difference", stats)
    torch.testing.assert_close(a.aggregate, b.aggregate)


@pytest.mark.parametrize("formulation", list(FORMULATIONS))
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
    with pytest.raises(KeyError, match="per_channel, per_dim"):
        attention_maps(model, x, TARGET, formulation="gradcam++")
    with pytest.raises(KeyError, match="mu, normal_difference, normal_difference_z, z"):
        attention_maps(model, x, TARGET, quantity="sigma")
    for quantity in ("normal_difference", "normal_difference_z"):
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
