"""``pip install`` of the built wheel (not an editable checkout) runs, from outside the repo.

The wheel is built from a copy of the sources, installed with ``--no-deps`` into a
fresh virtualenv that borrows the test venv's dependencies through a ``.pth``
file, and its console command runs ``demo`` and ``serve`` from an empty folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from twilio.request_validator import RequestValidator

from .test_cli import CLEAN_ENV, free_port, wait_until_up

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def run(*args: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def installed_wheel(tmp_path: Path) -> Path:
    """The fresh venv's bin folder, the wheel installed in it."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(
        ROOT / "bridge", source / "bridge", ignore=shutil.ignore_patterns("__pycache__", "*.so")
    )
    wheels = tmp_path / "wheels"
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        wheels,
        source,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("gemini_phone_bridge-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path)
    # The dependencies come from the test venv; the bridge only from the wheel.
    (Path(site.stdout.strip()) / "test-venv-deps.pth").write_text(
        sysconfig.get_path("purelib") + "\n"
    )
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "-q",
        wheel,
        cwd=tmp_path,
    )
    return venv / "bin"


def test_the_built_wheel_runs_demo_and_serve_outside_the_repo(tmp_path: Path) -> None:
    bin_dir = installed_wheel(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = run(bin_dir / "python", "-c", "import bridge; print(bridge.__file__)", cwd=outside)
    assert where.stdout.startswith(str(tmp_path / "venv"))  # not the checkout

    demo = run(
        bin_dir / "gemini-phone-bridge",
        "demo",
        "--json",
        "--no-barge-in",
        "--reply-seconds",
        "1",
        cwd=outside,
    )
    report = json.loads(demo.stdout)
    assert report["frames_received"] > 50 and report["bridge_totals"]["completed"] == 1
    assert (outside / "demo-call.wav").is_file()

    port = free_port()
    (outside / ".env").write_text(
        f"PUBLIC_URL=http://127.0.0.1:{port}\nTWILIO_AUTH_TOKEN=twilio-auth-token-123\nGEMINI_API_KEY=gemini-key-for-tests\n"
        "GEMINI_LIVE_URL=ws://127.0.0.1:9/unreachable\nLOG_FORMAT=text\nDRAIN_TIMEOUT=0\n"
    )
    server = subprocess.Popen(
        [bin_dir / "gemini-phone-bridge", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=outside,
        env=CLEAN_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/inbound-call"
        params = {
            "CallSid": "CA" + "5" * 32,
            "AccountSid": "AC" + "0" * 32,
            "From": "+1",
            "To": "+2",
        }
        request = urllib.request.Request(
            url,
            data=urllib.parse.urlencode(params).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": RequestValidator("twilio-auth-token-123").compute_signature(
                    url, params
                ),
            },
        )

        def answer() -> str:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.read().decode()

        twiml = wait_until_up(server, answer)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=20)
    # The packaged defaults answer the call: the stream, and where Twilio asks what next.
    assert "<Stream" in twiml and f'action="http://127.0.0.1:{port}/api/stream-ended' in twiml
    assert "TwiML: the package's voice.toml" in output
