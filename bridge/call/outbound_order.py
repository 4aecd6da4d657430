"""What ``POST /api/calls`` asks for, checked before anything is dialled. No I/O.

``{"to": "+14155550123", "persona": "reminders" | "+14155550100", "from": "+1...",
"variables": {"name": "Ada", "time": "3 pm"}}``: the number to call, the persona (by
name or number; or the number to call from, whose persona it is), and the values its
texts' ``{{placeholders}}`` take. A bad number, an unknown persona, a variable the
persona uses but nobody gave, a number outside OUTBOUND_ALLOWLIST: refused with the
status and the reason, nothing dialled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from .personas import Persona, Personas
from .variables import VariablesRefused, checked

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# The voicemail goes to Twilio as inline TwiML in a call update, which takes 4,000
# characters at most, markup included: the text is measured as it goes in the XML
# (``&`` is five characters there), the rest is left for the markup.
MAX_VOICEMAIL_CHARS = 3000
FIELDS = frozenset({"to", "from", "persona", "variables"})


class OrderRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True, slots=True)
class OutboundOrder:
    to: str
    from_: str
    persona: Persona
    variables: dict[str, str]


def _number(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not E164.fullmatch(value):
        raise OrderRefused(
            400, f"{name} must be an E.164 number such as +14155550100 (+, country code, digits)"
        )
    return value


def read_order(data: Any, personas: Personas, allowlist: tuple[str, ...]) -> OutboundOrder:
    if not isinstance(data, dict):
        raise OrderRefused(400, "the body must be a JSON object")
    if unknown := sorted(str(k)[:40] for k in data if k not in FIELDS):
        raise OrderRefused(
            400, f"unknown field {', '.join(unknown)} (known: {', '.join(sorted(FIELDS))})"
        )
    to = _number(data, "to")
    if to is None:
        raise OrderRefused(400, "to (the number to call) is missing")
    from_ = _number(data, "from")
    key = data.get("persona")
    if key is not None and not isinstance(key, str):
        raise OrderRefused(400, "persona must be a persona's name or number")
    if key:
        found = personas.find(key)
        if found is None:
            known = sorted(p.name for p in personas.numbers().values()) + sorted(personas.numbers())
            raise OrderRefused(
                404, f"unknown persona {key[:64]!r} (known: {', '.join(known) or 'none'})"
            )
        persona = found
    elif from_ is not None:
        persona = personas.for_number(from_)
    else:
        raise OrderRefused(400, "give persona (a name or number) or from (the number to call from)")
    from_ = from_ or persona.number
    if not from_:
        raise OrderRefused(400, f"persona {persona.name!r} has no number to call from: give from")
    if allowlist and not any(to.startswith(prefix) for prefix in allowlist):
        raise OrderRefused(403, "to is not a number OUTBOUND_ALLOWLIST lets this server call")
    try:
        variables = checked(data.get("variables"))
    except VariablesRefused as exc:
        raise OrderRefused(400, str(exc)) from None
    if gaps := persona.missing(variables):
        raise OrderRefused(
            400, f"persona {persona.name!r} uses variables nobody gave: {', '.join(gaps)}"
        )
    if len(xml_escape(persona.filled(variables).voicemail)) > MAX_VOICEMAIL_CHARS:
        raise OrderRefused(
            400,
            f"the voicemail with these variables is over {MAX_VOICEMAIL_CHARS} characters "
            "once written as TwiML (& < > take several)",
        )
    return OutboundOrder(to, from_, persona, variables)
