"""What the fleet knows about a call besides its conversation: who, which persona with
which variables, what answered it, its recording and Twilio's last word. No I/O.

The call's report is built from these facts and the streams' segments. They are
written by whoever learns them (the webhook or ``POST /api/calls``, the answering
machine verdict, the recording's callback, the final status callback), each its own
fields of one record ``facts:<CallSid>``, so writers never overwrite each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class PersonaSource(StrEnum):
    """How a call got its persona and variables (in the report)."""

    NUMBER = "number"  # the called number's persona
    CALL_SETUP = "call_setup"  # CALL_SETUP_URL answered
    CALL_SETUP_FAILED = "call_setup_failed"  # it was asked and did not answer usably
    REQUEST = "request"  # POST /api/calls


class RecordingStatus(StrEnum):
    NONE = ""  # not asked for
    STARTING = "starting"  # the REST request is on its way
    RECORDING = "in-progress"
    COMPLETED = "completed"
    ABSENT = "absent"  # Twilio's: nothing was recorded
    FAILED = "failed"

    @property
    def settled(self) -> bool:
        """Nothing more will come: the report need not wait for it."""
        return self in (
            RecordingStatus.NONE,
            RecordingStatus.COMPLETED,
            RecordingStatus.ABSENT,
            RecordingStatus.FAILED,
        )


class MachineAction(StrEnum):
    MESSAGE_LEFT = "message_left"
    HUNG_UP = "hung_up"
    NOT_HANDLED = "not_handled"  # Twilio refused both the message and the hang-up


def is_machine(answered_by: str) -> bool:
    """Twilio's AnsweredBy: machine_start, machine_end_beep/_silence/_other, fax."""
    return answered_by.startswith("machine") or answered_by == "fax"


@dataclass(frozen=True, slots=True)
class CallFacts:
    call_sid: str
    direction: Direction = Direction.INBOUND
    caller: str = ""  # Twilio's From
    called: str = ""  # Twilio's To
    persona: str = ""  # the persona's key (its number, or "default")
    variables: dict[str, str] = field(default_factory=dict)
    persona_source: PersonaSource = PersonaSource.NUMBER
    started_at: float = 0.0  # the webhook, or POST /api/calls
    answered_at: float = 0.0  # outbound: Twilio fetched the call's TwiML
    amd: bool = False  # answering-machine detection is running on it
    answered_by: str = ""  # Twilio's verdict
    machine_action: MachineAction | None = None
    record: bool = False  # a recording is wanted
    recording_sid: str = ""
    recording_url: str = ""
    recording_duration_s: int | None = None
    recording_status: RecordingStatus = RecordingStatus.NONE
    recording_problem: str = ""
    order: str = ""  # outbound: POST /api/calls' order id, as its answer gave it
    twilio_status: str = ""  # the final CallStatus Twilio reported
    twilio_duration_s: int | None = None

    def fields(self) -> dict[str, str]:
        return {
            "direction": self.direction.value,
            "caller": self.caller,
            "called": self.called,
            "persona": self.persona,
            "variables": json.dumps(self.variables, ensure_ascii=False),
            "persona_source": self.persona_source.value,
            "started_at": f"{self.started_at:.3f}",
            "amd": "1" if self.amd else "",
            "record": "1" if self.record else "",
            "order": self.order,
        }

    @classmethod
    def from_fields(cls, call_sid: str, fields: dict[str, str]) -> CallFacts:
        """Raises ValueError on fields this code did not write."""
        try:
            variables = json.loads(fields.get("variables") or "{}")
            return cls(
                call_sid=call_sid,
                direction=Direction(fields.get("direction") or Direction.INBOUND),
                caller=fields.get("caller", ""),
                called=fields.get("called", ""),
                persona=fields.get("persona", ""),
                variables={str(k): str(v) for k, v in variables.items()},
                persona_source=PersonaSource(fields.get("persona_source") or PersonaSource.NUMBER),
                started_at=float(fields.get("started_at") or 0),
                answered_at=float(fields.get("answered_at") or 0),
                amd=bool(fields.get("amd")),
                answered_by=fields.get("answered_by", ""),
                machine_action=MachineAction(fields["machine_action"])
                if fields.get("machine_action")
                else None,
                record=bool(fields.get("record")),
                recording_sid=fields.get("recording_sid", ""),
                recording_url=fields.get("recording_url", ""),
                recording_duration_s=_whole(fields.get("recording_duration_s")),
                recording_status=RecordingStatus(fields.get("recording_status") or ""),
                recording_problem=fields.get("recording_problem", ""),
                order=fields.get("order", ""),
                twilio_status=fields.get("twilio_status", ""),
                twilio_duration_s=_whole(fields.get("twilio_duration_s")),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"unreadable call facts ({exc.__class__.__name__})") from None

    @property
    def awaiting_verdict(self) -> bool:
        """Detection runs and has not said yet. Any verdict ends the wait: ``unknown``
        counts as a person (never leave a human in silence because detection was unsure)."""
        return self.amd and not self.answered_by


def _whole(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None
