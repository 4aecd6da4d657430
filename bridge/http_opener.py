"""The one way to send requests to URLs an operator configured (HTTP tools, the
call-setup lookup, the call reports): http and https only (no ``ftp://``, ``file://`` or
``data:``), proxies from the environment kept, and no redirect followed. A 3xx is an
answer (an HTTP error), not a new place to send a body, its credentials or its
signature to.

``post_within`` bounds a whole exchange, not each socket operation as urllib's
timeout does: a server that trickles its answer a byte at a time never lets a socket
operation time out, and would hold the thread (and its pool's place) for hours. A
watchdog shuts the exchange's sockets down at the deadline, whatever the thread is
blocked in (connecting, the TLS handshake, the headers, the body).
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Deadline:
    """The sockets of one exchange, shut down when its time is up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.passed = False

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.passed:
                _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.passed = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it; close() may not
    except OSError:
        pass


_exchange = threading.local()  # .deadline: the exchange this thread runs, if any


def _watched(sock: socket.socket) -> socket.socket:
    deadline: _Deadline | None = getattr(_exchange, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)
    return sock


def _watch_sockets(connection: http.client.HTTPConnection) -> None:
    """http.client opens its socket (to the server, or to the proxy) through
    ``_create_connection``; TLS is wrapped around that same socket afterwards."""
    create: Callable[..., socket.socket] = getattr(connection, "_create_connection")  # noqa: B009
    setattr(connection, "_create_connection", lambda *a, **k: _watched(create(*a, **k)))  # noqa: B010


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _watch_sockets(self)


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _watch_sockets(self)


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPSConnection, req)  # http.client's default TLS context


def _opener() -> urllib.request.OpenerDirector:
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        _HTTPHandler(),
        _HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        _RefuseRedirects(),
    ):
        opener.add_handler(handler)
    return opener


_OPENER = _opener()  # only through post_within: nothing unbounded


class DeadlinePassed(TimeoutError):
    """The whole exchange took longer than its deadline."""


def post_within(
    request: urllib.request.Request, deadline_s: float, max_bytes: int
) -> tuple[int, bytes]:
    """Send ``request`` and read at most ``max_bytes + 1`` of the answer, all within
    ``deadline_s``: (status, body). Raises as ``urlopen`` does (``HTTPError`` for a
    status of 400 or more, or a 3xx), and ``DeadlinePassed``. Blocking: run it in a
    thread."""
    deadline = _Deadline()
    timer = threading.Timer(deadline_s, deadline.expire)
    timer.daemon = True
    _exchange.deadline = deadline
    timer.start()
    try:
        with _OPENER.open(request, timeout=deadline_s) as response:
            status, body = response.status, response.read(max_bytes + 1)
    except urllib.error.HTTPError:
        raise  # an answer came, in time
    except Exception:
        if deadline.passed:
            raise DeadlinePassed(f"no whole answer within {deadline_s:g} s") from None
        raise
    finally:
        timer.cancel()
        _exchange.deadline = None
    if deadline.passed:  # the shutdown may read as the end of a shorter body
        raise DeadlinePassed(f"no whole answer within {deadline_s:g} s")
    return status, body
