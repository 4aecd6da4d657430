"""Twilio Media Streams over WebSocket, without I/O.

Both roles live here, as in a sans-I/O protocol library: the bridge parses what
Twilio sends (``parse_twilio_event``) and builds ``media``/``mark``/``clear``;
the simulated caller builds Twilio's events and parses the bridge's replies
(``parse_bridge_message``). Twilio sends numbers as strings; they are parsed
into ints here so nothing downstream has to care.
"""

from __future__ import annotations

import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pybase64

MAX_MESSAGE_BYTES = 64 * 1024  # a 20 ms media event is ~400 bytes; nothing legitimate is near this
# Twilio's media payload is one 20 ms frame of 8 kHz μ-law, 160 bytes; half a second
# leaves room for any framing it may choose, and no more (docs/security.md).
MAX_MEDIA_PAYLOAD_BYTES = 4000


class ProtocolError(ValueError):
    """A frame that does not follow the Media Streams protocol; the reason is safe to log."""


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class MediaFormat:
    encoding: str
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    sequence_number: int
    tracks: tuple[str, ...]
    media_format: MediaFormat
    custom_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)  # not frozen: 50 a second per call; a frozen __init__ costs 3x
class Media:
    stream_sid: str
    sequence_number: int
    track: str
    chunk: int
    timestamp_ms: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_sid: str
    sequence_number: int
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    stream_sid: str
    sequence_number: int
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_sid: str
    sequence_number: int
    call_sid: str
    account_sid: str


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event this version does not know; Twilio may add events without notice."""

    name: str


TwilioEvent = Connected | Start | Media | Dtmf | Mark | Stop | UnknownEvent


# --- parsing what Twilio sends -------------------------------------------------------------


def _load(data: str | bytes) -> dict[str, Any]:
    if isinstance(data, bytes):
        raise ProtocolError("binary frame (Media Streams sends JSON text)")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"frame of {len(data)} bytes is over the {MAX_MESSAGE_BYTES}-byte cap")
    try:
        message = json.loads(data)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(message, dict):
        raise ProtocolError("not a JSON object")
    return message


def _obj(message: dict[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"'{key}' missing or not an object")
    return value


def _str(obj: dict[str, Any], key: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise ProtocolError(f"'{key}' missing or not a string")
    return value


def _int(obj: dict[str, Any], key: str, default: int | None = None) -> int:
    """Twilio sends counters as decimal strings; plain ints are accepted too."""
    value = obj.get(key, default)
    if isinstance(value, bool):
        raise ProtocolError(f"'{key}' is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    raise ProtocolError(f"'{key}' missing or not a number")


def _b64(text: str, key: str) -> bytes:
    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"'{key}' is not valid base64") from None


# Twilio's media event as it sends it (this key order, no spaces: so it shows in logs of
# real calls). Fifty a second per call: one match reads it, where a JSON parse and the
# checks cost twice as much. Anything else, odd or wrong, goes the general way, which
# says what is wrong.
_USUAL_MEDIA = re.compile(
    r'\{"event":"media","sequenceNumber":"([0-9]{1,18})",'
    r'"media":\{"track":"([a-z_]{1,20})","chunk":"([0-9]{1,18})","timestamp":"([0-9]{1,18})",'
    r'"payload":"([A-Za-z0-9+/]*={0,2})"\},"streamSid":"([A-Za-z0-9]{1,64})"\}'
)


def _usual_media(data: str) -> Media | None:
    if len(data) > MAX_MESSAGE_BYTES or (match := _USUAL_MEDIA.fullmatch(data)) is None:
        return None
    sequence, track, chunk, timestamp, payload, sid = match.groups()
    try:
        audio = pybase64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(audio) > MAX_MEDIA_PAYLOAD_BYTES:
        return None  # the general way says why
    return Media(sid, int(sequence), track, int(chunk), int(timestamp), audio)


def parse_twilio_event(data: str | bytes) -> TwilioEvent:
    """Parse one frame from Twilio; raises ProtocolError with a loggable reason."""
    if type(data) is str and (media := _usual_media(data)) is not None:
        return media
    message = _load(data)
    event = message.get("event")
    if not isinstance(event, str):
        raise ProtocolError("'event' missing or not a string")
    if event == "media":
        fields = _obj(message, "media")
        payload = _b64(_str(fields, "payload"), "payload")
        if len(payload) > MAX_MEDIA_PAYLOAD_BYTES:
            raise ProtocolError(
                f"media payload of {len(payload)} bytes is over the {MAX_MEDIA_PAYLOAD_BYTES}-byte "
                f"cap ({MAX_MEDIA_PAYLOAD_BYTES / 8000:g} s of audio)"
            )
        return Media(
            stream_sid=_str(message, "streamSid"),
            sequence_number=_int(message, "sequenceNumber", 0),
            track=_str(fields, "track", "inbound"),
            chunk=_int(fields, "chunk", 0),
            timestamp_ms=_int(fields, "timestamp", 0),
            payload=payload,
        )
    if event == "connected":
        return Connected(
            protocol=_str(message, "protocol", ""), version=_str(message, "version", "")
        )
    if event == "start":
        start = _obj(message, "start")
        fmt = start.get("mediaFormat", {})
        if not isinstance(fmt, dict):
            raise ProtocolError("'mediaFormat' is not an object")
        params = start.get("customParameters", {})
        if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in params.items()
        ):
            raise ProtocolError("'customParameters' is not an object of strings")
        tracks = start.get("tracks", ["inbound"])
        if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
            raise ProtocolError("'tracks' is not a list of strings")
        return Start(
            stream_sid=_str(start, "streamSid", message.get("streamSid")),
            call_sid=_str(start, "callSid"),
            account_sid=_str(start, "accountSid", ""),
            sequence_number=_int(message, "sequenceNumber", 0),
            tracks=tuple(tracks),
            media_format=MediaFormat(
                encoding=_str(fmt, "encoding", "audio/x-mulaw"),
                sample_rate=_int(fmt, "sampleRate", 8000),
                channels=_int(fmt, "channels", 1),
            ),
            custom_parameters=dict(params),
        )
    if event == "mark":
        return Mark(
            stream_sid=_str(message, "streamSid"),
            sequence_number=_int(message, "sequenceNumber", 0),
            name=_str(_obj(message, "mark"), "name"),
        )
    if event == "dtmf":
        digit = _str(_obj(message, "dtmf"), "digit")
        if len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise ProtocolError("'digit' is not a keypad digit")
        return Dtmf(
            stream_sid=_str(message, "streamSid"),
            sequence_number=_int(message, "sequenceNumber", 0),
            digit=digit,
        )
    if event == "stop":
        stop = message.get("stop", {})
        if not isinstance(stop, dict):
            raise ProtocolError("'stop' is not an object")
        return Stop(
            stream_sid=_str(message, "streamSid"),
            sequence_number=_int(message, "sequenceNumber", 0),
            call_sid=_str(stop, "callSid", ""),
            account_sid=_str(stop, "accountSid", ""),
        )
    return UnknownEvent(name=event[:40])


# --- building what the bridge sends ----------------------------------------------------------


def media_message(stream_sid: str, ulaw: bytes) -> str:
    # Hot path (50 frames/s per call): one format, no dict, no json.dumps.
    # Stream SIDs are [A-Za-z0-9]; base64 never needs escaping.
    payload = pybase64.b64encode_as_string(ulaw)
    return f'{{"event":"media","streamSid":"{stream_sid}","media":{{"payload":"{payload}"}}}}'


def mark_message(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})


def is_valid_sid(sid: str, prefix: str) -> bool:
    """Twilio SIDs are a two-letter prefix and 32 hex digits."""
    return (
        len(sid) == 34
        and sid.startswith(prefix)
        and all(c in "0123456789abcdefABCDEF" for c in sid[2:])
    )


# --- the caller's side: what Twilio sends, and parsing the bridge's replies ---------------------


@dataclass(frozen=True, slots=True)
class OutboundMedia:
    stream_sid: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboundMark:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Clear:
    stream_sid: str


BridgeMessage = OutboundMedia | OutboundMark | Clear


def parse_bridge_message(data: str | bytes) -> BridgeMessage:
    """What Twilio accepts from a bridge: ``media``, ``mark`` and ``clear`` only."""
    message = _load(data)
    event = message.get("event")
    stream_sid = _str(message, "streamSid")
    if event == "media":
        return OutboundMedia(stream_sid, _b64(_str(_obj(message, "media"), "payload"), "payload"))
    if event == "mark":
        return OutboundMark(stream_sid, _str(_obj(message, "mark"), "name"))
    if event == "clear":
        return Clear(stream_sid)
    raise ProtocolError(f"Twilio rejects outbound event {event!r} (31951)")


def connected_event() -> str:
    return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start_event(
    *,
    stream_sid: str,
    call_sid: str,
    account_sid: str,
    custom_parameters: dict[str, str],
    sequence_number: int = 1,
) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": str(sequence_number),
            "start": {
                "accountSid": account_sid,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": custom_parameters,
            },
            "streamSid": stream_sid,
        }
    )


def media_event(
    *, stream_sid: str, sequence_number: int, chunk: int, timestamp_ms: int, ulaw: bytes
) -> str:
    payload = pybase64.b64encode_as_string(ulaw)
    return (
        f'{{"event":"media","sequenceNumber":"{sequence_number}","media":{{"track":"inbound",'
        f'"chunk":"{chunk}","timestamp":"{timestamp_ms}","payload":"{payload}"}},'
        f'"streamSid":"{stream_sid}"}}'
    )


def mark_event(*, stream_sid: str, sequence_number: int, name: str) -> str:
    return json.dumps(
        {
            "event": "mark",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "mark": {"name": name},
        }
    )


def dtmf_event(*, stream_sid: str, sequence_number: int, digit: str) -> str:
    return json.dumps(
        {
            "event": "dtmf",
            "streamSid": stream_sid,
            "sequenceNumber": str(sequence_number),
            "dtmf": {"track": "inbound_track", "digit": digit},
        }
    )


def stop_event(*, stream_sid: str, sequence_number: int, call_sid: str, account_sid: str) -> str:
    return json.dumps(
        {
            "event": "stop",
            "sequenceNumber": str(sequence_number),
            "stop": {"accountSid": account_sid, "callSid": call_sid},
            "streamSid": stream_sid,
        }
    )
