"""Operator-defined tools: a JSON file of HTTP endpoints the assistant may call.

``TOOLS_FILE`` holds a list of ``{"name", "description", "parameters", "url"}``
(plus optional ``"timeout_s"`` and ``"headers"``). ``parameters`` is a JSON
schema, sent to Gemini as ``parametersJsonSchema``. The bridge POSTs the
model's arguments as JSON and hands the JSON answer back to the model; HTTP
errors and timeouts become error payloads the model can speak about.

A tool's headers usually carry its credentials, so its request goes to its own URL
only: a redirect is an error (urllib would follow it to any host, headers and all,
and to ``ftp://`` too), and the header values are scrubbed from the log.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..config import ConfigError, ConfigErrors, read_json_file
from ..http_opener import DeadlinePassed, post_within
from ..threads import ThreadPool
from .base import ToolError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_ANSWER_BYTES = 64 * 1024
# Tools have threads of their own: a slow backend can delay other tools, nothing else.
TOOL_THREADS = ThreadPool("http-tool", 16)
SETTING = "TOOLS_FILE"
FIELDS = ("name", "description", "parameters", "url", "timeout_s", "headers")
# What http.client sends as a header: a token, and a value without control characters.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]{0,4096}")
# Header values this short are no secret (a version, a flag), and scrubbing them from the
# log would garble every line that holds those characters.
MIN_SCRUBBED_CHARS = 6


@dataclass(frozen=True)
class HttpTool:
    name: str
    description: str
    parameters: dict[str, Any]
    url: str
    timeout_s: float | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def declaration(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parametersJsonSchema": self.parameters,
        }

    def _post(self, args: dict[str, Any], timeout: float) -> Any:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(args).encode(),
            headers={"Content-Type": "application/json", **self.headers},
            method="POST",
        )
        try:
            _, body = post_within(request, timeout, MAX_ANSWER_BYTES)
        except urllib.error.HTTPError as exc:
            raise ToolError(
                f"{self.name} answered HTTP {exc.code}", retryable=exc.code >= 500
            ) from None
        except DeadlinePassed:
            raise ToolError(
                f"{self.name} did not answer within {timeout:g} s", retryable=True
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ToolError(
                f"{self.name} could not be reached ({exc.__class__.__name__})", retryable=True
            ) from None
        if len(body) > MAX_ANSWER_BYTES:
            raise ToolError(f"{self.name} answered with more than {MAX_ANSWER_BYTES} bytes")
        try:
            return json.loads(body) if body else None
        except (ValueError, RecursionError):  # not JSON, nested or numbers past limits
            raise ToolError(f"{self.name} did not answer with JSON") from None

    async def __call__(self, args: dict[str, Any]) -> Any:
        timeout = self.timeout_s or 30.0
        return await TOOL_THREADS.run(self._post, args, timeout)

    def secrets(self) -> list[str]:
        """The header values, and the credential after an auth scheme (``Bearer x``: x)."""
        values = [v.strip() for v in self.headers.values()]
        values += [v.partition(" ")[2].strip() for v in values if " " in v]
        return [v for v in values if len(v) >= MIN_SCRUBBED_CHARS]


def load_http_tools(path: str) -> list[HttpTool]:
    """Read and check ``TOOLS_FILE``; a bad file is a start-up error naming the variable,
    with every problem in it (one line each)."""
    data = read_json_file(SETTING, path)
    if not isinstance(data, list):
        raise ConfigError(SETTING, f"{path} must hold a JSON list of tools")
    tools: list[HttpTool] = []
    problems: list[str] = []
    for i, entry in enumerate(data):
        tool = _tool(f"tool {i + 1}", entry, {t.name for t in tools}, problems)
        if tool is not None:
            tools.append(tool)
    if problems:
        errors = [ConfigError(SETTING, problem) for problem in problems]
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    return tools


def _tool(where: str, entry: Any, taken: set[str], problems: list[str]) -> HttpTool | None:
    if not isinstance(entry, dict):
        problems.append(f"{where} is not an object")
        return None
    found = len(problems)
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        problems.append(f"{where}: name must be letters, digits and _ (at most 64)")
    elif name in ("end_call", "transfer_call") or name in taken:
        problems.append(f"{where}: the name {name} is already taken")
    else:
        where = name
    for key in entry:
        if key not in FIELDS:
            problems.append(f"{where}: unknown field {key!r} (known: {', '.join(FIELDS)})")
    url = entry.get("url")
    if url is None:
        problems.append(f"{where}: url is missing (the http(s) endpoint the bridge POSTs to)")
    elif not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        problems.append(f"{where}: url {url!r} is not an http:// or https:// URL")
    params = entry.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict) or params.get("type") != "object":
        problems.append(f"{where}: parameters must be a JSON schema of type object")
    timeout = entry.get("timeout_s")
    if timeout is not None and not (
        isinstance(timeout, int | float) and not isinstance(timeout, bool) and 0 < timeout <= 120
    ):
        problems.append(f"{where}: timeout_s must be 0-120 seconds")
    headers = entry.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(h, str) for h in headers.values()):
        problems.append(f"{where}: headers must map names to strings")
    else:
        for header, value in headers.items():
            if not HEADER_NAME.fullmatch(header):
                problems.append(f"{where}: {header[:64]!r} is not a header name")
            elif not HEADER_VALUE.fullmatch(value):  # a pasted newline, say: never echo it
                problems.append(
                    f"{where}: the value of {header} has a line break or control character"
                )
    if len(problems) > found:
        return None
    assert isinstance(name, str) and isinstance(url, str)  # checked above
    return HttpTool(
        name=name,
        description=str(entry.get("description", "")),
        parameters=params,
        url=url,
        timeout_s=float(timeout) if timeout is not None else None,
        headers=headers,
    )
