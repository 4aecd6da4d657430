"""What the assistant can do, said once at start-up: an operator should not learn from
a caller that it cannot hang up.

Pure: it reads the services built from the settings and returns the lines
(with a level each) that ``serve`` logs, so it is tested without a server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..call.registry import mask_number
from ..config.values import is_loopback_host
from ..gemini.endpoint import Backend
from .services import Services


@dataclass(frozen=True, slots=True)
class SummaryLine:
    level: int
    text: str


def _tools(services: Services) -> list[SummaryLine]:
    settings = services.settings
    active = services.planner.for_persona(services.planner.personas.default).tool_names
    off = []
    for name in sorted(settings.builtin_tools - set(active)):
        if services.twilio_calls is None:
            why = "needs TWILIO_ACCOUNT_SID for Twilio's REST API"
        else:
            why = "TRANSFER_NUMBERS is empty"
        off.append(f"{name} ({why})")
    lines = [SummaryLine(logging.INFO, f"tools: {', '.join(active) or 'none'}")]
    if off:
        consequence = " (the assistant cannot hang up)" if any("end_call" in o for o in off) else ""
        lines.append(SummaryLine(logging.WARNING, f"tools off: {'; '.join(off)}{consequence}"))
    return lines


def _personas(services: Services) -> SummaryLine:
    numbers = services.planner.personas.numbers()
    if not numbers:
        return SummaryLine(logging.INFO, "personas: none, one assistant answers every number")
    listed = ", ".join(
        f"{mask_number(n)} (voice {p.voice}"
        + (f", tools {','.join(sorted(p.tools)) or 'none'})" if p.tools is not None else ")")
        for n, p in numbers.items()
    )
    count = f"{len(numbers)} number{'s' if len(numbers) > 1 else ''}"
    return SummaryLine(logging.INFO, f"personas: {count}: {listed}")


def summary_lines(services: Services) -> list[SummaryLine]:
    settings, default = services.settings, services.planner.personas.default
    backend = "Vertex AI" if services.endpoint.backend is Backend.VERTEX else "AI Studio"
    where = " via GEMINI_LIVE_URL" if settings.gemini_live_url else ""
    greeting = "greets the caller first" if default.greeting else "waits for the caller"
    lines = [
        SummaryLine(
            logging.INFO,
            f"assistant: model {settings.gemini_model} on {backend}{where}, voice "
            f"{default.voice}, {greeting}, system prompt {len(default.system_prompt)} characters",
        ),
        *_tools(services),
        _personas(services),
        SummaryLine(
            logging.INFO,
            "limits: "
            + (
                f"{settings.max_concurrent_calls} calls at once"
                if settings.max_concurrent_calls
                else "no limit on calls (MAX_CONCURRENT_CALLS)"
            )
            + f", Gemini setup {settings.gemini_setup_timeout:g} s, drain "
            f"{settings.drain_timeout:g} s, tools {settings.tool_timeout:g} s",
        ),
        SummaryLine(logging.INFO, f"TwiML: {services.twiml.source}"),
    ]
    host = urlsplit(settings.public_url).hostname or ""
    if settings.public_url.startswith("http://") and is_loopback_host(host):
        lines.append(
            SummaryLine(
                logging.WARNING,
                f"PUBLIC_URL is {settings.public_url}: only this machine can call (the softphone, "
                "tests); Twilio needs an https URL",
            )
        )
    if settings.dev_softphone:
        lines.append(SummaryLine(logging.INFO, f"softphone: open {settings.public_url}/softphone"))
    lines += _calls_and_reports(services)
    return lines


def _host(url: str | None) -> str:
    """A URL's host alone: its path or userinfo may hold a key."""
    return urlsplit(url).hostname or "?" if url else ""


def _calls_and_reports(services: Services) -> list[SummaryLine]:
    settings = services.settings
    outbound = (
        "POST /api/calls places calls"
        + (f" to {','.join(settings.outbound_allowlist)}…" if settings.outbound_allowlist else "")
        if settings.operator_token and services.twilio_calls is not None
        else "no outbound calls (POST /api/calls needs OPERATOR_TOKEN and TWILIO_ACCOUNT_SID)"
    )
    reports = (
        f"a report of every call to {_host(settings.call_report_url)}"
        + (" (kept in Redis until delivered)" if settings.state_url else " (kept in memory)")
        if settings.call_report_url
        else "no call reports (CALL_REPORT_URL)"
    )
    setup = (
        f"inbound personas asked of {_host(settings.call_setup_url)}"
        if settings.call_setup_url
        else "inbound personas by number"
    )
    recording = "every call recorded" if settings.record_calls else "recording per persona"
    lines = [SummaryLine(logging.INFO, f"calls: {outbound}; {reports}; {setup}; {recording}")]
    wanting = [p.name for p in services.planner.personas.numbers().values() if p.record]
    if wanting and services.twilio_calls is None:
        lines.append(
            SummaryLine(
                logging.WARNING,
                f"personas {', '.join(wanting)} ask for recordings, which need "
                "TWILIO_ACCOUNT_SID: their calls are not recorded",
            )
        )
    return lines
