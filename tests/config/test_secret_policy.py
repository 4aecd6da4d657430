"""Secrets that are no secret are refused at start-up, in a line that names the setting."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import yaml

from bridge.config import ConfigError, load_settings, single_errors
from bridge.config.secret_policy import MIN_SECRET_CHARS, weak_secret_problem, weak_secrets

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "value",
    [
        "replace-me",
        "REPLACE_ME_WITH_YOUR_TOKEN",
        "changeme",
        "<your-api-key>",
        "your-auth-token-goes-here",
        "secret",
        "password",
        "x" * 40,
        "example-operator-token-123",
    ],
)
def test_placeholders_are_refused_whatever_their_length(value: str) -> None:
    assert weak_secret_problem(value) == "is a placeholder, not a secret: set the real value"


def test_short_values_are_refused_without_being_quoted() -> None:
    problem = weak_secret_problem("hunter2")
    assert problem is not None and "too short" in problem and "hunter2" not in problem
    assert weak_secret_problem("a1" * (MIN_SECRET_CHARS // 2)) is None


def test_real_looking_secrets_pass() -> None:
    for value in (
        secrets.token_hex(16),
        "AIza" + secrets.token_urlsafe(26),
        secrets.token_urlsafe(24),
    ):
        assert weak_secret_problem(value) is None


def test_weak_secrets_names_each_weak_one_and_skips_unset_ones() -> None:
    found = weak_secrets(
        {"A": "replace-me", "B": None, "C": "", "D": "short", "E": "k" + "0123456789abcdef"}
    )
    assert [name for name, _ in found] == ["A", "D"]


def test_the_deployment_secret_templates_placeholders_do_not_start() -> None:
    """deploy/k8s/secret.yaml's "replace-me" once signed a webhook that got TwiML."""
    (template,) = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "secret.yaml").read_text())
    env = {"PUBLIC_URL": "https://voice.example.com", **template["stringData"]}
    with pytest.raises(ConfigError) as info:
        load_settings(env, env_file=None)
    placeholder = "is a placeholder, not a secret: set the real value"
    assert [str(e) for e in single_errors(info.value)] == [
        "TWILIO_ACCOUNT_SID: must be 'AC' followed by 32 hex digits",
        f"TWILIO_AUTH_TOKEN: {placeholder}",
        f"GEMINI_API_KEY: {placeholder}",
        f"OPERATOR_TOKEN: {placeholder}",
    ]
