"""What serve says at start about placing calls, reports and recordings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from bridge.gemini.endpoint import endpoint_from_settings
from bridge.runtime.loading import load
from bridge.runtime.services import Services
from bridge.runtime.startup_summary import summary_lines

BASE = {
    "PUBLIC_URL": "https://bridge.example.com",
    "TWILIO_AUTH_TOKEN": "twilio-auth-token-" + "7q" * 8,
    "GEMINI_API_KEY": "gemini-api-key-" + "k3" * 10,
}


def lines(env: dict[str, str]) -> list[tuple[int, str]]:
    settings = load({**BASE, **env}, env_file=None)
    services = Services.build(settings, endpoint_from_settings(settings))
    return [(line.level, line.text) for line in summary_lines(services)]


def test_it_says_where_reports_go_without_the_url_s_secrets() -> None:
    said = lines({
        "CALL_REPORT_URL": "https://crm.example.com/calls/k-93js02kd",
        "WEBHOOK_SECRET": "webhook-secret-" + "z8" * 8,
        "OPERATOR_TOKEN": "operator-token-" + "p4" * 8,
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
    })  # fmt: skip
    (calls,) = [text for _, text in said if text.startswith("calls:")]
    assert "POST /api/calls places calls" in calls
    assert "a report of every call to crm.example.com (kept in memory)" in calls
    assert "k-93js02kd" not in calls


def test_personas_asking_for_recordings_without_an_account_are_warned_of(tmp_path: Path) -> None:
    personas = tmp_path / "personas.json"
    personas.write_text(json.dumps({"+14155550100": {"name": "sales", "record": True}}))
    said = lines({"PERSONAS_FILE": str(personas)})
    assert (
        logging.WARNING,
        "personas sales ask for recordings, which need TWILIO_ACCOUNT_SID: their calls are "
        "not recorded",
    ) in said
    assert (logging.INFO, "personas: 1 number: +*******0100 (voice Kore)") in said
