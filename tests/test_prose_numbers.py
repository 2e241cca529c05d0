"""Numbers in a notebook's prose come from its own run.

A measured figure quoted in a markdown cell — a number with decimals, a percentage, a time, a
loss in nats, a ratio — must be printed somewhere in the same notebook's stored outputs, so a
rerun that changes the result cannot leave stale text behind. Constants of the model or the
experiment are allowed when a code cell of the notebook writes them (``inner=0.38``), or when
they are listed below with the reason they are not measurements.
"""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# Numbers that are definitions, not results: (notebook prefix or "*", number as written).
NOT_MEASURED = {
    ("*", "0.5"): "σ² = 0.5 / one half in formulas",
    ("*", "0.01"): "the active-unit threshold of vaelab.metrics.active_units",
    ("*", "95 %"): "the coverage of a 95 % interval (a definition)",
    ("*", "99.7 %"): "the share of a normal distribution within 3 σ (a definition)",
}

# A number as written in prose: 1,234 or 12 or 0.188, maybe followed by a unit that marks it
# as measured (%, s, ms, min, nats, × as a ratio — not "28 × 28", not the plural "the 7s").
NUMBER = re.compile(
    r"(?<![\w.,−-])(?P<num>\d{1,3}(?:,\d{3})+|\d+)(?P<dec>\.\d+)?"
    r"(?P<unit>\s?%|\s(?:ms|min|s|nats?)\b|\s?×(?!\s?\d))?")
# Formulas, inline code and links are not prose numbers.
NOT_PROSE = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$|`[^`]*`|\]\([^)]*\)|<[^>]+>|https?://\S+"
                       r"|(?:arXiv:\s?)?\b\d{4}\.\d{4,5}\b", re.S)  # ... and arXiv numbers

# what an output holds but does not show as text: embedded images and the explorers' scripts,
# whose digits would otherwise "print" any number by chance
NOT_SHOWN = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+|<script\b.*?</script>", re.S | re.I)


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else value


def printed_text(nb: dict) -> str:
    """Everything the notebook's stored outputs show as text (streams, plain text, HTML)."""
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(_text(out["text"]))
            for kind, value in out.get("data", {}).items():
                if kind.startswith("text/"):
                    parts.append(_text(value))
    return NOT_SHOWN.sub(" ", "\n".join(parts))



def measured_numbers(markdown: str):
    """(number as written, digits to look for) for each measured-looking number in prose."""
    prose = NOT_PROSE.sub(" ", markdown)
    for m in NUMBER.finditer(prose):
        if not (m["dec"] or m["unit"]):
            continue  # a bare integer: a count, an index, an epoch — too ambiguous to check
        yield m.group(0).strip(), m["num"] + (m["dec"] or "")


def appears(digits: str, text: str) -> bool:
    """Whether the number is printed, as written or without its thousands commas."""
    forms = {digits, digits.replace(",", "")}
    return any(re.search(rf"(?<![\d.]){re.escape(f)}(?!\d)", text) for f in forms)


def stale_numbers(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    printed = printed_text(nb)
    code = "\n".join(_text(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    prefix = path.name[:2]
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        for written, digits in measured_numbers(_text(cell["source"])):
            if (("*", written) in NOT_MEASURED or (prefix, written) in NOT_MEASURED
                    or appears(digits, printed) or appears(digits, code)):
                continue
            problems.append(f"cell {i}: {written!r}")
    return problems


def test_the_checker_finds_numbers_and_ignores_formulas_and_code():
    found = [w for w, _ in measured_numbers(
        "loss 119.0 nats, 36 % in gaps, 4.87 s per epoch, `lr=1e-3` and $0.25$, epoch 12, 2.9×, "
        "28 × 28 pixels, the 7s and 9s, arXiv:1312.6114, https://x.org/a/1.5 s")]
    assert found == ["119.0 nats", "36 %", "4.87 s", "2.9×"]
    assert appears("4,000", "trained on 4000 images") and not appears("13", "0.135 and 213")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_measured_number_in_prose_is_printed_by_the_notebook(path):
    problems = stale_numbers(path)
    assert not problems, (
        f"{path.name}: numbers in markdown that no stored output prints (stale or unbacked; "
        "print them from the run or write the sentence in code): " + "; ".join(problems))


def test_digits_inside_images_and_scripts_are_not_printed_numbers():
    nb = {"cells": [{"cell_type": "code", "outputs": [
        {"data": {"text/html": '<img src="data:image/png;base64,iVBOR87w0KGgo=">'
                               "<script>const share = 0.87;</script><p>read: 12 %</p>"}}]}]}
    shown = printed_text(nb)
    assert not appears("87", shown) and not appears("0.87", shown) and appears("12", shown)
