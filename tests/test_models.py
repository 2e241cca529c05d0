import pytest
import torch
import torch.nn.functional as F

from vaelab.models import AE, VAE, ConvTranspose2d, ConvVAE, count_parameters, reparameterize


@pytest.mark.parametrize("make", [lambda: AE(2), lambda: VAE(2), lambda: VAE(5, hidden=(400, 100)),
                                  lambda: VAE(3, activation="tanh"), lambda: ConvVAE(10)])
def test_common_surface(make, seeded):
    model = make()
    L = model.latent_dim
    x = torch.rand(6, 1, 28, 28)
    mu, logvar = model.encode(x)
    assert mu.shape == (6, L)
    assert logvar is None if isinstance(model, AE) else logvar.shape == (6, L)
    logits, mu2, _ = model(x)
    assert logits.shape == (6, 1, 28, 28)
    assert model.decode(torch.zeros(3, L)).shape == (3, 1, 28, 28)
    samples = model.sample(4)
    assert samples.shape == (4, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1
    recon = model.reconstruct(x)
    assert torch.equal(recon, model.reconstruct(x))  # z = mu: deterministic
    assert torch.allclose(recon, torch.sigmoid(model.decode(mu)))
    assert model.encode_means(x, batch_size=4).shape == (6, L)


def test_decode_returns_logits_not_probabilities(seeded):
    logits = VAE(2).decode(torch.randn(50, 2) * 3)
    assert logits.min() < 0 or logits.max() > 1


def test_sampled_reconstruction_differs_from_mean(seeded):
    model = VAE(2)
    x = torch.rand(4, 1, 28, 28)
    assert not torch.equal(model.reconstruct(x, sample=True), model.reconstruct(x))


def test_mlp_sizes():
    assert [m.out_features for m in VAE(2).modules() if isinstance(m, torch.nn.Linear)] == \
        [400, 4, 400, 784]
    assert [m.out_features for m in VAE(7, hidden=(400, 100)).modules()
            if isinstance(m, torch.nn.Linear)] == [400, 100, 14, 100, 400, 784]
    assert [m.out_features for m in AE(2).modules() if isinstance(m, torch.nn.Linear)] == \
        [400, 2, 400, 784]
    assert count_parameters(AE(2)) == (784 * 400 + 400) + (400 * 2 + 2) + (2 * 400 + 400) + \
        (400 * 784 + 784)


def test_image_size_option():
    model = VAE(3, image_size=32)
    assert model.decode(torch.zeros(1, 3)).shape == (1, 1, 32, 32)
    with pytest.raises(ValueError, match=r"\(N, 1, 32, 32\)"):
        model.encode(torch.rand(2, 1, 28, 28))


def test_conv_vae_shapes_at_every_layer():
    model = ConvVAE(10)
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
             for m in [*model.encoder[0:6:2], *model.decoder[0:6:2]]]
    model(torch.rand(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    assert shapes == [(1, 32, 13, 13), (1, 64, 5, 5), (1, 128, 2, 2),
                      (1, 256, 4, 4), (1, 128, 12, 12), (1, 1, 28, 28)]
    assert model.to_stats.in_features == 2 * 2 * 128
    assert model.from_code[0].out_features == 1024


@pytest.mark.parametrize(("c_in", "c_out", "k", "hw"),
                         [(1024, 8, 4, 1), (16, 8, 6, 4), (64, 1, 6, 12), (3, 5, 3, 5)])
def test_conv_transpose_matches_torch(c_in, c_out, k, hw, seeded):
    layer = ConvTranspose2d(c_in, c_out, k, stride=2)
    x = torch.randn(3, c_in, hw, hw, requires_grad=True)
    ours = layer(x)
    ref = F.conv_transpose2d(x, layer.weight, layer.bias, stride=2)
    assert torch.allclose(ours, ref, atol=1e-5)
    grad = torch.randn_like(ref)
    g_ours = torch.autograd.grad(ours, (x, layer.weight, layer.bias), grad)
    g_ref = torch.autograd.grad(ref, (x, layer.weight, layer.bias), grad)
    for a, b in zip(g_ours, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_reparameterize_statistics_and_gradients(seeded):
    mu = torch.tensor([[1.5, -2.0]]).repeat(200_000, 1).requires_grad_(True)
    logvar = torch.tensor([[0.0, 2 * torch.log(torch.tensor(0.5))]]).repeat(200_000, 1)
    logvar.requires_grad_(True)
    z = reparameterize(mu, logvar)
    assert torch.allclose(z.mean(0), torch.tensor([1.5, -2.0]), atol=0.01)
    assert torch.allclose(z.std(0), torch.tensor([1.0, 0.5]), atol=0.01)
    z.sum().backward()
    assert torch.all(mu.grad == 1)  # dz/dmu = 1
    assert logvar.grad.abs().sum() > 0  # the noise sits outside: gradients reach log sigma^2


def test_wrong_latent_size_is_named():
    with pytest.raises(ValueError, match="latent_dim=2.*pass \\(N, 2\\)"):
        VAE(2).decode(torch.zeros(4, 3))


def test_wrong_image_shape_hints_at_channel_axis():
    with pytest.raises(ValueError, match="unsqueeze"):
        VAE(2).encode(torch.rand(4, 28, 28))
    with pytest.raises(TypeError, match="torch.Tensor"):
        VAE(2).encode([[0.0]])


@pytest.mark.parametrize(("kwargs", "message"), [({"latent_dim": 0}, "positive integer"),
                                                 ({"activation": "gelu"}, "activation")])
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAE(**kwargs)
