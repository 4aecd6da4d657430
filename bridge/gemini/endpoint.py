"""Where a Live session connects and how it authenticates: AI Studio key or Vertex OAuth."""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from ..config import ConfigError, Settings

log = logging.getLogger(__name__)

AI_STUDIO_URL = (
    "wss://generativelanguage.googleapis.com/ws/"
    "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
)
VERTEX_PATH = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


# Vertex's multi-region locations have hosts of their own, as Google's SDK knows them.
MULTI_REGION_LOCATIONS = frozenset({"us", "eu"})


def vertex_host(location: str) -> str:
    """The Vertex AI host for a location: global, a multi-region, or a region."""
    if location == "global":
        return "aiplatform.googleapis.com"
    if location in MULTI_REGION_LOCATIONS:
        return f"aiplatform.{location}.rep.googleapis.com"
    return f"{location}-aiplatform.googleapis.com"


def vertex_url(location: str) -> str:
    return f"wss://{vertex_host(location)}{VERTEX_PATH}"


def vertex_model_resource(model: str, project: str, location: str) -> str:
    """``setup.model`` on Vertex from an id, ``publishers/…/models/<id>`` or a full
    ``projects/…`` path, as the SDK accepts them."""
    if model.startswith("projects/"):
        return model
    if not model.startswith("publishers/"):
        model = f"publishers/google/models/{model}"
    return f"projects/{project}/locations/{location}/{model}"


class Auth(Protocol):
    async def headers(self) -> dict[str, str]: ...


class ApiKeyAuth:
    """AI Studio: the key goes in a header, never in the URL, so it stays out of access logs."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    async def headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._api_key}

    def __repr__(self) -> str:
        return "ApiKeyAuth(<redacted>)"


class OAuthAuth:
    """Vertex AI: a google-auth access token, refreshed in a thread before it expires.

    ``credentials`` is any google-auth credentials object (service account file,
    Application Default Credentials, workload identity).
    """

    REFRESH_MARGIN_S = 300.0

    def __init__(self, credentials: Any, request_factory: Any = None) -> None:
        self._credentials = credentials
        self._request_factory = request_factory
        self._lock = asyncio.Lock()

    def _needs_refresh(self) -> bool:
        creds = self._credentials
        if not getattr(creds, "token", None):
            return True
        expiry = getattr(creds, "expiry", None)
        if expiry is None:
            return False
        if expiry.tzinfo is None:  # google-auth keeps expiry as a naive UTC datetime
            expiry = expiry.replace(tzinfo=datetime.UTC)
        remaining = (expiry - datetime.datetime.now(datetime.UTC)).total_seconds()
        return bool(remaining < self.REFRESH_MARGIN_S)

    def _refresh_blocking(self) -> None:
        if self._request_factory is None:
            import google.auth.transport.requests

            request = google.auth.transport.requests.Request()
        else:
            request = self._request_factory()
        self._credentials.refresh(request)

    async def headers(self) -> dict[str, str]:
        async with self._lock:
            if self._needs_refresh():
                await asyncio.wait_for(asyncio.to_thread(self._refresh_blocking), timeout=15)
                log.info("refreshed the Vertex AI access token")
        headers = {"Authorization": f"Bearer {self._credentials.token}"}
        # User credentials (gcloud auth application-default login) bill a quota project:
        # Google's SDK names it in this header, and without it Vertex may refuse the call.
        quota_project = getattr(self._credentials, "quota_project_id", None)
        if isinstance(quota_project, str) and quota_project:
            headers["x-goog-user-project"] = quota_project
        return headers

    def __repr__(self) -> str:
        return "OAuthAuth(<redacted>)"


class Backend(StrEnum):
    AI_STUDIO = "ai_studio"
    VERTEX = "vertex"


@dataclass(frozen=True, slots=True)
class GeminiEndpoint:
    url: str
    model_resource: str  # what setup.model carries
    auth: Auth
    backend: Backend


def load_vertex_credentials(settings: Settings) -> Any:
    """Blocking (may read files or ask a metadata server): call at start-up or in a thread."""
    import google.auth
    import google.auth.exceptions

    try:
        if settings.google_application_credentials:
            creds, _ = google.auth.load_credentials_from_file(  # type: ignore[no-untyped-call]
                settings.google_application_credentials, scopes=[CLOUD_PLATFORM_SCOPE]
            )
        else:
            creds, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    except google.auth.exceptions.GoogleAuthError as exc:
        raise ConfigError(
            "GOOGLE_APPLICATION_CREDENTIALS",
            f"no usable Google credentials ({exc.__class__.__name__})",
        ) from None
    return creds


def endpoint_from_settings(settings: Settings, credentials: Any = None) -> GeminiEndpoint:
    if not settings.uses_vertex:
        assert settings.gemini_api_key is not None
        if settings.gemini_model.startswith(("projects/", "publishers/")):
            raise ConfigError(
                "GEMINI_MODEL",
                "is a Vertex AI model path; with GEMINI_API_KEY give a model id such as "
                f"{settings.gemini_model.rsplit('/', 1)[-1]}",
            )
        return GeminiEndpoint(
            url=settings.gemini_live_url or AI_STUDIO_URL,
            model_resource=f"models/{settings.gemini_model}",
            auth=ApiKeyAuth(settings.gemini_api_key),
            backend=Backend.AI_STUDIO,
        )
    if credentials is None:
        credentials = load_vertex_credentials(settings)
    assert settings.google_cloud_project is not None
    model = vertex_model_resource(
        settings.gemini_model, settings.google_cloud_project, settings.google_cloud_location
    )
    return GeminiEndpoint(
        url=settings.gemini_live_url or vertex_url(settings.google_cloud_location),
        model_resource=model,
        auth=OAuthAuth(credentials),
        backend=Backend.VERTEX,
    )
