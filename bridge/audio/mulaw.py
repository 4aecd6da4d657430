"""G.711 μ-law ↔ PCM16 LE, via the C ``audioop`` (stdlib to 3.12, audioop-lts on 3.13+).

Encoding goes through ``_speedups`` when it was built: audioop's encoder searches
a segment per sample, and on real audio (not one frame repeated in a loop) the
CPU mispredicts those branches, where a table lookup has none to mispredict
(docs/performance.md has the figures). The results are audioop's, tested for every
sample value.
"""

from __future__ import annotations

import sys
import warnings

with warnings.catch_warnings():  # 3.11/3.12 warn that the stdlib module leaves in 3.13
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

try:
    from . import _speedups
except ImportError:
    _speedups = None  # type: ignore[assignment]

if sys.byteorder != "little":  # audioop works in native order; both wires are little-endian
    raise ImportError("bridge.audio needs a little-endian machine")

ULAW_SILENCE = 0xFF


def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    return audioop.ulaw2lin(ulaw, 2)  # a table lookup already


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    if _speedups is not None:
        return _speedups.lin2ulaw(pcm)
    return audioop.lin2ulaw(pcm, 2)
