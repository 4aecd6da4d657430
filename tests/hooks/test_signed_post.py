"""The signed POST and the pre-call lookup against receivers that misbehave on the wire:
real sockets, answers written byte by byte."""

from __future__ import annotations

import asyncio
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from bridge.hooks.call_setup import ask_call_setup
from bridge.hooks.signed_post import SETUP_THREADS, post_signed
from bridge.threads import ThreadPool

SECRET = "s" * 24
Behaviour = Callable[[socketserver.StreamRequestHandler], None]
Receiver = tuple[str, dict[str, Behaviour]]


def _read_request(handler: socketserver.StreamRequestHandler) -> None:
    length = 0
    while (line := handler.rfile.readline()) not in (b"\r\n", b"\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    handler.rfile.read(length)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A raw HTTP server; what it does for a path is ``behaviours[path](handler)``."""
    behaviours: dict[str, Behaviour] = {}

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            first = self.rfile.readline().split()
            path = first[1].decode() if len(first) > 1 else "/"
            _read_request(self)
            try:
                behaviours[path](self)
            except OSError:
                pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", behaviours
    finally:
        server.shutdown()
        server.server_close()


def answer(body: bytes) -> Behaviour:
    def write(handler: socketserver.StreamRequestHandler) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        handler.wfile.write(head.encode() + b"\r\nConnection: close\r\n\r\n" + body)

    return write


def trickle(handler: socketserver.StreamRequestHandler) -> None:
    """Headers at once, then the body a byte every 0.3 s, for a minute."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    handler.wfile.write(b"Content-Length: 200\r\n\r\n")
    handler.wfile.flush()
    for _ in range(200):
        time.sleep(0.3)
        handler.wfile.write(b" ")
        handler.wfile.flush()


@pytest.mark.parametrize(
    "body",
    [b"[" * 50_000, b'{"variables": {"name": ' + b"9" * 5000 + b"}}", b'{"a":' * 20_000],
    ids=["nested-array", "huge-integer", "nested-object"],
)
def test_an_answer_no_parser_can_take_is_a_problem_never_an_error(
    receiver: Receiver, body: bytes
) -> None:
    """Review: these answers raised RecursionError or ValueError out of the lookup, and the
    inbound call's webhook answered 500: the call failed instead of taking its number's
    persona."""
    url, behaviours = receiver
    behaviours["/setup"] = answer(body)
    got = asyncio.run(
        ask_call_setup(url + "/setup", SECRET, 3.0, call_sid="CA1", caller="+1", called="+2")
    )
    assert got.persona is None and got.variables is None
    assert got.problem == "did not answer with JSON this server can read"


def test_a_receiver_trickling_its_answer_gives_the_thread_back_at_the_deadline(
    receiver: Receiver,
) -> None:
    """Review: urllib's timeout is per socket read, which a byte every 0.3 s never reaches:
    four such lookups held the pool's four threads for an hour, and every later call's
    lookup waited its whole timeout without being sent."""
    url, behaviours = receiver
    behaviours["/slow"] = trickle
    behaviours["/fine"] = answer(b'{"persona": "sales"}')
    pool = ThreadPool("test-trickle", 2)

    async def scenario() -> None:
        started = time.monotonic()
        slow = await asyncio.gather(
            *(post_signed(url + "/slow", {}, SECRET, 1.0, threads=pool) for _ in range(2))
        )
        assert all(a.status == 0 and "within 1 s" in a.problem for a in slow)
        assert time.monotonic() - started < 2.0
        async with asyncio.timeout(2):
            while pool.busy:  # each exchange was cut at its deadline
                await asyncio.sleep(0.02)
        fine = await post_signed(url + "/fine", {}, SECRET, 1.0, threads=pool)
        assert fine.ok and fine.body == b'{"persona": "sales"}'

    asyncio.run(scenario())
    assert SETUP_THREADS.busy == 0
