"""Durations ("30s", "1h30m") and Kubernetes quantities ("250m", "1Gi") as the API spells them.

Durations follow the subset of Go's time.ParseDuration that the CRD pattern admits, so the API
server's CEL `duration()` and this module read every accepted string the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Final

DURATION_PATTERN: Final = r"^([0-9]{1,5}(ms|s|m|h))+$"
DURATION_MAX_LENGTH: Final = 24
_DURATION_PART: Final = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT: Final = {
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
}

# Kubernetes' quantity grammar, narrowed to values a pod can use: never negative, at most 15
# integer and 9 fractional digits (nano precision), and a two-digit exponent, so "-1" and
# "1e9999999" are refused at admission instead of breaking the apply (or Decimal) later.
QUANTITY_PATTERN: Final = (
    r"^\+?(([0-9]{1,15}(\.[0-9]{0,9})?)|(\.[0-9]{1,9}))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?[0-9]{1,2}))?$"
)
# The CRD's int-or-string fields skip `pattern` for integers; its CEL rule applies the same
# bound (15 digits, not negative) to them.
QUANTITY_MAX_INTEGER: Final = 999_999_999_999_999
QUANTITY_MAX_LENGTH: Final = 32
_QUANTITY: Final = re.compile(QUANTITY_PATTERN)
_SUFFIX: Final = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
}


def parse_duration(text: str) -> timedelta:
    """'1h30m' -> timedelta(hours=1, minutes=30); ValueError names the expected form."""
    if len(text) > DURATION_MAX_LENGTH or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(
            f"should match '{DURATION_PATTERN}' (a duration such as 500ms, 30s, 5m, 1h30m)"
        )
    return sum(
        (int(number) * _UNIT[unit] for number, unit in _DURATION_PART.findall(text)),
        timedelta(),
    )


def format_duration(value: timedelta) -> str:
    """The shortest spelling parse_duration reads back: 90s -> '1m30s', 0 -> '0s'."""
    millis = round(value.total_seconds() * 1000)
    if millis < 0:
        raise ValueError(f"durations are never negative, got {value}")
    if millis == 0:
        return "0s"
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    seconds, millis = divmod(millis, 1000)
    parts = zip((hours, minutes, seconds, millis), ("h", "m", "s", "ms"), strict=True)
    return "".join(f"{n}{unit}" for n, unit in parts if n)


def parse_quantity(text: str | int) -> Decimal:
    """'250m' -> Decimal('0.25'), '1Gi' -> Decimal(1073741824). ValueError otherwise (never a
    decimal.Overflow: the pattern bounds the exponent)."""
    value = str(text)
    if len(value) > QUANTITY_MAX_LENGTH or not _QUANTITY.fullmatch(value):
        raise ValueError(f"{value!r} is not a non-negative Kubernetes quantity of sane magnitude")
    number = re.match(r"^[+-]?(\d+\.?\d*|\.\d+)", value)
    assert number is not None  # the full pattern above guarantees a leading number
    suffix = value[number.end() :]
    if suffix not in _SUFFIX:  # an exponent; a bare "E" is exa (10^18), not one
        return Decimal(number.group(0)) * Decimal(10) ** Decimal(suffix[1:])
    return Decimal(number.group(0)) * _SUFFIX[suffix]


@dataclass(frozen=True)
class DurationBounds:
    """Inclusive bounds of a duration field; the CRD states the same ones in CEL."""

    low: str
    high: str

    def __call__(self, value: timedelta) -> timedelta:
        if not parse_duration(self.low) <= value <= parse_duration(self.high):
            raise ValueError(f"must be between {self.low} and {self.high}")
        return value
