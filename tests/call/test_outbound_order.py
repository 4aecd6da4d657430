"""What POST /api/calls may ask for: checked before anything is dialled."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.call.outbound_order import OrderRefused, read_order
from bridge.call.personas import Persona, Personas
from bridge.call.variables import fill, missing

REMINDERS = Persona(
    "You remind {{name}} of the appointment at {{time}} with {{doctor}}.",
    "Kore",
    "Greet {{ name }} and say why you call.",
    None,
    number="+14155550100",
    name="reminders",
    voicemail="Hello {{name}}, this is a reminder of your appointment at {{time}}.",
    variables={"doctor": "Dr. Who"},
)
PERSONAS = Personas(Persona("default prompt", "Kore", "", None), {REMINDERS.number: REMINDERS})


def refusal(body: Any, allowlist: tuple[str, ...] = ()) -> tuple[int, str]:
    with pytest.raises(OrderRefused) as refused:
        read_order(body, PERSONAS, allowlist)
    return refused.value.status, refused.value.reason


def test_an_order_by_persona_name_calls_from_its_number_with_its_variables() -> None:
    order = read_order(
        {"to": "+442071838750", "persona": "reminders", "variables": {"name": "Ada", "time": 3}},
        PERSONAS,
        (),
    )
    assert (order.to, order.from_, order.persona.name) == (
        "+442071838750",
        "+14155550100",
        "reminders",
    )
    assert order.variables == {"name": "Ada", "time": "3"}
    filled = order.persona.filled(order.variables)
    assert filled.system_prompt == "You remind Ada of the appointment at 3 with Dr. Who."
    assert filled.greeting == "Greet Ada and say why you call."
    assert filled.voicemail.startswith("Hello Ada,")


def test_the_number_to_call_from_chooses_its_persona() -> None:
    order = read_order(
        {"to": "+442071838750", "from": "+14155550100", "variables": {"name": "A", "time": "1"}},
        PERSONAS,
        (),
    )
    assert order.persona.name == "reminders"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ([], 400, "JSON object"),
        ({"persona": "reminders"}, 400, "to (the number to call) is missing"),
        ({"to": "0207 183 8750", "persona": "reminders"}, 400, "E.164"),
        ({"to": "+1415", "persona": "reminders"}, 400, "E.164"),
        ({"to": "+442071838750", "persona": "sales"}, 404, "unknown persona 'sales'"),
        ({"to": "+442071838750"}, 400, "give persona"),
        ({"to": "+442071838750", "persona": "default"}, 400, "no number to call from"),
        ({"to": "+442071838750", "persona": "reminders", "variables": {"name": "A"}}, 400,
         "nobody gave: time"),
        ({"to": "+442071838750", "persona": "reminders", "variables": ["A"]}, 400, "object"),
        ({"to": "+442071838750", "persona": "reminders", "variables": {"a b": "x"}}, 400,
         "not a variable name"),
        ({"to": "+442071838750", "persona": "reminders", "extra": 1}, 400, "unknown field extra"),
    ],
)  # fmt: skip
def test_bad_orders_are_refused_with_a_reason(body: Any, status: int, says: str) -> None:
    got_status, reason = refusal(body)
    assert got_status == status
    assert says in reason


def test_a_number_outside_the_allowlist_is_refused() -> None:
    body = {"to": "+33142686000", "persona": "reminders", "variables": {"name": "A", "time": "1"}}
    assert refusal(body, ("+1", "+44"))[0] == 403
    body["to"] = "+442071838750"
    assert read_order(body, PERSONAS, ("+1", "+44")).to == "+442071838750"


def test_placeholders_take_values_and_single_braces_stay() -> None:
    text = 'Say {"ok": true} to {{ name }}; {{unknown}}.'
    assert fill(text, {"name": "Ada"}) == 'Say {"ok": true} to Ada; .'
    assert missing([text], {"name": "Ada"}) == ["unknown"]
