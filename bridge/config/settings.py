"""Settings from the environment and an optional ``.env`` file, checked once at start-up.

Every setting is one row of ``table.TABLE``. Loading reads
every row and reports every problem at once, one line each naming the
variable, so a bad deployment fails before the first call instead of during
it, and is fixed in one pass rather than one restart per typo.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from dotenv import dotenv_values

from .errors import ConfigError, ConfigErrors, single_errors
from .secret_policy import SECRET_SETTINGS, weak_secrets
from .table import BUILTIN_TOOLS, DEFAULT_SYSTEM_PROMPT, TABLE


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
    state_url: str | None = None  # None: the state stays in this process
    instance_name: str | None = None
    max_call_moves: int = 5
    twiml_dir: str | None = None
    greeting: str = ""
    prewarm: bool = True
    prewarm_ttl: float = 8.0
    builtin_tools: frozenset[str] = BUILTIN_TOOLS
    transfer_numbers: tuple[str, ...] = ()
    tools_file: str | None = None
    tool_timeout: float = 8.0
    personas_file: str | None = None
    log_transcripts: bool = False  # caller speech is personal data: off the log unless asked
    dev_softphone: bool = False  # GET /softphone: talk to the assistant from a browser
    vad: dict[str, Any] | None = None  # realtimeInputConfig.automaticActivityDetection
    twilio_phone_number: str | None = None
    ngrok_authtoken: str | None = None
    log_probes: bool = False
    call_setup_url: str | None = None
    call_setup_timeout: float = 3.0
    call_report_url: str | None = None
    call_report_retry_for: float = 3600.0
    webhook_secret: str | None = None
    record_calls: bool = False
    outbound_allowlist: tuple[str, ...] = ()

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
    def webhook_url(self) -> str:
        """Where the number's voice webhook must point."""
        return f"{self.public_url}/api/inbound-call"

    def stream_ended_url(self, stream: int, waited: int = 0) -> str:
        """``<Connect action>``: Twilio asks here what next once the stream ``stream`` of a
        call has ended (the number is signed with the URL); ``waited``: how often it was
        asked to ask again."""
        url = f"{self.public_url}/api/stream-ended?stream={stream}"
        return f"{url}&waited={waited}" if waited else url

    @property
    def status_callback_url(self) -> str:
        """Twilio's status callbacks (call and stream) land on the log-only route."""
        return f"{self.public_url}/api/call-status"

    def outbound_call_url(self, order: str) -> str:
        """Where Twilio fetches an outbound call's TwiML once it is answered; ``order``
        names what was asked for, before Twilio gave the call its CallSid."""
        return f"{self.public_url}/api/outbound-call?order={order}"

    def amd_status_url(self, order: str) -> str:
        """Twilio's answering-machine verdict on an outbound call."""
        return f"{self.public_url}/api/amd-status?order={order}"

    def outbound_status_url(self, order: str) -> str:
        """An outbound call's status callbacks: the log route, naming its order."""
        return f"{self.public_url}/api/call-status?order={order}"

    @property
    def recording_status_url(self) -> str:
        """Twilio's word that a call's recording is ready (its URL and duration)."""
        return f"{self.public_url}/api/recording-status"

    def _state_url_passwords(self) -> list[str]:
        """STATE_URL's password as written (percent-encoded) and as Redis is sent it."""
        password = urlsplit(self.state_url).password if self.state_url else None
        return [password, unquote(password)] if password else []

    def secrets(self) -> list[str]:
        """Values that must never reach a log line, an error or a metric."""
        values = [
            self.twilio_auth_token,
            self.stream_token_secret,
            self.gemini_api_key,
            self.operator_token,
            self.ngrok_authtoken,
            self.webhook_secret,
            self.state_url,
            *self._state_url_passwords(),
        ]
        return [v for v in values if v]


def read_environment(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> dict[str, str]:
    """The environment over ``env_file`` (read as python-dotenv reads it: ``export`` lines,
    quotes and inline ``# comments`` as in the shells and tools users already have)."""
    env = dict(os.environ if environ is None else environ)
    if env_file is None or not Path(env_file).is_file():
        return env
    from_file = {k: val for k, val in dotenv_values(env_file).items() if val is not None}
    return {**from_file, **env}


def _vad(values: Mapping[str, Any]) -> dict[str, Any]:
    """Gemini's automatic activity detection, tuned for 8 kHz phone audio by default."""
    return {
        "startOfSpeechSensitivity": f"START_SENSITIVITY_{values['VAD_START_SENSITIVITY']}",
        "endOfSpeechSensitivity": f"END_SENSITIVITY_{values['VAD_END_SENSITIVITY']}",
        "prefixPaddingMs": values["VAD_PREFIX_PADDING_MS"],
        "silenceDurationMs": values["VAD_SILENCE_DURATION_MS"],
    }


def _read_table(env: Mapping[str, str], errors: list[ConfigError]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for setting in TABLE:
        raw = env.get(setting.name)
        text = raw.strip() if isinstance(raw, str) else None
        if text is None or (not text and setting.empty_is_default):
            if setting.required:
                errors.append(ConfigError(setting.name, f"not set ({setting.required})"))
            values[setting.name] = setting.default
            continue
        if not text:
            values[setting.name] = type(setting.default)() if setting.default else ""
            continue
        try:
            values[setting.name] = setting.parse(text)
        except ValueError as exc:
            errors.append(ConfigError(setting.name, str(exc)))
            values[setting.name] = setting.default
        except ConfigError as exc:  # a file's contents: every problem in it, named
            errors.extend(single_errors(exc))
            values[setting.name] = setting.default
    return values


def _cross_checks(values: dict[str, Any], errors: list[ConfigError]) -> None:
    if values["GEMINI_API_KEY"] is None and values["GOOGLE_CLOUD_PROJECT"] is None:
        errors.append(
            ConfigError("GEMINI_API_KEY", "not set (or set GOOGLE_CLOUD_PROJECT to use Vertex AI)")
        )
    if values["SYSTEM_PROMPT"] is not None and values["SYSTEM_PROMPT_FILE"] is not None:
        errors.append(
            ConfigError("SYSTEM_PROMPT_FILE", "set either SYSTEM_PROMPT or SYSTEM_PROMPT_FILE")
        )
    if values["RECORD_CALLS"] and not values["TWILIO_ACCOUNT_SID"]:
        errors.append(
            ConfigError("RECORD_CALLS", "needs TWILIO_ACCOUNT_SID (recordings are asked of Twilio)")
        )
    for hook in ("CALL_REPORT_URL", "CALL_SETUP_URL"):
        if values[hook] is not None and not values["WEBHOOK_SECRET"]:
            errors.append(
                ConfigError("WEBHOOK_SECRET", f"not set: {hook} requests are signed with it")
            )
    secrets = {name: values[name] for name in SECRET_SETTINGS}
    errors.extend(ConfigError(name, problem) for name, problem in weak_secrets(secrets))


# Checks of what a setting's file holds (tools, personas, TwiML): they belong to the
# packages that read those files, so they are handed in (runtime.loading), not imported.
FileCheck = Callable[[Settings], None]


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: str | Path | None = ".env",
    file_checks: Iterable[FileCheck] = (),
) -> Settings:
    """Read and check every setting, then what their files hold; raises ConfigErrors listing
    every bad one (the files are read once the settings themselves are good)."""
    env = read_environment(environ, env_file)
    errors: list[ConfigError] = []
    values = _read_table(env, errors)
    _cross_checks(values, errors)
    if errors:
        raise ConfigErrors(errors)
    fields = {s.field: values[s.name] for s in TABLE if s.field is not None}
    fields["system_prompt"] = (
        values["SYSTEM_PROMPT_FILE"] or values["SYSTEM_PROMPT"] or DEFAULT_SYSTEM_PROMPT
    )
    fields["stream_token_secret"] = values["STREAM_TOKEN_SECRET"] or values["TWILIO_AUTH_TOKEN"]
    fields["vad"] = _vad(values)
    settings = Settings(**fields)
    for check in file_checks:
        try:
            check(settings)
        except ConfigError as exc:
            errors.extend(single_errors(exc))
    if errors:
        raise ConfigErrors(errors)
    return settings
