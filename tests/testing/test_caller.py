"""The simulated caller's side of a call's end: status callback, REST updates, Twilio's TwiML."""

from __future__ import annotations

import asyncio
from email.utils import parsedate_to_datetime

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from bridge.testing.caller import SimulatedCaller
from bridge.testing.phone_network import tone
from bridge.testing.twilio_rest import TwilioRestFake

from .tiny_bridge import ACCOUNT, TOKEN, TinyBridge, run, tiny_bridge, until


def inbound(bridge: TinyBridge, **kwargs: object) -> SimulatedCaller:
    return SimulatedCaller(
        bridge.base,
        TOKEN,
        account_sid=ACCOUNT,
        status_callback=bridge.base + "/api/call-status",
        **kwargs,  # type: ignore[arg-type]
    )


def completed(bridge: TinyBridge) -> list[dict[str, str]]:
    return [s.form for s in bridge.at("/api/call-status") if s.form["CallStatus"] == "completed"]


def test_hanging_up_posts_the_completed_callback_once_before_it_returns() -> None:
    async def scenario() -> None:
        async with tiny_bridge() as bridge:
            caller = inbound(bridge)
            async with caller.dial() as call:
                await call.say(tone(440.0, 0.2))
                await call.wait_for_answer(timeout=5)
            assert len(completed(bridge)) == 1  # delivered by the time hang_up returned
            await caller.hang_up()
            await caller.wait_ended(timeout=1)
            await asyncio.sleep(0.1)
            (seen,) = bridge.at("/api/call-status")
            assert seen.signature_valid
            form = seen.form
            assert form["Direction"] == "inbound" and form["CallSid"] == caller.call_sid
            assert (form["From"], form["To"]) == (caller.from_number, caller.to_number)
            assert form["CallbackSource"] == "call-progress-events"
            assert form["SequenceNumber"] == "0" and form["CallDuration"] == "0"
            assert form["ApiVersion"] == "2010-04-01" and form["AccountSid"] == ACCOUNT
            assert parsedate_to_datetime(form["Timestamp"]).tzinfo is not None
            assert caller.result.ended_at is not None
            assert [c.status for c in caller.result.callbacks] == [204]
            (webhook,) = bridge.at("/api/inbound-call")
            assert (
                webhook.form["Direction"] == "inbound" and webhook.form["CallStatus"] == "ringing"
            )

    run(scenario())


def test_a_call_twilio_ends_posts_its_callback_from_the_callers_own_task() -> None:
    async def scenario() -> None:
        async with tiny_bridge() as bridge:
            bridge.twiml = bridge.connect_twiml(action=True)
            caller = inbound(bridge)
            async with caller.dial() as call:
                await call.press("1")  # the echo closes the stream; the action says goodbye
                await call.wait_ended(timeout=5)
                await until(lambda: len(completed(bridge)) == 1)
            assert caller.result.twilio_said == ["Goodbye."]
            assert caller.result.ended_by_twilio == "hangup"
            assert [a.verbs for a in caller.result.actions] == [["Say", "Hangup"]]
            await asyncio.sleep(0.1)
            assert len(completed(bridge)) == 1

    run(scenario())


def test_a_rest_update_replaces_the_twiml_and_a_rest_hangup_ends_the_call() -> None:
    async def scenario() -> None:
        async with tiny_bridge() as bridge, TwilioRestFake() as rest:
            bridge.twiml = bridge.connect_twiml(action=True)
            caller = inbound(bridge)
            rest.connect(caller)
            client = Client(ACCOUNT, TOKEN, http_client=rest)
            async with caller.dial():
                ws = bridge.base.replace("http://", "ws://") + "/echo"
                twiml = (
                    '<Response><Say>One moment.</Say><Pause length="0.2"/>'
                    f'<Connect><Stream url="{ws}"/></Connect></Response>'
                )
                await asyncio.to_thread(client.calls(caller.call_sid).update, twiml=twiml)
                await until(lambda: len(bridge.streams) == 2 and len(bridge.streams[1]) > 2)
                assert bridge.streams[0][-1]["event"] == "stop"
                assert bridge.at("/api/next") == []  # the replaced <Connect> asked no action
                assert caller.result.twilio_said == ["One moment."]
                assert len(caller.result.streams) == 2 and caller.result.line_dead_s()[0] >= 0.2
                await asyncio.to_thread(client.calls(caller.call_sid).update, status="completed")
                await caller.wait_ended(timeout=5)
                await until(lambda: len(completed(bridge)) == 1)
                assert bridge.streams[1][-1]["event"] == "stop"
                assert caller.result.ended_by_twilio == "REST completed"
                with pytest.raises(TwilioRestException) as refused:
                    await asyncio.to_thread(
                        client.calls(caller.call_sid).update, status="completed"
                    )
                assert (refused.value.status, refused.value.code) == (400, 21220)
            await asyncio.sleep(0.1)
            assert len(completed(bridge)) == 1
            assert rest.errors == []

    run(scenario())


def test_an_inbound_call_is_recorded_once_it_is_answered() -> None:
    async def scenario() -> None:
        async with tiny_bridge() as bridge, TwilioRestFake(recording_delay_s=0.05) as rest:
            caller = inbound(bridge)
            rest.connect(caller)
            client = Client(ACCOUNT, TOKEN, http_client=rest)
            options = {
                "recording_channels": "dual",
                "recording_status_callback": bridge.base + "/api/recording-status",
                "recording_status_callback_event": ["completed", "absent"],
            }
            record = client.calls(caller.call_sid).recordings.create
            with pytest.raises(TwilioRestException) as early:  # still ringing
                await asyncio.to_thread(record, **options)
            assert early.value.code == 21220
            async with caller.dial():
                recording = await asyncio.to_thread(record, **options)
            await until(lambda: bool(bridge.at("/api/recording-status")))
            (posted,) = bridge.at("/api/recording-status")
            assert posted.signature_valid and posted.form["RecordingSid"] == recording.sid
            assert list(rest.recordings) == [recording.sid]
            assert rest.recordings[recording.sid].status == "completed"

    run(scenario())


def test_a_refused_webhook_is_an_application_error_that_ends_the_call() -> None:
    async def scenario() -> None:
        async with tiny_bridge() as bridge:
            caller = inbound(bridge, webhook_url=bridge.base + "/nowhere", direction="outbound-api")
            await caller.start_call()
            assert caller.ended and caller.result.ended_by_twilio == "application error"
            assert caller.result.twilio_said == ["An application error has occurred."]
            await caller.hang_up()
            (form,) = completed(bridge)
            assert form["Direction"] == "outbound-api"

    run(scenario())
