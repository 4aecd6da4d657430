"""Command line: ``gemini-phone-bridge serve | check | demo | emulator | dev-phone``
(also ``python -m bridge ...``)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from pathlib import Path

PROG = "gemini-phone-bridge"


def _serve(args: argparse.Namespace) -> int:
    from .commands.serve import serve

    return serve(args.host, args.port)


def _check(args: argparse.Namespace) -> int:
    from .commands.check import run_checks
    from .observability.logs import configure_logging

    configure_logging("ERROR", fmt="text")  # the results are the output; the log is for faults
    return asyncio.run(run_checks())


def _demo(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("soxr") is None:  # the simulator's speech samples need it
        print(
            f"{PROG} demo: the simulator is not installed; "
            "pip install 'gemini-phone-bridge[simulator]'",
            file=sys.stderr,
        )
        return 2
    from .commands.demo import DemoOptions
    from .commands.demo import main as demo_main
    from .observability.logs import configure_logging

    configure_logging("DEBUG" if args.verbose else "WARNING", fmt="text")
    return demo_main(
        DemoOptions(
            out=Path(args.out),
            call_report=Path(args.call_report),
            as_json=args.json,
            barge_in=not args.no_barge_in,
            reply_seconds=args.reply_seconds,
        )
    )


def _emulator(args: argparse.Namespace) -> int:
    from .observability.logs import configure_logging
    from .testing.emulator import DEFAULT_API_KEY, EmulatorOptions, FaultPlan, GeminiEmulator

    configure_logging("INFO", fmt="text")
    faults = FaultPlan(
        go_away_at=args.go_away_after,
        go_away_time_left=args.go_away_time_left,
        close_at=args.close_after,
        stall_at=args.stall_after,
        refuse_setup=args.refuse_setup,
        setup_delay=args.setup_delay,
    )

    async def run() -> None:
        api_key = DEFAULT_API_KEY if args.api_key is None else args.api_key or None
        options = EmulatorOptions(api_key=api_key, reply_seconds=args.reply_seconds, faults=faults)
        emulator = await GeminiEmulator(options).start(args.host, args.port)
        print(emulator_banner(emulator.url, emulator.vertex_url, args.api_key), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await emulator.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def emulator_banner(url: str, vertex_url: str, api_key: str) -> str:
    """What to paste into the bridge's .env, exactly; the emulator takes any key unless told."""
    from .testing.emulator import DEFAULT_API_KEY

    key = api_key or DEFAULT_API_KEY  # any key does; this one passes the secret policy
    demanded = (
        "It demands that API key." if api_key else "It accepts any API key (--api-key demands one)."
    )
    return f"""Gemini Live emulator on {url}
{demanded} For the bridge, put these lines in its .env:

GEMINI_LIVE_URL={url}
GEMINI_API_KEY={key}

To call it from your browser with no Twilio account, add these too, run
`{PROG} serve --host 127.0.0.1 --port 8080` and open http://localhost:8080/softphone:

PUBLIC_URL=http://localhost:8080
TWILIO_AUTH_TOKEN=offline-auth-token-for-the-softphone
DEV_SOFTPHONE=true

(The Vertex AI path is {vertex_url}. Ctrl-C stops the emulator.)"""


def _dev_phone(args: argparse.Namespace) -> int:
    from .commands.dev_phone import run

    return run(args.host, args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="A phone bridge between Twilio and Gemini Live."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="answer calls (settings from the environment/.env)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(run=_serve)

    check = commands.add_parser(
        "check",
        help="try what a call needs now: settings, a real Gemini session, Twilio credentials "
        "and the number's webhook",
    )
    check.set_defaults(run=_check)

    demo = commands.add_parser("demo", help="run a whole simulated call offline")
    demo.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    demo.add_argument(
        "--out",
        default="demo-call.wav",
        help="stereo WAV of the call (caller left, assistant right)",
    )
    demo.add_argument(
        "--call-report",
        default="demo-report.json",
        help="JSON file of the call's report, as CALL_REPORT_URL receives it",
    )
    demo.add_argument("--no-barge-in", action="store_true", help="let the answer play out")
    demo.add_argument("--reply-seconds", type=float, default=6.0, help="length of each answer")
    demo.add_argument("-v", "--verbose", action="store_true", help="show the server's log")
    demo.set_defaults(run=_demo)

    dev = commands.add_parser(
        "dev-phone", help="serve through an ngrok tunnel and point your Twilio number at it"
    )
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8080)
    dev.set_defaults(run=_dev_phone)

    emulator = commands.add_parser("emulator", help="run the Gemini Live emulator alone")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=9500)
    emulator.add_argument("--api-key", default="", help="demand this key (default: any key)")
    emulator.add_argument("--reply-seconds", type=float, default=None)
    faults = emulator.add_argument_group("faults, applied to every session (seconds after setup)")
    faults.add_argument("--go-away-after", type=float, help="send goAway, then close 1011")
    faults.add_argument("--go-away-time-left", type=float, default=10.0)
    faults.add_argument("--close-after", type=float, help="close 1011 (internal error)")
    faults.add_argument("--stall-after", type=float, help="stop answering, silently")
    faults.add_argument("--refuse-setup", action="store_true", help="close 1011 instead of setup")
    faults.add_argument("--setup-delay", type=float, default=0.0, help="slow setupComplete")
    emulator.set_defaults(run=_emulator)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))
