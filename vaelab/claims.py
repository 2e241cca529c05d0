"""Claims: a sentence about a result, tied to the number that backs it.

A notebook says what a figure shows ("8 of 10 reconstructions keep their digit") and, in the
cell beside it, checks that number::

    from vaelab.claims import expect
    expect("reconstructions read as their own digit", accuracy, at_least=0.8, fmt="{:.0%}")

``expect`` prints the claim, the number and the bound. When the notebooks are stored
(``make notebooks`` sets ``VAELAB_CLAIMS=enforce``, in full mode, on the embedded subset) a
claim that does not hold raises ``ClaimError``, so no notebook is stored whose text its own run
contradicts. Everywhere else it prints the verdict, ✓ or ✗, and goes on: a learner's run (a
model trained anew on another device, full MNIST, quick mode) may differ from the stored run
that the text describes, and should show where, not stop the notebook. Each notebook calls
``use_data(train.source)``, so a run on other data than the embedded subset is never enforced.
"""

from __future__ import annotations

import math
import os

from .checks import check_number


class ClaimError(AssertionError):
    """A claim in a notebook's text is not supported by the number its own run computed."""


# The notebooks' text was written from their stored run, on the embedded MNIST subset.
_WRITTEN_FOR = "embedded"
_data = {"source": _WRITTEN_FOR}


def use_data(source: str) -> None:
    """Tell the claims which data this run trains on (``ImageData.source``). Only on the data the
    text was written for (the embedded subset) can a failed claim stop a run (with
    ``VAELAB_CLAIMS=enforce``); on other data (full MNIST from files or a download) it is
    printed with ✗ and the notebook goes on, since the text describes the stored run."""
    _data["source"] = source


def _enforced() -> bool:
    from .train import quick_mode

    return (os.environ.get("VAELAB_CLAIMS", "") == "enforce" and not quick_mode()
            and _data["source"] == _WRITTEN_FOR)


def expect(claim: str, value, *, at_least=None, at_most=None, above=None, below=None,
           fmt: str = "{:.3g}", bound_fmt: str | None = None,
           enforce: bool | None = None) -> float:
    """Check ``at_least ≤ value ≤ at_most`` (any bound may be left out; ``above`` and ``below``:
    the strict ``value > above`` and ``value < below``, for "more than" and "less than"), print
    one line that states the claim with its number, and return ``value`` as a float.
    ``bound_fmt`` (default: ``fmt``) prints the bounds, where they need more digits than the
    value (a quoted "1.6" checked as at least 1.55).

    ``enforce`` (default: with ``VAELAB_CLAIMS=enforce``, in full mode, on the embedded subset)
    makes a failed claim raise ``ClaimError``.
    """
    if at_least is None and at_most is None and above is None and below is None:
        raise ValueError("expect() needs a bound: at_least=..., at_most=..., above=..., "
                         "below=...")
    value = float(value)
    shown_bound = fmt if bound_fmt is None else bound_fmt
    bounds = []
    if at_least is not None:
        bounds.append(f"≥ {shown_bound.format(check_number(at_least, 'at_least'))}")
    if above is not None:
        bounds.append(f"> {shown_bound.format(check_number(above, 'above'))}")
    if at_most is not None:
        bounds.append(f"≤ {shown_bound.format(check_number(at_most, 'at_most'))}")
    if below is not None:
        bounds.append(f"< {shown_bound.format(check_number(below, 'below'))}")
    holds = (math.isfinite(value) and (at_least is None or value >= at_least)
             and (above is None or value > above) and (at_most is None or value <= at_most)
             and (below is None or value < below))
    enforce = _enforced() if enforce is None else enforce
    shown = fmt.format(value) if math.isfinite(value) else str(value)
    line = f"{'✓' if holds else '✗'} {claim}: {shown} (claim needs {' and '.join(bounds)})"
    if not holds and enforce:
        raise ClaimError(f"{line}. The text beside this cell says more than this run shows: "
                         "change the words (or the experiment), not the bound.")
    print(line if holds else f"{line} — where the text makes this claim, your run differs "
                             "here from the stored run it describes (quick mode, other data, "
                             "or a model trained anew); only `make notebooks` stops on it")
    return value


# ---------------------------------------------------------------------------------------------
# The words of a claim and the check each one needs (notebooks/README.md, "How claims are
# written"). Each prints the counts or numbers it rests on, as ``expect`` does.


def about(claim: str, value, target, *, within, fmt: str = "{:.3g}") -> float:
    """"About as / similar": ``|value - target| ≤ within``, two-sided (``within`` stated in the
    text)."""
    within = check_number(within, "within", minimum=0.0)
    target = float(target)
    spread = fmt.format(within).lstrip("+")  # a sign format ("{:+.1%}") is for the target
    return expect(f"{claim} (about {fmt.format(target)} ± {spread})", value,
                  at_least=target - within, at_most=target + within, fmt=fmt)


def most(claim: str, count: int, total: int) -> float:
    """"Most": more than half, ``count > total / 2``; prints "count of total"."""
    _count_total(count, total)
    share = count / total
    return expect(f"{claim}: {count} of {total}", share, above=0.5, fmt="{:.1%}")


def every(claim: str, count: int, total: int) -> float:
    """"Every / all": ``count == total``, with the count printed."""
    _count_total(count, total)
    return expect(f"{claim}: {count} of {total}", count, at_least=total, fmt="{:.0f}")


def none(claim: str, count: int, total: int) -> float:
    """"None / no": ``count == 0`` of ``total``, with the count printed."""
    _count_total(count, total)
    return expect(f"{claim}: {count} of {total}", count, at_most=0, fmt="{:.0f}")


def better(claim: str, higher, lower, *, fmt: str = "{:.3g}") -> float:
    """"Better / more / sharper": the mean of ``higher`` exceeds the mean of ``lower`` by more
    than the larger of their standard deviations over seeds (at least 2 seeds each). Returns
    the difference of the means. For one seed, say "in this run" and use ``expect``."""
    import numpy as np

    hi, lo = np.asarray(higher, dtype=float), np.asarray(lower, dtype=float)
    if hi.ndim != 1 or lo.ndim != 1 or len(hi) < 2 or len(lo) < 2:
        raise ValueError("better() needs one value per seed, at least 2 seeds for each side; "
                         f"got {hi.shape} and {lo.shape} — with one seed, say 'in this run'")
    spread = max(hi.std(ddof=1), lo.std(ddof=1))
    diff = hi.mean() - lo.mean()
    return expect(f"{claim} (mean {fmt.format(hi.mean())} vs {fmt.format(lo.mean())} over "
                  f"{len(hi)} and {len(lo)} seeds; spread {fmt.format(spread)})", diff,
                  above=spread, fmt=fmt)


def _count_total(count, total) -> None:
    if not (isinstance(count, (int,)) or hasattr(count, "__index__")) or not (
            isinstance(total, int) or hasattr(total, "__index__")):
        raise TypeError(f"count and total must be integers; got {count!r} and {total!r}")
    if not 0 <= int(count) <= int(total) or int(total) == 0:
        raise ValueError(f"need 0 ≤ count ≤ total and total ≥ 1; got {count} of {total}")
