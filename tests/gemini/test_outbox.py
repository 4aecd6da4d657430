"""What waits for a connection: queued in order, audio held within a bound, tool answers
in the form the connection that gets them understands."""

from __future__ import annotations

import json

from bridge.gemini.outbox import SWAP_BUFFER_BYTES, Outbox
from bridge.gemini.wire import FunctionResponse

ANSWER = FunctionResponse("call-1", "lookup_order", {"output": {"status": "shipped"}})


def test_a_tool_answer_is_a_tool_response_for_the_connection_that_made_the_call() -> None:
    outbox = Outbox()
    outbox.connection_opened()
    outbox.tool_called("call-1")
    sent = json.loads(outbox.wire_form(ANSWER))
    assert sent["toolResponse"]["functionResponses"][0]["id"] == "call-1"


def test_after_a_new_connection_the_answer_goes_as_text_it_can_speak_about() -> None:
    outbox = Outbox()
    outbox.connection_opened()
    outbox.tool_called("call-1")
    outbox.connection_opened()  # a reconnect: the new session never saw call-1
    text = json.loads(outbox.wire_form(ANSWER))["realtimeInput"]["text"]
    assert "lookup_order" in text and "shipped" in text


def test_messages_wait_in_order() -> None:
    outbox = Outbox()
    for message in ("a", "b", "c"):
        outbox.put(message)
    seen = []
    while outbox.waiting:
        seen.append(outbox.next())
        outbox.sent()
    assert seen == ["a", "b", "c"]


def test_held_audio_keeps_the_latest_two_seconds() -> None:
    outbox = Outbox()
    frame = bytes(640)  # 20 ms at 16 kHz
    for i in range(150):  # 3 s
        outbox.hold(bytes([i % 256]) + frame[1:])
    held = outbox.take_held()
    assert len(held) * len(frame) <= SWAP_BUFFER_BYTES and len(held) == 100
    assert held[-1][0] == 149 % 256 and outbox.take_held() == []
