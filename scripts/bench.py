#!/usr/bin/env python3
"""What the bridge adds to a call, at the wire, against a bare relay on the same stack.

    .venv/bin/python scripts/bench.py                      # the sweep: bridge and baselines
    .venv/bin/python scripts/bench.py --calls 50           # one step each
    .venv/bin/python scripts/bench.py --workers 2          # two server processes
    .venv/bin/python scripts/bench.py --json bench.json --plot docs/bench-p99.png

Method and figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench import StepResult, run_step
from benchmarks.per_frame import micro_benchmark
from benchmarks.processes import RELAY_AUDIO, emulator_process, profile_summary
from benchmarks.sweep import LADDER, cpu_against_relay, machine, sweep, table, write_json


def plot(steps: list[StepResult], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for mode, colour in (("bridge", "tab:blue"), ("relay", "tab:gray"), (RELAY_AUDIO, "tab:olive")):
        for servers, style in ((1, "-o"), (2, "--s")):
            mine = sorted(
                (s for s in steps if s.mode == mode and s.servers == servers), key=lambda s: s.calls
            )
            if mine:
                label = f"{mode}" + (f" ({servers} processes)" if servers > 1 else "")
                ax.plot(
                    [s.calls for s in mine],
                    [s.round_trip_ms.p99 for s in mine],
                    style,
                    color=colour,
                    label=label,
                )
    ax.axhline(20, color="tab:red", linewidth=1, linestyle=":", label="20 ms limit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent full-duplex calls")
    ax.set_ylabel("p99 added round trip (ms)")
    ax.set_title("What the server adds to a call, at the wire")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="each step's speaking time")
    parser.add_argument("--calls", type=int, nargs="*", help="only these steps (no sweep)")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1],
        help="server processes, calls round-robin (several: one sweep each; the relay runs at 1)",
    )
    parser.add_argument(
        "--baselines",
        nargs="*",
        choices=("relay", RELAY_AUDIO),
        default=["relay", RELAY_AUDIO],
        help="the bare relay, and the relay converting the audio as the bridge does "
        "(none: --baselines with no value)",
    )
    parser.add_argument(
        "--tries", type=int, default=2, help="a failing step runs up to this often (any pass)"
    )
    parser.add_argument("--json", help="write the whole report here")
    parser.add_argument("--plot", help="write the p99 plot (PNG) here")
    parser.add_argument(
        "--profile", metavar="FILE", help="with --calls: py-spy the (first) server, stacks to FILE"
    )
    args = parser.parse_args(argv)

    report: dict[str, Any] = {
        "machine": machine(),
        "seconds_per_step": args.seconds,
        "tries_per_step": args.tries,
    }
    print(f"machine: {report['machine']}", flush=True)
    report["per_frame_us"] = micro_benchmark()
    print(f"per-frame path (µs per 20 ms frame, no sockets): {report['per_frame_us']}", flush=True)

    runs = [("bridge", args.workers[0]), *((b, 1) for b in args.baselines)]
    runs += [("bridge", w) for w in args.workers[1:]]
    steps: list[StepResult] = []
    best: dict[str, int] = {}

    def show(step: StepResult) -> None:
        print(table([step]).splitlines()[1], flush=True)

    with emulator_process() as emulator:
        if args.calls:
            for mode, workers in runs:
                name = mode if workers == 1 else f"{mode}×{workers}"
                print(f"\n== {name}\n{table([])}", flush=True)
                for calls in args.calls:
                    profile = f"{args.profile}.{mode}.{calls}" if args.profile else None
                    step = run_step(mode, calls, args.seconds, emulator, workers, profile=profile)
                    show(step)
                    steps.append(step)
                    if profile:
                        print(f"  profile of the {mode} server (own % / inclusive %), {profile}:")
                        for function, own, inclusive in profile_summary(profile):
                            print(f"    {own:5.1f}  {inclusive:5.1f}  {function}")
        else:
            print(f"\n== {', '.join(m if w == 1 else f'{m}×{w}' for m, w in runs)}, in turn")
            print(table([]), flush=True)
            steps, best = sweep(
                runs, emulator, args.seconds, ladder=LADDER, tries=args.tries, on_step=show
            )

    report["steps"] = steps  # in the order they ran
    print("\n" + table(sorted(steps, key=lambda s: runs.index((s.mode, s.servers)))))
    if best:
        report["max_calls"] = best
        print(f"\nlargest N with p99 round trip < 20 ms and no frame lost: {best}")
        if best.get("relay") and "bridge" in best:
            ratio = best["bridge"] / best["relay"]
            report["bridge_vs_relay"] = round(ratio, 3)
            print(f"bridge / relay: {ratio:.0%} (target ≥ 80%)")
            if best.get(RELAY_AUDIO):
                ceiling = best[RELAY_AUDIO] / best["relay"]
                report["relay_audio_vs_relay"] = round(ceiling, 3)
                print(f"{RELAY_AUDIO} / relay: {ceiling:.0%} (what converting the audio leaves)")
    if ratios := cpu_against_relay(steps):
        report["cpu_vs_relay"] = ratios
        print("\nCPU per call-minute over the bare relay's, at equal calls (passing steps):")
        for name, by_calls in ratios.items():
            print(f"  {name:<12}" + "  ".join(f"{n}: {r:.2f}×" for n, r in by_calls.items()))
    if args.json:
        write_json(args.json, report)
    if args.plot:
        plot(steps, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
