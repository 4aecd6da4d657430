"""``gemini-phone-bridge check``: will a call work? Everything a call needs, tried now.

It reads the settings as ``serve`` does, opens a real Gemini session with each
setup a call can send (model, voice, tools, every persona's prompt) and closes
it, asks Twilio whether the credentials work and, with TWILIO_PHONE_NUMBER,
whether the number's voice webhook points at this server. One line per result;
the exit status is non-zero when anything failed.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, Settings, error_lines
from ..gemini.endpoint import endpoint_from_settings
from ..runtime.loading import load
from ..runtime.services import Services
from ..twilio.account import (
    REST_TIMEOUT_S,
    TwilioAccountError,
    account_status,
    number_webhook,
    rest_client,
)


class Outcome(enum.Enum):
    OK = "ok  "
    FAILED = "FAIL"
    SKIPPED = "skip"


@dataclass(frozen=True, slots=True)
class CheckResult:
    outcome: Outcome
    what: str
    detail: str

    def line(self) -> str:
        return f"{self.outcome.value}  {self.what}: {self.detail}"


async def check_gemini(services: Services) -> list[CheckResult]:
    settings, plans = services.settings, services.planner.every_setup()
    results = []
    for probe in await services.probe_gemini():
        config = plans[probe.label].session_config
        tools = [d["name"] for t in config.tools for d in t.get("functionDeclarations", [])]
        names = ", ".join(tools) or "none"
        setup = f"model {settings.gemini_model}, voice {config.voice}, tools {names}"
        results.append(
            CheckResult(
                Outcome.OK if probe.ok else Outcome.FAILED,
                f"Gemini ({probe.label})",
                f"{probe.detail} ({setup})",
            )
        )
    return results


def check_twilio(settings: Settings, http_client: Any = None) -> list[CheckResult]:
    """Blocking (the twilio client): run it in a thread."""
    if not settings.twilio_account_sid:
        return [
            CheckResult(
                Outcome.SKIPPED,
                "Twilio credentials",
                "TWILIO_ACCOUNT_SID is not set (end_call, transfer_call and this check need it)",
            )
        ]
    client = rest_client(settings.twilio_account_sid, settings.twilio_auth_token, http_client)
    try:
        status, name = account_status(client, settings.twilio_account_sid)
    except TwilioAccountError as exc:
        return [CheckResult(Outcome.FAILED, "Twilio credentials", str(exc))]
    account = f"account {settings.twilio_account_sid} ({name})"
    if status != "active":
        return [CheckResult(Outcome.FAILED, "Twilio credentials", f"{account} is {status}")]
    results = [CheckResult(Outcome.OK, "Twilio credentials", f"{account} is active")]
    number = settings.twilio_phone_number
    if not number:
        results.append(
            CheckResult(Outcome.SKIPPED, "Twilio number", "TWILIO_PHONE_NUMBER is not set")
        )
        return results
    try:
        webhook = number_webhook(client, number)
    except TwilioAccountError as exc:
        return [*results, CheckResult(Outcome.FAILED, f"Twilio number {number}", str(exc))]
    results.append(_number_result(settings, number, webhook))
    return results


def _number_result(settings: Settings, number: str, webhook: Any) -> CheckResult:
    what = f"Twilio number {number}"
    if webhook is None:
        return CheckResult(Outcome.FAILED, what, "not a number of this account")
    wanted = settings.webhook_url
    if webhook.voice_url != wanted or webhook.voice_method != "POST":
        now = f"{webhook.voice_method} {webhook.voice_url or '(none)'}"
        return CheckResult(
            Outcome.FAILED,
            what,
            f"its voice webhook ('A call comes in') is {now}, not POST {wanted}: set it in the "
            "Twilio console, or run `gemini-phone-bridge dev-phone`",
        )
    return CheckResult(Outcome.OK, what, f"voice webhook is POST {wanted}")


async def run_checks(
    environ: Mapping[str, str] | None = None,
    env_file: str | Path | None = ".env",
    twilio_http_client: Any = None,
    emit: Callable[[str], None] = print,
) -> int:
    """Every check, each result emitted as one line; 0 when none failed."""
    try:
        settings = load(environ, env_file)
        services = Services.build(settings, endpoint_from_settings(settings))
    except ConfigError as exc:
        for line in error_lines(exc):
            emit(CheckResult(Outcome.FAILED, "settings", line).line())
        return 2
    emit(CheckResult(Outcome.OK, "settings", "every setting reads well").line())
    twilio = asyncio.create_task(
        asyncio.wait_for(
            asyncio.to_thread(check_twilio, settings, twilio_http_client), 2 * REST_TIMEOUT_S + 5
        )
    )
    try:
        results = await check_gemini(services)
        results += await twilio
    except TimeoutError:
        results.append(CheckResult(Outcome.FAILED, "Twilio", "no answer from Twilio's REST API"))
    finally:
        twilio.cancel()
    for result in results:
        emit(services.scrub(result.line()))
    return 1 if any(r.outcome is Outcome.FAILED for r in results) else 0
