"""Settings: every bad one fails at start-up, all of them at once, each in one line naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.config import DEFAULT_MODEL, ConfigError, ConfigErrors, error_lines
from bridge.config.docs import env_example, with_readme_table
from bridge.runtime.loading import load as load_settings

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "PUBLIC_URL": "https://bridge.example.com",
    "TWILIO_AUTH_TOKEN": "twilio-auth-token-123",
    "GEMINI_API_KEY": "gemini-key-for-tests",
}


def load(**overrides: str) -> object:
    env = {**BASE, **overrides}
    return load_settings({k: v for k, v in env.items() if v is not None}, env_file=None)


def problems(**overrides: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(**overrides)
    return error_lines(info.value)


def test_defaults() -> None:
    s = load_settings(BASE, env_file=None)
    assert s.gemini_model == DEFAULT_MODEL == "gemini-3.8-live"
    assert s.stream_url == "wss://bridge.example.com/voice-stream"
    assert not s.uses_vertex
    assert s.stream_token_secret == "twilio-auth-token-123"  # falls back to the auth token
    assert s.vad == {
        "startOfSpeechSensitivity": "START_SENSITIVITY_LOW",
        "endOfSpeechSensitivity": "END_SENSITIVITY_LOW",
        "prefixPaddingMs": 40,
        "silenceDurationMs": 600,
    }


def test_the_state_url_and_its_password_are_secrets_however_written() -> None:
    s = load(STATE_URL="redis://:p%40ss%2Fword-1234567@redis.internal:6379/0")
    assert {
        "redis://:p%40ss%2Fword-1234567@redis.internal:6379/0",
        "p%40ss%2Fword-1234567",
        "p@ss/word-1234567",
    } <= set(s.secrets())


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
        ("VAD_SILENCE_DURATION_MS", "0.6"),
        ("MAX_CONCURRENT_CALLS", "0"),
        ("BUILTIN_TOOLS", "end_call,hang_up"),
        ("TRANSFER_NUMBERS", "+1415555,0800"),
    ],
)
def test_bad_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**{name: value})
    assert info.value.name == name
    assert str(info.value).startswith(f"{name}: ") and "\n" not in str(info.value)


def test_every_bad_setting_is_reported_at_once_one_line_each() -> None:
    lines = problems(
        PUBLIC_URL="",
        GEMINI_VOICE="kore",
        VAD_SILENCE_DURATION_MS="5",
        GEMINI_SETUP_TIMEOUT="soon",
        LOG_FORMAT="xml",
    )
    assert [line.split(":")[0] for line in lines] == [
        "PUBLIC_URL",
        "GEMINI_VOICE",
        "GEMINI_SETUP_TIMEOUT",
        "VAD_SILENCE_DURATION_MS",
        "LOG_FORMAT",
    ]


def test_milliseconds_are_milliseconds_and_seconds_seconds() -> None:
    (line,) = problems(VAD_PREFIX_PADDING_MS="3000")
    assert line == "VAD_PREFIX_PADDING_MS: must be between 0 and 2000 milliseconds"
    (line,) = problems(VAD_SILENCE_DURATION_MS="soon")
    assert line == "VAD_SILENCE_DURATION_MS: 'soon' is not a whole number of milliseconds"
    assert load(VAD_SILENCE_DURATION_MS="800ms").vad["silenceDurationMs"] == 800
    (line,) = problems(GEMINI_STALL_TIMEOUT="500")
    assert line == "GEMINI_STALL_TIMEOUT: must be between 1 and 120 seconds"


def test_a_public_url_twilio_cannot_use_is_refused() -> None:
    (line,) = problems(PUBLIC_URL="http://bridge.example.com")
    assert line.startswith("PUBLIC_URL: must be https://") and "wss://" in line
    (line,) = problems(PUBLIC_URL="https://your-subdomain.ngrok.app")
    assert "placeholder from .env.example" in line
    # Loopback stays allowed over http, for local tests and the softphone.
    for local in ("http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"):
        assert load(PUBLIC_URL=local).stream_url.startswith("ws://")


def test_a_system_prompt_file_that_cannot_be_read_is_named_by_its_path(tmp_path: Path) -> None:
    (line,) = problems(SYSTEM_PROMPT_FILE=str(tmp_path / "missing.txt"))
    assert (
        line
        == f"SYSTEM_PROMPT_FILE: cannot read {tmp_path / 'missing.txt'}: No such file or directory"
    )
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert problems(SYSTEM_PROMPT_FILE=str(empty)) == [f"SYSTEM_PROMPT_FILE: {empty} is empty"]


def test_tools_file_problems_name_the_line_the_tool_and_the_key(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"name": "a",\n   "url": "https://x.example"\n  "timeout_s": 3}\n]')
    (line,) = problems(TOOLS_FILE=str(broken))
    assert line == (
        f"TOOLS_FILE: {broken} is not valid JSON: Expecting ',' delimiter at line 4, column 3"
    )
    tools = tmp_path / "tools.json"
    tools.write_text(
        json.dumps(
            [
                {"name": "lookup_order", "description": "x"},
                {"name": "weather", "url": "https://w.example", "timeout": 5},
                {"name": "ok", "url": "https://ok.example"},
            ]
        )
    )
    assert problems(TOOLS_FILE=str(tools)) == [
        "TOOLS_FILE: lookup_order: url is missing (the http(s) endpoint the bridge POSTs to)",
        "TOOLS_FILE: weather: unknown field 'timeout' "
        "(known: name, description, parameters, url, timeout_s, headers)",
    ]


def test_personas_with_unknown_fields_or_tools_are_refused(tmp_path: Path) -> None:
    personas = tmp_path / "personas.json"
    personas.write_text(
        json.dumps(
            {
                "+14155550100": {"system_prompt": "ACME", "tools": ["end_call", "lookup"]},
                "+14155550101": {"prompt": "typo", "voice": "Puck"},
            }
        )
    )
    assert problems(PERSONAS_FILE=str(personas)) == [
        "PERSONAS_FILE: +14155550100: unknown tool lookup (known: end_call, transfer_call)",
        "PERSONAS_FILE: +14155550101: unknown field 'prompt' "
        "(known: name, system_prompt, voice, greeting, tools, voicemail, consent, record, "
        "variables)",
    ]
    personas.write_text('{"+14155550100": {"voice": "Puck"\n  "greeting": "hi"}}')
    (line,) = problems(PERSONAS_FILE=str(personas))
    assert line.endswith("is not valid JSON: Expecting ',' delimiter at line 2, column 3")


def test_gemini_credentials_are_required() -> None:
    assert problems(GEMINI_API_KEY="") == [
        "GEMINI_API_KEY: not set (or set GOOGLE_CLOUD_PROJECT to use Vertex AI)"
    ]


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


def test_dotenv_reads_export_lines_quotes_and_inline_comments_as_shells_do(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "export PUBLIC_URL=https://bridge.example.com\n"
        "TWILIO_AUTH_TOKEN=twilio-auth-token-123  # from the console\n"
        'GEMINI_API_KEY="gemini key with # inside"\n'
        "GEMINI_VOICE=Puck # the friendlier one\n"
    )
    s = load_settings({}, env_file=env_file)
    assert s.public_url == "https://bridge.example.com"
    assert s.twilio_auth_token == "twilio-auth-token-123" and s.gemini_voice == "Puck"
    assert s.gemini_api_key == "gemini key with # inside"
    # The environment wins over the file.
    assert load_settings({"GEMINI_VOICE": "Kore"}, env_file=env_file).gemini_voice == "Kore"


def test_plain_http_public_url_streams_over_ws_for_local_tests() -> None:
    assert load(PUBLIC_URL="http://127.0.0.1:8080").stream_url == "ws://127.0.0.1:8080/voice-stream"


def test_env_example_and_the_readme_table_are_generated_from_the_settings_table() -> None:
    assert (ROOT / ".env.example").read_text() == env_example(), "run scripts/settings-docs"
    readme = (ROOT / "README.md").read_text()
    assert readme == with_readme_table(readme), "run scripts/settings-docs"


def test_env_example_copied_to_env_and_filled_in_is_a_working_configuration(tmp_path: Path) -> None:
    filled = (
        env_example()
        .replace("PUBLIC_URL=https://your-subdomain.ngrok.app\n", "PUBLIC_URL=https://b.example\n")
        .replace("TWILIO_AUTH_TOKEN=\n", "TWILIO_AUTH_TOKEN=twilio-auth-token-123\n")
        .replace("GEMINI_API_KEY=\n", "GEMINI_API_KEY=gemini-key-for-tests\n")
    )
    (tmp_path / ".env").write_text(filled)
    settings = load_settings({}, env_file=tmp_path / ".env")
    assert settings.gemini_setup_timeout == 2.5 and settings.twilio_account_sid is None
    # As it comes, it refuses to start: the placeholder URL could never be called.
    (tmp_path / ".env").write_text(env_example())
    with pytest.raises(ConfigErrors) as info:
        load_settings({}, env_file=tmp_path / ".env")
    assert [e.name for e in info.value.errors] == [
        "PUBLIC_URL",
        "TWILIO_AUTH_TOKEN",
        "GEMINI_API_KEY",
    ]


def test_report_and_setup_urls_need_the_webhook_secret_and_carry_no_password() -> None:
    found = problems(CALL_REPORT_URL="https://crm.example/calls")
    assert "WEBHOOK_SECRET: not set: CALL_REPORT_URL requests are signed with it" in found
    found = problems(
        CALL_SETUP_URL="https://bob:hunter2-password@crm.example/setup",
        WEBHOOK_SECRET="wh-" + "s3cr3t" * 4,
    )
    assert any(p.startswith("CALL_SETUP_URL: must not carry user:password@") for p in found)
    assert not any("hunter2" in p for p in found)
    assert any(p.startswith("OUTBOUND_ALLOWLIST") for p in problems(OUTBOUND_ALLOWLIST="+1,44"))
