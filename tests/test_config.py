"""Settings: every bad one fails at start-up with one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import DEFAULT_MODEL, ConfigError, load_settings

BASE = {
    "PUBLIC_URL": "https://bridge.example.com",
    "TWILIO_AUTH_TOKEN": "twilio-auth-token-123",
    "GEMINI_API_KEY": "gemini-key-for-tests",
}


def load(**overrides: str) -> object:
    env = {**BASE, **overrides}
    return load_settings({k: v for k, v in env.items() if v is not None}, env_file=None)


def test_defaults() -> None:
    s = load_settings(BASE, env_file=None)
    assert s.gemini_model == DEFAULT_MODEL == "gemini-3.8-live"
    assert s.stream_url == "wss://bridge.example.com/voice-stream"
    assert not s.uses_vertex
    assert s.stream_token_secret == "twilio-auth-token-123"  # falls back to the auth token


def test_secrets_lists_every_credential() -> None:
    s = load(
        GEMINI_API_KEY="AIza-long-gemini-key",
        OPERATOR_TOKEN="operator-token-123",
        STREAM_TOKEN_SECRET="stream-token-secret-1",
    )
    assert {"AIza-long-gemini-key", "operator-token-123", "stream-token-secret-1"} <= set(
        s.secrets()
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PUBLIC_URL", ""),
        ("PUBLIC_URL", "bridge.example.com"),
        ("PUBLIC_URL", "https://bridge.example.com/path"),
        ("PUBLIC_URL", "https://bridge.example.com/?x=1"),
        ("TWILIO_AUTH_TOKEN", ""),
        ("TWILIO_ACCOUNT_SID", "XX123"),
        ("GEMINI_MODEL", "gemini-live-2.5-flash-preview"),
        ("GEMINI_MODEL", "bad model"),
        ("GEMINI_VOICE", "kore"),
        ("GEMINI_LIVE_URL", "http://127.0.0.1:9"),
        ("GEMINI_SETUP_TIMEOUT", "soon"),
        ("GEMINI_SETUP_TIMEOUT", "0"),
        ("LOG_LEVEL", "LOUD"),
        ("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent.json"),
        ("SYSTEM_PROMPT_FILE", "/nonexistent.txt"),
    ],
)
def test_bad_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**{name: value})
    assert info.value.name == name
    assert str(info.value).startswith(f"{name}: ") and "\n" not in str(info.value)


def test_gemini_credentials_are_required() -> None:
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        load(GEMINI_API_KEY="")


def test_vertex_when_only_a_project_is_set() -> None:
    s = load(GEMINI_API_KEY="", GOOGLE_CLOUD_PROJECT="proj", GOOGLE_CLOUD_LOCATION="europe-west4")
    assert s.uses_vertex and s.google_cloud_location == "europe-west4"


def test_system_prompt_from_a_file_and_env_file(tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You answer for ACME.\n")
    env_file = tmp_path / ".env"
    env_file.write_text(f"SYSTEM_PROMPT_FILE={prompt}\nGEMINI_VOICE=Puck\n")
    s = load_settings(BASE, env_file=env_file)
    assert s.system_prompt == "You answer for ACME." and s.gemini_voice == "Puck"
    with pytest.raises(ConfigError, match="SYSTEM_PROMPT_FILE"):
        load_settings({**BASE, "SYSTEM_PROMPT": "x"}, env_file=env_file)


def test_plain_http_public_url_streams_over_ws_for_local_tests() -> None:
    assert load(PUBLIC_URL="http://127.0.0.1:8080").stream_url == "ws://127.0.0.1:8080/voice-stream"


def test_env_example_lists_every_setting_and_loads_when_filled(tmp_path: Path) -> None:
    """.env.example copied to .env with the blanks filled in is a working configuration."""
    import re

    root = Path(__file__).resolve().parent.parent
    example = (root / ".env.example").read_text()
    listed = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=", example, re.M))
    read = set(re.findall(r'"([A-Z][A-Z0-9_]{3,})"', (root / "bridge" / "config.py").read_text()))
    assert read - {"AUDIO", "DEBUG", "INFO", "WARNING", "ERROR", "HIGH", "LOW"} <= listed
    filled = example.replace(
        "TWILIO_AUTH_TOKEN=\n", "TWILIO_AUTH_TOKEN=twilio-auth-token-123\n"
    ).replace("GEMINI_API_KEY=\n", "GEMINI_API_KEY=gemini-key-for-tests\n")
    (tmp_path / ".env").write_text(filled)
    settings = load_settings({}, env_file=tmp_path / ".env")
    assert settings.gemini_setup_timeout == 2.5 and settings.twilio_account_sid is None
