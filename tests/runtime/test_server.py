"""The server process: what start-up leaves to the garbage collector."""

from __future__ import annotations

import asyncio
import gc
import socket

import uvicorn
from starlette.applications import Starlette

from bridge.runtime.server import DrainingServer


async def _nothing() -> None:
    return None


def test_start_up_objects_are_frozen_out_of_the_collectors_full_passes() -> None:
    async def scenario() -> tuple[int, int]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(Starlette(), log_config=None, lifespan="off")
        server = DrainingServer(config, _nothing)
        before = gc.get_freeze_count()
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with asyncio.timeout(10):
                while not server.started:
                    await asyncio.sleep(0.01)
            return before, gc.get_freeze_count()
        finally:
            server.should_exit = True
            await task
            sock.close()

    try:
        before, after = asyncio.run(scenario())
    finally:
        gc.unfreeze()
    assert before == 0 and after > 10_000  # modules, classes, the app: all of it
