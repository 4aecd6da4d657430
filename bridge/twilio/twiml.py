"""TwiML documents, generated with the twilio library from the ``voice.toml`` settings.

The defaults ship inside the package (``twiml_defaults/voice.toml``), so an
installed wheel answers calls as a checkout does. An operator's ``voice.toml``
(``TWIML_DIR``, else ``./twiml`` when it has one) is read over them and needs
only the keys it changes.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from twilio.twiml.voice_response import Connect, VoiceResponse

from ..config import ConfigError

LOCAL_TWIML_DIR = Path("twiml")  # the working directory's, as .env is
MAX_PARAMETER_CHARS = 499  # Twilio: name + value under 500 characters
KEYS: dict[str, Any] = {
    "say_voice": str,
    "connect": {"say_before"},
    "apology": {"text"},
    "busy": {"reject", "text"},
    "goodbye": {"instruction"},
}


def packaged_defaults() -> dict[str, Any]:
    text = resources.files("bridge.twilio").joinpath("twiml_defaults/voice.toml").read_text("utf-8")
    return tomllib.loads(text)


def override_path(directory: str | Path | None) -> Path | None:
    """The operator's voice.toml: TWIML_DIR's, else ./twiml's when there is one."""
    if directory:
        return Path(directory) / "voice.toml"
    local = LOCAL_TWIML_DIR / "voice.toml"
    return local if local.is_file() else None


def _unknown_keys(data: dict[str, Any]) -> list[str]:
    unknown = []
    for key, value in data.items():
        known = KEYS.get(key)
        if known is None:
            unknown.append(key)
        elif isinstance(known, set) and isinstance(value, dict):
            unknown += [f"{key}.{sub}" for sub in value if sub not in known]
    return unknown


def _merged(defaults: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True, slots=True)
class TwimlSettings:
    say_voice: str
    say_before: str
    apology: str
    busy_reject: str  # "busy" | "rejected" | "" (speak busy_text instead)
    busy_text: str
    goodbye_instruction: str
    source: str = "the package's voice.toml"  # which file, for the start-up summary

    @classmethod
    def load(cls, directory: str | Path | None = None) -> TwimlSettings:
        """The packaged defaults, with the operator's ``voice.toml`` over them; a missing or
        bad file is a start-up error naming TWIML_DIR."""
        path = override_path(directory)
        data = packaged_defaults()
        if path is None:
            return cls._from(data, "the package's voice.toml")
        try:
            override = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError("TWIML_DIR", f"cannot read {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError("TWIML_DIR", f"{path} is not valid TOML: {exc}") from None
        if unknown := _unknown_keys(override):
            raise ConfigError("TWIML_DIR", f"{path}: unknown key {', '.join(unknown)}")
        return cls._from(_merged(data, override), str(path))

    @classmethod
    def _from(cls, data: dict[str, Any], path: str) -> TwimlSettings:
        try:
            busy = data.get("busy", {})
            settings = cls(
                say_voice=str(data.get("say_voice", "")),
                say_before=str(data.get("connect", {}).get("say_before", "")).strip(),
                apology=str(data["apology"]["text"]).strip(),
                busy_reject=str(busy.get("reject", "busy")).strip(),
                busy_text=str(busy.get("text", "")).strip(),
                goodbye_instruction=str(data["goodbye"]["instruction"]).strip(),
                source=path,
            )
        except (KeyError, TypeError, AttributeError):
            raise ConfigError("TWIML_DIR", f"{path}: a table or key has the wrong type") from None
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
    *,
    action_url: str,
    status_callback: str | None = None,
    say_before: bool = True,
    consent: str = "",
) -> str:
    """Connect the call to ``/voice-stream``. When the stream ends while the call goes on,
    Twilio asks ``action_url`` what next (``/api/stream-ended``): another stream, the
    apology, or a hang-up; nothing after ``<Connect>`` is ever reached.

    The stream's status callback is where Twilio reports a stream that never
    reached us (TLS or handshake failures), so it goes to the log route.
    ``say_before``: the first stream only (a call that moves hears it once), with the
    persona's ``consent`` line (``This call is recorded``) after voice.toml's.
    """
    response = VoiceResponse()
    if settings.say_before and say_before:
        _say(response, settings.say_before, settings.say_voice)
    if consent and say_before:
        _say(response, consent, settings.say_voice)
    connect = Connect(action=action_url, method="POST")
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
    return str(response)


def apology_twiml(settings: TwimlSettings) -> str:
    """The assistant could not take (or keep) the call: say so, then hang up."""
    response = VoiceResponse()
    _say(response, settings.apology, settings.say_voice)
    response.hangup()
    return str(response)


def hangup_twiml() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


def wait_twiml(again_url: str, seconds: int = 1) -> str:
    """The call's server has not yet said how its stream ended: a moment of silence,
    then Twilio asks ``again_url`` again (never an error, which would end the call)."""
    response = VoiceResponse()
    response.pause(length=seconds)
    response.redirect(again_url, method="POST")
    return str(response)
