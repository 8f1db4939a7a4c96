"""Pulling answers out of generated text and normalizing them for exact-match scoring."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?")
_MARKERS = ("####", "The answer is")


def normalize_number(text: str) -> str:
    """Canonical form of a number: ``"$1,000.50"`` -> ``"1000.5"``, ``"72.0"`` -> ``"72"``.

    Text that is not a number comes back stripped, so non-numeric references still compare.
    """
    cleaned = text.strip().replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return text.strip()
    if not value.is_finite():
        return text.strip()
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def extract_final_number(generated: str) -> str:
    """The answer number in a step-by-step solution, normalized; ``""`` when there is none.

    The first number after ``####`` (GSM8K) or ``The answer is`` (MetaMathQA) wins, because a
    model often keeps generating after its answer; without a marker, the last number counts.
    """
    for marker in _MARKERS:
        position = generated.find(marker)
        if position >= 0:
            match = _NUMBER.search(generated, position + len(marker))
            return normalize_number(match.group()) if match else ""
    numbers = _NUMBER.findall(generated)
    return normalize_number(numbers[-1]) if numbers else ""


def match_label(generated: str, labels: tuple[str, ...]) -> str:
    """The label the continuation starts with (case-insensitive, longest wins), else ``""``."""
    text = generated.strip().lower()
    best = ""
    for label in labels:
        name = label.lower()
        if text.startswith(name) and len(name) > len(best):
            rest = text[len(name) :]
            if not rest or not rest[0].isalnum():
                best = label
    return best


def collapse_whitespace(text: str) -> str:
    """``text`` stripped, with every run of whitespace made one space."""
    return " ".join(text.split())
