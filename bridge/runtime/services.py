"""What every request and call of one server shares, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
from ..observability.logs import SecretScrub
from ..observability.metrics import BridgeMetrics
from ..tools.http_tool import HttpTool, load_http_tools
from ..twilio.rest import TwilioCalls
from ..twilio.security import SignatureCheck, StreamTokens, WebhookReplays
from ..twilio.twiml import TwimlSettings


@dataclass(slots=True)
class Services:
    settings: Settings
    endpoint: GeminiEndpoint
    twiml: TwimlSettings
    signatures: SignatureCheck
    stream_tokens: StreamTokens
    webhook_replays: WebhookReplays
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
        tokens = StreamTokens(settings.stream_token_secret)
        registry = CallRegistry(
            settings.max_concurrent_calls, metrics, log_transcripts=settings.log_transcripts
        )
        prewarm = Prewarm(settings.prewarm_ttl, lambda r: metrics.prewarm.labels(r).inc())
        twiml = TwimlSettings.load(settings.twiml_dir)

        async def probe() -> list[ProbeResult]:
            configs = {label: plan.session_config for label, plan in planner.every_setup().items()}
            return await probe_configs(endpoint, configs, settings.gemini_setup_timeout)

        watch = GeminiWatch(probe)
        calls = CallResources(
            planner=planner,
            registry=registry,
            authenticator=StreamAuthenticator(signatures, tokens),
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
            guards=guards or CallGuards(),
            on_gemini_setup=watch.on_call_setup,
        )
        return cls(
            settings=settings,
            endpoint=endpoint,
            twiml=twiml,
            signatures=signatures,
            stream_tokens=tokens,
            webhook_replays=WebhookReplays(),
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
        """Before shutdown: end the calls (see CallRegistry.drain), then drop unclaimed
        pre-warmed sessions and stop probing Gemini."""
        await self.registry.drain(self.settings.drain_timeout)
        await self.prewarm.close()
        await self.gemini_watch.close()

    async def probe_gemini(self) -> list[ProbeResult]:
        """Open (and close) one real session per distinct setup."""
        return await self.gemini_watch.probe()
