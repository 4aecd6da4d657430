"""One signed JSON POST to the operator's systems, in a thread of its own pool.

urllib with the same rules as the HTTP tools: http(s) only, no redirect followed (a 3xx
is an answer, not a new place to send the body and its signature to), a timeout on
every request, the answer read up to a cap. The event loop never waits on the
receiver: the request runs in a thread of its kind's own pool (lookups, reports), so a
slow CRM or report receiver cannot delay a tool, a hang-up, another call's webhook or
the other kind of request.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from ..http_opener import DeadlinePassed, post_within
from ..threads import ThreadPool
from .signature import SIGNATURE_HEADER, signature_header

# Each kind of request has threads of its own: reports to a slow receiver never make an
# inbound call's pre-call lookup wait for a thread.
SETUP_THREADS = ThreadPool("call-setup", 4)
REPORT_THREADS = ThreadPool("reports", 4)
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "gemini-phone-bridge"


@dataclass(frozen=True, slots=True)
class HookAnswer:
    """``status`` 0: no HTTP answer at all; ``problem`` says why, safe to log."""

    status: int
    body: bytes = b""
    problem: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _post(
    url: str, body: bytes, secret: str, timeout_s: float, headers: dict[str, str]
) -> HookAnswer:
    request = urllib.request.Request(
        url,
        data=body,
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature_header(secret, body, time.time()),
            **headers,
        },
        method="POST",
    )
    try:
        status, answer = post_within(request, timeout_s, MAX_ANSWER_BYTES)
        return HookAnswer(status, answer)
    except urllib.error.HTTPError as exc:
        return HookAnswer(exc.code, b"", f"answered HTTP {exc.code}")
    except DeadlinePassed:
        return HookAnswer(0, b"", f"did not answer within {timeout_s:g} s")
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", None)
        name = (reason if isinstance(reason, Exception) else exc).__class__.__name__
        return HookAnswer(0, b"", f"could not be reached ({name})")
    except Exception as exc:  # a malformed answer (http.client), a bad URL: never raised
        return HookAnswer(0, b"", f"failed ({exc.__class__.__name__})")


async def post_signed(
    url: str,
    payload: Any,
    secret: str,
    timeout_s: float,
    headers: dict[str, str] | None = None,
    threads: ThreadPool = REPORT_THREADS,
) -> HookAnswer:
    """POST ``payload`` as JSON, signed, within ``timeout_s`` all told (waiting for a
    thread included); never raises for what the receiver does."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    try:
        # The thread's exchange has the same deadline (a receiver trickling its answer
        # cannot hold the thread past it); this one also counts waiting for a thread.
        async with asyncio.timeout(timeout_s):
            return await threads.run(_post, url, body, secret, timeout_s, headers or {})
    except TimeoutError:
        full = threads.busy >= threads.threads
        why = f" (all {threads.threads} of its threads were busy)" if full else ""
        return HookAnswer(0, b"", f"did not answer within {timeout_s:g} s{why}")
