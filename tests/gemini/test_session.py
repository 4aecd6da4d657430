"""GeminiSession against the emulator over loopback: setup, errors, close codes."""

from __future__ import annotations

import asyncio
import socket

import pytest
import websockets

from bridge.gemini.client import parse_server_message, setup_message, text_input_message
from bridge.gemini.endpoint import ApiKeyAuth, Backend, GeminiEndpoint, OAuthAuth
from bridge.gemini.session import GeminiSession, GeminiSetupError
from bridge.gemini.wire import SessionConfig
from bridge.testing.emulator import DEFAULT_API_KEY, EmulatorOptions, GeminiEmulator

CONFIG = SessionConfig(model="models/gemini-3.8-live", voice="Kore", system_prompt="Be brief.")


def endpoint(
    url: str, key: str = DEFAULT_API_KEY, model: str = "models/gemini-3.8-live"
) -> GeminiEndpoint:
    return GeminiEndpoint(
        url=url, model_resource=model, auth=ApiKeyAuth(key), backend=Backend.AI_STUDIO
    )


async def open_session(emulator: GeminiEmulator, **kwargs: object) -> GeminiSession:
    ep = endpoint(emulator.url, **kwargs)  # type: ignore[arg-type]
    config = SessionConfig(model=ep.model_resource, voice="Kore", system_prompt="x")
    session = GeminiSession(ep, config, setup_timeout=3)
    await session.open()
    return session


def test_setup_completes_and_the_emulator_records_the_setup() -> None:
    async def scenario() -> None:
        async with GeminiEmulator() as emulator:
            session = await open_session(emulator)
            assert session.state == "open" and session.setup_seconds is not None
            assert session.session_id
            recorded = emulator.sessions[0]
            assert recorded.auth == "api_key"
            assert recorded.setup["model"] == "models/gemini-3.8-live"
            await session.send(text_input_message("hello"))
            first = await asyncio.wait_for(session.receive(), 5)
            assert first is not None
            assert first.resumption_update is not None and first.resumption_update.resumable
            while True:
                message = await asyncio.wait_for(session.receive(), 5)
                assert message is not None
                if message.server_content is not None:
                    break
            assert message.server_content.audio  # the answer to "hello"
            await session.close()
            assert session.state == "closed"

    asyncio.run(scenario())


def test_the_emulator_sends_json_in_binary_frames_as_gemini_does() -> None:
    """So every end-to-end call goes through the bridge's path for bytes, as in production."""

    async def scenario() -> None:
        async with GeminiEmulator() as emulator:
            async with websockets.connect(
                emulator.url, additional_headers={"x-goog-api-key": DEFAULT_API_KEY}
            ) as ws:
                await ws.send(setup_message(CONFIG))
                raw = await asyncio.wait_for(ws.recv(), 5)
                assert isinstance(raw, bytes)
                assert parse_server_message(raw).setup_complete is not None

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("kwargs", "code", "reason"),
    [
        ({"key": "wrong"}, 1007, "API key not valid"),
        ({"model": "models/gemini-live-2.5-flash-preview"}, 1008, "is not found"),
    ],
)
def test_google_style_refusals_are_config_errors(
    kwargs: dict[str, str], code: int, reason: str
) -> None:
    async def scenario() -> None:
        async with GeminiEmulator() as emulator:
            with pytest.raises(GeminiSetupError) as info:
                await open_session(emulator, **kwargs)
            assert info.value.close_code == code and info.value.is_config_error
            assert reason in info.value.reason
            assert "wrong" not in info.value.reason  # the key never appears

    asyncio.run(scenario())


def test_unknown_setup_field_closes_1007_naming_it() -> None:
    async def scenario() -> None:
        async with GeminiEmulator() as emulator:
            config = SessionConfig(
                model="models/gemini-3.8-live",
                voice="Kore",
                system_prompt="x",
                realtime_input_config={"automaticActivityDetection": {"silenceMs": 5}},
            )
            session = GeminiSession(endpoint(emulator.url), config, setup_timeout=3)
            with pytest.raises(GeminiSetupError, match="silence_ms") as info:
                await session.open()
            assert info.value.close_code == 1007

    asyncio.run(scenario())


def test_vertex_path_with_bearer_token() -> None:
    class Creds:
        token, expiry = "ya29.token", None

    async def scenario() -> None:
        async with GeminiEmulator(EmulatorOptions(bearer_token="ya29.token")) as emulator:
            model = "projects/p/locations/us-central1/publishers/google/models/gemini-3.8-live"
            ep = GeminiEndpoint(emulator.vertex_url, model, OAuthAuth(Creds()), Backend.VERTEX)
            session = GeminiSession(ep, SessionConfig(model=model, voice="Kore", system_prompt="x"))
            await session.open()
            assert emulator.sessions[0].auth == "bearer"
            await session.close()

    asyncio.run(scenario())


def test_setup_timeout_when_the_server_never_answers() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        session = GeminiSession(endpoint(f"ws://127.0.0.1:{port}/ws"), CONFIG, setup_timeout=0.5)
        with pytest.raises(GeminiSetupError, match=r"within 0\.5 s") as info:
            await session.open()
        assert not info.value.is_config_error and session.state == "failed"
        server.close()

    asyncio.run(scenario())


def test_connection_refused_and_http_errors_are_setup_errors() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()

    async def scenario() -> None:
        with pytest.raises(GeminiSetupError, match="cannot connect"):
            await GeminiSession(
                endpoint(f"ws://127.0.0.1:{port}/ws"), CONFIG, setup_timeout=2
            ).open()
        async with GeminiEmulator() as emulator:
            wrong_path = f"ws://127.0.0.1:{emulator.port}/ws/nope"
            with pytest.raises(GeminiSetupError, match="HTTP 404"):
                await GeminiSession(endpoint(wrong_path), CONFIG, setup_timeout=2).open()

    asyncio.run(scenario())


def test_server_close_mid_session_is_recorded_with_code_and_reason() -> None:
    async def scenario() -> None:
        async with GeminiEmulator() as emulator:
            session = await open_session(emulator)
            await session.send('{"setup": {}}')  # a second setup: the emulator closes 1007
            while await asyncio.wait_for(session.receive(), 5) is not None:
                pass
            assert session.close_code == 1007 and "once" in session.close_reason

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (
            {"code": 400, "message": "Invalid voice 'Nobody'.", "status": "INVALID_ARGUMENT"},
            "config",
        ),
        (
            {"code": 503, "message": "The service is overloaded.", "status": "UNAVAILABLE"},
            "protocol",
        ),
    ],
)
def test_an_error_frame_during_setup_fails_at_once_with_its_message(
    error: dict[str, object], kind: str
) -> None:
    """Google's SDK raises on a frame with none of the known fields; waiting out the setup
    timeout would keep a caller in silence for nothing."""

    async def scenario() -> None:
        from bridge.testing.emulator import FaultPlan

        options = EmulatorOptions(faults=FaultPlan(setup_error={"error": error}))
        async with GeminiEmulator(options) as emulator:
            ep = endpoint(emulator.url)
            session = GeminiSession(ep, CONFIG, setup_timeout=20)
            started = asyncio.get_running_loop().time()
            with pytest.raises(GeminiSetupError) as info:
                await session.open()
            assert asyncio.get_running_loop().time() - started < 2  # not the 20 s timeout
            assert info.value.kind == kind and str(error["message"]) in info.value.reason
            assert session.state == "failed"

    asyncio.run(scenario())
