"""Operator-defined HTTP tools: what a tools file may hold, and what a tool will not do."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bridge.tools.base import ToolError
from bridge.tools.http_tool import HttpTool


def test_a_redirect_is_the_answer_not_a_new_destination() -> None:
    followed: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(307)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            followed.append(self.path)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tool = HttpTool("lookup", "", {"type": "object"}, f"http://127.0.0.1:{server.server_port}/")
        with pytest.raises(ToolError, match="answered HTTP 307"):
            asyncio.run(tool({}))
    finally:
        server.shutdown()
    assert followed == []
