"""What waits for a Gemini connection while none can take it, without I/O.

During a reconnect the caller goes on talking, presses keys, and tools finish. Nothing of
it may be lost: audio spoken meanwhile is held (up to ``SWAP_BUFFER_BYTES``, the oldest
dropped first) and every other message is queued, to go out in order once the next
connection's ``setupComplete`` came.

A tool's answer is a ``toolResponse`` only for the connection that made the call: a
resumed session does not know a call an older connection made, and would answer its id
with silence or an error. Such an answer goes as text the model can speak about instead.
"""

from __future__ import annotations

import json
import logging
from collections import deque

from .client import text_input_message, tool_response_message
from .wire import FunctionResponse

log = logging.getLogger(__name__)

SWAP_BUFFER_BYTES = 2 * 32000  # 2 s of 16 kHz PCM16 held during a reconnect
MAX_QUEUED_MESSAGES = 64  # non-audio messages waiting for a connection; a call makes a few
LATE_TOOL_NOTE = (
    "(The result of {name}, which you asked for before the connection was renewed: {result})"
)

# A message waiting for a connection: sent as it is, or a tool's answer, whose form
# depends on the connection it finally goes to.
Outgoing = str | FunctionResponse


class Outbox:
    def __init__(self) -> None:
        self.connection = 0  # which connection is current: 1, 2, … (0 before the first)
        self._tool_calls: dict[str, int] = {}  # open tool call id → connection that made it
        self._queue: deque[Outgoing] = deque()
        self._held: deque[bytes] = deque()
        self._held_bytes = 0

    # --- connections and the calls they made ----------------------------------------------------

    def connection_opened(self) -> None:
        self.connection += 1

    def tool_called(self, call_id: str) -> None:
        self._tool_calls[call_id] = self.connection

    def tool_cancelled(self, call_id: str) -> None:
        self._tool_calls.pop(call_id, None)

    def wire_form(self, outgoing: Outgoing) -> str:
        """What to send on the current connection: a tool's answer as a ``toolResponse``
        for a call this connection made, as text for one an older one made."""
        if not isinstance(outgoing, FunctionResponse):
            return outgoing
        made_on = self._tool_calls.pop(outgoing.id, self.connection)
        if made_on == self.connection:
            return tool_response_message([outgoing])
        log.info("tool %s answered after a reconnect: sent as text", outgoing.name)
        result = json.dumps(outgoing.response, ensure_ascii=False)
        return text_input_message(LATE_TOOL_NOTE.format(name=outgoing.name, result=result))

    # --- messages ---------------------------------------------------------------------------

    @property
    def waiting(self) -> bool:
        return bool(self._queue)

    def put(self, outgoing: Outgoing) -> None:
        if len(self._queue) >= MAX_QUEUED_MESSAGES:
            log.warning("%d messages already wait for Gemini: dropped the oldest", len(self._queue))
            self._queue.popleft()
        self._queue.append(outgoing)

    def next(self) -> Outgoing:
        """The oldest waiting message (it stays until ``sent``)."""
        return self._queue[0]

    def sent(self) -> None:
        self._queue.popleft()

    # --- audio spoken while no connection could take it -------------------------------------

    def hold(self, pcm16k: bytes) -> None:
        self._held.append(pcm16k)
        self._held_bytes += len(pcm16k)
        while self._held_bytes > SWAP_BUFFER_BYTES:
            self._held_bytes -= len(self._held.popleft())

    def take_held(self) -> list[bytes]:
        held = list(self._held)
        self._held.clear()
        self._held_bytes = 0
        return held
