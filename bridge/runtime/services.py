"""What every request and call of one server shares, built once from the settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..call.fleet import ALIVE_EVERY_S, FleetCalls
from ..call.ledger import CallLedger
from ..call.personas import Personas
from ..call.plan import CallPlanner
from ..call.prewarm import Prewarm
from ..call.registry import CallRegistry
from ..call.resources import CallGuards, CallResources
from ..call.stream_auth import StreamAuthenticator
from ..config import Settings
from ..gemini.endpoint import GeminiEndpoint
from ..gemini.link import session_opener
from ..gemini.link_policy import LinkPolicy
from ..gemini.watch import GeminiWatch, ProbeResult, probe_configs
from ..hooks.outbox import ReportOutbox
from ..observability.logs import SecretScrub
from ..observability.metrics import BridgeMetrics
from ..state import FallbackStore, MemoryStore, StateStore
from ..state.redis_store import RedisStore
from ..tools.http_tool import HttpTool, load_http_tools
from ..twilio.rest import TwilioCalls
from ..twilio.security import SignatureCheck, StreamTokens
from ..twilio.twiml import TwimlSettings
from .fleet_stats import FleetStats

log = logging.getLogger(__name__)

HAND_OVER_WAIT_S = 20.0  # a call waits this long at most for a quiet moment to move
PRESENCE_STOP_S = 3.0  # a heartbeat under way is bounded by the store's own timeouts
OUTBOX_STOP_S = 12.0  # a report's POST under way is bounded by its 10 s timeout


def instance_name(configured: str | None) -> str:
    """INSTANCE_NAME, else the host's name (a pod's, in Kubernetes) and a random suffix:
    several servers on one host are several instances."""
    if configured:
        return configured
    host = "".join(c if c.isascii() and c.isalnum() else "-" for c in socket.gethostname())
    return f"{host.strip('-')[:32] or 'bridge'}-{secrets.token_hex(2)}"


def state_store(settings: Settings, metrics: BridgeMetrics) -> StateStore:
    """STATE_URL's Redis, carried on in process while it is away; else this process."""
    if not settings.state_url:
        return MemoryStore()
    metrics.state_store_up.set(1)
    return FallbackStore(
        RedisStore(settings.state_url), on_change=lambda up: metrics.state_store_up.set(int(up))
    )


@dataclass(slots=True)
class Services:
    settings: Settings
    endpoint: GeminiEndpoint
    twiml: TwimlSettings
    signatures: SignatureCheck
    stream_tokens: StreamTokens
    fleet: FleetCalls  # the calls' shared records (answered CallSids, spent tokens, moves)
    fleet_stats: FleetStats  # what every instance of the fleet publishes
    ledger: CallLedger  # each call's facts and its one report
    registry: CallRegistry  # admission, the stats, the gauges
    planner: CallPlanner  # what a number's call gets
    prewarm: Prewarm
    twilio_calls: TwilioCalls | None  # REST changes to live calls; needs TWILIO_ACCOUNT_SID
    http_tools: list[HttpTool]
    metrics: BridgeMetrics
    calls: CallResources  # what each call is given
    gemini_watch: GeminiWatch
    scrub: SecretScrub

    @classmethod
    def build(
        cls,
        settings: Settings,
        endpoint: GeminiEndpoint,
        twilio_http_client: Any = None,
        guards: CallGuards | None = None,
    ) -> Services:
        """``twilio_http_client`` replaces the twilio library's HTTP layer, ``guards`` the
        streams' limits (tests)."""
        rest = None
        if settings.twilio_account_sid:
            rest = TwilioCalls(
                settings.twilio_account_sid, settings.twilio_auth_token, twilio_http_client
            )
        metrics = BridgeMetrics()
        http_tools = load_http_tools(settings.tools_file) if settings.tools_file else []
        planner = CallPlanner(
            Personas.load(settings),
            http_tools,
            model_resource=endpoint.model_resource,
            builtin_tools=settings.builtin_tools,
            can_change_calls=rest is not None,
            transfer_numbers=settings.transfer_numbers,
            vad=settings.vad,
        )
        signatures = SignatureCheck(settings.twilio_auth_token, settings.public_url)
        instance = instance_name(settings.instance_name)
        tokens = StreamTokens(settings.stream_token_secret, instance)
        fleet = FleetCalls(
            state_store(settings, metrics), instance, max_moves=settings.max_call_moves
        )
        registry = CallRegistry(
            settings.max_concurrent_calls, metrics, log_transcripts=settings.log_transcripts
        )
        outbox = ReportOutbox(
            fleet.store,
            settings.call_report_url,
            settings.webhook_secret or "",
            settings.call_report_retry_for,
            counted=lambda result: metrics.call_reports.labels(result).inc(),
        )
        ledger = CallLedger(fleet, outbox)
        prewarm = Prewarm(settings.prewarm_ttl, lambda r: metrics.prewarm.labels(r).inc())
        twiml = TwimlSettings.load(settings.twiml_dir)

        async def probe() -> list[ProbeResult]:
            configs = {label: plan.session_config for label, plan in planner.every_setup().items()}
            return await probe_configs(endpoint, configs, settings.gemini_setup_timeout)

        watch = GeminiWatch(probe)
        calls = CallResources(
            planner=planner,
            registry=registry,
            authenticator=StreamAuthenticator(signatures, tokens, fleet),
            fleet=fleet,
            open_session=session_opener(endpoint),
            metrics=metrics,
            rest=rest,
            prewarm=prewarm if settings.prewarm else None,
            setup_timeout_s=settings.gemini_setup_timeout,
            tool_timeout_s=settings.tool_timeout,
            link_policy=LinkPolicy(
                reconnect_budget_s=settings.gemini_reconnect_budget,
                stall_timeout_s=settings.gemini_stall_timeout,
            ),
            goodbye_instruction=twiml.goodbye_instruction,
            ledger=ledger,
            recording_callback=settings.recording_status_url,
            guards=guards or CallGuards(),
            on_gemini_setup=watch.on_call_setup,
        )
        return cls(
            settings=settings,
            endpoint=endpoint,
            twiml=twiml,
            signatures=signatures,
            stream_tokens=tokens,
            fleet=fleet,
            fleet_stats=FleetStats(fleet.store, instance),
            ledger=ledger,
            registry=registry,
            planner=planner,
            prewarm=prewarm,
            twilio_calls=rest,
            http_tools=http_tools,
            metrics=metrics,
            calls=calls,
            gemini_watch=watch,
            scrub=SecretScrub(settings.secrets()),
        )

    def secrets(self) -> list[str]:
        """Every value the log must never show: the settings' secrets and the HTTP tools'
        header values."""
        return [*self.settings.secrets(), *(v for tool in self.http_tools for v in tool.secrets())]

    async def drain(self) -> None:
        """Before shutdown: hand the calls over to other servers when the fleet shares
        their state, else end them (see CallRegistry.drain); then drop unclaimed
        pre-warmed sessions and stop probing Gemini."""
        if self.fleet.shared:
            wait = min(self.settings.drain_timeout, HAND_OVER_WAIT_S)
            await self.registry.drain(wait, hand_over=True)
        else:
            await self.registry.drain(self.settings.drain_timeout)
        await self.prewarm.close()
        await self.gemini_watch.close()

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        """While the app serves: this instance tells the fleet it is alive and publishes
        its calls, each on its own beat (a slow publish must never make a live instance
        look dead), and delivers call reports; afterwards the reports due get one more
        try and the shared store is closed."""
        stopping = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()
        outbox = self.ledger.outbox
        delivering = (
            asyncio.create_task(outbox.run(stopping), name="report_outbox")
            if outbox.enabled
            else None
        )
        if self.fleet.shared:
            tasks = {
                asyncio.create_task(
                    _every(ALIVE_EVERY_S, self.fleet.heartbeat, stopping), name="fleet_alive"
                ),
                asyncio.create_task(
                    _every(FleetStats.PUBLISH_EVERY_S, self._publish, stopping), name="fleet_stats"
                ),
            }
        try:
            yield
        finally:
            # Asked to stop, not cancelled mid-command: on Python 3.11 a task cancelled
            # inside a redis-py command can lose the cancellation (see call/tenure.py).
            stopping.set()
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=PRESENCE_STOP_S)
                for task in pending:
                    log.warning("%s did not stop; cancelled", task.get_name())
                    task.cancel()
            await self.ledger.close_watches()
            if delivering is not None:
                # A POST under way is bounded by its own timeout.
                done, _ = await asyncio.wait({delivering}, timeout=OUTBOX_STOP_S)
                if not done:
                    log.warning("report delivery did not stop; cancelled")
                    delivering.cancel()
                await outbox.flush()
            await self.fleet.store.close()

    async def _publish(self) -> None:
        await self.fleet_stats.publish(self.stats())

    def stats(self) -> dict[str, Any]:
        """This instance's calls, as /api/calls/stats shows them."""
        registry = self.registry
        snapshot = registry.snapshot()
        snapshot["instance"] = {
            "name": self.fleet.instance,
            "uptime_s": registry.uptime_s,
            "draining": registry.draining,
            "capacity": {"max_calls": registry.max_calls, "in_use": registry.in_use},
        }
        return snapshot

    async def probe_gemini(self) -> list[ProbeResult]:
        """Open (and close) one real session per distinct setup."""
        return await self.gemini_watch.probe()


async def _every(
    period_s: float, action: Callable[[], Awaitable[None]], stop: asyncio.Event
) -> None:
    """``action`` every ``period_s`` until ``stop``; a failure is logged, never fatal (a
    presence that died would look like a crash to the fleet)."""
    while not stop.is_set():
        try:
            await action()
        except Exception:
            log.exception("fleet presence: %s failed", getattr(action, "__name__", "an action"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(period_s):
                await stop.wait()
