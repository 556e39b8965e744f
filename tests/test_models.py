import pytest
import torch
from torchvision.models import ResNet18_Weights

from search_spaces.ucsd import VANILLA_PED1
from vaecam.attention import LayerActivations
from vaecam.models import MODELS, ConvVAE, ResNetVAE, gaussian_kl
from vaecam.training import evaluate_loss, seed_everything, train_epoch


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_honours_the_vae_contract(name):
    model = MODELS[name](in_channels=3, image_size=32, latent_dim=5)
    x = torch.rand(4, 3, 32, 32)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (4, 5)
    assert model.decode(mu).shape == x.shape
    out = model(x)
    assert out.recon.shape == x.shape and out.z.shape == (4, 5)
    assert torch.equal(model(x, sample=False).z, mu)
    terms = model.loss(x, out)
    assert {"loss", "recon", "kl"} <= set(terms)
    regularisers = set(terms) - {"loss", "recon"}
    weights = model.regulariser_weights
    weighted = sum(weights.get(name, 1.0) * terms[name] for name in regularisers)
    assert torch.allclose(terms["loss"], terms["recon"] + weighted)


def test_authors_mnist_architecture():
    model = ConvVAE()  # defaults: 28x28, one channel, latent 32
    assert model.get_submodule("encoder.2").out_channels == 128
    assert model.get_submodule("encoder.5").in_features == 6272
    assert model.fc_mu.out_features == 32
    activations = model.encoder[:3](torch.zeros(1, 1, 28, 28))
    assert activations.shape == (1, 128, 7, 7)


def test_image_size_must_divide_by_the_strides():
    with pytest.raises(ValueError, match="too small"):
        ConvVAE(image_size=2, widths=(4, 8))
    with pytest.raises(ValueError, match="divisible by 32"):
        ResNetVAE(image_size=48)


@pytest.mark.parametrize("size", [28, 30, 96, 100])
def test_conv_vae_restores_sides_that_do_not_halve_evenly(size):
    # UCSD Ped1 in the reproduction: 100 -> 50 -> 25 -> 12 and back to 100
    model = ConvVAE(image_size=size, widths=(4, 8, 16), hidden=8, latent_dim=3, batch_norm=True)
    assert model(torch.rand(2, 1, size, size)).recon.shape == (2, 1, size, size)


def test_conv_vae_with_batch_norm_names_its_third_conv_block():
    model = ConvVAE(image_size=100, widths=(64, 128, 256), batch_norm=True)
    assert model.get_submodule("encoder.6").out_channels == 256
    assert isinstance(model.get_submodule("encoder.7"), torch.nn.BatchNorm2d)


def test_resnet_vae_exposes_torchvision_layer_names():
    model = ResNetVAE(image_size=64, latent_dim=32)
    assert model.get_submodule("encoder.layer2.1.conv1").out_channels == 128
    out = model(torch.rand(2, 3, 64, 64))
    assert out.recon.shape == (2, 3, 64, 64) and out.mu.shape == (2, 32)
    assert ResNetVAE(in_channels=1, image_size=32).encoder.conv1.in_channels == 1


def test_resnet_vae_stems_give_their_feature_maps_at_256_px():
    # the reproduction's ResNet18Enc: 3x3 stride-2 conv, no max-pool -> layer2 at 1/4 (64x64);
    # torchvision's: 7x7 stride-2 conv + max-pool -> layer2 at 1/8 (32x32)
    x = torch.rand(1, 3, 256, 256)
    for stem, side in (("reproduction", 64), ("torchvision", 32)):
        model = ResNetVAE(latent_dim=4, stem=stem).eval()
        with LayerActivations(model, "encoder.layer2.1.conv1") as layer, torch.no_grad():
            model.encode(x)
        assert layer.activations.shape == (1, 128, side, side)
    first = ResNetVAE(stem="reproduction").encoder.conv1
    assert (first.kernel_size, first.stride, first.padding) == ((3, 3), (2, 2), (1, 1))
    with pytest.raises(ValueError, match="stem='torchvision'"):
        ResNetVAE(pretrained=True, stem="reproduction")
    with pytest.raises(ValueError, match="expected one of torchvision, reproduction"):
        ResNetVAE(stem="vgg")


def test_the_reproductions_ucsd_layer_is_after_the_third_blocks_relu():
    # vanilla_ped1 as their test_expVAE.py builds it; encoder.8, their default target layer
    model = ConvVAE(image_size=100, **VANILLA_PED1).eval()
    assert [type(m).__name__ for m in model.encoder[6:9]] == ["Conv2d", "BatchNorm2d", "ReLU"]
    with LayerActivations(model, "encoder.8") as layer, torch.no_grad():
        model.encode(torch.rand(1, 1, 100, 100))
    assert layer.activations.shape == (1, 96, 12, 12)


def test_pretrained_weights_that_cannot_load_give_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(ResNet18_Weights, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match="hub/checkpoints.*pretrained=False"):
        ResNetVAE(pretrained=True)


def test_unknown_model_lists_valid_names():
    with pytest.raises(KeyError, match="conv_vae"):
        MODELS["resnet"]


def test_kl_of_the_prior_is_zero_and_positive_elsewhere():
    zeros = torch.zeros(2, 3)
    assert torch.equal(gaussian_kl(zeros, zeros), torch.zeros(2))
    assert (gaussian_kl(torch.ones(2, 3), zeros) > 0).all()
    # closed form for one dim: 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)
    assert gaussian_kl(torch.tensor([[2.0]]), torch.tensor([[0.5]])).item() == pytest.approx(
        0.5 * (4 + torch.exp(torch.tensor(0.5)).item() - 1 - 0.5)
    )


def _fit(seed: int, epochs: int = 3):
    generator = seed_everything(seed)
    model = ConvVAE(image_size=8, latent_dim=3, widths=(4, 8), hidden=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    images = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(1)).round()
    history = [train_epoch(model, optimizer, images, 16, generator) for _ in range(epochs)]
    return model, history, evaluate_loss(model, images, 16)


def test_training_lowers_the_loss_and_is_reproducible_from_the_seed():
    model, history, val = _fit(seed=3)
    assert history[-1]["loss"] < history[0]["loss"]
    model_again, history_again, val_again = _fit(seed=3)
    assert history == history_again and val == val_again
    _, other, _ = _fit(seed=4)
    assert other != history


def test_evaluate_loss_is_deterministic_per_image_means():
    model, _, _ = _fit(seed=0, epochs=1)
    images = torch.rand(10, 1, 8, 8)
    by_four, by_three = evaluate_loss(model, images, 4), evaluate_loss(model, images, 3)
    assert by_four == evaluate_loss(model, images, 4)  # z = mu: no sampling noise
    assert by_four == pytest.approx(by_three, rel=1e-6)  # means per image, whatever the batch
    assert not model.training
