"""Secrets that are no secret: placeholders copied from an example, and values too short.

A deployment that starts with ``replace-me`` from ``deploy/k8s/secret.yaml`` as its
Twilio auth token signs webhooks anyone can forge; one with a four-letter operator
token opens the stats to a guess. Both are refused at start-up, with a line naming the
setting and never repeating its value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

SECRET_SETTINGS = (
    "TWILIO_AUTH_TOKEN",
    "STREAM_TOKEN_SECRET",
    "GEMINI_API_KEY",
    "OPERATOR_TOKEN",
    "WEBHOOK_SECRET",
)
# Twilio's auth tokens are 32 characters and Google's API keys 39; 16 random
# characters are well beyond guessing.
MIN_SECRET_CHARS = 16

# Lower-cased, letters and digits only. A value that holds one of these is a template's
# placeholder (``replace-me``, ``<your-api-key>``, ``CHANGE_ME_PLEASE``, ...). Seven
# letters or more, so that no random key holds one by chance.
_PLACEHOLDER_MARKS = (
    "replaceme",
    "changeme",
    "changeit",
    "placeholder",
    "yourtoken",
    "yourkey",
    "yourapikey",
    "yourauthtoken",
    "yoursecret",
    "fillmein",
    "example",
)
_PLACEHOLDERS = frozenset(
    {"secret", "password", "token", "apikey", "test", "dummy", "default", "todo", "fixme"}
)


def weak_secret_problem(value: str) -> str | None:
    """Why ``value`` cannot be a real secret, or None. The reason never quotes the value."""
    letters = re.sub(r"[^a-z0-9]", "", value.lower())
    if (
        letters in _PLACEHOLDERS
        or any(mark in letters for mark in _PLACEHOLDER_MARKS)
        or (value.startswith("<") and value.endswith(">"))
        or len(set(value)) == 1
    ):
        return "is a placeholder, not a secret: set the real value"
    if len(value) < MIN_SECRET_CHARS:
        return f"is too short to be a secret ({len(value)} characters; at least {MIN_SECRET_CHARS})"
    return None


def weak_secrets(values: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """Each set secret that is weak, as (setting, problem), in the order given."""
    return [
        (name, problem)
        for name, value in values.items()
        if value and (problem := weak_secret_problem(value)) is not None
    ]
