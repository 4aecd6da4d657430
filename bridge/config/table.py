"""Every setting, one row each: its variable, how its text is read (units and bounds), its
default and one line of help. Loading (``settings.py``), ``.env.example`` and the README's
table (``docs.py``) all come from these rows, so they cannot drift apart.

This is a table, and it is long because there are many settings: one row each, grouped
by section in the order ``.env.example`` shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import values as v

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
# What .env.example holds for PUBLIC_URL: a server started with it could never be called.
PLACEHOLDER_PUBLIC_URL = "https://your-subdomain.ngrok.app"

# Shut down by Google on 2025-12-09: a session would close with 1008 on every call.
RETIRED_MODELS = frozenset({"gemini-2.0-flash-live-001", "gemini-live-2.5-flash-preview"})

# Native-audio and 3.x voices (case-sensitive). An unknown voice makes setup fail
# silently on Google's side, so it is refused here instead.
VOICES = frozenset(
    "Zephyr Puck Charon Kore Fenrir Leda Orus Aoede Callirrhoe Autonoe Enceladus Iapetus "
    "Umbriel Algieba Despina Erinome Algenib Rasalgethi Laomedeia Achernar Alnilam Schedar "
    "Gacrux Pulcherrima Achird Zubenelgenubi Vindemiatrix Sadachbia Sadaltager Sulafat".split()
)


# --- how some settings are read --------------------------------------------------------------


def _public_url(value: str) -> str:
    url = v.Url(("https", "http"))(value.rstrip("/"))
    parts = urlsplit(url)
    if parts.path not in ("", "/"):
        raise ValueError("must be scheme and host only, with no path")
    if url == PLACEHOLDER_PUBLIC_URL:
        raise ValueError(
            "still the placeholder from .env.example: set the https URL Twilio reaches this "
            "server at (your ngrok or load-balancer URL)"
        )
    if parts.scheme == "http" and not v.is_loopback_host(parts.hostname or ""):
        raise ValueError(
            "must be https:// (Twilio only opens wss:// streams); http:// is for loopback "
            "hosts only, for local tests"
        )
    return url


def _state_url(value: str) -> str:
    # Never quoted back: the URL may carry Redis's password.
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError("must be a redis:// or rediss:// URL (redis://host:6379/0)")
    try:
        parts.port  # noqa: B018 (it raises on a port that is not a number)
    except ValueError:
        raise ValueError("has a port that is not a number") from None
    return value


def _hook_url(value: str) -> str:
    """An http(s) URL of the operator's own system; requests to it are signed instead of
    carrying credentials (urllib would not send a URL's user:password@ anyway)."""
    if "@" in urlsplit(value).netloc:  # checked first: never quote a password back
        raise ValueError(
            "must not carry user:password@ (requests are signed with WEBHOOK_SECRET instead)"
        )
    return str(v.Url(("https", "http"))(value))


def _instance_name(value: str) -> str:
    if not (len(value) <= 40 and all(c.isascii() and (c.isalnum() or c == "-") for c in value)):
        raise ValueError("must be up to 40 letters, digits and hyphens")
    return value


def _model(value: str) -> str:
    model = value.removeprefix("models/")
    if model.rsplit("/", 1)[-1] in RETIRED_MODELS:  # also as a Vertex path
        raise ValueError(f"{model} was shut down by Google; use {DEFAULT_MODEL}")
    if not all(c.isalnum() or c in "-._/" for c in model):
        raise ValueError(f"{model!r} is not a model id")
    return model


def _voice(value: str) -> str:
    if value not in VOICES:
        raise ValueError(f"unknown voice {value!r} (names are case-sensitive)")
    return value


def _prompt_file(value: str) -> str:
    """The prompt itself, read from the file."""
    try:
        prompt = Path(value).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {value}: {exc.strerror or exc.__class__.__name__}") from None
    except UnicodeDecodeError:
        raise ValueError(f"cannot read {value}: not UTF-8 text") from None
    if not prompt:
        raise ValueError(f"{value} is empty")
    return prompt


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One environment variable: how it is read and what the docs say of it."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    section: str
    attr: str | None = ""  # the Settings field ("" = the name in lower case; None = none)
    required: str = ""  # when set, unset is an error and this says what it is for
    shown: str = ""  # the default as the README shows it, when not the value itself
    example: str | None = None  # what .env.example writes (None: the default)
    commented: bool = False  # .env.example shows it commented out (unset differs from empty)
    empty_is_default: bool = True  # False: an empty value means "none", not the default

    @property
    def field(self) -> str | None:
        return self.name.lower() if self.attr == "" else self.attr

    def default_text(self) -> str:
        """The default as written in a .env file."""
        value = self.default
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, frozenset):
            return ",".join(sorted(value))
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


TWILIO = "Twilio"
GEMINI = "Gemini"
ASSISTANT = "The assistant"
CALLS = "Outbound calls, reports, recordings"
OPERATIONS = "Operations"
DEVELOPMENT = "Development"

TABLE: tuple[Setting, ...] = (
    Setting(
        "PUBLIC_URL",
        _public_url,
        None,
        "The public https URL Twilio reaches this server at (scheme and host only): webhook "
        "signatures are checked against it and the stream URL is wss://<its host>/voice-stream. "
        "http:// only for loopback hosts (local tests).",
        TWILIO,
        required="the https URL Twilio uses to reach this server",
        example=PLACEHOLDER_PUBLIC_URL,
    ),
    Setting(
        "TWILIO_AUTH_TOKEN",
        v.text,
        None,
        "Your Twilio account's auth token: it checks the X-Twilio-Signature of every webhook.",
        TWILIO,
        required="needed to check Twilio's signatures",
    ),
    Setting(
        "TWILIO_ACCOUNT_SID",
        v.account_sid,
        None,
        "Your account SID: webhooks for other accounts get 403, and the built-in tools "
        "(Twilio's REST API) and `check` need it.",
        TWILIO,
    ),
    Setting(
        "STREAM_TOKEN_SECRET",
        v.text,
        None,
        "Key of the single-use stream tokens handed to Twilio in <Parameter>; set it to rotate "
        "them independently.",
        TWILIO,
        shown="the auth token",
    ),
    Setting(
        "TWILIO_PHONE_NUMBER",
        v.phone_number,
        None,
        "Your Twilio number (E.164): `check` verifies that its voice webhook points here, "
        "`dev-phone` points it at the tunnel.",
        TWILIO,
    ),
    Setting(
        "NGROK_AUTHTOKEN",
        v.text,
        None,
        "Only for `dev-phone`: your ngrok authtoken.",
        TWILIO,
    ),
    Setting(
        "GEMINI_API_KEY",
        v.text,
        None,
        "Google AI Studio key, sent in the x-goog-api-key header (never in a URL).",
        GEMINI,
    ),
    Setting(
        "GOOGLE_CLOUD_PROJECT",
        v.text,
        None,
        "Vertex AI project; used when GEMINI_API_KEY is empty.",
        GEMINI,
    ),
    Setting(
        "GOOGLE_CLOUD_LOCATION",
        v.region,
        "us-central1",
        "Vertex region of the Live endpoint (us-central1, europe-west4, ...), global, or the "
        "multi-regions us and eu (hosts as Google's SDK builds them).",
        GEMINI,
    ),
    Setting(
        "GOOGLE_APPLICATION_CREDENTIALS",
        v.existing_file,
        None,
        "Service-account JSON for Vertex; empty: Application Default Credentials (gcloud auth "
        "application-default login, GKE workload identity).",
        GEMINI,
        shown="ADC",
    ),
    Setting(
        "GEMINI_LIVE_URL",
        v.Url(("wss", "ws")),
        None,
        "A full ws:// or wss:// URL replacing Google's endpoint (the emulator, a proxy, tests); "
        "auth is sent the same way.",
        GEMINI,
        shown="Google's endpoint",
    ),
    Setting(
        "GEMINI_MODEL",
        _model,
        DEFAULT_MODEL,
        "The Live model id (on Vertex also publishers/google/models/<id> or a full "
        "projects/... path); retired ids (gemini-live-2.5-flash-preview, "
        "gemini-2.0-flash-live-001) are refused.",
        GEMINI,
    ),
    Setting(
        "GEMINI_VOICE",
        _voice,
        DEFAULT_VOICE,
        "A prebuilt voice, case-sensitive (Kore, Puck, Charon, Aoede, Zephyr, ...); unknown "
        "names are refused, because Google fails such a setup silently.",
        GEMINI,
    ),
    Setting(
        "SYSTEM_PROMPT",
        v.text,
        None,
        "The system instruction, inline (or set SYSTEM_PROMPT_FILE, not both).",
        GEMINI,
        shown="a short phone-assistant prompt",
    ),
    Setting(
        "SYSTEM_PROMPT_FILE",
        _prompt_file,
        None,
        "A UTF-8 file holding the system instruction.",
        GEMINI,
        attr=None,
    ),
    Setting(
        "GEMINI_SETUP_TIMEOUT",
        v.Seconds(0.5, 60),
        2.5,
        "Seconds from opening the Gemini socket to setupComplete (0.5-60): at call start, the "
        "longest a caller waits before the apology.",
        GEMINI,
    ),
    Setting(
        "GEMINI_RECONNECT_BUDGET",
        v.Seconds(0.5, 60),
        5.0,
        "Seconds a call may spend restoring a lost Gemini connection (resume with backoff) "
        "before it starts a fresh session with the conversation so far.",
        GEMINI,
    ),
    Setting(
        "GEMINI_STALL_TIMEOUT",
        v.Seconds(1, 120),
        6.0,
        "Seconds after the caller finished with no answer before Gemini is nudged; as long "
        "again and it is replaced.",
        GEMINI,
    ),
    Setting(
        "GEMINI_PREWARM",
        v.flag,
        True,
        "Open the Gemini session (and ask for the greeting) when the webhook arrives, while "
        "Twilio connects the stream.",
        GEMINI,
        attr="prewarm",
    ),
    Setting(
        "GEMINI_PREWARM_TTL",
        v.Seconds(1, 60),
        8.0,
        "Seconds a pre-warmed session waits for its stream before it is closed.",
        GEMINI,
        attr="prewarm_ttl",
    ),
    Setting(
        "GREETING",
        v.text,
        DEFAULT_GREETING,
        "What the model is told when a call connects, so it speaks first; set it empty for no "
        "greeting.",
        ASSISTANT,
        shown="a short greet-and-offer-help instruction",
        example="Greet the caller on behalf of ACME in one short sentence and ask how you can "
        "help.",
        commented=True,
        empty_is_default=False,
    ),
    Setting(
        "BUILTIN_TOOLS",
        v.Names(BUILTIN_TOOLS),
        BUILTIN_TOOLS,
        "Built-in tools: end_call (hang up once the goodbye has played) and transfer_call (to "
        "TRANSFER_NUMBERS); both need TWILIO_ACCOUNT_SID. Empty: none.",
        ASSISTANT,
        empty_is_default=False,
    ),
    Setting(
        "TRANSFER_NUMBERS",
        v.phone_numbers,
        (),
        "Comma-separated E.164 numbers transfer_call may dial; empty: no transfer tool.",
        ASSISTANT,
        shown="—",
    ),
    Setting(
        "TOOLS_FILE",
        v.existing_file,
        None,
        'A JSON list of HTTP tools: {"name", "description", "parameters" (JSON schema), "url", '
        '"timeout_s"?, "headers"?}; the bridge POSTs the arguments.',
        ASSISTANT,
    ),
    Setting(
        "TOOL_TIMEOUT",
        v.Seconds(0.5, 120),
        8.0,
        "Seconds a tool may run before the model gets an error payload instead.",
        ASSISTANT,
    ),
    Setting(
        "PERSONAS_FILE",
        v.existing_file,
        None,
        'A JSON map of called number to {"system_prompt", "voice", "greeting", "tools", "name", '
        '"voicemail", "consent", "record", "variables"}: one assistant per number (and per '
        "outbound caller ID).",
        ASSISTANT,
    ),
    Setting(
        "VAD_START_SENSITIVITY",
        v.Choice(SENSITIVITIES),
        "LOW",
        "How readily Gemini hears the start of speech (HIGH or LOW; LOW: line noise does not "
        "start a turn).",
        ASSISTANT,
        attr=None,
    ),
    Setting(
        "VAD_END_SENSITIVITY",
        v.Choice(SENSITIVITIES),
        "LOW",
        "How readily Gemini hears the end of speech (HIGH or LOW; LOW: a short pause does not "
        "end a turn).",
        ASSISTANT,
        attr=None,
    ),
    Setting(
        "VAD_PREFIX_PADDING_MS",
        v.Milliseconds(0, 2000),
        40,
        "Milliseconds of speech needed before a turn starts (0-2000).",
        ASSISTANT,
        attr=None,
    ),
    Setting(
        "VAD_SILENCE_DURATION_MS",
        v.Milliseconds(100, 10000),
        600,
        "Milliseconds of silence that end the caller's turn (100-10000): lower answers faster, "
        "higher cuts people off less.",
        ASSISTANT,
        attr=None,
    ),
    Setting(
        "CALL_SETUP_URL",
        _hook_url,
        None,
        "Asked (a signed JSON POST of call_sid, from, to) for an inbound call's persona and "
        "variables before it is answered, as a CRM lookup; slow or failing: the number's "
        "persona.",
        CALLS,
    ),
    Setting(
        "CALL_SETUP_TIMEOUT",
        v.Seconds(0.2, 10),
        3.0,
        "Seconds CALL_SETUP_URL has to answer (0.2-10) before the call goes on with the "
        "number's persona (Twilio waits 15 s for the whole webhook).",
        CALLS,
    ),
    Setting(
        "CALL_REPORT_URL",
        _hook_url,
        None,
        "Where every call's report (JSON: who, persona, variables, outcome, timed transcript, "
        "tool calls, latencies, recording) is POSTed once it ends, signed with WEBHOOK_SECRET.",
        CALLS,
    ),
    Setting(
        "CALL_REPORT_RETRY_FOR",
        v.Seconds(10, 7 * 24 * 3600),
        3600.0,
        "Seconds a report the receiver refuses is retried, with backoff (with STATE_URL, "
        "across restarts), before it is given up and logged.",
        CALLS,
    ),
    Setting(
        "WEBHOOK_SECRET",
        v.text,
        None,
        "Signs report and call-setup requests (X-Bridge-Signature: t=<unix time>,v1=<hex "
        'HMAC-SHA256 of "<t>.<body>">); needed with CALL_REPORT_URL or CALL_SETUP_URL.',
        CALLS,
    ),
    Setting(
        "RECORD_CALLS",
        v.flag,
        False,
        "Record every call in two channels (caller, assistant) through Twilio's REST API when "
        'its stream starts; a persona\'s "record" overrides it. The URL is in the report.',
        CALLS,
    ),
    Setting(
        "OUTBOUND_ALLOWLIST",
        v.phone_prefixes,
        (),
        "Comma-separated E.164 prefixes (+1415, +4420) POST /api/calls may dial; empty: any "
        "number.",
        CALLS,
        shown="any number",
    ),
    Setting(
        "MAX_CONCURRENT_CALLS",
        v.WholeNumber(1, "calls"),
        None,
        "Calls this instance takes at once; beyond it the webhook answers with the busy TwiML "
        "and /ready is 503. Empty: no limit.",
        OPERATIONS,
        shown="no limit",
    ),
    Setting(
        "DRAIN_TIMEOUT",
        v.Seconds(0, 24 * 3600),
        300.0,
        "On SIGTERM, seconds running calls may go on before they end with a spoken goodbye "
        "(keep Kubernetes' terminationGracePeriodSeconds above it).",
        OPERATIONS,
    ),
    Setting(
        "STATE_URL",
        _state_url,
        None,
        "Where a fleet of servers keeps what they share: redis://[:password@]host:6379/0 "
        "(rediss:// for TLS). Unset: this process alone. Set: a call moves to another server "
        "on a deploy, a crash or a lost stream (docs/scaling.md).",
        OPERATIONS,
        shown="this process",
    ),
    Setting(
        "INSTANCE_NAME",
        _instance_name,
        None,
        "This server's name in the fleet's stats and logs (letters, digits, hyphens). Empty: "
        "the host name and a random suffix.",
        OPERATIONS,
        shown="host name",
    ),
    Setting(
        "MAX_CALL_MOVES",
        v.WholeNumber(0, "moves"),
        5,
        "How often one call may move to another stream (a server's deploy or crash, a lost "
        "stream) before it ends with the apology; 0: never.",
        OPERATIONS,
    ),
    Setting(
        "OPERATOR_TOKEN",
        v.text,
        None,
        "Bearer token (or Basic password) for the stats API, /metrics and the dashboard; "
        "without it they answer loopback clients only. POST /api/calls always needs it.",
        OPERATIONS,
    ),
    Setting(
        "LOG_LEVEL",
        v.Choice(("DEBUG", "INFO", "WARNING", "ERROR")),
        "INFO",
        "DEBUG, INFO, WARNING or ERROR.",
        OPERATIONS,
    ),
    Setting(
        "LOG_FORMAT",
        v.Choice(("json", "text")),
        "json",
        "json: one object per line (ts, level, logger, message, the call's call_sid/stream_sid, "
        "event and data); text for humans.",
        OPERATIONS,
    ),
    Setting(
        "LOG_TRANSCRIPTS",
        v.flag,
        False,
        "Log each call's transcript as one record when the call ends (caller speech is "
        "personal data: off unless you want it in the log; the stats keep the last turns).",
        OPERATIONS,
    ),
    Setting(
        "LOG_PROBES",
        v.flag,
        False,
        "Write access-log lines for probes and polls too (/health, /ready, /metrics, the "
        "stats API the dashboard polls).",
        OPERATIONS,
    ),
    Setting(
        "TWIML_DIR",
        v.existing_dir,
        None,
        "A folder holding voice.toml (the <Say> voice, the apology, the busy answer, the "
        "goodbye instruction) to use instead of the one in the package.",
        OPERATIONS,
        shown="the package's",
    ),
    Setting(
        "DEV_SOFTPHONE",
        v.flag,
        False,
        "Development only: serve /softphone, a browser page that calls the assistant with your "
        "microphone (guarded like the stats API).",
        DEVELOPMENT,
    ),
)
SECTIONS = (TWILIO, GEMINI, ASSISTANT, CALLS, OPERATIONS, DEVELOPMENT)
BY_NAME = {setting.name: setting for setting in TABLE}
