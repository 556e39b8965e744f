"""The dSprites disentanglement family: beta-VAE, FactorVAE, AD-FactorVAE, through the VAE's
hooks and the shared training step. Tiny models (16x16, widths 4-8, latent 4): seconds."""

import io
import itertools

import pytest
import torch

from vaecam.attention import attention_maps
from vaecam.models import (
    MODELS,
    ADFactorVAE,
    BetaVAE,
    ConvVAE,
    FactorVAE,
    ad_loss,
    latent_pairs,
    permute_dims,
)
from vaecam.training import evaluate_loss, seed_everything, train_epoch, train_step

TINY = {"image_size": 16, "widths": (4, 4, 8, 8), "hidden": 16, "latent_dim": 4}
TINY_D = TINY | {"discriminator_hidden": 16}


def _batch(seed: int = 0, size: int = 8) -> torch.Tensor:
    return torch.rand(size, 1, 16, 16, generator=torch.Generator().manual_seed(seed)).round()


def _params(module: torch.nn.Module, exclude: str | None = None) -> dict[str, torch.Tensor]:
    return {
        name: p.detach().clone()
        for name, p in module.named_parameters()
        if exclude is None or not name.startswith(exclude)
    }


# --- ad_loss ---------------------------------------------------------------------------------


def test_ad_loss_of_identical_maps_is_one_and_of_disjoint_supports_zero():
    m = torch.rand(3, 5, 5) + 0.1
    assert ad_loss(m, m).item() == pytest.approx(1.0)
    left = torch.zeros(1, 4, 4)
    left[..., :2] = 1.0
    assert ad_loss(left, 1.0 - left).item() == 0.0


def test_ad_loss_by_hand_and_mean_over_images():
    # M^i = [[1, 0], [2, 1]], M^j = [[0, 1], [1, 3]]
    # min = [[0, 0], [1, 1]] sums to 2; M^i + M^j sums to 4 + 5 = 9; L = 2 * 2 / 9 = 4/9
    mi = torch.tensor([[[1.0, 0.0], [2.0, 1.0]]])
    mj = torch.tensor([[[0.0, 1.0], [1.0, 3.0]]])
    assert ad_loss(mi, mj).item() == pytest.approx(4 / 9)
    assert ad_loss(mj, mi).item() == pytest.approx(4 / 9)  # symmetric
    # a batch of that pair and an identical pair: mean of 4/9 and 1
    batch_i, batch_j = torch.cat([mi, mi]), torch.cat([mj, mi])
    assert ad_loss(batch_i, batch_j).item() == pytest.approx((4 / 9 + 1) / 2)
    # (k, B, H, W) stacks of pairs average over pairs too
    assert ad_loss(batch_i[:, None], batch_j[:, None]).item() == pytest.approx((4 / 9 + 1) / 2)


def test_ad_loss_reproduction_reduction_is_the_reproductions_code():
    # The reproduction's code: the overlap and the total summed over the whole batch into one
    # ratio, then divided by the batch size (so a lambda is B times weaker than per image).
    def reproduction(mi: torch.Tensor, mj: torch.Tensor) -> torch.Tensor:
        batch = mi.shape[0]
        return 2 * torch.min(mi, mj).sum() / (mi + mj).sum() / batch

    generator = torch.Generator().manual_seed(0)
    mi, mj = torch.rand(2, 8, 5, 5, generator=generator)
    got = ad_loss(mi, mj, reduction="reproduction")
    torch.testing.assert_close(got, reproduction(mi, mj))
    pairs = torch.rand(2, 3, 8, 5, 5, generator=generator)  # (k pairs, B, H, W)
    want = torch.stack([reproduction(pairs[0, k], pairs[1, k]) for k in range(3)]).mean()
    torch.testing.assert_close(ad_loss(pairs[0], pairs[1], reduction="reproduction"), want)
    # about B times smaller than the per-image mean for maps of similar totals
    assert ad_loss(mi, mj).item() == pytest.approx(8 * got.item(), rel=0.1)
    with pytest.raises(ValueError, match="per_image, reproduction"):
        ad_loss(mi, mj, reduction="sum")


def test_ad_factor_vae_uses_its_ad_reduction():
    torch.manual_seed(0)
    model = MODELS["ad_factor_vae"](
        image_size=16, widths=(4, 4, 8, 8), hidden=16, latent_dim=3, discriminator_hidden=8
    )
    x = torch.rand(4, 1, 16, 16)
    out = model(x, generator=torch.Generator().manual_seed(1))
    terms = {}
    for reduction in ("per_image", "reproduction"):
        model.ad_reduction = reduction
        terms[reduction] = model.regularisers(x, out, torch.Generator().manual_seed(2))["ad"]
    # the pooled ratio over B = 4 images, divided by 4: a quarter of a per-image-sized overlap
    batch_ratio = 4 * terms["reproduction"].item()
    assert 0 < batch_ratio < 1 and batch_ratio == pytest.approx(terms["per_image"].item(), rel=1)
    assert terms["reproduction"].item() < terms["per_image"].item()
    with pytest.raises(ValueError, match="ad_reduction"):
        MODELS["ad_factor_vae"](image_size=16, widths=(4, 4, 8, 8), ad_reduction="sum")


def test_ad_loss_of_all_zero_maps_is_zero_not_nan():
    zeros = torch.zeros(2, 3, 3, requires_grad=True)
    value = ad_loss(zeros, zeros)
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(zeros.grad).all()


# --- pair selection --------------------------------------------------------------------------


def test_latent_pairs_random_k_and_all():
    generator = torch.Generator().manual_seed(0)
    one = latent_pairs(5, "random", generator)
    assert one.shape == (1, 2) and one[0, 0] < one[0, 1]
    three = latent_pairs(5, 3, generator)
    assert three.shape == (3, 2) and len({tuple(p) for p in three.tolist()}) == 3
    assert (three[:, 0] < three[:, 1]).all()
    everything = latent_pairs(5, "all")
    assert everything.tolist() == [list(p) for p in itertools.combinations(range(5), 2)]
    assert len(everything) == 5 * 4 // 2
    assert latent_pairs(5, 10, generator).shape == (10, 2)  # k = n (n - 1) / 2: all, shuffled


def test_random_pairs_cover_every_pair_and_follow_the_generator():
    generator = torch.Generator().manual_seed(1)
    seen = {tuple(latent_pairs(4, "random", generator)[0].tolist()) for _ in range(200)}
    assert seen == set(itertools.combinations(range(4), 2))
    first = [latent_pairs(6, 2, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(*first)


def test_reproduction_pairs_draw_two_dims_independently():
    # solver.py: z[:, randint(0, z_dim, size=2)]: every ordered pair, the same dim twice too
    generator = torch.Generator().manual_seed(1)
    seen = {tuple(latent_pairs(3, "reproduction", generator)[0].tolist()) for _ in range(300)}
    assert seen == set(itertools.product(range(3), repeat=2))


def test_the_reproductions_ad_loss_trains_and_a_repeated_dim_overlaps_fully():
    options = {"formulation": "reproduction_disentanglement", "ad_pairs": "reproduction"}
    for seed in range(3):  # pairs drawn with repeats among them, each step finite
        generator = seed_everything(seed)
        model = ADFactorVAE(lam=5.0, **options, **TINY_D)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        losses = train_step(model, optimizer, _batch(), generator)
        assert all(torch.isfinite(torch.as_tensor(v)) for v in losses.values())
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    maps = attention_maps(model, x, "encoder.4", "reproduction_disentanglement", "mu", dims=[0])
    assert ad_loss(maps.per_dim[0], maps.per_dim[0]).item() == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [0, 7, -1, True, "some", 2.0])
def test_bad_pair_options_raise(bad):
    with pytest.raises(ValueError, match="ad_pairs"):
        latent_pairs(4, bad)


def test_ad_needs_two_latent_dims():
    with pytest.raises(ValueError, match="at least 2"):
        latent_pairs(1, "all")
    with pytest.raises(ValueError, match="at least 2"):
        ADFactorVAE(**TINY_D | {"latent_dim": 1})


# --- AD-FactorVAE: the AD term trains the encoder --------------------------------------------


def _ad_step(lam: float) -> dict[str, torch.Tensor]:
    generator = seed_everything(0)
    model = ADFactorVAE(lam=lam, ad_pairs="all", **TINY_D)
    # SGD, not Adam: Adam's first step is lr * sign(g), blind to the gradient's size
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    train_step(model, optimizer, _batch(), generator)
    return _params(model)


def test_ad_term_changes_the_encoders_training_step():
    with_ad, without = _ad_step(lam=5.0), _ad_step(lam=0.0)
    for name in ("encoder.0.weight", "encoder.2.weight", "encoder.4.weight"):
        assert not torch.equal(with_ad[name], without[name]), name


def test_ad_gradient_reaches_the_encoder_below_and_above_the_target_layer():
    generator = seed_everything(0)
    model = ADFactorVAE(ad_pairs="all", **TINY_D)  # target encoder.4, quantity z
    x = _batch()
    terms = model.loss(x, model(x, generator=generator), generator)
    below, above = model.get_submodule("encoder.0").weight, model.fc_mu.weight
    # above the target layer only through dz/dA: the maps are differentiable (create_graph)
    grads = torch.autograd.grad(terms["ad"], [below, above])
    assert all(g.abs().sum() > 0 for g in grads)
    assert 0 < terms["ad"].item() <= 1


def test_ad_options_are_checked_when_the_model_is_built():
    with pytest.raises(KeyError, match="encoder.0"):
        ADFactorVAE(target_layer="encoder.99", **TINY_D)
    with pytest.raises(KeyError, match="per_dim"):
        ADFactorVAE(formulation="gradcam", **TINY_D)
    with pytest.raises(ValueError, match="'z' or 'mu'"):
        ADFactorVAE(quantity="normal_difference", **TINY_D)
    with pytest.raises(ValueError, match="ad_pairs"):
        ADFactorVAE(ad_pairs=7, **TINY_D)  # 4 dims have 6 pairs


@pytest.mark.parametrize("formulation", ["per_dim", "authors", "per_channel"])
@pytest.mark.parametrize("quantity", ["z", "mu"])
def test_every_ad_formulation_and_quantity_trains(formulation, quantity):
    generator = seed_everything(0)
    model = ADFactorVAE(formulation=formulation, quantity=quantity, ad_pairs=2, **TINY_D)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    terms = train_step(model, optimizer, _batch(), generator)
    assert 0 <= terms["ad"] <= 1


def test_validation_loss_of_ad_factor_vae_needs_no_double_backward_graph():
    model = ADFactorVAE(**TINY_D)  # a random pair and a sampled z: drawn the same each time
    values = evaluate_loss(model, _batch(size=6), batch_size=4)
    assert set(values) == {"loss", "recon", "kl", "tc", "ad"}
    assert values == evaluate_loss(model, _batch(size=6), batch_size=4)  # fixed draws


# --- FactorVAE -------------------------------------------------------------------------------


def test_permute_dims_permutes_each_column_independently():
    B, n = 50, 6
    z = torch.arange(B, dtype=torch.float32)[:, None].repeat(1, n) + 100 * torch.arange(n)
    permuted = permute_dims(z, torch.Generator().manual_seed(0))
    assert torch.equal(permuted.sort(dim=0).values, z)  # each column's multiset kept
    orders = permuted - 100 * torch.arange(n)  # the permutation applied to each column
    assert len({tuple(column.tolist()) for column in orders.T}) == n  # all different
    assert not torch.equal(permuted, z)


@pytest.mark.parametrize("discriminator_batch", ["split", "same"])
def test_after_step_trains_the_discriminator_only(discriminator_batch):
    generator = seed_everything(0)
    model = FactorVAE(discriminator_batch=discriminator_batch, **TINY_D)
    x = _batch()
    out = model(x, generator=generator)
    vae, discriminator = _params(model, exclude="discriminator."), _params(model.discriminator)
    logged = model.after_step(x, out, generator)
    assert set(logged) == {"discriminator_loss", "discriminator_accuracy"}
    assert 0 <= logged["discriminator_accuracy"] <= 1 and logged["discriminator_loss"] > 0
    assert all(torch.equal(p, vae[k]) for k, p in _params(model, "discriminator.").items())
    changed = [
        not torch.equal(p, discriminator[k]) for k, p in _params(model.discriminator).items()
    ]
    assert all(changed)


def test_vae_loss_never_trains_the_discriminator_but_tc_trains_the_encoder():
    generator = seed_everything(0)
    model = FactorVAE(**TINY_D)
    x = _batch()
    terms = model.loss(x, model(x, generator=generator))
    encoder = model.get_submodule("encoder.0").weight
    (grad,) = torch.autograd.grad(terms["tc"], encoder, retain_graph=True)
    assert grad.abs().sum() > 0
    terms["loss"].backward()
    # gradients stay None, so even an optimiser over model.parameters() skips the discriminator
    assert all(p.grad is None for p in model.discriminator.parameters())


def test_discriminator_learns_to_tell_joint_from_permuted_samples():
    torch.manual_seed(0)
    model = FactorVAE(discriminator_lr=3e-3, discriminator_batch="same", **TINY_D)
    generator = torch.Generator().manual_seed(0)
    shared = torch.randn(256, 1, generator=generator)
    z = shared.repeat(1, 4) + 0.05 * torch.randn(256, 4, generator=generator)  # high TC
    out = model(_batch())._replace(z=z)
    accuracy = [model.after_step(None, out, generator)["discriminator_accuracy"] for _ in range(60)]
    assert accuracy[-1] > 0.9
    assert model.total_correlation(z).item() > 1.0  # D(z)_0 - D(z)_1 > 0: joint recognised


def _continue(model, optimizer, generator, batches):
    for x in batches:
        train_step(model, optimizer, x, generator)
    return model.state_dict()


@pytest.mark.parametrize("name", ["factor_vae", "ad_factor_vae"])
def test_checkpoint_round_trip_restores_training_including_the_discriminator_optimiser(name):
    generator = seed_everything(0)
    model = MODELS[name](**TINY_D)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_step(model, optimizer, _batch(0), generator)
    buffer = io.BytesIO()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    torch.save(state | {"generator": generator.get_state()}, buffer)

    expected = _continue(model, optimizer, generator, [_batch(1), _batch(2)])

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    torch.manual_seed(123)  # a different initialisation, overwritten by the checkpoint
    restored = MODELS[name](**TINY_D)
    restored_optimizer = torch.optim.Adam(restored.parameters(), lr=1e-3)
    restored.load_state_dict(saved["model"])
    restored_optimizer.load_state_dict(saved["optimizer"])
    restored_generator = torch.Generator()
    restored_generator.set_state(saved["generator"])
    assert len(restored.discriminator_optimizer.state) == len(model.discriminator_optimizer.state)

    resumed = _continue(restored, restored_optimizer, restored_generator, [_batch(1), _batch(2)])
    params = [k for k in expected if k != "_extra_state"]
    assert any(k.startswith("discriminator.") for k in params)
    assert all(torch.equal(resumed[k], expected[k]) for k in params)
    moments = [
        (restored.discriminator_optimizer.state[p]["exp_avg"], state["exp_avg"])
        for p, state in zip(
            restored.discriminator.parameters(),
            (model.discriminator_optimizer.state[p] for p in model.discriminator.parameters()),
            strict=True,
        )
    ]
    assert all(torch.equal(a, b) for a, b in moments)


def test_train_epoch_reports_after_step_numbers_per_image():
    generator = seed_everything(0)
    model = FactorVAE(**TINY_D)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    means = train_epoch(model, optimizer, _batch(size=10), 4, generator)
    assert set(means) == {
        "loss",
        "recon",
        "kl",
        "tc",
        "discriminator_loss",
        "discriminator_accuracy",
    }


def test_bad_discriminator_batch_option_raises():
    with pytest.raises(ValueError, match="split"):
        FactorVAE(discriminator_batch="other", **TINY_D)


# --- losses of the family --------------------------------------------------------------------


def test_beta_vae_with_beta_one_is_the_vae():
    torch.manual_seed(0)
    beta_vae = BetaVAE(beta=1.0, **TINY)
    vae = ConvVAE(in_channels=1, **TINY)
    vae.load_state_dict(beta_vae.state_dict())
    x = _batch()
    out = vae(x, sample=False)
    as_floats = {name: value.item() for name, value in beta_vae.loss(x, out).items()}
    assert as_floats == {name: value.item() for name, value in vae.loss(x, out).items()}
    assert set(as_floats) == {"loss", "recon", "kl"}
    terms = BetaVAE(beta=3.0, **TINY).loss(x, out)
    assert terms["loss"].item() == pytest.approx((terms["recon"] + 3 * terms["kl"]).item())


@pytest.mark.parametrize(
    ("model", "names", "weights"),
    [
        (BetaVAE(beta=2.5, **TINY), {"kl"}, {"kl": 2.5}),
        (FactorVAE(gamma=7.0, **TINY_D), {"kl", "tc"}, {"kl": 1.0, "tc": 7.0}),
        (ADFactorVAE(lam=3.0, gamma=7.0, **TINY_D), {"kl", "tc", "ad"}, {"tc": 7.0, "ad": 3.0}),
    ],
)
def test_loss_is_recon_plus_the_weighted_unweighted_terms(model, names, weights):
    generator = torch.Generator().manual_seed(0)
    x = _batch()
    terms = model.loss(x, model(x, generator=generator), generator)
    assert set(terms) == {"loss", "recon"} | names
    expected = terms["recon"] + sum(weights.get(k, 1.0) * terms[k] for k in names)
    assert torch.allclose(terms["loss"], expected)


# --- every registered model trains through the shared step ------------------------------------

#: Small options per model; a model missing here is still trained, with its defaults.
SMALL = {
    "conv_vae": {"widths": (4, 8), "hidden": 16},
    "resnet_vae": {},
    "beta_vae": {"widths": (4, 4, 8, 8), "hidden": 16},
    "factor_vae": {"widths": (4, 4, 8, 8), "hidden": 16, "discriminator_hidden": 16},
    "ad_factor_vae": {"widths": (4, 4, 8, 8), "hidden": 16, "discriminator_hidden": 16},
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_trains_one_step(name):
    generator = seed_everything(0)
    model = MODELS[name](in_channels=1, image_size=32, latent_dim=4, **SMALL.get(name, {}))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = _params(model)
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0)).round()
    terms = train_step(model, optimizer, x, generator)
    assert {"loss", "recon", "kl"} <= set(terms)
    assert all(isinstance(v, float) and v == v for v in terms.values())
    assert any(not torch.equal(p, before[k]) for k, p in _params(model).items())
