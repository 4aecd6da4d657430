"""Endpoints and auth: AI Studio key header, Vertex OAuth token refreshed off the event loop."""

from __future__ import annotations

import asyncio
import datetime
import threading

from bridge.config import load_settings
from bridge.gemini.endpoint import (
    AI_STUDIO_URL,
    ApiKeyAuth,
    GeminiEndpoint,
    OAuthAuth,
    endpoint_from_settings,
    vertex_url,
)

BASE = {"PUBLIC_URL": "https://b.example.com", "TWILIO_AUTH_TOKEN": "twilio-auth-token-123"}


class FakeCredentials:
    """Shaped like google-auth credentials: token, naive-UTC expiry, blocking refresh()."""

    def __init__(self, valid_for: float | None) -> None:
        self.token: str | None = "old-token" if valid_for is not None else None
        self.expiry = (
            None
            if valid_for is None
            else datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            + datetime.timedelta(seconds=valid_for)
        )
        self.refresh_threads: list[str] = []

    def refresh(self, request: object) -> None:
        self.refresh_threads.append(threading.current_thread().name)
        self.token = f"new-token-{len(self.refresh_threads)}"
        self.expiry = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(
            hours=1
        )


def test_ai_studio_endpoint_sends_the_key_in_a_header() -> None:
    settings = load_settings({**BASE, "GEMINI_API_KEY": "AIza-secret-gemini-key"}, env_file=None)
    endpoint = endpoint_from_settings(settings)
    assert endpoint.url == AI_STUDIO_URL and "key=" not in endpoint.url
    assert endpoint.model_resource == "models/gemini-3.8-live"
    assert asyncio.run(endpoint.auth.headers()) == {"x-goog-api-key": "AIza-secret-gemini-key"}
    assert "AIza" not in repr(endpoint.auth)


def test_vertex_endpoint_model_path_and_region() -> None:
    env = {**BASE, "GOOGLE_CLOUD_PROJECT": "acme", "GOOGLE_CLOUD_LOCATION": "europe-west4"}
    endpoint = endpoint_from_settings(
        load_settings(env, env_file=None), credentials=FakeCredentials(3600)
    )
    assert endpoint.backend == "vertex"
    assert (
        endpoint.url
        == "wss://europe-west4-aiplatform.googleapis.com/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
    )
    assert (
        endpoint.model_resource
        == "projects/acme/locations/europe-west4/publishers/google/models/gemini-3.8-live"
    )
    assert vertex_url("global").startswith("wss://aiplatform.googleapis.com/")


def test_gemini_live_url_replaces_the_endpoint_with_the_same_auth() -> None:
    env = {
        **BASE,
        "GEMINI_API_KEY": "gemini-key-for-tests",
        "GEMINI_LIVE_URL": "ws://127.0.0.1:9/ws/x",
    }
    endpoint = endpoint_from_settings(load_settings(env, env_file=None))
    assert endpoint.url == "ws://127.0.0.1:9/ws/x" and isinstance(endpoint.auth, ApiKeyAuth)


def test_oauth_token_is_refreshed_in_a_thread_only_when_close_to_expiry() -> None:
    async def scenario() -> None:
        fresh = FakeCredentials(valid_for=3600)
        auth = OAuthAuth(fresh, request_factory=object)
        assert await auth.headers() == {"Authorization": "Bearer old-token"}
        assert fresh.refresh_threads == []

        expiring = FakeCredentials(valid_for=120)  # inside the 5-minute margin
        auth = OAuthAuth(expiring, request_factory=object)
        results = await asyncio.gather(*(auth.headers() for _ in range(5)))
        assert {r["Authorization"] for r in results} == {"Bearer new-token-1"}
        assert len(expiring.refresh_threads) == 1  # concurrent callers share one refresh
        assert expiring.refresh_threads[0] != threading.current_thread().name

        missing = FakeCredentials(valid_for=None)
        assert await OAuthAuth(missing, request_factory=object).headers() == {
            "Authorization": "Bearer new-token-1"
        }

    asyncio.run(scenario())


def vertex_endpoint(location: str, model: str = "gemini-3.8-live") -> GeminiEndpoint:
    env = {
        **BASE,
        "GOOGLE_CLOUD_PROJECT": "acme",
        "GOOGLE_CLOUD_LOCATION": location,
        "GEMINI_MODEL": model,
    }
    return endpoint_from_settings(load_settings(env, env_file=None), FakeCredentials(3600))


def test_vertex_hosts_for_every_kind_of_location() -> None:
    """As Google's SDK builds them: multi-regions have hosts of their own."""
    hosts = {
        location: vertex_endpoint(location).url.split("/")[2]
        for location in ("us", "eu", "global", "us-central1", "europe-west4", "asia-northeast1")
    }
    assert hosts == {
        "us": "aiplatform.us.rep.googleapis.com",
        "eu": "aiplatform.eu.rep.googleapis.com",
        "global": "aiplatform.googleapis.com",
        "us-central1": "us-central1-aiplatform.googleapis.com",
        "europe-west4": "europe-west4-aiplatform.googleapis.com",
        "asia-northeast1": "asia-northeast1-aiplatform.googleapis.com",
    }


def test_a_vertex_model_as_an_id_a_publisher_path_or_a_full_path() -> None:
    full = "projects/acme/locations/eu/publishers/google/models/gemini-3.8-live"
    for model in ("gemini-3.8-live", "publishers/google/models/gemini-3.8-live", full):
        endpoint = vertex_endpoint("eu", model)
        assert endpoint.model_resource == full, model


def test_a_vertex_model_path_with_an_ai_studio_key_is_refused_naming_the_setting() -> None:
    import pytest

    from bridge.config import ConfigError

    env = {
        **BASE,
        "GEMINI_API_KEY": "gemini-key-for-tests",
        "GEMINI_MODEL": "publishers/google/models/gemini-3.8-live",
    }
    with pytest.raises(ConfigError) as info:
        endpoint_from_settings(load_settings(env, env_file=None))
    assert info.value.name == "GEMINI_MODEL" and "gemini-3.8-live" in str(info.value)


def test_user_credentials_with_a_quota_project_name_it_in_a_header() -> None:
    from google.oauth2.credentials import Credentials

    credentials = Credentials(token="ya29.t", quota_project_id="billing-project")
    headers = asyncio.run(OAuthAuth(credentials, request_factory=object).headers())
    assert headers == {"Authorization": "Bearer ya29.t", "x-goog-user-project": "billing-project"}
    plain = asyncio.run(OAuthAuth(Credentials(token="ya29.t")).headers())
    assert plain == {"Authorization": "Bearer ya29.t"}
