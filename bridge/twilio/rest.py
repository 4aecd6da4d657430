"""Changing a live call through Twilio's REST API: hang up, or replace its TwiML.

The twilio client is synchronous (requests), so every call runs in a thread of the
REST calls' own pool, with a timeout; the event loop never waits on Twilio's servers,
and a slow tool can never hold up a hang-up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from ..threads import ThreadPool

log = logging.getLogger(__name__)

# Twilio REST has threads of its own: slow tools never delay a hang-up or a transfer.
REST_THREADS = ThreadPool("twilio-rest", 4)
REST_TIMEOUT_S = 10.0


class TwilioCallError(Exception):
    """A REST change to a call failed; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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

    async def _update(self, call_sid: str, **changes: str) -> None:
        def update() -> None:
            self._client.calls(call_sid).update(**changes)

        try:
            await asyncio.wait_for(REST_THREADS.run(update), REST_TIMEOUT_S)
        except TimeoutError:
            raise TwilioCallError(f"Twilio did not answer within {REST_TIMEOUT_S:g} s") from None
        except TwilioException as exc:
            status = getattr(exc, "status", None)
            raise TwilioCallError(f"Twilio refused the call update (HTTP {status})") from None
        except OSError as exc:
            raise TwilioCallError(f"cannot reach Twilio: {exc.__class__.__name__}") from None
