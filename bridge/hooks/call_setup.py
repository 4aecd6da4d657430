"""The pre-call lookup: before an inbound call is answered, the operator's system
(CALL_SETUP_URL) is asked which persona takes it and with which variables, the way an
agent looks the caller up in a CRM.

The request is a signed JSON POST of ``{"call_sid", "from", "to"}``; the answer a JSON
object with ``persona`` (a persona's name or number, optional) and ``variables`` (an
object, optional). Whatever goes wrong (a timeout, an error status, an answer that is
not such an object) is a ``problem``: the call goes on with its number's persona, and
is never left in silence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .signed_post import SETUP_THREADS, post_signed


@dataclass(frozen=True, slots=True)
class SetupAnswer:
    persona: str | None = None
    variables: Any = None  # as the answer gave them: checked by the caller
    problem: str = ""  # why the answer is not used, safe to log
    elapsed_ms: float | None = field(default=None, compare=False)


async def ask_call_setup(
    url: str, secret: str, timeout_s: float, *, call_sid: str, caller: str, called: str
) -> SetupAnswer:
    answer = await post_signed(
        url,
        {"call_sid": call_sid, "from": caller, "to": called},
        secret,
        timeout_s,
        threads=SETUP_THREADS,
    )
    if not answer.ok:
        return SetupAnswer(problem=answer.problem or f"answered HTTP {answer.status}")
    try:
        data = json.loads(answer.body) if answer.body.strip() else {}
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested or numbers past limits
        return SetupAnswer(problem="did not answer with JSON this server can read")
    if not isinstance(data, dict):
        return SetupAnswer(problem="did not answer with a JSON object")
    persona = data.get("persona")
    if persona is not None and not isinstance(persona, str):
        return SetupAnswer(problem="answered a persona that is not text")
    return SetupAnswer(persona=persona or None, variables=data.get("variables"))
