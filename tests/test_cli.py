"""The command line as an operator meets it: ``python -m bridge`` and the ``bridge`` script."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.audio import resample
from bridge.gemini.endpoint import ApiKeyAuth, GeminiEndpoint
from bridge.gemini.protocol import SessionConfig
from bridge.gemini.session import GeminiSession, GeminiSetupError

ROOT = Path(__file__).resolve().parent.parent
CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("GEMINI_", "TWILIO_", "GOOGLE_", "PUBLIC_", "OPERATOR_"))
}


def bridge(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env={**CLEAN_ENV, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_lists_the_commands() -> None:
    result = bridge("--help")
    assert result.returncode == 0
    for command in ("serve", "demo", "emulator"):
        assert command in result.stdout


def test_serve_with_a_bad_setting_fails_in_one_line_naming_it(tmp_path: Path) -> None:
    result = bridge("serve", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "bridge: configuration error: PUBLIC_URL: not set (the https URL Twilio uses to reach this server)"
    )
    result = bridge(
        "serve",
        cwd=tmp_path,
        env={
            "PUBLIC_URL": "https://x.example",
            "TWILIO_AUTH_TOKEN": "t",
            "GEMINI_API_KEY": "AIza-very-secret",
            "GEMINI_VOICE": "nobody",
        },
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "GEMINI_VOICE" in result.stderr and "AIza-very-secret" not in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_python_m_bridge_serve_answers_health_and_reads_dotenv(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / ".env").write_text(
        "PUBLIC_URL=https://bridge.example.com\nTWILIO_AUTH_TOKEN=twilio-auth-from-dotenv\nGEMINI_API_KEY=AIza-from-dotenv-0123\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**CLEAN_ENV, "TWIML_DIR": str(ROOT / "twiml")},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/health", timeout=1
                ) as response:
                    assert json.loads(response.read()) == {"status": "ok"}
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert "AIza-from-dotenv-0123" not in output
    assert "https://bridge.example.com" in output
    # The operator sees which code runs the resamplers (C unless built without a compiler).
    assert f"resamplers in {resample.implementation()}" in output


@pytest.mark.e2e
def test_demo_runs_a_whole_call_and_reports_json(tmp_path: Path) -> None:
    wav = tmp_path / "heard.wav"
    result = bridge(
        "demo", "--json", "--no-barge-in", "--reply-seconds", "2", "--out", str(wav), timeout=60
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frames_received"] == pytest.approx(200, abs=4)  # greeting + answer, 2 s each
    assert report["interruptions"] == 0
    assert len(report["turn_latency_ms"]) == 1 and 500 < report["turn_latency_ms"][0] < 1500
    assert report["first_audio_ms"] < 2000  # the assistant speaks first
    assert 0 < report["greeting_ms"] < 2000
    assert report["bridge_totals"]["completed"] == 1
    with wave.open(str(wav)) as heard:
        assert heard.getframerate() == 8000 and heard.getnframes() / 8000 == pytest.approx(
            report["heard_seconds"], abs=0.05
        )


@contextlib.contextmanager
def emulator_process(*flags: str) -> Iterator[str]:
    """``python -m bridge emulator`` on a free port; yields the URL it prints."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "emulator", "--port", str(port), *flags],
        env=CLEAN_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split(" on ", 1)[1].strip()
        assert url.startswith(f"ws://127.0.0.1:{port}/ws/")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def open_emulated_session(url: str, key: str) -> GeminiSession:
    endpoint = GeminiEndpoint(url, "models/gemini-3.8-live", ApiKeyAuth(key), "ai_studio")
    session = GeminiSession(endpoint, SessionConfig("models/gemini-3.8-live", "Kore", "x"))
    await session.open()
    return session


def test_the_emulator_runs_alone_and_speaks_the_protocol() -> None:
    async def handshake(url: str) -> str | None:
        session = await open_emulated_session(url, "k-123")
        await session.close()
        return session.session_id

    with emulator_process("--api-key", "k-123") as url:
        assert asyncio.run(handshake(url))


def test_the_emulator_takes_faults_from_its_flags() -> None:
    async def handshake(url: str) -> GeminiSetupError:
        with pytest.raises(GeminiSetupError) as info:
            await open_emulated_session(url, "any")
        return info.value

    with emulator_process("--api-key", "", "--refuse-setup") as url:
        error = asyncio.run(handshake(url))
    assert error.close_code == 1011 and "unavailable" in error.reason
