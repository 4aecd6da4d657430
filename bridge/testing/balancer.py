"""A TCP load balancer for a fleet on loopback: what a Kubernetes Service (or any L4 load
balancer) is to the servers behind it.

Every connection goes to a server picked at random, as kube-proxy's default (iptables)
mode picks one; a server that is stopped (or was killed) is skipped, as a Service skips
a pod that is gone. (Strict turns would lock step with a caller whose requests alternate
kinds, webhook then stream, and always send each kind to the same server.) Bytes are
relayed as they are, so Twilio's signatures, WebSocket upgrades and the servers' own
``Host`` checks see exactly what they would behind a real one: one ``PUBLIC_URL`` for
the whole fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterable

CONNECT_TIMEOUT_S = 1.0


class TcpBalancer:
    def __init__(self, backends: Iterable[int] = (), host: str = "127.0.0.1") -> None:
        self.host = host
        self.backends: list[int] = list(backends)  # the servers' ports, changed at will
        self._pick = random.Random()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.connections = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, port: int = 0) -> TcpBalancer:
        self._server = await asyncio.start_server(self._accept, self.host, port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def __aenter__(self) -> TcpBalancer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _backend(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        ports = list(self.backends)
        first = self._pick.randrange(len(ports)) if ports else 0
        for k in range(len(ports)):
            port = ports[(first + k) % len(ports)]
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    return await asyncio.open_connection(self.host, port)
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            backend = await self._backend()
            if backend is None:
                return
            self.connections += 1
            back_reader, back_writer = backend
            await asyncio.gather(
                _pipe(reader, back_writer), _pipe(back_reader, writer), return_exceptions=True
            )
        finally:
            writer.close()
            self._pipes.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        # One side closed (or reset: a killed server): the other side is told the same.
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
