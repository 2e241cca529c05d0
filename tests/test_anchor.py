"""The anchor loss (vaelab.anchor): donut and stick maps, donutness, the shifted-prior KL."""

import pytest
import torch

from vaelab import VAE, evaluate
from vaelab.anchor import anchor_kl, anchor_prior_mean, donut_map, donutness, ink_shares, stick_map
from vaelab.losses import kl_divergence, vae_loss


def ring(r_in: float, r_out: float, size: int = 28) -> torch.Tensor:
    """A (1, 1, size, size) image of a ring with radii in pixels: a drawn "0"."""
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = torch.sqrt((yy - c) ** 2 + (xx - c) ** 2)
    return ((r >= r_in) & (r <= r_out)).float()[None, None]


def bar(top: int, bottom: int, left: int, right: int, size: int = 28) -> torch.Tensor:
    """A (1, 1, size, size) image with ink on rows top..bottom, columns left..right (inclusive)."""
    x = torch.zeros(1, 1, size, size)
    x[..., top:bottom + 1, left:right + 1] = 1.0
    return x


# --- the maps --------------------------------------------------------------------------------

def test_donut_map_is_a_thick_ring_filling_most_of_the_frame():
    d = donut_map()
    assert d.shape == (28, 28) and d.dtype == torch.float32
    assert set(d.unique().tolist()) == {0.0, 1.0}
    # symmetric: a ring centred on the frame
    for same in (d.flip(0), d.flip(1), d.T):
        assert torch.equal(d, same)
    # a hole in the middle, empty corners
    assert d[10:18, 10:18].sum() == 0
    assert d[0, 0] == d[0, -1] == d[-1, 0] == d[-1, -1] == 0
    # reaches to within two pixels of every edge, and covers about half the frame
    rows = d.nonzero()[:, 0]
    assert rows.min() <= 1 and rows.max() >= 26
    assert 0.45 < d.mean() < 0.65
    # thick: along the middle row the ring is 8 pixels wide on each side, the hole 10 wide
    middle = d[13]
    assert middle[1:9].sum() == 8 and middle[9:19].sum() == 0 and middle[19:27].sum() == 8


def test_stick_map_is_a_vertical_bar_six_pixels_wide_down_the_middle():
    s = stick_map()
    assert s.shape == (28, 28)
    assert set(s.unique().tolist()) == {0.0, 1.0}
    assert s[:, 11:17].eq(1).all()          # columns 11..16 full, top to bottom
    assert s.sum() == 6 * 28                # and nothing else
    assert torch.equal(s, s.flip(1))        # centred
    assert stick_map(width=4).sum(1).eq(4).all()


# --- donutness -------------------------------------------------------------------------------

def test_a_donut_scores_positive_and_a_stick_negative():
    zero = ring(6.0, 9.0)                   # a drawn "0"
    one = bar(4, 23, 13, 14)                # a drawn "1": 2 px wide, 20 px tall
    assert donutness(zero).item() > 0.5
    assert donutness(one).item() < -0.3
    # the maps themselves: the donut's share on the stick map is its overlap with it
    overlap = float((donut_map() * stick_map()).sum())
    d = donutness(donut_map()[None, None]).item()
    s = donutness(stick_map()[None, None]).item()
    assert d == pytest.approx(1 - overlap / float(donut_map().sum()), abs=1e-6)
    assert s == pytest.approx(overlap / float(stick_map().sum()) - 1, abs=1e-6)
    assert d > 0 > s


def test_donutness_is_a_difference_of_ink_shares():
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    ink = x.flatten(1)
    want = (ink * donut_map().flatten()).sum(1) / ink.sum(1) \
        - (ink * stick_map().flatten()).sum(1) / ink.sum(1)
    got = donutness(x)
    assert got.shape == (5,)
    torch.testing.assert_close(got, want)
    on_donut, on_stick = ink_shares(x)
    torch.testing.assert_close(on_donut - on_stick, got)
    torch.testing.assert_close(on_donut, (ink * donut_map().flatten()).sum(1) / ink.sum(1))
    blank = ink_shares(torch.zeros(2, 1, 28, 28))
    assert all(torch.equal(share, torch.zeros(2)) for share in blank)
    torch.testing.assert_close(donutness(0.3 * x), got)     # shares: brightness does not matter
    assert donutness(torch.zeros(2, 1, 28, 28)).eq(0).all()  # a blank image: 0, not NaN


def test_mnist_zeros_score_highest_and_ones_lowest(mnist):
    train, _ = mnist                                   # the embedded subset (conftest)
    d = donutness(train.images)
    means = torch.stack([d[train.labels == k].mean() for k in range(10)])
    assert means.argmax() == 0 and means.argmin() == 1
    assert means[0] > 0.4 and means[1] < -0.2
    assert (means[[2, 3, 4, 5, 6, 7, 8, 9]] > 0).all()   # only the 1s lean to the stick
    # most single images agree with their digit's sign
    assert (d[train.labels == 0] > 0).float().mean() > 0.95
    assert (d[train.labels == 1] < 0).float().mean() > 0.85


# --- the shifted prior -----------------------------------------------------------------------

def test_anchor_rate_zero_is_the_plain_kl():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    x = torch.rand(8, 1, 28, 28, generator=g)
    assert torch.equal(anchor_kl(mu, logvar, x, 0.0), kl_divergence(mu, logvar))
    assert anchor_prior_mean(x, 0.0, 3).eq(0).all()


def test_prior_mean_is_rate_times_donutness_in_every_coordinate():
    x = torch.cat([ring(6.0, 9.0), bar(4, 23, 13, 14)])
    m = anchor_prior_mean(x, 3.0, latent_dim=4)
    assert m.shape == (2, 4)
    torch.testing.assert_close(m, (3.0 * donutness(x))[:, None].expand(2, 4))
    assert (m[0] > 0).all() and (m[1] < 0).all()   # round: up-right corner; stick: down-left


def test_the_shift_pulls_donuts_up_and_sticks_down():
    x = torch.cat([ring(6.0, 9.0), bar(4, 23, 13, 14)])
    mu = torch.zeros(2, 2, requires_grad=True)
    logvar = torch.zeros(2, 2)
    anchor_kl(mu, logvar, x, 3.0).sum().backward()
    # gradient descent moves mu against the gradient: the donut's code up, the stick's down
    assert (mu.grad[0] < 0).all() and (mu.grad[1] > 0).all()
    # the KL is zero exactly at the shifted mean (with unit variance), positive elsewhere
    target = anchor_prior_mean(x, 3.0, 2)
    assert anchor_kl(target, logvar, x, 3.0).abs().max() < 1e-6
    assert (anchor_kl(-target, logvar, x, 3.0) > 0).all()
    # and equals the standard KL of the shifted code
    torch.testing.assert_close(anchor_kl(mu.detach() + 1, logvar, x, 3.0),
                               kl_divergence(1 - target, logvar))


def test_training_path_uses_the_anchor_kl(mnist):
    torch.manual_seed(0)
    model = VAE(latent_dim=2, hidden=(32,))
    x = mnist[0].images[:200]
    with torch.no_grad():
        logits, mu, logvar = model(x)
    want = anchor_kl(mu, logvar, x, 2.5).mean()
    prior = anchor_prior_mean(x, 2.5, 2)
    terms = vae_loss(logits, x, mu, logvar, likelihood="gaussian", prior_mean=prior)
    torch.testing.assert_close(terms.kl, want)
    got = evaluate(model, x, likelihood="gaussian", anchor_rate=2.5)
    assert got["kl"] == pytest.approx(float(want), rel=1e-5)
    assert got["kl"] != pytest.approx(evaluate(model, x, likelihood="gaussian")["kl"], rel=1e-3)


# --- what it refuses -------------------------------------------------------------------------

def test_donutness_names_the_shape_it_needs():
    with pytest.raises(ValueError, match=r"x.view\(1, 1, 28, 28\)"):
        donutness(torch.rand(28, 28))
    with pytest.raises(ValueError, match="square"):
        donutness(torch.rand(2, 1, 28, 20))
    with pytest.raises(ValueError, match="divide by 255"):
        donutness(torch.full((1, 1, 28, 28), 200.0))
    with pytest.raises(TypeError, match="torch.Tensor"):
        donutness([[0.0]])


def test_maps_and_anchor_refuse_impossible_settings():
    with pytest.raises(ValueError, match="outer must be > 0.5"):
        donut_map(inner=0.5, outer=0.4)
    with pytest.raises(ValueError, match="width must be at most size"):
        stick_map(size=4, width=6)
    with pytest.raises(TypeError, match="size must be an integer"):
        donut_map(size=28.5)
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match="anchor_rate must be ≥ 0"):
        anchor_prior_mean(x, -1.0, 2)
    with pytest.raises(ValueError, match="same N images"):
        anchor_kl(torch.zeros(3, 2), torch.zeros(3, 2), x, 1.0)
    with pytest.raises(ValueError, match="mu must have 2 axes"):
        anchor_kl(torch.zeros(2), torch.zeros(2), x, 1.0)
