"""What every request and call of one app shares, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..call.admission import Admission, UnauthenticatedStreams
from ..call.personas import Persona, Personas
from ..call.prewarm import Prewarm
from ..call.registry import CallRegistry
from ..config import Settings
from ..gemini.endpoint import GeminiEndpoint
from ..gemini.protocol import SessionConfig
from ..gemini.watch import GeminiWatch, ProbeResult, probe_configs
from ..observability.logs import SecretScrub
from ..observability.metrics import BridgeMetrics
from ..tools.base import Tool
from ..tools.call_control import CallControl, EndCallTool, TransferCallTool
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
    admission: Admission
    twilio_calls: TwilioCalls | None  # REST changes to live calls; needs TWILIO_ACCOUNT_SID
    personas: Personas
    http_tools: list[HttpTool]
    prewarm: Prewarm
    webhook_replays: WebhookReplays = field(default_factory=WebhookReplays)
    registry: CallRegistry = field(default_factory=CallRegistry)
    metrics: BridgeMetrics = field(default_factory=BridgeMetrics)
    unauthenticated_streams: UnauthenticatedStreams = field(default_factory=UnauthenticatedStreams)
    gemini_watch: GeminiWatch = field(init=False)
    scrub: SecretScrub = field(init=False)

    def __post_init__(self) -> None:
        self.gemini_watch = GeminiWatch(self.probe_gemini)
        self.scrub = SecretScrub(self.settings.secrets())

    @classmethod
    def build(
        cls, settings: Settings, endpoint: GeminiEndpoint, twilio_http_client: Any = None
    ) -> Services:
        """``twilio_http_client`` replaces the twilio library's HTTP layer (tests)."""
        calls = None
        if settings.twilio_account_sid:
            calls = TwilioCalls(
                settings.twilio_account_sid, settings.twilio_auth_token, twilio_http_client
            )
        metrics = BridgeMetrics()
        return cls(
            settings=settings,
            endpoint=endpoint,
            twiml=TwimlSettings.load(settings.twiml_dir),
            signatures=SignatureCheck(settings.twilio_auth_token, settings.public_url),
            stream_tokens=StreamTokens(settings.stream_token_secret),
            admission=Admission(settings.max_concurrent_calls),
            twilio_calls=calls,
            personas=Personas.load(settings),
            http_tools=load_http_tools(settings.tools_file) if settings.tools_file else [],
            prewarm=Prewarm(settings.prewarm_ttl, lambda r: metrics.prewarm.labels(r).inc()),
            metrics=metrics,
        )

    def secrets(self) -> list[str]:
        """Every value the log must never show: the settings' secrets and the HTTP tools'
        header values."""
        return [*self.settings.secrets(), *(v for tool in self.http_tools for v in tool.secrets())]

    async def drain(self) -> None:
        """Before shutdown: end the calls (see Admission.drain), then drop unclaimed
        pre-warmed sessions and stop probing Gemini."""
        await self.admission.drain(self.settings.drain_timeout)
        await self.prewarm.close()
        await self.gemini_watch.close()

    def session_configs(self) -> dict[str, SessionConfig]:
        """Every distinct setup a call may send: the default assistant's, and each persona's."""
        personas = {"default assistant": self.personas.default, **self.personas.numbers()}
        configs = {}
        for label, persona in personas.items():
            declarations = [tool.declaration() for tool in self.tools_for(persona, None)]
            configs[label] = self.session_config(persona, declarations)
        return configs

    async def probe_gemini(self) -> list[ProbeResult]:
        """Open (and close) one real session per distinct setup."""
        return await probe_configs(
            self.endpoint, self.session_configs(), self.settings.gemini_setup_timeout
        )

    def builtin_tools_enabled(self) -> frozenset[str]:
        """end_call and transfer_call change the call through Twilio's REST API: they are
        offered only when it can be used (TWILIO_ACCOUNT_SID), transfer only with numbers."""
        if self.twilio_calls is None:
            return frozenset()
        enabled = set(self.settings.builtin_tools)
        if not self.settings.transfer_numbers:
            enabled.discard("transfer_call")
        return frozenset(enabled)

    def tools_for(self, persona: Persona, control: CallControl | None) -> list[Tool]:
        """The tools one call may use (``control`` None: for their declarations only)."""
        enabled = self.builtin_tools_enabled()
        tools: list[Tool] = []
        if "end_call" in enabled:
            tools.append(EndCallTool(control))  # type: ignore[arg-type]
        if "transfer_call" in enabled:
            tools.append(TransferCallTool(control, self.settings.transfer_numbers))  # type: ignore[arg-type]
        tools.extend(self.http_tools)
        if persona.tools is not None:
            tools = [t for t in tools if t.name in persona.tools]
        return tools

    def session_config(
        self, persona: Persona, tool_declarations: list[dict[str, Any]]
    ) -> SessionConfig:
        tools = ({"functionDeclarations": tool_declarations},) if tool_declarations else ()
        return SessionConfig(
            model=self.endpoint.model_resource,
            voice=persona.voice,
            system_prompt=persona.system_prompt,
            tools=tools,
            realtime_input_config=(
                {"automaticActivityDetection": self.settings.vad} if self.settings.vad else None
            ),
        )
