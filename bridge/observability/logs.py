"""Logging: one line per event, JSON by default, every line of a call tagged with its SIDs,
and every configured secret scrubbed from the output."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"

# Set once a stream has started; tasks the call creates inherit it, so their lines carry it too.
call_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "call_context", default=None
)


# Probes and polls: a line per request would bury the lines that matter.
QUIET_PATHS = frozenset({"/health", "/ready", "/metrics", "/api/calls/stats"})


def tag_call(call_sid: str, stream_sid: str = "") -> None:
    """Every later line of this task (and the tasks it starts) names the call; the webhook
    tags with the CallSid alone, the stream with both."""
    context = {"call_sid": call_sid}
    if stream_sid:
        context["stream_sid"] = stream_sid
    call_context.set(context)


class QuietProbes(logging.Filter):
    """Drops uvicorn's access-log lines for probes and polls that succeeded."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not (isinstance(args, tuple) and len(args) == 5):
            return True
        path, status = str(args[2]).split("?", 1)[0], args[4]
        return not (path in QUIET_PATHS and isinstance(status, int) and status < 400)


def secret_forms(secret: str) -> set[str]:
    """A secret as it may appear in a line: as is, and URL-encoded (a token pasted into a
    query string reaches the access log encoded)."""
    return {secret, quote(secret, safe=""), quote_plus(secret, safe="")}


class SecretScrub:
    """Replaces every configured secret in a text; used on log lines and on what the
    operator endpoints answer (a close reason from Gemini may quote what it was sent)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is scrubbed whole.
        forms = {form for s in secrets if s for form in secret_forms(s)}
        self._secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


class RedactingFormatter(logging.Formatter):
    """Text lines: ``time level logger: [CallSid/StreamSid] message``; secrets scrubbed
    after formatting, so tracebacks and third-party messages are covered too."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self._scrub = SecretScrub(secrets)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = call_context.get()
        if context:
            head, sep, tail = text.partition(": ")
            sids = "/".join(context.values())
            text = f"{head}{sep}[{sids}] {tail}"
        if isinstance(data := getattr(record, "data", None), dict):
            text += " " + json.dumps(data, ensure_ascii=False, default=str)
        return self._scrub(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the call's SIDs, an ``event``
    name and its ``data`` when the caller gave them (``extra=``), and any exception."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._scrub = SecretScrub(secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = call_context.get()
        if context:
            entry.update(context)
        for key in ("event", "data"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self._scrub(json.dumps(entry, ensure_ascii=False, default=str))


def configure_logging(
    level: str, secrets: Iterable[str] = (), fmt: str = "json", log_probes: bool = False
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(secrets))
    else:
        handler.setFormatter(
            RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # websockets logs every handshake failure with the request line, the twilio client
    # every request it makes: keep them to warnings.
    for name in ("websockets", "twilio.http_client"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    access = logging.getLogger("uvicorn.access")
    for old_filter in [f for f in access.filters if isinstance(f, QuietProbes)]:
        access.removeFilter(old_filter)
    if not log_probes:
        access.addFilter(QuietProbes())
    # uvicorn hands its logger to the websockets protocol, which logs every frame at DEBUG
    # (a line per 20 ms, audio and stream tokens included): never below INFO.
    logging.getLogger("uvicorn.error").setLevel(max(logging.INFO, root.level))
