"""A fleet: real ``serve`` processes sharing a real Redis behind a load balancer; the
simulated Twilio follows ``<Connect action>`` to whichever server the balancer picks.

What a caller notices is asserted: every question answered, across moves; the line dead
for a moment at most; the conversation remembered (the emulator's sessions of one call
are one conversation). The figures each scenario measures are printed (``-s``) and
quoted in docs/scaling.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bridge.testing.caller import SimulatedCaller
from bridge.testing.emulator import EmulatorOptions
from bridge.testing.emulator_options import EmulatedSession
from bridge.testing.fleet import ServedFleet
from bridge.testing.speech import load_speech
from bridge.testing.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

QUESTION = load_speech("caller_barge_in.wav")  # ~1.5 s of speech
FLEET_SETTINGS = {"GEMINI_PREWARM": "false", "DRAIN_TIMEOUT": "20"}
# Short answers: a call moves at a quiet moment, and quiet moments come often.
OPTIONS = EmulatorOptions(reply_seconds=1.5)


def run(coro: Coroutine[Any, Any, Any], timeout: float = 240) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


@contextlib.contextmanager
def logs_on_failure(fleet: ServedFleet) -> Iterator[None]:
    """The servers' logs, printed when the scenario fails (pytest shows them)."""
    try:
        yield
    except BaseException:
        print(fleet.logs()[-30_000:])
        raise


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def until_stats(
    fleet: ServedFleet, index: int, predicate: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """``/api/calls/stats`` of server ``index``, once it satisfies ``predicate`` (each
    server publishes what it holds every 2 s)."""
    async with asyncio.timeout(10):
        while True:
            answer = await asyncio.to_thread(fleet.member(index).request, "GET", "/api/calls/stats")
            view: dict[str, Any] = json.loads(answer.text)
            if predicate(view):
                return view
            await asyncio.sleep(0.2)


async def ask(caller: SimulatedCaller) -> None:
    """One question, and its answer heard to the end."""
    await caller.say(QUESTION)
    await caller.wait_for_answer(timeout=30)
    await caller.wait_until_quiet(quiet_s=0.6, timeout=30)


def call_sessions(fleet: ServedFleet) -> list[EmulatedSession]:
    """The Gemini sessions calls opened (not each server's check of Gemini at start-up,
    which opens one and closes it without a word)."""
    assert fleet.gemini is not None
    return [s for s in fleet.gemini.emulator.sessions if s.audio_in or s.resumed_from]


def conversations(fleet: ServedFleet) -> dict[int, int]:
    """For each conversation the emulator held, the caller turns it heard in all."""
    assert fleet.gemini is not None
    heard: dict[int, int] = {}
    for session in call_sessions(fleet):
        heard[session.conversation] = heard.get(session.conversation, 0) + session.caller_turns
    return heard


def assert_no_session_left_open(fleet: ServedFleet, within_s: float = 5.0) -> None:
    """Every Gemini session closed, within a moment of the call's end: the caller's
    hang-up has returned once its ``stop`` is sent, and the server closes the session as it
    reads it (CI once looked in between)."""
    assert fleet.gemini is not None
    sessions = fleet.gemini.emulator.sessions
    deadline = time.monotonic() + within_s
    while any(s.close_code is None for s in sessions) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(s.close_code is not None for s in sessions), "a Gemini session leaked"


def test_a_replayed_webhook_or_token_is_refused_by_every_other_instance() -> None:
    with ServedFleet(2, FLEET_SETTINGS, OPTIONS) as fleet, logs_on_failure(fleet):
        caller = fleet.caller()
        path = "/api/inbound-call"
        params = caller.webhook_params()
        signature = RequestValidator(fleet.env["TWILIO_AUTH_TOKEN"]).compute_signature(
            fleet.url + path, params
        )
        body = urllib.parse.urlencode(params).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        }
        first = fleet.member(0).request("POST", path, headers=headers, body=body)
        assert first.status == 200 and "<Connect" in first.text
        # The same signed webhook, captured and sent to the other server: answered already.
        again = fleet.member(1).request("POST", path, headers=headers, body=body)
        assert again.status == 409
        caller.use_twiml(first.text)

        async def streams() -> None:
            async with caller.dial():  # through the balancer: one server spends the token
                await until(lambda: sum(m.metric("bridge_active_calls") for m in members) == 1)
                # The same token on a stream to each server: spent, fleet-wide.
                for member in members:
                    url = member.url.replace("http://", "ws://") + "/voice-stream"
                    async with connect(url, compression=None) as ws:
                        for frame in caller.start_frames():
                            await ws.send(frame)
                        with pytest.raises(ConnectionClosed):
                            await asyncio.wait_for(ws.recv(), 10)
                        assert ws.close_code == 1008

        members = [fleet.member(0), fleet.member(1)]
        run(streams())
        refused = 'bridge_stream_rejections_total{reason="unauthenticated"}'
        assert sum(m.metric(refused) for m in members) == 2
        assert fleet.gemini is not None
        assert len(call_sessions(fleet)) == 1  # one call, one Gemini session


def test_a_call_moves_when_its_server_is_deployed_away_and_the_conversation_goes_on() -> None:
    with ServedFleet(2, FLEET_SETTINGS, OPTIONS) as fleet, logs_on_failure(fleet):

        async def call() -> SimulatedCaller:
            caller = fleet.caller()
            async with caller.dial():
                await ask(caller)
                owner = next(i for i in range(2) if fleet.member(i).metric("bridge_active_calls"))
                # Either server shows the fleet's calls: this one, on the server it is on.
                name = fleet.member(owner).env["INSTANCE_NAME"]
                for index in range(2):
                    view = await until_stats(fleet, index, lambda v: len(v["instances"]) == 2)
                    assert [(c["call_sid"], c["instance"]) for c in view["active_calls"]] == [
                        (caller.call_sid, name)
                    ]
                stopping = asyncio.create_task(asyncio.to_thread(fleet.stop, owner))
                await until(lambda: len(caller.result.streams) == 2, timeout=30)
                await ask(caller)
                await stopping
            return caller

        caller = run(call())
        result = caller.result
        assert result.ended_by_twilio == ""  # the call went on; the caller hung up at the end
        assert [a.verbs for a in result.actions] == [["Connect"]]
        (dead,) = result.line_dead_s()
        assert dead < 1.0
        assert fleet.gemini is not None
        first, second = call_sessions(fleet)
        assert second.resumed_from is not None and second.conversation == first.conversation
        assert conversations(fleet) == {first.conversation: 2}
        assert_no_session_left_open(fleet)
        print(f"line dead at the move: {dead * 1000:.0f} ms")


ROLLING_CALLS = 20


def test_a_rolling_restart_of_three_servers_drops_no_call_and_no_question() -> None:
    """20 calls in conversation; each server in turn gets SIGTERM and comes back."""
    with ServedFleet(3, FLEET_SETTINGS, OPTIONS) as fleet, logs_on_failure(fleet):
        callers = [fleet.caller() for _ in range(ROLLING_CALLS)]
        asked = {c.call_sid: 0 for c in callers}

        async def talk(caller: SimulatedCaller, restarted: asyncio.Event) -> None:
            async with caller.dial():
                await ask(caller)
                asked[caller.call_sid] += 1
                while not restarted.is_set():
                    await asyncio.sleep(random.uniform(0.0, 1.0))
                    await ask(caller)
                    asked[caller.call_sid] += 1
                await ask(caller)  # and after: the conversation carries on
                asked[caller.call_sid] += 1

        async def scenario() -> None:
            restarted = asyncio.Event()
            talks = [asyncio.create_task(talk(c, restarted)) for c in callers]
            await until(lambda: all(asked.values()), timeout=60)
            for index in range(3):
                await asyncio.to_thread(fleet.stop, index)
                await asyncio.to_thread(fleet.start, index)
            restarted.set()
            await asyncio.gather(*talks)

        run(scenario(), timeout=600)
        for caller in callers:
            assert caller.result.ended_by_twilio == "", caller.result.twilio_said
        # One conversation per call, each remembering every question its caller asked.
        assert sorted(conversations(fleet).values()) == sorted(asked.values())
        assert_no_session_left_open(fleet)
        dead = [gap for c in callers for gap in c.result.line_dead_s()]
        assert len(dead) >= ROLLING_CALLS  # every call moved at least once
        print(
            f"{len(dead)} moves; line dead median {statistics.median(dead) * 1000:.0f} ms, "
            f"worst {max(dead) * 1000:.0f} ms"
        )
        assert statistics.median(dead) < 1.0 and max(dead) < 2.0


CRASH_CALLS = 10


def test_a_crashed_server_s_calls_go_on_elsewhere_when_twilio_asks() -> None:
    with ServedFleet(2, FLEET_SETTINGS, OPTIONS) as fleet, logs_on_failure(fleet):
        callers = [fleet.caller() for _ in range(CRASH_CALLS)]

        async def scenario() -> None:
            # All the calls on server 0: server 1 joins the rotation after they began.
            fleet.out_of_rotation(1)
            async with contextlib.AsyncExitStack() as stack:
                for caller in callers:
                    await stack.enter_async_context(caller.dial())
                await asyncio.gather(*(ask(c) for c in callers))
                fleet.back_in_rotation(1)
                await asyncio.to_thread(fleet.kill, 0)
                await until(lambda: all(len(c.result.streams) == 2 for c in callers), 30)
                await until(lambda: all(c.result.streams[1].started_at for c in callers), 30)
                await asyncio.gather(*(ask(c) for c in callers))

        run(scenario())
        back = []
        for caller in callers:
            result = caller.result
            assert result.ended_by_twilio == ""
            (action,) = result.actions
            back.append(result.streams[1].started_at - action.at)
        assert sorted(conversations(fleet).values()) == [2] * CRASH_CALLS
        print(
            f"from Twilio's action request to the new stream: median "
            f"{statistics.median(back) * 1000:.0f} ms, worst {max(back) * 1000:.0f} ms"
        )
        assert max(back) < 1.5


def test_calls_go_on_and_new_ones_are_answered_while_redis_is_away() -> None:
    """Redis stops mid-call and comes back: the running call carries on, a call that
    comes in meanwhile is answered, each server says so once (log and gauge)."""
    with ServedFleet(2, FLEET_SETTINGS, OPTIONS) as fleet, logs_on_failure(fleet):
        members = [fleet.member(0), fleet.member(1)]
        up = "bridge_state_store_up"

        async def scenario() -> tuple[SimulatedCaller, SimulatedCaller, SimulatedCaller]:
            running, during, after = fleet.caller(), fleet.caller(), fleet.caller()
            async with running.dial():
                await ask(running)
                await asyncio.to_thread(fleet.redis.stop)
                await ask(running)  # its state cannot be saved: it does not notice
                # A new call: server 0 answers the webhook from what it holds; its stream
                # reaches server 1, which cannot check a token it did not mint: refused.
                # Twilio asks again (server 1 answers), and the next stream gets through.
                fleet.out_of_rotation(1)
                await during.fetch_twiml()
                fleet.out_of_rotation(0)
                fleet.back_in_rotation(1)
                async with during.dial():
                    await until(lambda: len(during.result.streams) == 2, 15)
                    await until(lambda: during.result.streams[-1].started_at > 0, 15)
                    fleet.back_in_rotation(0)
                    await ask(during)
                await until(lambda: all(m.metric(up) == 0 for m in members), 10)
                await asyncio.to_thread(fleet.redis.start)
                await until(lambda: all(m.metric(up) == 1 for m in members), 10)
                await ask(running)
                async with after.dial():
                    await ask(after)
            return running, during, after

        running, during, after = run(scenario())
        for caller in (running, during, after):
            assert caller.result.ended_by_twilio == "", caller.result.twilio_said
        assert len(running.result.streams) == 1  # it never had to move
        assert len(after.result.streams) == 1
        # Every refusal during the outage was a server that could not check the token.
        refused = [s.close_code for s in during.result.streams[:-1]]
        assert refused == [1013]  # try again: another stream of the same call
        logs = fleet.logs()
        assert logs.count("shared state store unreachable") == 2  # once per server
        assert logs.count("shared state store reachable again") == 2


def test_a_call_that_moves_between_servers_gets_one_report_with_both_streams() -> None:
    """Each server keeps its stream's part in Redis; the one that ends the call reports it
    whole, once, whoever else hears of its end (Twilio's status callback, say)."""
    secret = "fleet-report-secret-" + "k" * 12

    async def scenario() -> None:
        async with WebhookReceiver(secret) as rx:
            settings = {
                **FLEET_SETTINGS,
                "CALL_REPORT_URL": rx.url("/report"),
                "WEBHOOK_SECRET": secret,
            }
            fleet = ServedFleet(2, settings, OPTIONS)
            await asyncio.to_thread(fleet.__enter__)
            try:
                with logs_on_failure(fleet):
                    caller = fleet.caller()
                    async with caller.dial():
                        await ask(caller)
                        owner = next(
                            i for i in range(2) if fleet.member(i).metric("bridge_active_calls")
                        )
                        stopping = asyncio.create_task(asyncio.to_thread(fleet.stop, owner))
                        await until(lambda: len(caller.result.streams) == 2, timeout=30)
                        await ask(caller)
                        await stopping
                    (report,) = await rx.wait_for(1, timeout=20)
                    await asyncio.sleep(2)
                    assert len(rx.deliveries) == 1 and report.signature_valid
                    body = report.json
                    assert body["call_sid"] == caller.call_sid
                    assert (body["outcome"], body["moves"]) == ("completed", 1)
                    assert [s["outcome"] for s in body["streams"]] == ["moved", "completed"]
                    servers = {s["server"] for s in body["streams"]}
                    assert len(servers) == 2
                    said = [t["speaker"] for t in body["transcript"]]
                    assert said.count("caller") >= 2 and said.count("assistant") >= 2
                    assert len(body["latency"]["turn_ms"]) == 2
            finally:
                await asyncio.to_thread(fleet.close)

    run(scenario())
