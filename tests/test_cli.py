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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from bridge.audio import resample
from bridge.gemini.endpoint import ApiKeyAuth, Backend, GeminiEndpoint
from bridge.gemini.session import GeminiSession, GeminiSetupError
from bridge.gemini.wire import SessionConfig

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
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


def test_the_console_command_is_gemini_phone_bridge_and_python_m_bridge_works_too() -> None:
    """``bridge`` is iproute2's command on Debian and Ubuntu: ours has a name of its own."""
    script = Path(sys.executable).parent / "gemini-phone-bridge"
    for command in ([str(script)], [sys.executable, "-m", "bridge"]):
        result = subprocess.run(
            [*command, "--help"], capture_output=True, text=True, timeout=30, env=CLEAN_ENV
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: gemini-phone-bridge ")
        for name in ("serve", "check", "demo", "emulator", "dev-phone"):
            assert name in result.stdout


def test_serve_reports_every_bad_setting_at_once_one_line_each(tmp_path: Path) -> None:
    result = bridge("serve", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "gemini-phone-bridge: configuration error: PUBLIC_URL: not set (the https URL Twilio uses to reach this server)",
        "gemini-phone-bridge: configuration error: TWILIO_AUTH_TOKEN: not set (needed to check Twilio's signatures)",
        "gemini-phone-bridge: configuration error: GEMINI_API_KEY: not set (or set GOOGLE_CLOUD_PROJECT to use Vertex AI)",
    ]
    (tmp_path / ".env").write_text(
        "export PUBLIC_URL=http://bridge.example.com  # a typo: http\n"
        "TWILIO_AUTH_TOKEN=t\n"  # too short to be a secret
        "GEMINI_API_KEY=AIza-very-secret\n"
        "GEMINI_VOICE=nobody\n"
        "VAD_SILENCE_DURATION_MS=0.5\n"
        f"SYSTEM_PROMPT_FILE={tmp_path / 'prompt.txt'}\n"
    )
    result = bridge("serve", cwd=tmp_path)
    assert result.returncode == 2 and "AIza-very-secret" not in result.stderr
    assert [line.split(": ")[2] for line in result.stderr.splitlines()] == [
        "PUBLIC_URL",
        "GEMINI_VOICE",
        "SYSTEM_PROMPT_FILE",
        "VAD_SILENCE_DURATION_MS",
        "TWILIO_AUTH_TOKEN",
    ]
    assert "Traceback" not in result.stderr


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

    def health() -> object:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return json.loads(response.read())

    try:
        assert wait_until_up(process, health) == {"status": "ok"}
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert "AIza-from-dotenv-0123" not in output
    assert "https://bridge.example.com" in output
    # The operator sees which code runs the resamplers (C unless built without a compiler).
    assert f"resamplers in {resample.implementation()}" in output


@pytest.mark.e2e
def test_demo_runs_a_whole_call_and_reports_json(tmp_path: Path) -> None:
    wav, sent = tmp_path / "heard.wav", tmp_path / "sent.json"
    result = bridge(
        "demo", "--json", "--no-barge-in", "--reply-seconds", "2", "--out", str(wav),
        "--call-report", str(sent), timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # The call's own report, as the receiver at CALL_REPORT_URL got it, signed.
    call_report = json.loads(sent.read_text())
    assert report["call_report"] == {
        "file": str(sent), "signature_valid": True, "outcome": "completed", "turns": 3
    }  # fmt: skip
    assert call_report["call_sid"] == report["call_sid"] and call_report["direction"] == "inbound"
    assert call_report["reason"] == "caller_hung_up"
    speakers = [turn["speaker"] for turn in call_report["transcript"]]
    assert speakers == ["assistant", "caller", "assistant"]  # greeting, question, answer
    assert call_report["latency"]["turn_ms"] == pytest.approx(report["turn_latency_ms"], abs=200)
    assert report["frames_received"] == pytest.approx(200, abs=4)  # greeting + answer, 2 s each
    assert report["interruptions"] == 0
    assert len(report["turn_latency_ms"]) == 1 and 500 < report["turn_latency_ms"][0] < 1500
    assert report["first_audio_ms"] < 2000  # the assistant speaks first
    assert 0 < report["greeting_ms"] < 2000
    assert report["bridge_totals"]["completed"] == 1
    # Both sides, as a call recording: caller left, assistant right, aligned in time.
    with wave.open(str(wav)) as recording:
        assert recording.getframerate() == 8000 and recording.getnchannels() == 2
        assert recording.getnframes() / 8000 == pytest.approx(report["heard_seconds"], abs=0.05)
        samples = np.frombuffer(recording.readframes(recording.getnframes()), "<i2")
    blocks = samples.reshape(-1, 160, 2).astype(np.float64)
    rms = np.sqrt((blocks**2).mean(axis=1))  # per 20 ms, per side
    caller, assistant = rms[:, 0] > 300, rms[:, 1] > 300
    assert caller.sum() * 0.02 > 3 and assistant.sum() * 0.02 > 2  # the question; two 2 s answers
    assert (caller & assistant).sum() < 5  # no barge-in: one side speaks at a time
    first_question = int(np.argmax(caller))
    assert assistant[:first_question].any()  # the greeting came first
    answer = int(np.argmax(assistant[first_question:])) + first_question
    assert 0.5 < (answer - np.flatnonzero(caller)[-1]) * 0.02 < 1.5  # the turn latency


@contextlib.contextmanager
def emulator_banner(*flags: str) -> Iterator[list[str]]:
    """``python -m bridge emulator`` on a free port; yields the lines of its banner."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "emulator", "--port", str(free_port()), *flags],
        env=CLEAN_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        while not (line := process.stdout.readline()).startswith("(The Vertex AI path"):
            assert line, "the emulator stopped before its banner ended"
            lines.append(line.rstrip("\n"))
        yield lines
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def emulator_process(*flags: str) -> Iterator[str]:
    """The emulator alone; yields the URL it prints first."""
    with emulator_banner(*flags) as lines:
        url = lines[0].split(" on ", 1)[1].strip()
        assert url.startswith("ws://127.0.0.1:") and "/ws/" in url
        yield url


def wait_until_up(process: subprocess.Popen[str], probe: Callable[[], T], within: float = 20) -> T:
    """``probe()``'s answer once the server ``process`` answers at all."""
    deadline = time.monotonic() + within
    while True:
        try:
            return probe()
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise
            time.sleep(0.1)


async def open_emulated_session(url: str, key: str) -> GeminiSession:
    endpoint = GeminiEndpoint(url, "models/gemini-3.8-live", ApiKeyAuth(key), Backend.AI_STUDIO)
    session = GeminiSession(endpoint, SessionConfig("models/gemini-3.8-live", "Kore", "x"))
    await session.open()
    return session


def test_demo_without_the_simulator_extra_says_what_to_install(tmp_path: Path) -> None:
    """A wheel installed without ``[simulator]`` (soxr): one line naming the extra, no
    traceback; the emulator needs no soxr and still runs."""
    hide_soxr = "import sys; sys.modules['soxr'] = None; from bridge.cli import main; "
    result = subprocess.run(
        [sys.executable, "-c", hide_soxr + "sys.exit(main(['demo']))"],
        capture_output=True, text=True, timeout=60, env=CLEAN_ENV, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "pip install 'gemini-phone-bridge[simulator]'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "demo-call.wav").exists()


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


def test_ctrl_c_drains_and_stops_with_one_line_and_status_0(tmp_path: Path) -> None:
    """A stop the operator asked for is not a crash: no traceback, exit status 0."""
    import signal

    port = free_port()
    env = {
        **CLEAN_ENV,
        "PUBLIC_URL": "https://bridge.example.com",
        "TWILIO_AUTH_TOKEN": "twilio-auth-token-123",
        "GEMINI_API_KEY": "AIza-gemini-key-for-tests",
        "TWIML_DIR": str(ROOT / "twiml"),
        "LOG_FORMAT": "text",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    assert output.strip().splitlines()[-1].endswith("stopped (SIGINT): calls drained")
