import math

import pytest

from vaelab.claims import ClaimError, expect


@pytest.fixture
def full_mode(monkeypatch):
    """How `make notebooks` runs: full mode, claims enforced."""
    monkeypatch.delenv("VAELAB_QUICK", raising=False)
    monkeypatch.setenv("VAELAB_CLAIMS", "enforce")


def test_a_claim_that_holds_prints_its_number_and_bound(full_mode, capsys):
    assert expect("reconstructions read as their own digit", 0.83, at_least=0.8,
                  fmt="{:.0%}") == 0.83
    assert capsys.readouterr().out == (
        "✓ reconstructions read as their own digit: 83% (claim needs ≥ 80%)\n")


def test_both_bounds_are_checked_and_shown(full_mode, capsys):
    expect("gap", 0.5, at_least=0.0, at_most=1.0)
    assert "(claim needs ≥ 0 and ≤ 1)" in capsys.readouterr().out
    with pytest.raises(ClaimError, match="gap: 1.5 .claim needs ≥ 0 and ≤ 1"):
        expect("gap", 1.5, at_least=0.0, at_most=1.0)


def test_a_failed_claim_stops_a_full_run_and_says_to_change_the_words(full_mode):
    with pytest.raises(ClaimError, match="change the words"):
        expect("every digit owns a region", 0.0, at_least=0.03)


def test_nan_never_holds(full_mode):
    with pytest.raises(ClaimError, match="nan"):
        expect("a number", math.nan, at_most=1.0)


@pytest.mark.parametrize("env", [("VAELAB_QUICK", "1"), ("VAELAB_CLAIMS", "report"),
                                 ("VAELAB_CLAIMS", "")])
def test_a_learners_run_prints_a_failed_claim_and_goes_on(full_mode, monkeypatch, capsys, env):
    """Quick mode, a timing run, and a learner's own run (VAELAB_CLAIMS unset)."""
    monkeypatch.setenv(*env)
    assert expect("every digit owns a region", 0.0, at_least=0.03) == 0.0
    assert capsys.readouterr().out.startswith(
        "✗ every digit owns a region: 0 (claim needs ≥ 0.03) — where the text makes this claim, "
        "your run differs here")


def test_a_claim_needs_a_bound():
    with pytest.raises(ValueError, match="needs a bound"):
        expect("no bound", 1.0)


def test_on_other_data_than_the_stored_runs_a_failed_claim_is_printed_not_raised(
        full_mode, capsys):
    from vaelab import claims

    try:
        claims.use_data("files")  # full MNIST: the text was written from the embedded subset
        assert expect("every digit owns a region", 0.0, at_least=0.03) == 0.0
        assert "other data" in capsys.readouterr().out
        claims.use_data("embedded")
        with pytest.raises(ClaimError):
            expect("every digit owns a region", 0.0, at_least=0.03)
    finally:
        claims.use_data("embedded")


# --- the words of a claim -------------------------------------------------------------------


def test_about_is_two_sided(full_mode):
    from vaelab import claims

    claims.about("grid as good", 0.80, 0.84, within=0.05)
    with pytest.raises(claims.ClaimError):
        claims.about("grid as good", 0.76, 0.84, within=0.05)
    with pytest.raises(claims.ClaimError):
        claims.about("grid as good", 0.92, 0.84, within=0.05)  # too high fails too


def test_most_means_more_than_half(full_mode):
    from vaelab import claims

    claims.most("samples read", 6, 10)
    with pytest.raises(claims.ClaimError, match="5 of 10"):
        claims.most("samples read", 5, 10)


def test_every_and_none_count(full_mode):
    from vaelab import claims

    claims.every("all read", 10, 10)
    claims.none("none in a gap", 0, 64)
    with pytest.raises(claims.ClaimError, match="9 of 10"):
        claims.every("all read", 9, 10)
    with pytest.raises(claims.ClaimError, match="1 of 64"):
        claims.none("none in a gap", 1, 64)
    with pytest.raises(ValueError, match="count ≤ total"):
        claims.most("x", 11, 10)


def test_better_needs_a_gap_beyond_the_spread_over_seeds(full_mode):
    from vaelab import claims

    assert claims.better("higher MIG", [0.30, 0.32, 0.34], [0.05, 0.06, 0.08]) > 0.2
    with pytest.raises(claims.ClaimError):
        claims.better("higher ELBO", [-49.6, -49.0, -50.2], [-50.0, -51.5, -48.5])
    with pytest.raises(ValueError, match="in this run"):
        claims.better("one seed", [1.0], [0.0])


def test_most_and_better_print_the_strict_bound_they_test(full_mode, capsys):
    from vaelab import claims

    claims.most("read as 9", 3, 5)
    assert "claim needs > 50.0%" in capsys.readouterr().out
    with pytest.raises(claims.ClaimError, match="claim needs > 50.0%"):
        claims.most("read as 9", 2, 4)  # exactly half is not "most"
    claims.better("higher", [2.0, 2.2], [1.0, 1.1])
    assert "claim needs > 0.141" in capsys.readouterr().out
    with pytest.raises(claims.ClaimError, match="claim needs > 1"):
        claims.expect("above", 1.0, above=1.0)


def test_below_is_strict_for_less_than(full_mode, capsys):
    from vaelab import claims

    claims.expect("less time", 0.99, below=1.0, fmt="{:.2f}")
    assert "claim needs < 1.00" in capsys.readouterr().out
    with pytest.raises(claims.ClaimError, match="claim needs < 1"):
        claims.expect("less time", 1.0, below=1.0)  # the same time is not less


def test_bounds_can_print_finer_than_the_value(full_mode, capsys):
    expect("ELBO gained, nats", 1.62, at_least=1.55, fmt="{:.1f}", bound_fmt="{:.2f}")
    assert capsys.readouterr().out == "✓ ELBO gained, nats: 1.6 (claim needs ≥ 1.55)\n"
