"""The simulated Twilio placing calls: status callbacks, AMD, a real Media Stream, recordings."""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from bridge.testing.phone_network import BEEP, Callee, CalleeKind, default_greeting, tone
from bridge.testing.speech import VOICED_RMS, frame_rms
from bridge.testing.twilio_rest import TwilioRestFake

from .tiny_bridge import ACCOUNT, TOKEN, TinyBridge, run, tiny_bridge, until

HUMAN = "+15550001001"
MACHINE = "+15550001002"
FROM = "+15550009999"
EVENTS = ["initiated", "ringing", "answered", "completed"]
SPEECH = tone(440.0, 0.4)


async def place(
    rest: TwilioRestFake, bridge: TinyBridge, to: str, *, amd: str | None = None
) -> Any:
    """calls.create exactly as the bridge makes it, through the twilio library."""
    client = Client(ACCOUNT, TOKEN, http_client=rest)
    options: dict[str, Any] = {}
    if amd is not None:
        options = {
            "machine_detection": amd,
            "async_amd": "true",
            "async_amd_status_callback": bridge.base + "/api/amd-status",
            "async_amd_status_callback_method": "POST",
        }
    return await asyncio.to_thread(
        client.calls.create,
        to=to,
        from_=FROM,
        url=bridge.base + "/api/outbound-call?call=c-1",
        method="POST",
        status_callback=bridge.base + "/api/call-status",
        status_callback_method="POST",
        status_callback_event=EVENTS,
        timeout=30,
        **options,
    )


def statuses(bridge: TinyBridge) -> list[tuple[str, str]]:
    return [(s.form["CallStatus"], s.form["SequenceNumber"]) for s in bridge.at("/api/call-status")]


def test_a_human_answers_the_placed_call_and_talks_over_a_real_stream() -> None:
    async def scenario() -> None:
        async with tiny_bridge() as bridge, TwilioRestFake() as rest:
            rest.callees[HUMAN] = Callee(CalleeKind.HUMAN, ring_s=0.1, amd_s=0.3)
            created = await place(rest, bridge, HUMAN, amd="DetectMessageEnd")
            assert created.sid.startswith("CA") and len(created.sid) == 34
            assert (created.status, created.direction, created.to) == (
                "queued",
                "outbound-api",
                HUMAN,
            )
            person = await rest.answered(HUMAN, timeout=5)
            assert person.call_sid == created.sid
            await person.say(SPEECH)
            await person.wait_for_answer(timeout=5)  # the echo came back over the stream
            await until(lambda: bool(bridge.at("/api/amd-status")))
            await person.hang_up()  # returns once the completed callback was answered
            placed = rest.placed[created.sid]
            assert [c.params["CallStatus"] for c in placed.status_callbacks] == [
                "initiated",
                "ringing",
                "in-progress",
                "completed",
            ]
            assert [c.status for c in placed.status_callbacks] == [204] * 4
            assert rest.errors == []

        (request,) = rest.requests
        assert request.data["StatusCallbackEvent"] == EVENTS  # one key, several values
        assert request.data["MachineDetection"] == "DetectMessageEnd"
        (webhook,) = bridge.at("/api/outbound-call")
        assert webhook.signature_valid and webhook.url.endswith("/api/outbound-call?call=c-1")
        assert webhook.form["Direction"] == "outbound-api"
        assert webhook.form["CallStatus"] == "in-progress"
        assert (webhook.form["From"], webhook.form["To"]) == (FROM, HUMAN)
        assert webhook.form["CallSid"] == created.sid and webhook.form["AccountSid"] == ACCOUNT
        callbacks = bridge.at("/api/call-status")
        assert all(c.signature_valid for c in callbacks)
        assert statuses(bridge) == [
            ("initiated", "0"),
            ("ringing", "1"),
            ("in-progress", "2"),
            ("completed", "3"),
        ]
        final = callbacks[-1].form
        assert (
            final["Direction"] == "outbound-api"
            and final["CallbackSource"] == "call-progress-events"
        )
        assert int(final["CallDuration"]) >= 0 and parsedate_to_datetime(final["Timestamp"])
        (verdict,) = bridge.at("/api/amd-status")
        assert verdict.signature_valid
        assert verdict.form["AnsweredBy"] == "human" and verdict.form["CallSid"] == created.sid
        assert 250 <= int(verdict.form["MachineDetectionDuration"]) < 5000
        (stream,) = bridge.streams
        assert [e["event"] for e in stream[:2]] == ["connected", "start"]
        assert stream[1]["start"]["callSid"] == created.sid
        assert stream[-1]["event"] == "stop"

    run(scenario())


def test_a_machine_answers_beeps_and_records_the_message_left_by_rest_update() -> None:
    async def scenario() -> None:
        async with tiny_bridge() as bridge, TwilioRestFake() as rest:
            greeting = tone(600.0, 0.6)
            rest.callees[MACHINE] = Callee(CalleeKind.MACHINE, ring_s=0.1, greeting=greeting)
            created = await place(rest, bridge, MACHINE, amd="DetectMessageEnd")
            await until(lambda: bool(bridge.at("/api/amd-status")), timeout=5)
            placed = rest.placed[created.sid]
            (verdict,) = bridge.at("/api/amd-status")
            assert verdict.signature_valid and verdict.form["AnsweredBy"] == "machine_end_beep"
            assert placed.beep_at is not None and verdict.at >= placed.beep_at
            # The greeting (0.6 s) and the beep (0.5 s) went by before the verdict.
            assert int(verdict.form["MachineDetectionDuration"]) >= 1000
            client = Client(ACCOUNT, TOKEN, http_client=rest)
            twiml = "<Response><Say>Please call us back.</Say><Hangup/></Response>"
            await asyncio.to_thread(client.calls(created.sid).update, twiml=twiml)
            machine = placed.caller
            assert machine is not None
            await machine.wait_ended(timeout=5)
            await until(lambda: len(statuses(bridge)) == 4)
            await asyncio.sleep(0.2)  # nothing more comes
            assert [text for _, text in placed.voicemail] == ["Please call us back."]
            assert placed.voicemail[0][0] >= 0
            assert machine.result.ended_by_twilio == "hangup"
            assert placed.answered_by == "machine_end_beep"
            # The stream carried the greeting and the beep to the bridge (and back).
            assert machine.result.frames_sent >= (len(greeting) + len(BEEP)) // 160
            assert rest.errors == []

        assert statuses(bridge)[-1] == ("completed", "3")
        (stream,) = bridge.streams
        assert stream[-1]["event"] == "stop"  # the update stopped the stream...
        assert bridge.at("/api/next") == []  # ...and asked no <Connect action>

    run(scenario())


def test_an_unanswered_machine_hangs_up_after_its_recording_time() -> None:
    async def scenario() -> None:
        async with tiny_bridge() as bridge, TwilioRestFake() as rest:
            rest.callees[MACHINE] = Callee(
                CalleeKind.MACHINE, ring_s=0.05, greeting=tone(600.0, 0.3), machine_timeout_s=0.3
            )
            created = await place(rest, bridge, MACHINE, amd="Enable")
            started = time.monotonic()
            await until(lambda: len(statuses(bridge)) == 4, timeout=5)
            placed = rest.placed[created.sid]
            assert placed.caller is not None and placed.caller.ended
            assert time.monotonic() - started >= 0.3 + 0.5 + 0.3  # greeting, beep, timeout
            (verdict,) = bridge.at("/api/amd-status")
            assert verdict.form["AnsweredBy"] == "machine_start"  # as the greeting started
            assert placed.voicemail == []
            assert placed.caller.result.ended_by_twilio == ""  # the machine hung up
            assert bridge.streams[0][-1]["event"] == "stop"

    run(scenario())


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (CalleeKind.NO_ANSWER, ["initiated", "ringing", "no-answer"]),
        (CalleeKind.BUSY, ["initiated", "busy"]),
        (CalleeKind.FAILED, ["initiated", "failed"]),
        (None, ["initiated", "ringing", "no-answer"]),  # a number nobody registered
    ],
)
def test_calls_nobody_answers_end_with_their_status_and_no_webhook(
    kind: CalleeKind | None, expected: list[str]
) -> None:
    async def scenario() -> None:
        async with tiny_bridge() as bridge, TwilioRestFake() as rest:
            number = "+15550001003"
            if kind is not None:
                rest.callees[number] = Callee(kind, ring_s=0.1)
            else:  # rings out
                assert rest.network.callee_for(number).kind is CalleeKind.NO_ANSWER
            created = await place(rest, bridge, number)
            await until(lambda: len(statuses(bridge)) == len(expected), timeout=5)
            await asyncio.sleep(0.1)
            placed = rest.placed[created.sid]
            assert placed.call_status == expected[-1] and placed.caller is None
            with pytest.raises(ConnectionError):
                await rest.answered(created.sid, timeout=1)

        assert [status for status, _ in statuses(bridge)] == expected
        final = bridge.at("/api/call-status")[-1]
        assert final.form["CallDuration"] == "0" and final.signature_valid
        assert bridge.at("/api/outbound-call") == [] and bridge.streams == []

    run(scenario())


def test_a_recording_reports_once_after_the_call_ends() -> None:
    async def scenario() -> None:
        async with tiny_bridge() as bridge, TwilioRestFake(recording_delay_s=0.2) as rest:
            rest.callees[HUMAN] = Callee(CalleeKind.HUMAN, ring_s=0.05)
            created = await place(rest, bridge, HUMAN)
            person = await rest.answered(created.sid, timeout=5)
            client = Client(ACCOUNT, TOKEN, http_client=rest)
            recording = await asyncio.to_thread(
                client.calls(created.sid).recordings.create,
                recording_channels="dual",
                recording_status_callback=bridge.base + "/api/recording-status",
                recording_status_callback_method="POST",
                recording_status_callback_event=["completed", "absent"],
            )
            assert recording.sid.startswith("RE") and recording.call_sid == created.sid
            assert (recording.status, recording.channels, recording.source) == (
                "in-progress",
                2,
                "StartCallRecordingAPI",
            )
            assert recording.start_time is not None
            await asyncio.sleep(1.1)
            assert bridge.at("/api/recording-status") == []  # not while the call goes on
            await person.hang_up()
            ended = person.result.ended_at
            assert ended is not None
            await until(lambda: bool(bridge.at("/api/recording-status")), timeout=3)
            await asyncio.sleep(0.3)
            (posted,) = bridge.at("/api/recording-status")
            assert posted.at - ended >= 0.19  # recording_delay_s after the call ended
            with pytest.raises(TwilioRestException) as refused:
                await asyncio.to_thread(client.calls(created.sid).recordings.create)
            assert (refused.value.status, refused.value.code) == (400, 21220)
            with pytest.raises(TwilioRestException) as unknown:
                await asyncio.to_thread(client.calls("CA" + "9" * 32).recordings.create)
            assert unknown.value.status == 404

        form = posted.form
        assert posted.signature_valid
        assert form["RecordingSid"] == recording.sid and form["CallSid"] == created.sid
        assert form["RecordingStatus"] == "completed" and form["RecordingChannels"] == "2"
        assert form["RecordingSource"] == "StartCallRecordingAPI"
        assert form["RecordingDuration"] in ("1", "2")  # 1.1 s and a loaded machine's overhead
        assert form["RecordingUrl"] == (
            f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{recording.sid}"
        )
        assert parsedate_to_datetime(form["RecordingStartTime"])
        request = next(r for r in rest.requests if r.url.endswith("/Recordings.json"))
        assert request.data["RecordingStatusCallbackEvent"] == ["completed", "absent"]

    run(scenario())


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"to": "", "from_": FROM}, 400, 21201),
        ({"to": "12345", "from_": FROM}, 400, 21211),
        ({"to": HUMAN, "from_": ""}, 400, 21213),
        ({"to": HUMAN, "from_": "nobody"}, 400, 21212),
        ({"to": HUMAN, "from_": FROM, "url": None}, 400, 21205),
        ({"to": HUMAN, "from_": FROM, "url": "ftp://example.com/x"}, 400, 21205),
        ({"to": HUMAN, "from_": FROM, "status_callback_event": ["hung-up"]}, 400, 21626),
    ],
)
def test_calls_twilio_would_refuse_are_refused(
    fields: dict[str, Any], status: int, code: int
) -> None:
    async def scenario() -> None:
        async with TwilioRestFake() as rest:
            client = Client(ACCOUNT, TOKEN, http_client=rest)
            options = {"url": "https://bridge.example.com/api/outbound-call", **fields}
            if options["url"] is None:
                del options["url"]
            with pytest.raises(TwilioRestException) as refused:
                await asyncio.to_thread(client.calls.create, **options)
            assert (refused.value.status, refused.value.code) == (status, code)
            assert rest.placed == {}

    run(scenario())


def test_an_update_while_ringing_cancels_the_call() -> None:
    async def scenario() -> None:
        async with tiny_bridge() as bridge, TwilioRestFake() as rest:
            rest.callees[HUMAN] = Callee(CalleeKind.HUMAN, ring_s=5)
            created = await place(rest, bridge, HUMAN)
            await until(lambda: len(statuses(bridge)) == 2)
            client = Client(ACCOUNT, TOKEN, http_client=rest)
            await asyncio.to_thread(client.calls(created.sid).update, status="canceled")
            await until(lambda: len(statuses(bridge)) == 3)
            assert [s for s, _ in statuses(bridge)] == ["initiated", "ringing", "canceled"]
            assert bridge.at("/api/outbound-call") == []

    run(scenario())


def test_closing_the_fake_cancels_its_calls() -> None:
    async def scenario() -> None:
        async with tiny_bridge() as bridge:
            rest = TwilioRestFake()
            async with rest:
                rest.callees[HUMAN] = Callee(CalleeKind.HUMAN, ring_s=0.05)
                rest.callees[MACHINE] = Callee(CalleeKind.NO_ANSWER, ring_s=60)
                await place(rest, bridge, HUMAN)
                await place(rest, bridge, MACHINE)
                person = await rest.answered(HUMAN, timeout=5)
                assert rest.network.running >= 1
                started = time.monotonic()
            assert time.monotonic() - started < 2
            assert rest.network.running == 0
            assert person.ended

    run(scenario())


def test_a_human_can_greet_and_hang_up_by_itself() -> None:
    async def scenario() -> None:
        async with tiny_bridge() as bridge, TwilioRestFake() as rest:
            rest.callees[HUMAN] = Callee(
                CalleeKind.HUMAN, ring_s=0.05, greeting=SPEECH, hang_up_after_s=0.3
            )
            created = await place(rest, bridge, HUMAN)
            await until(lambda: len(statuses(bridge)) == 4, timeout=5)
            person = rest.placed[created.sid].caller
            assert person is not None and person.ended
            assert person.result.utterances  # the greeting went over the stream
            assert person.result.heard_voiced_at  # and came back from the echo
            assert bridge.streams[0][-1]["event"] == "stop"

    run(scenario())


def test_the_machines_sounds() -> None:
    assert len(BEEP) == 4000  # 0.5 s at 8 kHz
    assert all(frame_rms(BEEP[i : i + 160]) > VOICED_RMS for i in range(0, 4000, 160))
    greeting = default_greeting()
    assert len(greeting) == 16000  # ~2 s of speech
    voiced = [frame_rms(greeting[i : i + 160]) > VOICED_RMS for i in range(0, 16000, 160)]
    assert sum(voiced) > len(voiced) // 3
