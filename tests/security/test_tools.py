"""HTTP tools and Twilio's REST calls, seen from a real ``bridge serve`` (review items 5
and 6): where a tool's request and its credentials may go, and who waits for whom."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bridge.gemini.wire import FunctionCall
from bridge.testing.emulator import EmulatedSession, EmulatorOptions, ScriptedToolCall
from bridge.testing.served import ServedBridge, served_bridge

pytestmark = pytest.mark.e2e

TOOL_SECRET = "Bearer tool-secret-4f9a1c7e2b"
API_KEY = "x-api-key-8d3e6b0a5c"
SLOW_S = 8.0  # what a slow backend takes to answer
SLOW_CALLS = 7  # more than asyncio's default pool has threads on a 2-core machine


@dataclass
class Seen:
    """What reached one of the test's servers, and when (monotonic)."""

    requests: list[tuple[float, str, str, dict[str, str]]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [path for _, _, path, _ in self.requests]

    def first(self, path: str) -> float | None:
        return next((t for t, _, p, _ in self.requests if p == path), None)


def http_server(seen: Seen, answer: dict[str, tuple[int, dict[str, str]]]) -> ThreadingHTTPServer:
    """Records every request; answers by path: (status, headers), ``/slow`` after SLOW_S."""

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            seen.requests.append((time.monotonic(), self.command, self.path, dict(self.headers)))
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            if self.path == "/slow":
                time.sleep(SLOW_S)
            status, headers = answer.get(self.path, (200, {}))
            body = b'{"ok": true}' if status == 200 else b""
            try:
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass

        do_GET = do_POST = do_CONNECT = _any

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class World:
    bridge: ServedBridge
    backend: Seen  # the tools' own server
    elsewhere: Seen  # another origin a redirect points at
    proxy: Seen  # the HTTPS proxy Twilio's REST calls go through
    ftp_connections: list[float]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    backend, elsewhere, proxy = Seen(), Seen(), Seen()
    thief = http_server(elsewhere, {})
    ftp = socket.create_server(("127.0.0.1", 0))
    ftp_connections: list[float] = []

    def count_ftp() -> None:
        while True:
            try:
                connection, _ = ftp.accept()
            except OSError:
                return
            ftp_connections.append(time.monotonic())
            connection.close()

    threading.Thread(target=count_ftp, daemon=True).start()
    other = f"http://127.0.0.1:{thief.server_port}"
    tools_server = http_server(
        backend,
        {
            "/to-elsewhere": (302, {"Location": f"{other}/steal"}),
            "/to-ftp": (302, {"Location": f"ftp://127.0.0.1:{ftp.getsockname()[1]}/x"}),
        },
    )
    connect_proxy = http_server(proxy, {})  # answers CONNECT with 200 and closes: REST fails
    base = f"http://127.0.0.1:{tools_server.server_port}"
    secret_headers = {"Authorization": TOOL_SECRET, "X-Api-Key": API_KEY}
    tools = [
        {"name": "lookup_order", "url": f"{base}/to-elsewhere", "headers": secret_headers},
        {"name": "lookup_file", "url": f"{base}/to-ftp", "headers": secret_headers},
        {"name": "slow_lookup", "url": f"{base}/slow", "timeout_s": SLOW_S + 4},
        {"name": "fast_lookup", "url": f"{base}/fast", "timeout_s": 5},
    ]
    tools_file = Path(tmp_path_factory.mktemp("tools")) / "tools.json"
    tools_file.write_text(json.dumps(tools))
    script = [
        ScriptedToolCall(
            [FunctionCall("r1", "lookup_order", {}), FunctionCall("r2", "lookup_file", {})],
            on_text="pressed 1",
        ),
        ScriptedToolCall(
            [FunctionCall(f"s{i}", "slow_lookup", {}) for i in range(SLOW_CALLS)]
            + [FunctionCall("fast", "fast_lookup", {}), FunctionCall("bye", "end_call", {})],
            on_text="pressed 2",
        ),
    ]
    settings = {
        "TOOLS_FILE": str(tools_file),
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,  # end_call hangs up through Twilio's REST API
        "HTTPS_PROXY": f"http://127.0.0.1:{connect_proxy.server_port}",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    try:
        with served_bridge(settings, EmulatorOptions(tool_script=script)) as served:
            yield World(served, backend, elsewhere, proxy, ftp_connections)
    finally:
        for server in (thief, tools_server, connect_proxy):
            server.shutdown()
        ftp.close()


async def session_of_the_next_call(bridge: ServedBridge, before: int) -> EmulatedSession:
    async with asyncio.timeout(10):
        while len(bridge.emulator.sessions) <= before:
            await asyncio.sleep(0.02)
    return bridge.emulator.sessions[before]


def test_a_redirect_is_an_error_and_the_credentials_never_leave_for_it(world: World) -> None:
    """Review: a 302 sent the tool's Authorization and X-Api-Key to another host, and a
    redirect to ftp:// was followed too."""
    bridge = world.bridge
    before = len(bridge.emulator.sessions)

    async def call() -> EmulatedSession:
        async with bridge.caller().dial() as call:
            session = await session_of_the_next_call(bridge, before)
            await call.press("1")
            async with asyncio.timeout(15):
                while len(session.tool_responses) < 2:
                    await asyncio.sleep(0.05)
        return session

    session = asyncio.run(call())
    answers = {r.id: r.response for r in session.tool_responses}
    for call_id in ("r1", "r2"):
        assert "answered HTTP 302" in answers[call_id]["error"]["message"], answers
    assert world.elsewhere.requests == []  # nothing, let alone the headers, went elsewhere
    assert world.ftp_connections == []
    assert "/to-elsewhere" in world.backend.paths() and "/to-ftp" in world.backend.paths()


def test_slow_tools_hold_up_neither_other_tools_nor_a_hang_up(world: World) -> None:
    """Review: six slow backends held asyncio's six default threads; the next tool failed
    without its request leaving the bridge, and hang-up and transfer waited too."""
    bridge = world.bridge
    before = len(bridge.emulator.sessions)

    async def call() -> float:
        caller = bridge.caller()
        async with caller.dial() as call:
            await session_of_the_next_call(bridge, before)
            asked = time.monotonic()
            await call.press("2")
            async with asyncio.timeout(SLOW_S + 5):
                while not world.proxy.requests or world.backend.first("/fast") is None:
                    await asyncio.sleep(0.05)
        return asked

    asked = asyncio.run(call())
    fast = world.backend.first("/fast")
    assert fast is not None and fast - asked < 2.0  # not behind the slow ones
    (hang_up_at, method, target, _), *_ = world.proxy.requests
    assert method == "CONNECT" and target == "api.twilio.com:443"
    # end_call waits 3 s for the model's last words, then hangs up: not behind the tools.
    assert hang_up_at - asked < SLOW_S - 2
