"""Twilio's REST API for calls: place one, record it, hang up, or replace its TwiML.

The twilio client is synchronous (requests), so every call runs in a thread of the
REST calls' own pool, with a timeout; the event loop never waits on Twilio's servers,
and a slow tool can never hold up a hang-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from ..threads import ThreadPool

log = logging.getLogger(__name__)
T = TypeVar("T")

# Twilio REST has threads of its own: slow tools never delay a hang-up or a transfer.
REST_THREADS = ThreadPool("twilio-rest", 4)
REST_TIMEOUT_S = 10.0


class TwilioCallError(Exception):
    """A REST change to a call failed; ``reason`` is safe to log. ``uncertain``: Twilio
    did not answer, so it may have done it all the same."""

    def __init__(self, reason: str, *, uncertain: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.uncertain = reason, uncertain


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """What ``calls.create`` is given for one outbound call."""

    to: str
    from_: str
    url: str  # its TwiML, fetched once answered
    status_callback: str
    amd_callback: str | None  # None: no answering-machine detection
    ring_timeout_s: int = 30


class TwilioCalls:
    def __init__(self, account_sid: str, auth_token: str, http_client: Any = None) -> None:
        # requests waits forever by default: a thread of the small pool would be lost.
        http_client = http_client or TwilioHttpClient(timeout=REST_TIMEOUT_S)
        self._client = Client(account_sid, auth_token, http_client=http_client)

    async def hang_up(self, call_sid: str) -> None:
        await self._update(call_sid, status="completed")

    async def transfer(self, call_sid: str, number: str) -> None:
        """Dial ``number`` on the call: its TwiML is replaced, so the stream ends first."""
        response = VoiceResponse()
        response.dial(number)
        await self._update(call_sid, twiml=str(response))

    async def say_and_hang_up(self, call_sid: str, text: str, voice: str = "") -> None:
        """Replace the call's TwiML: ``text`` spoken by Twilio, then a hang-up (the
        voicemail left on an answering machine)."""
        response = VoiceResponse()
        if voice:
            response.say(text, voice=voice)
        else:
            response.say(text)
        response.hangup()
        await self._update(call_sid, twiml=str(response))

    async def place(self, request: OutboundRequest) -> str:
        """Dial ``request.to``; returns the new call's CallSid at once (Twilio rings it
        and fetches ``request.url`` once it is answered)."""
        options: dict[str, Any] = {
            "to": request.to,
            "from_": request.from_,
            "url": request.url,
            "method": "POST",
            "status_callback": request.status_callback,
            "status_callback_method": "POST",
            "status_callback_event": ["initiated", "ringing", "answered", "completed"],
            "timeout": request.ring_timeout_s,
        }
        if request.amd_callback:
            # Asynchronous detection: the call's TwiML runs at once; the verdict comes
            # apart, after the greeting's beep for a machine (DetectMessageEnd).
            options.update(
                machine_detection="DetectMessageEnd",
                async_amd="true",
                async_amd_status_callback=request.amd_callback,
                async_amd_status_callback_method="POST",
            )

        def create() -> str:
            return str(self._client.calls.create(**options).sid)

        return await self._rest(create, "the outbound call")

    async def start_recording(self, call_sid: str, status_callback: str) -> str:
        """Record the call in two channels (the caller, the assistant); returns the
        recording's SID. Twilio calls ``status_callback`` when the file is ready."""

        def create() -> str:
            recording = self._client.calls(call_sid).recordings.create(
                recording_channels="dual",
                recording_status_callback=status_callback,
                recording_status_callback_method="POST",
                recording_status_callback_event=["completed", "absent"],
            )
            return str(recording.sid)

        return await self._rest(create, "the recording")

    async def _update(self, call_sid: str, **changes: str) -> None:
        def update() -> None:
            self._client.calls(call_sid).update(**changes)

        await self._rest(update, "the call update")

    async def _rest(self, work: Callable[[], T], what: str) -> T:
        try:
            return await asyncio.wait_for(REST_THREADS.run(work), REST_TIMEOUT_S)
        except TimeoutError:
            raise TwilioCallError(
                f"Twilio did not answer within {REST_TIMEOUT_S:g} s", uncertain=True
            ) from None
        except TwilioRestException as exc:
            detail = f": {exc.code} {str(exc.msg)[:200]}" if exc.code else ""
            raise TwilioCallError(f"Twilio refused {what} (HTTP {exc.status}{detail})") from None
        except TwilioException as exc:
            status = getattr(exc, "status", None)
            raise TwilioCallError(f"Twilio refused {what} (HTTP {status})") from None
        except OSError as exc:
            raise TwilioCallError(
                f"cannot reach Twilio: {exc.__class__.__name__}", uncertain=True
            ) from None
        except Exception as exc:  # an answer the library could not read (a proxy's page)
            raise TwilioCallError(
                f"Twilio's answer to {what} could not be read ({exc.__class__.__name__})",
                uncertain=True,
            ) from None
