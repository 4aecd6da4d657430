"""What every request and call of one app shares, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .admission import Admission
from .calls import CallRegistry
from .config import Settings
from .gemini.endpoint import GeminiEndpoint
from .gemini.protocol import SessionConfig
from .metrics import BridgeMetrics
from .twilio.rest import TwilioCalls
from .twilio.security import SignatureCheck, StreamTokens, WebhookReplays
from .twiml import TwimlSettings


@dataclass(slots=True)
class Services:
    settings: Settings
    endpoint: GeminiEndpoint
    twiml: TwimlSettings
    signatures: SignatureCheck
    stream_tokens: StreamTokens
    admission: Admission
    twilio_calls: TwilioCalls | None  # REST changes to live calls; needs TWILIO_ACCOUNT_SID
    webhook_replays: WebhookReplays = field(default_factory=WebhookReplays)
    registry: CallRegistry = field(default_factory=CallRegistry)
    metrics: BridgeMetrics = field(default_factory=BridgeMetrics)

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
        return cls(
            settings=settings,
            endpoint=endpoint,
            twiml=TwimlSettings.load(settings.twiml_dir),
            signatures=SignatureCheck(settings.twilio_auth_token, settings.public_url),
            stream_tokens=StreamTokens(settings.stream_token_secret),
            admission=Admission(settings.max_concurrent_calls),
            twilio_calls=calls,
        )

    def session_config(self) -> SessionConfig:
        return SessionConfig(
            model=self.endpoint.model_resource,
            voice=self.settings.gemini_voice,
            system_prompt=self.settings.system_prompt,
        )
