"""The newcomer's offline path, as the README tells it, with the real commands: the
emulator, its banner's settings pasted into .env, ``check``, ``serve``, then a call."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.testing.caller import SimulatedCaller

from .test_cli import CLEAN_ENV, emulator_banner, free_port, wait_until_up

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def banner() -> Iterator[dict[str, str]]:
    """``gemini-phone-bridge emulator`` with no flags; the settings its banner says to paste."""
    with emulator_banner() as lines:
        assert "accepts any API key" in lines[1]
        yield dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z_]+=", line))


def write_env(folder: Path, settings: dict[str, str], port: int) -> None:
    """The pasted lines, as a newcomer would, on a port free for this test."""
    settings = {**settings, "PUBLIC_URL": f"http://localhost:{port}"}
    (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))


def command(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env={**CLEAN_ENV, **env},
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_on_the_pasted_settings_passes_and_names_what_fails(
    banner: dict[str, str], tmp_path: Path
) -> None:
    assert set(banner) == {
        "GEMINI_LIVE_URL",
        "GEMINI_API_KEY",
        "PUBLIC_URL",
        "TWILIO_AUTH_TOKEN",
        "DEV_SOFTPHONE",
    }
    write_env(tmp_path, {**banner, "GEMINI_API_KEY": "whatever-i-typed"}, 8080)
    result = command(tmp_path, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "ok    settings: every setting reads well"
    assert lines[1].startswith("ok    Gemini (default assistant): setupComplete in ")
    assert lines[2].startswith("skip  Twilio credentials: TWILIO_ACCOUNT_SID is not set")
    result = command(tmp_path, "check", GEMINI_MODEL="gpt-4o")
    assert result.returncode == 1
    assert "FAIL  Gemini (default assistant): " in result.stdout
    assert "1008 models/gpt-4o is not found" in result.stdout


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_serve_on_the_pasted_settings_answers_a_call_and_says_what_it_can_do(
    banner: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    write_env(tmp_path, banner, port)
    server = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=CLEAN_ENV,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    public_url = f"http://localhost:{port}"
    try:
        assert wait_until_up(server, lambda: get(f"http://127.0.0.1:{port}/health"))[0] == 200

        async def call() -> SimulatedCaller:
            caller = SimulatedCaller(public_url, banner["TWILIO_AUTH_TOKEN"])
            async with caller.dial() as line:
                await line.wait_for_answer(timeout=10)  # the greeting
                await line.wait_until_quiet(quiet_s=0.3, timeout=20)
            return caller

        caller = asyncio.run(call())
        assert caller.result.frames_received > 25
        assert caller.result.close_code != 1011  # no apology: the key was accepted
        for _ in range(3):
            assert get(f"http://127.0.0.1:{port}/ready") == (200, '{"status":"ready"}')
        status, metrics = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert re.search(r"^process_resident_memory_bytes \d", metrics, re.M)
        assert re.search(r"^process_cpu_seconds_total \d", metrics, re.M)
        assert get(f"http://127.0.0.1:{port}/nowhere")[0] == 404
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=20)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    # The start-up summary: what the assistant can do, and why a tool is off.
    assert any(
        m.startswith("assistant: model gemini-3.8-live on AI Studio via GEMINI_LIVE_URL")
        for m in messages
    )
    (off,) = [line for line in lines if line["message"].startswith("tools off: ")]
    assert off["level"] == "WARNING" and "end_call (needs TWILIO_ACCOUNT_SID" in off["message"]
    assert "the assistant cannot hang up" in off["message"]
    assert "personas: none, one assistant answers every number" in messages
    assert "TwiML: the package's voice.toml" in messages
    assert any(m.startswith("Gemini check (default assistant): setupComplete in") for m in messages)
    # Probes and polls stay out of the access log; other requests do not.
    access = [line["message"] for line in lines if line["logger"] == "uvicorn.access"]
    assert any("POST /api/inbound-call" in m for m in access)
    assert any("GET /nowhere" in m for m in access)
    assert not [m for m in access if re.search(r"GET /(health|ready|metrics)", m)]


def test_the_readme_shows_the_lines_the_emulator_prints() -> None:
    """The README's first screen must not drift from what the newcomer sees."""
    from bridge.cli import emulator_banner
    from bridge.testing.emulator import GeminiEmulator

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("It prints the lines to put in `.env`", 1)[1].split("```sh\n", 1)[1]
    shown = block.split("```", 1)[0].splitlines()
    emulator = GeminiEmulator()
    emulator.port = 9500  # the default of `gemini-phone-bridge emulator`
    banner = emulator_banner(emulator.url, emulator.vertex_url, api_key="")
    assert shown == [line for line in banner.splitlines() if re.match(r"^[A-Z_]+=", line)]
