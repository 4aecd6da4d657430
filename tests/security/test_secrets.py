"""Secrets at start-up and in the log of a real ``bridge serve`` (review items 8 and 10):
placeholders and short secrets are refused; tool headers, and secrets URL-encoded in a
query string, never reach the log."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import yaml

from bridge.testing.emulator import EmulatorOptions
from bridge.testing.served import ServedBridge, served_bridge, start_refusal

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent.parent
OPERATOR = "op/" + secrets.token_hex(8) + "+tok=en"  # URL-encodes differently each way
TOOL_KEY = "tool-key-" + secrets.token_hex(8)


def strong(**settings: str) -> dict[str, str]:
    return {
        "PUBLIC_URL": "https://voice.example.com",
        "TWILIO_AUTH_TOKEN": "auth-" + secrets.token_hex(16),
        "GEMINI_API_KEY": "gemini-" + secrets.token_hex(16),
        **settings,
    }


def test_the_deployment_templates_placeholders_refuse_to_start() -> None:
    """Review: ``replace-me`` from deploy/k8s/secret.yaml signed a webhook that got TwiML."""
    (template,) = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "secret.yaml").read_text())
    code, output = start_refusal(strong(**template["stringData"]))
    assert code == 2, output
    placeholder = "is a placeholder, not a secret: set the real value"
    # Every placeholder is named at once, one line each, never quoted.
    assert output.strip().splitlines() == [
        "gemini-phone-bridge: configuration error: TWILIO_ACCOUNT_SID: must be 'AC' followed by "
        "32 hex digits",
        f"gemini-phone-bridge: configuration error: TWILIO_AUTH_TOKEN: {placeholder}",
        f"gemini-phone-bridge: configuration error: GEMINI_API_KEY: {placeholder}",
        f"gemini-phone-bridge: configuration error: OPERATOR_TOKEN: {placeholder}",
    ]
    assert "replace-me" not in output


@pytest.mark.parametrize("name", ["OPERATOR_TOKEN", "STREAM_TOKEN_SECRET", "GEMINI_API_KEY"])
def test_a_secret_too_short_to_be_secret_refuses_to_start(name: str) -> None:
    code, output = start_refusal(strong(**{name: "Hx7q2"}))
    assert code == 2, output
    (line,) = output.strip().splitlines()
    assert line.startswith(
        f"gemini-phone-bridge: configuration error: {name}: is too short to be a secret"
    )
    assert "Hx7q2" not in output


def test_a_tool_header_with_a_line_break_refuses_to_start_unquoted(tmp_path: Path) -> None:
    """Review: such a value reached the log inside a traceback, at every tool call."""
    tools = tmp_path / "tools.json"
    header = {"Authorization": f"Bearer {TOOL_KEY}\n"}
    tools.write_text(json.dumps([{"name": "t", "url": "https://x.example/t", "headers": header}]))
    code, output = start_refusal(strong(TOOLS_FILE=str(tools)))
    assert code == 2, output
    (line,) = output.strip().splitlines()
    assert line.startswith(
        "gemini-phone-bridge: configuration error: TOOLS_FILE: t: the value of Authorization"
    )
    assert TOOL_KEY not in output


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedBridge]:
    tools = tmp_path_factory.mktemp("tools") / "tools.json"
    tool = {"name": "lookup", "url": "https://x.example/t", "headers": {"X-Api-Key": TOOL_KEY}}
    tools.write_text(json.dumps([tool]))
    settings = {"OPERATOR_TOKEN": OPERATOR, "TOOLS_FILE": str(tools)}
    with served_bridge(settings, EmulatorOptions(reply_seconds=0.5)) as served:
        yield served


def test_tool_headers_and_url_encoded_secrets_never_reach_the_log(bridge: ServedBridge) -> None:
    # An operator pastes the token into a query string: the access log shows it encoded.
    for encoded in (quote(OPERATOR, safe=""), quote_plus(OPERATOR)):
        assert bridge.request("GET", f"/metrics?token={encoded}").status == 401

    # Gemini (or any peer) echoes a tool's key back in an error the bridge logs.
    async def failing_call() -> None:
        async with bridge.caller().dial() as call:
            await asyncio.sleep(0.5)
            reason = f"key {TOOL_KEY} ({quote(TOOL_KEY)}) is not valid"
            await asyncio.to_thread(bridge.gemini.call, bridge.emulator.drop_all(1008, reason))
            await call.wait_closed(timeout=10)

    asyncio.run(failing_call())
    log = bridge.log_once_it_shows("call ended")
    assert "Gemini closed with 1008" in log and "[redacted]" in log
    for secret in (OPERATOR, quote(OPERATOR, safe=""), quote_plus(OPERATOR), TOOL_KEY):
        assert secret not in log, secret
