"""What a server gives each of its calls: the same for all of them, built once at start-up
(``runtime``) and handed to every ``CallBridge`` through its constructor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..gemini.link import SessionOpener
from ..gemini.link_policy import LinkPolicy
from ..observability.metrics import BridgeMetrics
from ..twilio.rest import TwilioCalls
from .fleet import FleetCalls
from .ledger import CallLedger
from .plan import CallPlanner
from .prewarm import Prewarm
from .registry import CallRegistry
from .stream_auth import StreamAuthenticator


@dataclass(frozen=True, slots=True)
class CallGuards:
    """What a stream may do before it is closed: the numbers behind the guards."""

    idle_timeout_s: float = 15.0  # Twilio sends a frame every 20 ms while the call lives
    send_timeout_s: float = 5.0  # a send to Twilio or Gemini that takes longer is stuck
    # Twilio sends 50 media frames a second plus mark echoes and the odd DTMF; a stream
    # sending far more is broken or hostile and would starve the other calls' CPU.
    flood_rate: float = 150.0
    flood_burst: float = 300.0
    # How far a stream's audio may run ahead of the time since its start
    # (docs/security.md): more than the flood limit's burst (300 frames, 6 s), so
    # Twilio's catch-up after a hiccup that passes the one passes the other.
    audio_ahead_s: float = 10.0


@dataclass(frozen=True, slots=True)
class CallResources:
    planner: CallPlanner  # a number's persona, tools and Gemini setup
    registry: CallRegistry  # admission, the stats, the gauges
    authenticator: StreamAuthenticator  # who may start a call
    fleet: FleetCalls  # the calls' shared records: where a call goes on after its stream
    open_session: SessionOpener  # a Gemini connection
    metrics: BridgeMetrics
    rest: TwilioCalls | None  # changes to live calls (hang up, transfer); TWILIO_ACCOUNT_SID
    prewarm: Prewarm | None  # sessions opened at the webhook (GEMINI_PREWARM)
    setup_timeout_s: float
    tool_timeout_s: float
    link_policy: LinkPolicy
    goodbye_instruction: str  # when the server goes away
    ledger: CallLedger  # each call's facts, its streams' segments, its one report
    recording_callback: str  # where Twilio says a recording is ready
    guards: CallGuards = field(default_factory=CallGuards)
    # Each call's Gemini setup, for the readiness watch: (worked, why not).
    on_gemini_setup: Callable[[bool, str], None] = field(default=lambda ok, reason: None)
