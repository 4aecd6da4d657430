"""Settings from the environment and an optional ``.env`` file, checked once at start-up.

Every problem is reported as one line that names the variable, so a bad
deployment fails before the first call instead of during it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.config import Config

from .secret_policy import SECRET_SETTINGS, weak_secrets

DEFAULT_MODEL = "gemini-3.8-live"
DEFAULT_VOICE = "Kore"
DEFAULT_GREETING = (
    "A caller has just been connected. Greet them warmly in one short sentence and ask how "
    "you can help."
)
BUILTIN_TOOLS = frozenset({"end_call", "transfer_call"})
SENSITIVITIES = ("HIGH", "LOW")
DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly, concise voice assistant answering a phone call. "
    "Speak naturally, in short sentences, and let the caller interrupt you."
)

# Shut down by Google on 2025-12-09: a session would close with 1008 on every call.
RETIRED_MODELS = frozenset({"gemini-2.0-flash-live-001", "gemini-live-2.5-flash-preview"})

# Native-audio and 3.x voices (case-sensitive). An unknown voice makes setup fail
# silently on Google's side, so it is refused here instead.
VOICES = frozenset(
    "Zephyr Puck Charon Kore Fenrir Leda Orus Aoede Callirrhoe Autonoe Enceladus Iapetus "
    "Umbriel Algieba Despina Erinome Algenib Rasalgethi Laomedeia Achernar Alnilam Schedar "
    "Gacrux Pulcherrima Achird Zubenelgenubi Vindemiatrix Sadachbia Sadaltager Sulafat".split()
)


class ConfigError(Exception):
    """A missing or invalid setting; ``str()`` is one line naming the variable."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


@dataclass(frozen=True, slots=True)
class Settings:
    public_url: str
    twilio_auth_token: str
    twilio_account_sid: str | None
    stream_token_secret: str
    gemini_api_key: str | None
    google_cloud_project: str | None
    google_cloud_location: str
    google_application_credentials: str | None
    gemini_model: str
    gemini_voice: str
    system_prompt: str
    gemini_live_url: str | None
    gemini_setup_timeout: float
    gemini_reconnect_budget: float
    gemini_stall_timeout: float
    operator_token: str | None
    log_level: str
    log_format: str = "json"
    max_concurrent_calls: int | None = None
    drain_timeout: float = 300.0
    twiml_dir: str | None = None
    greeting: str = ""
    prewarm: bool = True
    prewarm_ttl: float = 8.0
    builtin_tools: frozenset[str] = frozenset({"end_call", "transfer_call"})
    transfer_numbers: tuple[str, ...] = ()
    tools_file: str | None = None
    tool_timeout: float = 8.0
    personas_file: str | None = None
    log_transcripts: bool = False  # caller speech is personal data: off the log unless asked
    dev_softphone: bool = False  # GET /softphone: talk to the assistant from a browser
    vad: dict[str, Any] | None = None  # realtimeInputConfig.automaticActivityDetection

    @property
    def uses_vertex(self) -> bool:
        return self.gemini_api_key is None

    @property
    def public_host(self) -> str:
        return urlsplit(self.public_url).netloc

    @property
    def stream_url(self) -> str:
        """Twilio only dials ``wss://``; a plain-http PUBLIC_URL (local tests) gets ``ws://``."""
        scheme = "wss" if self.public_url.startswith("https://") else "ws"
        return f"{scheme}://{self.public_host}/voice-stream"

    @property
    def status_callback_url(self) -> str:
        """Twilio's status callbacks (call and stream) land on the log-only route."""
        return f"{self.public_url}/api/call-status"

    def secrets(self) -> list[str]:
        """Values that must never reach a log line, an error or a metric."""
        values = [
            self.twilio_auth_token,
            self.stream_token_secret,
            self.gemini_api_key,
            self.operator_token,
        ]
        return [v for v in values if v]


def _optional(config: Config, name: str) -> str | None:
    value = config(name, default="")
    value = value.strip() if isinstance(value, str) else value
    return value or None


def _check_url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise ConfigError(name, f"must be a {' or '.join(s + '://' for s in schemes)} URL")
    if parts.query or parts.fragment:
        raise ConfigError(name, "must not have a query string or fragment")
    return value


def _seconds(config: Config, name: str, default: float, low: float, high: float) -> float:
    text = _optional(config, name)
    try:
        value = float(text) if text is not None else default
    except ValueError:
        raise ConfigError(name, "must be a number of seconds") from None
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low:g} and {high:g} seconds")
    return value


def _log_format(config: Config) -> str:
    fmt = (_optional(config, "LOG_FORMAT") or "json").lower()
    if fmt not in ("json", "text"):
        raise ConfigError("LOG_FORMAT", "must be json or text")
    return fmt


def _existing_file(config: Config, name: str) -> str | None:
    path = _optional(config, name)
    if path is not None and not Path(path).is_file():
        raise ConfigError(name, f"file not found: {path}")
    return path


def _flag(config: Config, name: str, default: bool) -> bool:
    text = _optional(config, name)
    if text is None:
        return default
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, "must be true or false")


def _phone_number(name: str, number: str) -> str:
    digits = number.replace(" ", "").replace("-", "")
    if not (digits.startswith("+") and digits[1:].isdigit() and 8 <= len(digits) <= 16):
        raise ConfigError(name, f"{number!r} is not an E.164 number such as +14155550100")
    return digits


def _vad(config: Config) -> dict[str, Any]:
    """Gemini's automatic activity detection, tuned for 8 kHz phone audio by default."""
    start = (_optional(config, "VAD_START_SENSITIVITY") or "LOW").upper()
    end = (_optional(config, "VAD_END_SENSITIVITY") or "LOW").upper()
    for name, value in (("VAD_START_SENSITIVITY", start), ("VAD_END_SENSITIVITY", end)):
        if value not in SENSITIVITIES:
            raise ConfigError(name, "must be HIGH or LOW")
    prefix = _seconds(config, "VAD_PREFIX_PADDING_MS", 40, 0, 2000)
    silence = _seconds(config, "VAD_SILENCE_DURATION_MS", 600, 100, 10000)
    return {
        "startOfSpeechSensitivity": f"START_SENSITIVITY_{start}",
        "endOfSpeechSensitivity": f"END_SENSITIVITY_{end}",
        "prefixPaddingMs": int(prefix),
        "silenceDurationMs": int(silence),
    }


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> Settings:
    """Read and check every setting; raises ConfigError on the first bad one."""
    env = dict(os.environ if environ is None else environ)
    if env_file is not None and not Path(env_file).is_file():
        env_file = None
    config = Config(env_file, environ=env)

    public_url = _optional(config, "PUBLIC_URL")
    if public_url is None:
        raise ConfigError("PUBLIC_URL", "not set (the https URL Twilio uses to reach this server)")
    public_url = _check_url("PUBLIC_URL", public_url.rstrip("/"), ("https", "http"))
    if urlsplit(public_url).path not in ("", "/"):
        raise ConfigError("PUBLIC_URL", "must be scheme and host only, with no path")

    auth_token = _optional(config, "TWILIO_AUTH_TOKEN")
    if auth_token is None:
        raise ConfigError("TWILIO_AUTH_TOKEN", "not set (needed to check Twilio's signatures)")
    account_sid = _optional(config, "TWILIO_ACCOUNT_SID")
    if account_sid is not None and not (
        len(account_sid) == 34 and account_sid.startswith("AC") and account_sid[2:].isalnum()
    ):
        raise ConfigError("TWILIO_ACCOUNT_SID", "must be 'AC' followed by 32 hex digits")
    stream_secret = _optional(config, "STREAM_TOKEN_SECRET") or auth_token

    api_key = _optional(config, "GEMINI_API_KEY")
    project = _optional(config, "GOOGLE_CLOUD_PROJECT")
    location = _optional(config, "GOOGLE_CLOUD_LOCATION") or "us-central1"
    credentials = _optional(config, "GOOGLE_APPLICATION_CREDENTIALS")
    if api_key is None and project is None:
        raise ConfigError(
            "GEMINI_API_KEY", "not set (or set GOOGLE_CLOUD_PROJECT to use Vertex AI)"
        )
    if credentials is not None and not Path(credentials).is_file():
        raise ConfigError("GOOGLE_APPLICATION_CREDENTIALS", "file not found")
    if not location.replace("-", "").isalnum():
        raise ConfigError(
            "GOOGLE_CLOUD_LOCATION", "must be a region such as us-central1, or global"
        )

    model = _optional(config, "GEMINI_MODEL") or DEFAULT_MODEL
    model = model.removeprefix("models/")
    if model in RETIRED_MODELS:
        raise ConfigError("GEMINI_MODEL", f"{model} was shut down by Google; use {DEFAULT_MODEL}")
    if not all(c.isalnum() or c in "-._/" for c in model):
        raise ConfigError("GEMINI_MODEL", "is not a model id")
    voice = _optional(config, "GEMINI_VOICE") or DEFAULT_VOICE
    if voice not in VOICES:
        raise ConfigError("GEMINI_VOICE", f"unknown voice {voice!r} (names are case-sensitive)")

    prompt = _optional(config, "SYSTEM_PROMPT")
    prompt_file = _optional(config, "SYSTEM_PROMPT_FILE")
    if prompt is not None and prompt_file is not None:
        raise ConfigError("SYSTEM_PROMPT_FILE", "set either SYSTEM_PROMPT or SYSTEM_PROMPT_FILE")
    if prompt_file is not None:
        try:
            prompt = Path(prompt_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                "SYSTEM_PROMPT_FILE", f"cannot read: {exc.__class__.__name__}"
            ) from None
        if not prompt:
            raise ConfigError("SYSTEM_PROMPT_FILE", "file is empty")

    live_url = _optional(config, "GEMINI_LIVE_URL")
    if live_url is not None:
        _check_url("GEMINI_LIVE_URL", live_url, ("wss", "ws"))

    setup_timeout = _seconds(config, "GEMINI_SETUP_TIMEOUT", 2.5, 0.5, 60)
    reconnect_budget = _seconds(config, "GEMINI_RECONNECT_BUDGET", 5.0, 0.5, 60)
    stall_timeout = _seconds(config, "GEMINI_STALL_TIMEOUT", 6.0, 1.0, 120)

    max_calls_text = _optional(config, "MAX_CONCURRENT_CALLS")
    max_calls = None
    if max_calls_text is not None:
        if not (max_calls_text.isdigit() and int(max_calls_text) >= 1):
            raise ConfigError("MAX_CONCURRENT_CALLS", "must be a whole number of calls, 1 or more")
        max_calls = int(max_calls_text)
    drain_timeout = _seconds(config, "DRAIN_TIMEOUT", 300.0, 0, 24 * 3600)

    builtin_text = config("BUILTIN_TOOLS", default="end_call,transfer_call")
    builtin = frozenset(t.strip() for t in builtin_text.split(",") if t.strip())
    if not builtin <= BUILTIN_TOOLS:
        unknown = ", ".join(sorted(builtin - BUILTIN_TOOLS))
        raise ConfigError(
            "BUILTIN_TOOLS", f"unknown tool {unknown} (known: end_call, transfer_call)"
        )
    transfer = tuple(
        _phone_number("TRANSFER_NUMBERS", n)
        for n in (_optional(config, "TRANSFER_NUMBERS") or "").split(",")
        if n.strip()
    )

    log_level = (_optional(config, "LOG_LEVEL") or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("LOG_LEVEL", "must be DEBUG, INFO, WARNING or ERROR")

    for name, problem in weak_secrets({name: _optional(config, name) for name in SECRET_SETTINGS}):
        raise ConfigError(name, problem)

    return Settings(
        public_url=public_url,
        twilio_auth_token=auth_token,
        twilio_account_sid=account_sid,
        stream_token_secret=stream_secret,
        gemini_api_key=api_key,
        google_cloud_project=project,
        google_cloud_location=location,
        google_application_credentials=credentials,
        gemini_model=model,
        gemini_voice=voice,
        system_prompt=prompt or DEFAULT_SYSTEM_PROMPT,
        gemini_live_url=live_url,
        gemini_setup_timeout=setup_timeout,
        gemini_reconnect_budget=reconnect_budget,
        gemini_stall_timeout=stall_timeout,
        operator_token=_optional(config, "OPERATOR_TOKEN"),
        log_level=log_level,
        log_format=_log_format(config),
        twiml_dir=_optional(config, "TWIML_DIR"),
        max_concurrent_calls=max_calls,
        drain_timeout=drain_timeout,
        greeting=(
            DEFAULT_GREETING
            if config("GREETING", default=None) is None
            else config("GREETING").strip()
        ),
        prewarm=_flag(config, "GEMINI_PREWARM", True),
        prewarm_ttl=_seconds(config, "GEMINI_PREWARM_TTL", 8.0, 1, 60),
        builtin_tools=builtin,
        transfer_numbers=transfer,
        tools_file=_existing_file(config, "TOOLS_FILE"),
        tool_timeout=_seconds(config, "TOOL_TIMEOUT", 8.0, 0.5, 120),
        personas_file=_existing_file(config, "PERSONAS_FILE"),
        log_transcripts=_flag(config, "LOG_TRANSCRIPTS", False),
        dev_softphone=_flag(config, "DEV_SOFTPHONE", False),
        vad=_vad(config),
    )
