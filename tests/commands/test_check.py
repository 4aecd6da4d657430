"""``check`` against the Gemini emulator and Twilio's REST API (faked at the twilio client's
HTTP layer): one line per result, non-zero when anything failed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bridge.commands.check import run_checks
from bridge.testing.emulator import EmulatorOptions, GeminiEmulator
from bridge.testing.twilio_rest import IncomingNumber, TwilioRestFake

ACCOUNT = "AC" + "3" * 32
NUMBER = "+14155550100"


def scenario(
    env: dict[str, str], rest: TwilioRestFake, emulator_key: str = "gemini-key-for-tests-1"
) -> tuple[int, list[str]]:
    async def run() -> tuple[int, list[str]]:
        async with GeminiEmulator(EmulatorOptions(api_key=emulator_key)) as emulator:
            lines: list[str] = []
            environ = {
                "PUBLIC_URL": "https://voice.example.com",
                "TWILIO_AUTH_TOKEN": "twilio-auth-token-1",
                "TWILIO_ACCOUNT_SID": ACCOUNT,
                "TWILIO_PHONE_NUMBER": NUMBER,
                "GEMINI_API_KEY": "gemini-key-for-tests-1",
                "GEMINI_LIVE_URL": emulator.url,
                **env,
            }
            status = await run_checks(environ, None, rest, lines.append)
            return status, lines

    return asyncio.run(run())


def twilio(voice_url: str = "https://voice.example.com/api/inbound-call") -> TwilioRestFake:
    number = IncomingNumber("PN" + "4" * 32, NUMBER, voice_url=voice_url)
    return TwilioRestFake(credentials=(ACCOUNT, "twilio-auth-token-1"), numbers=[number])


def test_a_working_setup_passes_every_check_with_one_line_each(tmp_path: Path) -> None:
    personas = tmp_path / "personas.json"
    personas.write_text(json.dumps({"+14155550111": {"voice": "Puck", "tools": []}}))
    status, lines = scenario({"PERSONAS_FILE": str(personas)}, twilio())
    assert status == 0, lines
    assert lines[0] == "ok    settings: every setting reads well"
    gemini = [line for line in lines if "Gemini" in line]
    assert len(gemini) == 2 and all(line.startswith("ok    Gemini") for line in gemini)
    assert "(default assistant): setupComplete in " in gemini[0]
    assert "voice Kore, tools end_call" in gemini[0]
    assert "(+14155550111)" in gemini[1] and "voice Puck, tools none" in gemini[1]
    assert (
        lines[-2]
        == f"ok    Twilio credentials: account {ACCOUNT} (My first Twilio account) is active"
    )
    assert lines[-1] == (
        f"ok    Twilio number {NUMBER}: voice webhook is POST https://voice.example.com/api/inbound-call"
    )


def test_a_wrong_model_key_token_or_webhook_each_fail_in_their_own_line() -> None:
    status, lines = scenario(
        {"GEMINI_MODEL": "gpt-4o", "TWILIO_AUTH_TOKEN": "someone-elses-auth-token"}, twilio()
    )
    assert status == 1
    (gemini,) = [line for line in lines if "Gemini" in line]
    assert gemini.startswith("FAIL  Gemini (default assistant): ")
    assert "closed the session during setup: 1008 models/gpt-4o is not found" in gemini
    assert lines[-1] == (
        "FAIL  Twilio credentials: Twilio refused the credentials (HTTP 401) when asked for the "
        "account: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (the console's Account Info)"
    )
    status, lines = scenario({}, twilio(voice_url="https://old.example.com/voice"), "other-key")
    assert status == 1
    (gemini,) = [line for line in lines if "Gemini" in line]
    assert "1007 API key not valid" in gemini and "gemini-key-for-tests-1" not in gemini
    assert lines[-1].startswith(
        f"FAIL  Twilio number {NUMBER}: its voice webhook ('A call comes in') is "
    )
    assert (
        "POST https://old.example.com/voice, not POST https://voice.example.com/api/inbound-call"
        in lines[-1]
    )


def test_without_an_account_sid_the_twilio_checks_are_skipped_not_failed() -> None:
    status, lines = scenario({"TWILIO_ACCOUNT_SID": "", "TWILIO_PHONE_NUMBER": ""}, twilio())
    assert status == 0
    assert lines[-1].startswith("skip  Twilio credentials: TWILIO_ACCOUNT_SID is not set")


def test_bad_settings_are_each_a_failed_line() -> None:
    status, lines = scenario({"GEMINI_VOICE": "kore", "LOG_LEVEL": "LOUD"}, twilio())
    assert status == 2
    assert lines == [
        "FAIL  settings: GEMINI_VOICE: unknown voice 'kore' (names are case-sensitive)",
        "FAIL  settings: LOG_LEVEL: 'LOUD' is not one of DEBUG, INFO, WARNING, ERROR",
    ]
