import copy

import pytest
import torch
import torch.nn.functional as F

from vaelab.losses import vae_loss
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


@pytest.mark.parametrize(("c_in", "c_out", "k", "stride", "hw", "bias"), [
    (1024, 8, 4, 2, (1, 1), True),   # one-pixel input: a single matrix multiply
    (16, 8, 6, 2, (4, 4), True),     # the ConvVAE's middle layer, small
    (64, 1, 6, 2, (12, 12), True),   # the ConvVAE's last layer
    (5, 3, (4, 6), (2, 3), (3, 5), False),  # rectangular kernel, stride and input; no bias
    (3, 5, 3, 2, (5, 5), True),      # kernel not a multiple of the stride: torch's kernel
])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_transpose_matches_torch(c_in, c_out, k, stride, hw, bias, channels_last, seeded):
    layer = ConvTranspose2d(c_in, c_out, k, stride=stride, bias=bias)
    x = torch.randn(3, c_in, *hw)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    ours = layer(x)
    ref = F.conv_transpose2d(x, layer.weight, layer.bias, stride=stride)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-5)
    params = (x, layer.weight) if layer.bias is None else (x, layer.weight, layer.bias)
    grad = torch.randn_like(ref)
    g_ours = torch.autograd.grad(ours, params, grad)
    g_ref = torch.autograd.grad(ref, params, grad)
    for a, b in zip(g_ours, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_conv_vae_trains_like_one_built_from_torch_layers(seeded):
    """Same weights, same noise: the loss and every gradient match a ConvVAE whose decoder uses
    torch.nn.ConvTranspose2d, and the fast layers leave the output channels-last."""
    ours = ConvVAE(4)
    ref = copy.deepcopy(ours)
    for i in (0, 2, 4):
        old = ref.decoder[i]
        ref.decoder[i] = torch.nn.ConvTranspose2d(old.in_channels, old.out_channels,
                                                  old.kernel_size, old.stride)
    ref.load_state_dict(ours.state_dict())
    x = torch.rand(5, 1, 28, 28)
    losses = []
    for model in (ours, ref):
        torch.manual_seed(3)
        logits, mu, logvar = model(x)
        loss = vae_loss(logits, x, mu, logvar).total
        loss.backward()
        losses.append(loss.detach())
    assert torch.allclose(losses[0], losses[1], rtol=1e-5)
    for (name, a), b in zip(ours.named_parameters(), ref.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-3, atol=1e-5), name
    middle = ours.decoder[:3](ours.from_code(torch.zeros(2, 4)).view(-1, 1024, 1, 1))
    assert middle.is_contiguous(memory_format=torch.channels_last)


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
