"""Operator-defined HTTP tools: what a tools file may hold, and what a tool will not do."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bridge.config import ConfigError
from bridge.tools.base import ToolError
from bridge.tools.http_tool import HttpTool, load_http_tools


def tools_file(tmp_path: Path, headers: dict[str, str]) -> str:
    path = tmp_path / "tools.json"
    tool = {"name": "lookup", "url": "https://api.example.com/x", "headers": headers}
    path.write_text(json.dumps([tool]))
    return str(path)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer s3cret-value\n"},  # a pasted line break
        {"X-Api-Key": "s3cret-value\r\nX-Injected: 1"},
        {"X-Api-Key": "s3cret\x00value"},
        {"Bad Name": "s3cret-value"},
    ],
)
def test_headers_http_client_would_refuse_are_refused_at_start_up(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_http_tools(tools_file(tmp_path, headers))
    assert info.value.name == "TOOLS_FILE" and "s3cret" not in str(info.value)


def test_header_values_and_their_credentials_are_secrets(tmp_path: Path) -> None:
    headers = {"Authorization": "Bearer abc123def", "X-Api-Key": "k-9876", "X-Version": "2"}
    (tool,) = load_http_tools(tools_file(tmp_path, headers))
    # "2" is no secret, and scrubbing it would garble every timestamp.
    assert set(tool.secrets()) == {"Bearer abc123def", "abc123def", "k-9876"}


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
