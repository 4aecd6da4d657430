"""A call's variables: the values (a name, an appointment time) its persona's texts use.

A persona's system prompt, greeting, voicemail message and consent line may hold
placeholders written ``{{name}}``; a call fills them from its variables, given by
``POST /api/calls`` for an outbound call or by the pre-call webhook (CALL_SETUP_URL)
for an inbound one, over the persona's own defaults. No I/O here: checking and filling
text.

Double braces, as the hosted platforms write them, because prompts hold single braces
(JSON examples) that must stay as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_VARIABLES = 50
MAX_VALUE_CHARS = 500


class VariablesRefused(ValueError):
    """Variables that cannot be used; the message says which and why (no value quoted)."""


def placeholders(texts: Iterable[str]) -> set[str]:
    """The variable names ``texts`` use."""
    return {match.group(1) for text in texts for match in PLACEHOLDER.finditer(text)}


def fill(text: str, variables: Mapping[str, str]) -> str:
    """``text`` with each ``{{name}}`` replaced by its value; one without a value becomes
    empty (callers check ``missing`` first where a gap is an error)."""
    return PLACEHOLDER.sub(lambda match: variables.get(match.group(1), ""), text)


def missing(texts: Iterable[str], variables: Mapping[str, str]) -> list[str]:
    return sorted(placeholders(texts) - set(variables))


def checked(raw: Any, what: str = "variables") -> dict[str, str]:
    """Variables as JSON gave them: an object of names to text, numbers or booleans
    (numbers and booleans become their text). Raises VariablesRefused."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise VariablesRefused(f"{what} must be an object of names to values")
    if len(raw) > MAX_VARIABLES:
        raise VariablesRefused(f"{what}: at most {MAX_VARIABLES} variables")
    variables: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise VariablesRefused(
                f"{what}: {str(name)[:64]!r} is not a variable name (letters, digits, _)"
            )
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = str(value)
        elif isinstance(value, str):
            text = value
        else:
            raise VariablesRefused(f"{what}: {name} must be text, a number or true/false")
        if len(text) > MAX_VALUE_CHARS:
            raise VariablesRefused(f"{what}: {name} is longer than {MAX_VALUE_CHARS} characters")
        variables[name] = text
    return variables
