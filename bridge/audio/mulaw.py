"""G.711 μ-law ↔ PCM16 LE, via the C ``audioop`` (stdlib to 3.12, audioop-lts on 3.13+)."""

from __future__ import annotations

import sys
import warnings

with warnings.catch_warnings():  # 3.11/3.12 warn that the stdlib module leaves in 3.13
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

if sys.byteorder != "little":  # audioop works in native order; both wires are little-endian
    raise ImportError("bridge.audio needs a little-endian machine")

ULAW_SILENCE = 0xFF


def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    return audioop.ulaw2lin(ulaw, 2)


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    return audioop.lin2ulaw(pcm, 2)
