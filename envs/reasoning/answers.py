"""Final answers out of free text, and their exact check.

A model's answer text is searched, in this order, for: the GSM8K marker ``#### 42``, a LaTeX
``\\boxed{42}``, a phrase (``the answer is 42``, ``final answer: 42``; after the ``=`` when the
phrase goes on with a calculation, ``the answer is 3 + 4 = 7``), and finally the last number
anywhere. Numbers tolerate thousands separators (``1,234``), a currency sign,
a trailing unit or full stop, and compare by value (``42.0`` equals ``42``, ``1/2`` equals ``0.5``).
Any text gets a verdict, never an exception; an answer that is absent is ``None``.

Imports nothing of ours and no torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

_NUMBER = r"[-−]?(?:\$\s?)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s?/\s?\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_MARKER_RE = re.compile(r"####\s*([^\n]*)")
_BOXED_RE = re.compile(r"\\boxed\s*\{([^{}]*)\}")
_PHRASE_RE = re.compile(r"answer\s*(?:is\b|:|=)\s*:?\s*([^\n]*)", re.IGNORECASE)
_EXPRESSION_RE = re.compile(r"^[\d\s+\-−*/×÷().,$]+=\s*(.*)$")  # "3 + 4 = 7": the answer is after the "="

# How an answer was found, best first (reported per answer; ``format_ok`` means the first).
METHODS = ("marker", "boxed", "phrase", "last_number")


@dataclass(frozen=True)
class Extracted:
    """The answer found in a text: its normalised string, and how it was found (``METHODS``)."""

    answer: str | None
    method: str | None


def to_number(text: str) -> Fraction | None:
    """The value of a number written the way people write answers, or None if ``text`` is not one."""
    t = text.strip().replace("−", "-").replace("$", "").replace(" ", "")
    t = t.rstrip(".")
    if not t:
        return None
    if re.fullmatch(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", t):
        return Fraction(t.replace(",", ""))
    m = re.fullmatch(r"(-?\d+)/(\d+)", t)
    if m and int(m.group(2)) != 0:
        return Fraction(int(m.group(1)), int(m.group(2)))
    return None


def normalise(answer: str) -> str:
    """An answer in canonical form: a number as its exact value (``1,234.50`` -> ``1234.5``,
    ``6/4`` -> ``3/2``), anything else lower-cased with spaces collapsed and a final full stop dropped."""
    value = to_number(answer)
    if value is not None:
        return str(value.numerator) if value.denominator == 1 else _decimal_or_fraction(value)
    return re.sub(r"\s+", " ", answer.strip().rstrip(".").strip()).lower()


def _decimal_or_fraction(value: Fraction) -> str:
    d = value.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d == 1:  # a terminating decimal, written exactly
        with localcontext() as ctx:
            ctx.prec = len(str(abs(value.numerator))) + len(str(value.denominator)) + 2
            text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{value.numerator}/{value.denominator}"


def _first_number(text: str) -> str | None:
    m = _NUMBER_RE.search(text)
    return m.group(0) if m else None


def extract_answer(text: str, numeric: bool = True) -> Extracted:
    """The final answer in ``text`` (see the module docstring), normalised; ``numeric=False`` keeps
    a marker's or phrase's words for answers that are not numbers."""
    if not isinstance(text, str) or not text.strip():
        return Extracted(None, None)
    text = text[-4000:]  # an endless answer: its end is where the answer is
    for method, regex in (("marker", _MARKER_RE), ("boxed", _BOXED_RE), ("phrase", _PHRASE_RE)):
        hits = regex.findall(text)
        for raw in reversed(hits):
            if method == "phrase":
                expression = _EXPRESSION_RE.match(raw.strip())
                raw = expression.group(1) if expression else raw
            found = _first_number(raw) if numeric else raw.strip()
            if found:
                return Extracted(normalise(found), method)
    if numeric:
        numbers = _NUMBER_RE.findall(text)
        if numbers:
            return Extracted(normalise(numbers[-1]), "last_number")
    return Extracted(None, None)


def answers_match(found: str | None, expected: str) -> bool:
    """Exact check: equal values for numbers, equal normalised text otherwise."""
    if found is None:
        return False
    a, b = to_number(found), to_number(expected)
    if a is not None and b is not None:
        return a == b
    return normalise(found) == normalise(expected)
