"""``gemini-phone-bridge demo``: a whole phone call, offline, with no credentials.

The real server, the Gemini emulator and a simulated Twilio caller run on
loopback. The assistant greets the caller; the caller asks a question, hears
the answer start, talks over it (a barge-in), hears the second answer out and
hangs up. Both sides go to a stereo WAV file, as a call recording has them
(the caller left, the assistant right); the report says how fast and how much.
The call's own report, as ``CALL_REPORT_URL`` receives it (signed, checked by a
receiver on loopback), goes to a JSON file beside it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import DEFAULT_GREETING
from ..testing.caller import SimulatedCaller
from ..testing.emulator import EmulatorOptions
from ..testing.harness import loopback_deployment
from ..testing.speech import load_speech, write_call_recording
from ..testing.webhook_receiver import WebhookReceiver

log = logging.getLogger(__name__)


@dataclass
class DemoOptions:
    out: Path = Path("demo-call.wav")
    call_report: Path = Path("demo-report.json")
    as_json: bool = False
    barge_in: bool = True
    reply_seconds: float | None = 6.0


@dataclass
class _Heard:
    """What the call left behind, once it has ended."""

    caller: SimulatedCaller
    greeted_at: float
    totals: dict[str, int]
    gemini_received_s: float


async def _converse(options: DemoOptions, env: dict[str, str]) -> _Heard:
    hello = load_speech("caller_hello.wav")
    interruption = load_speech("caller_barge_in.wav")
    emulator = EmulatorOptions(reply_seconds=options.reply_seconds)
    async with loopback_deployment(emulator, env=env) as deployment:
        caller = deployment.caller()
        async with caller.dial() as call:
            greeted_at = await call.wait_for_answer(timeout=10)
            await call.wait_until_quiet(quiet_s=0.3, timeout=30)
            await call.say(hello)
            await call.wait_for_answer(timeout=15)
            if options.barge_in:
                await asyncio.sleep(2.0)  # let the caller hear the start of the answer
                await call.say(interruption)
                await call.wait_for_answer(timeout=15)
            await call.wait_until_quiet(quiet_s=1.0, timeout=60)
        registry = deployment.services.registry
        async with asyncio.timeout(5):  # the server notices the hang-up a moment later
            while registry.active_count:
                await asyncio.sleep(0.02)
        sessions = deployment.emulator.sessions
        received = len(sessions[-1].audio_in) / 32000 if sessions else 0.0
        return _Heard(caller, greeted_at, registry.snapshot()["totals"], received)


async def run_demo(options: DemoOptions) -> dict[str, Any]:
    started = time.monotonic()
    secret = "demo-" + secrets.token_hex(16)
    async with WebhookReceiver(secret) as receiver:
        env = {
            "GREETING": DEFAULT_GREETING,  # the product's default: the assistant speaks first
            "CALL_REPORT_URL": receiver.url("/report"),
            "WEBHOOK_SECRET": secret,
        }
        heard = await _converse(options, env)
        (delivery,) = await receiver.wait_for(1, timeout=10)  # sent as the call ended
    result = heard.caller.result
    write_call_recording(options.out, caller=bytes(result.said), assistant=bytes(result.heard))
    call_report = delivery.json if isinstance(delivery.json, dict) else {}
    await asyncio.to_thread(
        options.call_report.write_text, json.dumps(call_report, indent=2, ensure_ascii=False)
    )
    report = result.report()
    report.update(
        {
            "greeting_ms": round((heard.greeted_at - result.stream_started_at) * 1000, 1),
            "wav": str(options.out),
            "call_seconds": round(time.monotonic() - result.dialled_at, 2),
            "gemini_received_seconds": round(heard.gemini_received_s, 2),
            "bridge_totals": heard.totals,
            "call_report": {
                "file": str(options.call_report),
                "signature_valid": delivery.signature_valid,
                "outcome": call_report.get("outcome"),
                "turns": len(call_report.get("transcript") or []),
            },
            "wall_seconds": round(time.monotonic() - started, 2),
        }
    )
    return report


def format_report(report: dict[str, Any]) -> str:
    turns = ", ".join(f"{t:.0f} ms" for t in report["turn_latency_ms"]) or "none"
    first = report["first_audio_ms"]
    sent = report["call_report"]
    signed = "signature valid" if sent["signature_valid"] else "signature INVALID"
    lines = [
        "Simulated call complete (offline: real server + Gemini Live emulator + simulated caller)",
        f"  call SID                    {report['call_sid']}",
        f"  call start → first audio    {first:.0f} ms (the greeting; webhook to first frame)"
        if first is not None
        else "  no audio heard",
        f"  stream start → greeting     {report['greeting_ms']:.0f} ms",
        f"  turn latency                {turns}",
        "                              (end of caller speech → first answer audio at the caller;",
        "                               includes the 600 ms of silence Gemini's VAD waits for,",
        "                               VAD_SILENCE_DURATION_MS, and the emulator's 100 ms)",
        f"  frames caller → bridge      {report['frames_sent']}",
        f"  frames bridge → caller      {report['frames_received']}",
        f"  interruptions (clear)       {report['interruptions']}",
        f"  Gemini heard                {report['gemini_received_seconds']} s of 16 kHz audio",
        f"  caller heard                {report['heard_voiced_seconds']} s of speech"
        f" in {report['heard_seconds']} s",
        f"  recording                   {report['wav']} (stereo: caller left, assistant right)",
        f"  call report                 {sent['file']} (what CALL_REPORT_URL receives;"
        f" {signed}, outcome {sent['outcome']}, {sent['turns']} turns)",
    ]
    return "\n".join(lines)


def main(options: DemoOptions) -> int:
    report = asyncio.run(run_demo(options))
    if options.as_json:
        print(json.dumps(report))
    else:
        print(format_report(report))
    heard = report["frames_received"] > 0
    if not heard:
        print("demo failed: the caller heard no answer", file=sys.stderr)
    return 0 if heard else 1
