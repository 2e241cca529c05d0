import pytest
import torch

from vaelab.models import AE, VAE, ConvVAE, count_parameters, reparameterize


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
    assert torch.allclose(mu2, mu)
    assert model.decode(torch.zeros(3, L)).shape == (3, 1, 28, 28)
    samples = model.sample(4)
    assert samples.shape == (4, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1
    recon = model.reconstruct(x)
    assert torch.allclose(recon, torch.sigmoid(model.decode(mu)))  # z = mu
    assert torch.allclose(model.encode_means(x, batch_size=4), mu, atol=1e-6)


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


def test_parameter_names_are_those_of_saved_checkpoints():
    assert list(VAE(2, hidden=(8, 4)).state_dict()) == [
        "encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
        "to_stats.weight", "to_stats.bias",
        "decoder.0.0.weight", "decoder.0.0.bias", "decoder.0.2.weight", "decoder.0.2.bias",
        "decoder.1.weight", "decoder.1.bias"]
    assert [k for k in AE(2, hidden=(8,)).state_dict() if "to_" in k] == \
        ["to_code.weight", "to_code.bias"]
    assert list(ConvVAE(2).state_dict())[-6:] == [
        "decoder.0.weight", "decoder.0.bias", "decoder.2.weight", "decoder.2.bias",
        "decoder.4.weight", "decoder.4.bias"]


def test_same_seed_builds_the_same_weights_as_before_the_shared_mlp_base():
    torch.manual_seed(0)
    model = VAE(2, hidden=(8,))
    # values printed by the release before the shared base: encoder, to_stats, decoder are
    # still drawn in that order, so seeded notebooks train the same models
    assert model.encoder[0].weight[0, :2].tolist() == pytest.approx([-0.0003, 0.0192], abs=1e-4)
    assert model.to_stats.weight[0, :2].tolist() == pytest.approx([0.1078, 0.0393], abs=1e-4)
    assert model.decoder[1].weight[0, :2].tolist() == pytest.approx([-0.2439, 0.2081], abs=1e-4)


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


def test_reparameterize_with_a_generator_repeats_and_leaves_the_global_random_state_alone():
    mu, logvar = torch.zeros(3, 2), torch.zeros(3, 2)
    state = torch.get_rng_state()
    a = reparameterize(mu, logvar, torch.Generator().manual_seed(7))
    b = reparameterize(mu, logvar, torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    # with mu = 0 and sigma = 1, z is the generator's own standard-normal draw
    assert torch.equal(a, torch.randn(3, 2, generator=torch.Generator().manual_seed(7)))
    twice = reparameterize(mu.double(), logvar.double(), torch.Generator().manual_seed(7))
    assert twice.dtype == torch.float64 and torch.allclose(twice.float(), a)


def test_wrong_latent_size_is_named():
    with pytest.raises(ValueError, match="latent_dim=2.*pass \\(N, 2\\)"):
        VAE(2).decode(torch.zeros(4, 3))


def test_wrong_image_shape_hints_at_channel_axis():
    with pytest.raises(ValueError, match="unsqueeze"):
        VAE(2).encode(torch.rand(4, 28, 28))
    with pytest.raises(TypeError, match="torch.Tensor"):
        VAE(2).encode([[0.0]])


def test_the_error_reports_the_whole_batch_shape():
    with pytest.raises(ValueError, match=r"got \(64, 1, 32, 32\)"):
        VAE(2).encode(torch.rand(64, 1, 32, 32))


@pytest.mark.parametrize(("dtype", "advice"), [
    (torch.float64, r"x\.float\(\)"), (torch.float16, r"x\.float\(\)"),
    (torch.bfloat16, r"x\.float\(\)"), (torch.uint8, r"x\.float\(\) / 255")])
@pytest.mark.parametrize("call", ["encode", "encode_means", "forward", "reconstruct"])
def test_images_of_another_dtype_are_refused_with_the_conversion_to_use(dtype, advice, call):
    x = (torch.rand(4, 1, 28, 28) * (255 if dtype == torch.uint8 else 1)).to(dtype)
    with pytest.raises(ValueError, match=advice):
        getattr(VAE(2, hidden=(8,)), call)(x)


@pytest.mark.parametrize("call", ["encode", "encode_means", "forward", "reconstruct"])
def test_0_255_images_and_nan_pixels_are_refused_not_encoded(call):
    model = VAE(2, hidden=(8,))
    with pytest.raises(ValueError, match="divide by 255"):
        getattr(model, call)(torch.rand(4, 1, 28, 28) * 255)
    x = torch.rand(4, 1, 28, 28)
    x[2, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        getattr(model, call)(x)


def test_empty_images_are_refused():
    with pytest.raises(ValueError, match="empty"):
        VAE(2).encode(torch.rand(0, 1, 28, 28))


def test_decode_refuses_nan_codes_and_accepts_lists():
    model = VAE(2, hidden=(8,))
    with pytest.raises(ValueError, match="NaN"):
        model.decode(torch.tensor([[0.0, float("nan")]]))
    assert torch.equal(model.decode([0.5, -1.0]), model.decode(torch.tensor([[0.5, -1.0]])))


@pytest.mark.parametrize(("n", "error"), [(0, ValueError), (2.0, TypeError), ("3", TypeError)])
def test_sample_refuses_a_count_that_is_not_a_positive_integer(n, error):
    with pytest.raises(error, match="n must be an integer"):
        VAE(2, hidden=(8,)).sample(n)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"latent_dim": 0}, ValueError, "latent_dim must be an integer ≥ 1"),
    ({"latent_dim": 2.5}, TypeError, "latent_dim"),
    ({"activation": "gelu"}, ValueError, "activation"),
    ({"hidden": ()}, ValueError, "at least one layer size"),
    ({"hidden": (0,)}, ValueError, r"hidden\[0\] must be an integer ≥ 1"),
    ({"hidden": (400, -3)}, ValueError, r"hidden\[1\]"),
    ({"hidden": (2.5,)}, TypeError, r"hidden\[0\]"),
    ({"hidden": 400}, TypeError, r"pass \(400,\)"),
    ({"hidden": "400"}, TypeError, "tuple of layer sizes"),
    ({"image_size": 0}, ValueError, "image_size"),
])
@pytest.mark.parametrize("cls", [AE, VAE])
def test_bad_constructor_arguments_are_named(cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        cls(**kwargs)


def test_conv_vae_refuses_a_bad_latent_dim():
    with pytest.raises(ValueError, match="latent_dim"):
        ConvVAE(0)
