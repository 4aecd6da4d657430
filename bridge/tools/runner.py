"""Runs the model's tool calls for one call: concurrently, each with a deadline.

Every ``toolCall`` entry gets an answer with its ``id`` echoed — the output,
or an error payload the model can speak about (failure, timeout, unknown
tool) — never silence. ``toolCallCancellation`` cancels the named calls, and
no answer is sent for them. Tasks belong to the runner; ``close()`` cancels
what is still running when the call ends.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..gemini.wire import FunctionCall, FunctionResponse
from .base import Tool, ToolError

log = logging.getLogger(__name__)

MAX_LOGGED_CALLS = 100  # of one stream, in the call's report
MAX_LOGGED_JSON = 4000  # characters of one call's arguments or result


def _bounded(value: Any) -> Any:
    """``value`` as it goes in the report: as it is, or its JSON cut to a length."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)[:MAX_LOGGED_JSON]
    return value if len(text) <= MAX_LOGGED_JSON else text[:MAX_LOGGED_JSON] + "…"


class ToolRunner:
    def __init__(
        self,
        tools: Iterable[Tool],
        respond: Callable[[FunctionResponse], Awaitable[None]],
        timeout_s: float,
    ) -> None:
        self._tools = {tool.name: tool for tool in tools}
        self._respond = respond
        self._timeout = timeout_s
        self._running: dict[str, asyncio.Task[None]] = {}
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        # Each call answered: name, args, output or error, wall time, duration (the report).
        self.log: list[dict[str, Any]] = []

    @property
    def running(self) -> int:
        """Tool calls not answered yet."""
        return len(self._running)

    def declarations(self) -> list[dict[str, Any]]:
        return [tool.declaration() for tool in self._tools.values()]

    def start(self, calls: Iterable[FunctionCall]) -> None:
        for call in calls:
            task = asyncio.create_task(self._run(call), name=f"tool:{call.name}")
            key = call.id or f"anonymous-{id(task)}"
            self._running[key] = task
            task.add_done_callback(functools.partial(self._finished, key))

    def _finished(self, key: str, task: asyncio.Task[None]) -> None:
        self._running.pop(key, None)

    def cancel(self, ids: Iterable[str]) -> None:
        for call_id in ids:
            task = self._running.pop(call_id, None)
            if task is not None:
                task.cancel()
                self.cancelled += 1
                log.info("tool call %s cancelled by Gemini", call_id)

    async def close(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _timeout_for(self, tool: Tool | None) -> float:
        return getattr(tool, "timeout_s", None) or self._timeout

    async def _run(self, call: FunctionCall) -> None:
        started, clock = time.time(), time.perf_counter()
        tool = self._tools.get(call.name)
        try:
            if tool is None:
                raise ToolError(f"there is no tool named {call.name}")
            async with asyncio.timeout(self._timeout_for(tool)):
                output = await tool(call.args)
            response: dict[str, Any] = {"output": output}
            self.completed += 1
        except TimeoutError:
            self.failed += 1
            message = f"{call.name} did not finish within {self._timeout_for(tool):g} s"
            response = {"error": {"message": message, "retryable": True}}
        except ToolError as exc:
            self.failed += 1
            response = {"error": {"message": exc.message, "retryable": exc.retryable}}
        except Exception as exc:  # a tool's bug must not end the call, nor go unanswered
            self.failed += 1
            log.exception("tool %s failed", call.name)
            response = {"error": {"message": f"{call.name} failed ({exc.__class__.__name__})"}}
        log.info("tool %s answered (%s)", call.name, "error" if "error" in response else "ok")
        if len(self.log) < MAX_LOGGED_CALLS:
            entry: dict[str, Any] = {"name": call.name, "args": _bounded(call.args)}
            if "error" in response:
                entry["error"] = response["error"].get("message", "")
            else:
                entry["result"] = _bounded(response["output"])
            entry["at"] = started
            entry["ms"] = round((time.perf_counter() - clock) * 1000, 1)
            self.log.append(entry)
        await self._respond(FunctionResponse(id=call.id, name=call.name, response=response))
