"""TwiML documents, generated with the twilio library from the operator's ``twiml/`` settings."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from twilio.twiml.voice_response import Connect, VoiceResponse

from .config import ConfigError

REPO_TWIML_DIR = Path(__file__).resolve().parent.parent / "twiml"
MAX_PARAMETER_CHARS = 499  # Twilio: name + value under 500 characters


@dataclass(frozen=True, slots=True)
class TwimlSettings:
    say_voice: str
    say_before: str
    apology: str
    busy_reject: str  # "busy" | "rejected" | "" (speak busy_text instead)
    busy_text: str
    goodbye_instruction: str

    @classmethod
    def load(cls, directory: str | Path | None = None) -> TwimlSettings:
        """Read ``voice.toml``; a missing or bad file is a start-up error naming TWIML_DIR."""
        path = Path(directory or REPO_TWIML_DIR) / "voice.toml"
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            busy = data.get("busy", {})
            settings = cls(
                say_voice=str(data.get("say_voice", "")),
                say_before=str(data.get("connect", {}).get("say_before", "")).strip(),
                apology=str(data["apology"]["text"]).strip(),
                busy_reject=str(busy.get("reject", "busy")).strip(),
                busy_text=str(busy.get("text", "")).strip(),
                goodbye_instruction=str(data["goodbye"]["instruction"]).strip(),
            )
        except OSError:
            raise ConfigError("TWIML_DIR", f"cannot read {path}") from None
        except (tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                "TWIML_DIR", f"{path} is invalid ({exc.__class__.__name__})"
            ) from None
        if settings.busy_reject not in ("busy", "rejected", ""):
            raise ConfigError("TWIML_DIR", f"{path}: [busy] reject must be busy, rejected or empty")
        if not settings.busy_reject and not settings.busy_text:
            raise ConfigError("TWIML_DIR", f"{path}: [busy] needs reject or text")
        return settings


def _say(response: VoiceResponse, text: str, voice: str) -> None:
    if voice:
        response.say(text, voice=voice)
    else:
        response.say(text)


def busy_twiml(settings: TwimlSettings) -> str:
    """Turn a call away: a busy signal (not answered, not billed) or a short message."""
    response = VoiceResponse()
    if settings.busy_reject:
        response.reject(reason=settings.busy_reject)
    else:
        _say(response, settings.busy_text, settings.say_voice)
        response.hangup()
    return str(response)


def connect_stream_twiml(
    settings: TwimlSettings,
    stream_url: str,
    parameters: dict[str, str],
    status_callback: str | None = None,
) -> str:
    """Answer a call: connect it to ``/voice-stream``; the apology plays if the stream ends.

    The stream's status callback is where Twilio reports a stream that never
    reached us (TLS or handshake failures), so it goes to the log route.
    """
    response = VoiceResponse()
    if settings.say_before:
        _say(response, settings.say_before, settings.say_voice)
    connect = Connect()
    if status_callback:
        stream = connect.stream(
            url=stream_url, status_callback=status_callback, status_callback_method="POST"
        )
    else:
        stream = connect.stream(url=stream_url)
    for name, value in parameters.items():
        if len(name) + len(value) > MAX_PARAMETER_CHARS:
            raise ValueError(f"stream parameter {name!r} is too long for Twilio")
        stream.parameter(name=name, value=value)
    response.append(connect)
    _say(response, settings.apology, settings.say_voice)
    response.hangup()
    return str(response)
