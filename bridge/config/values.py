"""How one setting's text becomes a value: units, bounds and the words of the refusal.

Each parser takes the setting's text (never empty: an empty setting means its
default) and returns the value, or raises ``ValueError`` with the problem in
words an operator can act on. The table in ``config`` names the variable, so
the problem never has to.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

Parser = Callable[[str], Any]


def text(value: str) -> str:
    return value


@dataclass(frozen=True)
class Seconds:
    low: float
    high: float

    def __call__(self, value: str) -> float:
        try:
            seconds = float(value.removesuffix("s").strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number of seconds") from None
        if not self.low <= seconds <= self.high:
            raise ValueError(f"must be between {self.low:g} and {self.high:g} seconds")
        return seconds


@dataclass(frozen=True)
class Milliseconds:
    low: int
    high: int

    def __call__(self, value: str) -> int:
        digits = value.removesuffix("ms").strip()
        if not digits.isdigit():
            raise ValueError(f"{value!r} is not a whole number of milliseconds")
        ms = int(digits)
        if not self.low <= ms <= self.high:
            raise ValueError(f"must be between {self.low} and {self.high} milliseconds")
        return ms


@dataclass(frozen=True)
class WholeNumber:
    low: int
    unit: str

    def __call__(self, value: str) -> int:
        if not value.isdigit() or int(value) < self.low:
            raise ValueError(f"must be a whole number of {self.unit}, {self.low} or more")
        return int(value)


def flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not true or false")


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]

    def __call__(self, value: str) -> str:
        for option in self.options:
            if value.lower() == option.lower():
                return option
        raise ValueError(f"{value!r} is not one of {', '.join(self.options)}")


@dataclass(frozen=True)
class Url:
    schemes: tuple[str, ...]

    def __call__(self, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in self.schemes or not parts.netloc:
            wanted = " or ".join(f"{s}://" for s in self.schemes)
            raise ValueError(f"{value!r} is not a {wanted} URL")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query string or fragment")
        return value


def existing_file(value: str) -> str:
    if not Path(value).is_file():
        raise ValueError(f"file not found: {value}")
    return value


def existing_dir(value: str) -> str:
    if not Path(value).is_dir():
        raise ValueError(f"folder not found: {value}")
    return value


def phone_number(value: str) -> str:
    digits = value.replace(" ", "").replace("-", "")
    if not (digits.startswith("+") and digits[1:].isdigit() and 8 <= len(digits) <= 16):
        raise ValueError(f"{value!r} is not an E.164 number such as +14155550100")
    return digits


def phone_numbers(value: str) -> tuple[str, ...]:
    return tuple(phone_number(n) for n in value.split(",") if n.strip())


def phone_prefixes(value: str) -> tuple[str, ...]:
    """Comma-separated starts of E.164 numbers (``+1``, ``+4420``)."""
    prefixes = []
    for item in value.split(","):
        prefix = item.strip().replace(" ", "")
        if not prefix:
            continue
        if not (prefix.startswith("+") and prefix[1:].isdigit() and 2 <= len(prefix) <= 16):
            raise ValueError(f"{prefix!r} is not the start of an E.164 number such as +1415")
        prefixes.append(prefix)
    return tuple(prefixes)


@dataclass(frozen=True)
class Names:
    """A comma-separated set drawn from ``known`` (empty text: none)."""

    known: frozenset[str]

    def __call__(self, value: str) -> frozenset[str]:
        names = frozenset(n.strip() for n in value.split(",") if n.strip())
        if unknown := names - self.known:
            raise ValueError(
                f"unknown {', '.join(sorted(unknown))} (known: {', '.join(sorted(self.known))})"
            )
        return names


def account_sid(value: str) -> str:
    if not (len(value) == 34 and value.startswith("AC") and value[2:].isalnum()):
        raise ValueError("must be 'AC' followed by 32 hex digits")
    return value


def region(value: str) -> str:
    if not value.replace("-", "").isalnum():
        raise ValueError("must be a region such as us-central1, or global")
    return value


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
