"""A real headless Chromium driven over the DevTools protocol, for the browser pages' tests.

Debian's ``chromium`` package and the ``websockets`` library we already ship are
all it takes: no Selenium, no Playwright download.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import tempfile
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import websockets

# Without the background-networking flags Chromium keeps dialling Google's hosts,
# which this (and many a CI) network refuses.
QUIET_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
)
START_TIMEOUT_S = 20.0


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class BrowserError(Exception):
    pass


class Page:
    """One tab: evaluate JavaScript in it, wait for conditions, answer its events."""

    def __init__(self, socket: websockets.ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {}
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self.console: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self._socket:
                message = json.loads(raw)
                if (call_id := message.get("id")) is not None:
                    if (future := self._pending.pop(call_id, None)) and not future.done():
                        future.set_result(message)
                    continue
                method, params = message.get("method", ""), message.get("params", {})
                if method == "Runtime.consoleAPICalled":
                    args = params.get("args", [])
                    self.console.append(" ".join(str(a.get("value", "")) for a in args))
                if handler := self._handlers.get(method):
                    task = asyncio.ensure_future(handler(params))
                    self._handler_tasks.add(task)
                    task.add_done_callback(self._handler_tasks.discard)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BrowserError("the browser went away"))

    def on(self, method: str, handler: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Answer a DevTools event (e.g. ``Fetch.authRequired``) as it arrives."""
        self._handlers[method] = handler

    async def close(self) -> None:
        for task in (self._reader, *self._handler_tasks):
            task.cancel()
        await asyncio.gather(self._reader, *self._handler_tasks, return_exceptions=True)

    async def command(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        await self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        async with asyncio.timeout(15):
            message = await future
        if "error" in message:
            raise BrowserError(f"{method}: {message['error']}")
        result: dict[str, Any] = message.get("result", {})
        return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.command(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"page threw: {text}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Poll ``expression`` until it is truthy; its value is returned."""
        async with asyncio.timeout(timeout):
            while not (value := await self.evaluate(expression)):
                await asyncio.sleep(0.1)
        return value

    async def goto(self, url: str) -> None:
        await self.command("Page.navigate", url=url)
        await self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        )


@contextlib.asynccontextmanager
async def headless_chromium(
    url: str | None = None,
    extra_flags: Sequence[str] = (),
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Page]:
    """Start Chromium with a fresh profile, open ``url`` (if given) and yield its page."""
    binary = chromium_path()
    if binary is None:
        raise BrowserError("chromium is not installed (Debian: apt-get install chromium)")
    profile = Path(tempfile.mkdtemp(prefix="bridge-chromium-"))
    process = await asyncio.create_subprocess_exec(
        binary,
        *QUIET_FLAGS,
        *extra_flags,
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port = await _devtools_port(profile, process)
        targets = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{port}/json/list")
        page_target = next(t for t in targets if t.get("type") == "page")
        async with websockets.connect(
            page_target["webSocketDebuggerUrl"], max_size=None, open_timeout=10
        ) as socket:
            page = Page(socket)
            try:
                await page.command("Page.enable")
                await page.command("Runtime.enable")
                if headers:
                    await page.command("Network.enable")
                    await page.command("Network.setExtraHTTPHeaders", headers=headers)
                if url:
                    await page.goto(url)
                yield page
            finally:
                await page.close()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        await asyncio.to_thread(shutil.rmtree, profile, True)


async def _devtools_port(profile: Path, process: asyncio.subprocess.Process) -> int:
    """Chromium writes the port it chose to ``DevToolsActivePort`` in the profile."""
    marker = profile / "DevToolsActivePort"
    async with asyncio.timeout(START_TIMEOUT_S):
        while True:
            if process.returncode is not None:
                raise BrowserError(f"chromium exited with {process.returncode}")
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(marker.read_text().split()[0])
            await asyncio.sleep(0.05)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())
