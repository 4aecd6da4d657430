"""The operator dashboard in a real headless Chromium, against a live simulated call."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import urllib.error
import urllib.request

import pytest

from bridge.testing.browser import headless_chromium
from bridge.testing.caller import SimulatedCaller, load_speech
from bridge.testing.emulator import EmulatorOptions, FaultPlan
from bridge.testing.harness import Deployment, loopback_deployment

pytestmark = pytest.mark.e2e

SHORT = load_speech("caller_barge_in.wav")


def test_dashboard_shows_a_live_call_and_keeps_updating() -> None:
    async def scenario() -> None:
        async with (
            loopback_deployment(EmulatorOptions(reply_seconds=1.0)) as d,
            headless_chromium(f"{d.public_url}/dashboard") as page,
        ):
            await page.wait_for("Number(document.getElementById('status').dataset.polls) >= 1")
            assert await page.evaluate("document.getElementById('t-active').textContent") == "0"
            assert "no calls" in await page.evaluate("document.getElementById('calls').innerText")

            caller = d.caller(from_number="+14155550199")
            async with caller.dial() as call:
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)
                row = f"document.querySelector('tr[data-call-sid=\"{caller.call_sid}\"]')"
                text = await page.wait_for(f"{row} && {row}.innerText")
                assert "+*******0199" in text and "open" in text
                await page.wait_for(f"{row}.innerText.includes('Thanks for calling')")
                assert "caller spoke for" in await page.evaluate(f"{row}.innerText")
                assert await page.evaluate("document.getElementById('t-active').textContent") == "1"
                # It keeps polling: the call's duration and frame counts move on screen.
                first = await page.evaluate(f"{row}.querySelector('.frames').textContent")
                await page.wait_for(
                    f"{row}.querySelector('.frames').textContent !== {first!r}", timeout=5
                )
                turn = await page.evaluate(f"{row}.cells[8].textContent")
                assert turn.endswith("ms") and not turn.startswith("–")
            await page.wait_for(
                "document.getElementById('t-completed').textContent === '1'", timeout=10
            )
            assert "no calls" in await page.evaluate("document.getElementById('calls').innerText")
            assert not [line for line in page.console if "error" in line.lower()]

    asyncio.run(scenario())


def softphone_call(d: Deployment) -> SimulatedCaller:
    """A call as the softphone page makes it: POST /softphone/call, then its stream."""
    request = urllib.request.Request(
        f"{d.public_url}/softphone/call",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        started = json.loads(response.read())
    caller = d.caller(call_sid=started["callSid"], from_number="softphone", to_number="")
    caller.stream_url = d.settings.stream_url
    caller.parameters = started["parameters"]
    return caller


def test_dashboard_shows_who_said_what_the_softphone_and_the_last_calls_that_ended() -> None:
    async def scenario() -> None:
        faults = {0: FaultPlan(refuse_setup=True)}  # the first call's Gemini session fails
        options = EmulatorOptions(reply_seconds=1.0, faults_by_connection=faults)
        env = {"DEV_SOFTPHONE": "1", "MAX_CONCURRENT_CALLS": "4"}
        async with (
            loopback_deployment(options, env=env) as d,
            headless_chromium(f"{d.public_url}/dashboard") as page,
        ):
            await page.wait_for("Number(document.getElementById('status').dataset.polls) >= 1")
            text = await page.evaluate("document.getElementById('about').innerText")
            assert re.fullmatch(r"version \S+ · up \d+ s", text), text
            assert "–" not in text
            assert (
                await page.evaluate("document.getElementById('p-capacity').textContent") == "0 / 4"
            )

            failed = d.caller(to_number="+14155550100")
            async with failed.dial() as call:
                await call.wait_closed(timeout=5)
            recent = f"document.querySelector('#recent tr[data-call-sid=\"{failed.call_sid}\"]')"
            line = await page.wait_for(f"{recent} && {recent}.innerText", timeout=5)
            assert "+14155550100" in line and "gemini unavailable" in line
            assert (
                "Gemini did not open: " in line and "The service is currently unavailable" in line
            )

            caller = await asyncio.to_thread(softphone_call, d)
            async with caller.dial() as call:
                await call.say(SHORT)
                await call.wait_for_answer(timeout=10)
                row = f"document.querySelector('#calls tr[data-call-sid=\"{caller.call_sid}\"]')"
                await page.wait_for(f"{row} && {row}.innerText.includes('Thanks for calling')")
                assert await page.evaluate(f"{row}.cells[2].textContent") == "softphone"
                # The server carrying the call, and how many servers the fleet has: one.
                server = await page.evaluate(f"{row}.cells[1].textContent")
                assert server == d.services.fleet.instance
                assert (
                    await page.evaluate("document.getElementById('f-servers').textContent") == "1"
                )
                said = await page.evaluate(
                    f"[...{row}.querySelectorAll('.transcript div')].map(d => d.className + ' ' + d.textContent)"
                )
                assert said[0].startswith("caller ☎ (caller spoke for")
                assert said[1].startswith("assistant ✦ Thanks for calling")
                assert (
                    await page.evaluate("document.getElementById('p-capacity').textContent")
                    == "1 / 4"
                )
            recent = f"document.querySelector('#recent tr[data-call-sid=\"{caller.call_sid}\"]')"
            line = await page.wait_for(f"{recent} && {recent}.innerText", timeout=5)
            assert "softphone" in line and "completed" in line
            assert await page.evaluate("document.querySelectorAll('#recent tr').length") == 2
            assert not [line for line in page.console if "error" in line.lower()]

    asyncio.run(scenario())


def test_dashboard_with_an_operator_token_asks_the_browser_to_log_in() -> None:
    async def scenario() -> None:
        token = "operator-secret-123"
        async with loopback_deployment(env={"OPERATOR_TOKEN": token}) as d:
            url = f"{d.public_url}/dashboard"

            def fetch(authorization: str | None) -> tuple[int, str]:
                request = urllib.request.Request(url)
                if authorization:
                    request.add_header("Authorization", authorization)
                try:
                    with urllib.request.urlopen(request, timeout=5) as response:
                        return response.status, response.headers.get("Content-Type", "")
                except urllib.error.HTTPError as exc:
                    return exc.code, exc.headers.get("WWW-Authenticate", "")

            assert await asyncio.to_thread(fetch, None) == (401, 'Basic realm="bridge operator"')
            wrong = "Basic " + base64.b64encode(b"operator:nope").decode()
            assert (await asyncio.to_thread(fetch, wrong))[0] == 401
            basic = "Basic " + base64.b64encode(f"operator:{token}".encode()).decode()
            assert (await asyncio.to_thread(fetch, basic))[0] == 200

            # A browser that logged in sends the same credentials to the stats API.
            async with headless_chromium(url, headers={"Authorization": basic}) as page:
                await page.wait_for("Number(document.getElementById('status').dataset.polls) >= 2")
                assert (
                    await page.evaluate("document.getElementById('t-handled').textContent") == "0"
                )
            # A browser with no credentials is challenged; what the user types is sent.
            challenges: list[str] = []
            async with headless_chromium() as page:

                async def pass_request(event: dict) -> None:
                    await page.command("Fetch.continueRequest", requestId=event["requestId"])

                async def log_in(event: dict) -> None:
                    challenges.append(event["authChallenge"]["scheme"])
                    credentials = {"username": "operator", "password": token}
                    answer = {"response": "ProvideCredentials", **credentials}
                    await page.command(
                        "Fetch.continueWithAuth",
                        requestId=event["requestId"],
                        authChallengeResponse=answer,
                    )

                page.on("Fetch.requestPaused", pass_request)
                page.on("Fetch.authRequired", log_in)
                await page.command("Fetch.enable", handleAuthRequests=True)
                await page.goto(url)
                await page.wait_for("Number(document.getElementById('status').dataset.polls) >= 1")
            assert challenges and {c.lower() for c in challenges} == {"basic"}

    asyncio.run(scenario())
