import platform

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vaelab import fast
from vaelab.checkpoints import load, save
from vaelab.fast import FastConvTranspose2d, speed_up
from vaelab.losses import vae_loss
from vaelab.models import ConvVAE


@pytest.mark.parametrize(("c_in", "c_out", "k", "stride", "hw", "bias"), [
    (1024, 8, 4, 2, (1, 1), True),   # one-pixel input: a single matrix multiply
    (16, 8, 6, 2, (4, 4), True),     # the ConvVAE's middle layer, small
    (64, 1, 6, 2, (12, 12), True),   # the ConvVAE's last layer
    (5, 3, (4, 6), (2, 3), (3, 5), False),  # rectangular kernel, stride and input; no bias
    (3, 5, 3, 2, (5, 5), True),      # kernel not a multiple of the stride: torch's kernel
])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_conv_transpose_matches_torch(c_in, c_out, k, stride, hw, bias, channels_last,
                                           seeded):
    layer = FastConvTranspose2d(c_in, c_out, k, stride=stride, bias=bias)
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


def test_print_shows_which_transposed_convolution_runs():
    assert str(ConvVAE(4).decoder[0]) == \
        "FastConvTranspose2d(1024, 256, kernel_size=(4, 4), stride=(2, 2))"
    assert str(ConvVAE(4, fast=False).decoder[0]) == \
        "ConvTranspose2d(1024, 256, kernel_size=(4, 4), stride=(2, 2))"


def test_fast_flag_draws_the_same_weights_and_keeps_the_parameter_names():
    torch.manual_seed(0)
    quick = ConvVAE(4)
    after_quick = torch.rand(1)
    torch.manual_seed(0)
    plain = ConvVAE(4, fast=False)
    assert torch.equal(torch.rand(1), after_quick)  # the swap draws no random numbers
    assert list(quick.state_dict()) == list(plain.state_dict())
    for key, value in quick.state_dict().items():
        assert torch.equal(value, plain.state_dict()[key]), key
    assert "fast" not in quick.config  # checkpoints store only what changes the model


def test_speed_up_swaps_only_torch_transposed_convolutions_and_shares_their_parameters():
    model = nn.Sequential(nn.ConvTranspose2d(4, 2, 4, stride=2), nn.Conv2d(2, 2, 3))
    weight = model[0].weight
    speed_up(model)
    assert type(model[0]) is FastConvTranspose2d and type(model[1]) is nn.Conv2d
    assert model[0].weight is weight


def test_checkpoint_of_a_fast_model_loads_into_torch_layers_and_back(tmp_path):
    torch.manual_seed(1)
    model = ConvVAE(3).eval()
    save(model, tmp_path / "conv.pt")
    loaded = load(tmp_path / "conv.pt")
    assert type(loaded.decoder[2]) is FastConvTranspose2d
    plain = ConvVAE(3, fast=False).eval()
    plain.load_state_dict(model.state_dict())
    z = torch.randn(5, 3)
    assert torch.allclose(plain.decode(z), loaded.decode(z), atol=1e-5)


def test_conv_vae_trains_like_one_built_from_torch_layers(seeded):
    """Same weights, same noise: the loss and every gradient match torch's layers, and the fast
    layers leave the output channels-last."""
    ours = ConvVAE(4)
    ref = ConvVAE(4, fast=False)
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


def test_keep_freed_memory_takes_on_glibc_linux_only():
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert fast.keep_freed_memory() is on_glibc


def test_adam_is_fused_on_the_cpu_and_plain_elsewhere():
    params = [nn.Parameter(torch.zeros(3))]
    assert fast.adam(params, 1e-3, torch.device("cpu")).defaults["fused"] is True
    assert not fast.adam(params, 1e-3, torch.device("mps")).defaults["fused"]
    assert fast.adam(params, 0.5, torch.device("cpu")).defaults["lr"] == 0.5
