"""What every request and call of one app shares, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

from .calls import CallRegistry
from .config import Settings
from .gemini.endpoint import GeminiEndpoint
from .gemini.protocol import SessionConfig
from .metrics import BridgeMetrics
from .twilio.security import SignatureCheck, StreamTokens
from .twiml import TwimlSettings


@dataclass(slots=True)
class Services:
    settings: Settings
    endpoint: GeminiEndpoint
    twiml: TwimlSettings
    signatures: SignatureCheck
    stream_tokens: StreamTokens
    registry: CallRegistry = field(default_factory=CallRegistry)
    metrics: BridgeMetrics = field(default_factory=BridgeMetrics)

    @classmethod
    def build(cls, settings: Settings, endpoint: GeminiEndpoint) -> Services:
        return cls(
            settings=settings,
            endpoint=endpoint,
            twiml=TwimlSettings.load(settings.twiml_dir),
            signatures=SignatureCheck(settings.twilio_auth_token, settings.public_url),
            stream_tokens=StreamTokens(settings.stream_token_secret),
        )

    def session_config(self) -> SessionConfig:
        return SessionConfig(
            model=self.endpoint.model_resource,
            voice=self.settings.gemini_voice,
            system_prompt=self.settings.system_prompt,
        )
