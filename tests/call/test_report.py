"""The call report's content, from facts and segments (no I/O)."""

from __future__ import annotations

from bridge.call.facts import CallFacts, Direction, MachineAction, RecordingStatus
from bridge.call.report import Closing, ReportOutcome, StreamSegment, build_report, with_recording
from bridge.call.shared_call import EndReason

FACTS = CallFacts(
    "CA1",
    Direction.OUTBOUND,
    caller="+14155550100",
    called="+442071838750",
    persona="+14155550100",
    variables={"name": "Ada"},
    started_at=1000.0,
    answered_at=1005.0,
)


def segment(stream: int, start: float, **kwargs: object) -> StreamSegment:
    return StreamSegment(stream, f"server-{stream}", start, start + 10, "moved", **kwargs)  # type: ignore[arg-type]


def test_a_moved_call_reports_all_its_streams_and_its_last_transcript() -> None:
    first = segment(1, 1005.0, first_audio_ms=420.0, turn_ms=[600.0], reconnects=1,
                    tool_calls=[{"name": "lookup", "args": {"id": 7}, "result": {"ok": 1},
                                 "at": 1008.0, "ms": 12.0}],
                    transcript=[{"speaker": "assistant", "text": "Hi Ada", "at": 1005.5}])  # fmt: skip
    second = segment(2, 1015.0, turn_ms=[700.0],
                     transcript=[{"speaker": "caller", "text": "Bye", "at": 1016.0}])  # fmt: skip
    report = build_report(
        "CA1", FACTS, [first, second], Closing.ended(EndReason.END_CALL), ended_at=1025.0, moves=1
    )
    assert report["outcome"] == "completed" and report["reason"] == "end_call"
    assert report["direction"] == "outbound" and report["variables"] == {"name": "Ada"}
    assert report["duration_s"] == 20.0  # from the answer
    assert [t["at_s"] for t in report["transcript"]] == [5.5, 16.0]
    assert report["tool_calls"] == [
        {"name": "lookup", "args": {"id": 7}, "result": {"ok": 1}, "ms": 12.0, "at_s": 8.0}
    ]
    assert report["latency"]["first_audio_ms"] == 420.0
    assert report["latency"]["turn_ms"] == [600.0, 700.0]
    assert report["gemini_reconnects"] == 1 and report["moves"] == 1
    assert [s["server"] for s in report["streams"]] == ["server-1", "server-2"]
    assert report["recording"] is None


def test_twilio_final_statuses_name_calls_no_stream_ended() -> None:
    assert Closing.by_twilio("no-answer", FACTS, False) == Closing(
        ReportOutcome.NO_ANSWER, "no_answer"
    )
    assert Closing.by_twilio("busy", FACTS, False).outcome is ReportOutcome.BUSY
    assert Closing.by_twilio("completed", FACTS, True).outcome is ReportOutcome.COMPLETED
    assert Closing.by_twilio("completed", FACTS, False) == Closing(
        ReportOutcome.FAILED, "stream_never_started"
    )
    machine = CallFacts("CA1", answered_by="machine_end_beep")
    assert Closing.by_twilio("completed", machine, True).outcome is ReportOutcome.VOICEMAIL
    assert Closing.ended(EndReason.MACHINE).outcome is ReportOutcome.VOICEMAIL
    assert Closing.ended(EndReason.GEMINI_FAILED).outcome is ReportOutcome.FAILED
    assert Closing.ended(EndReason.TRANSFERRED).outcome is ReportOutcome.TRANSFERRED


def test_the_recording_is_pending_until_twilio_says_where_it_is() -> None:
    wanted = CallFacts("CA1", record=True, recording_status=RecordingStatus.RECORDING,
                       machine_action=MachineAction.MESSAGE_LEFT)  # fmt: skip
    report = build_report("CA1", wanted, [], Closing.ended(EndReason.MACHINE), ended_at=1.0)
    assert report["recording"]["status"] == "in-progress" and report["recording"]["url"] is None
    assert report["voicemail"] == "message_left"
    done = CallFacts("CA1", record=True, recording_status=RecordingStatus.COMPLETED,
                     recording_url="https://api.twilio.com/x/RE1", recording_duration_s=12)  # fmt: skip
    assert with_recording(report, done)["recording"]["url"] == "https://api.twilio.com/x/RE1"
    assert with_recording(report, done)["recording"]["duration_s"] == 12
