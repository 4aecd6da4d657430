"""``gemini-phone-bridge serve``: the settings read and checked, what the assistant can do
said at start, then uvicorn until a stop is asked for (drained first)."""

from __future__ import annotations

import logging
import sys

from ..audio import resample
from ..config import ConfigError, error_lines
from ..gemini.endpoint import endpoint_from_settings
from ..observability.logs import configure_logging
from ..runtime.loading import load
from ..runtime.server import DrainingServer, uvicorn_config
from ..runtime.services import Services
from ..runtime.startup_summary import summary_lines
from ..web.app import create_app
from ..web.operator_auth import GUARD_WITHOUT_TOKEN, is_loopback

PROG = "gemini-phone-bridge"


def serve(host: str, port: int) -> int:
    """Answer calls until stopped; the exit status."""
    try:
        settings = load()
        configure_logging(
            settings.log_level, settings.secrets(), settings.log_format, settings.log_probes
        )
        services = Services.build(settings, endpoint_from_settings(settings))
    except ConfigError as exc:
        for problem in error_lines(exc):
            print(f"{PROG}: configuration error: {problem}", file=sys.stderr)
        return 2
    if settings.dev_softphone and not settings.operator_token and not is_loopback(host):
        print(
            f"{PROG}: configuration error: DEV_SOFTPHONE: without OPERATOR_TOKEN the softphone "
            "is for this machine only: serve with --host 127.0.0.1, or set OPERATOR_TOKEN",
            file=sys.stderr,
        )
        return 2
    # The tools' header values are known only now: scrub them too.
    configure_logging(
        settings.log_level, services.secrets(), settings.log_format, settings.log_probes
    )
    log = logging.getLogger("bridge")
    log.info(
        "serving on %s:%d for %s (Gemini %s, model %s, resamplers in %s)",
        host,
        port,
        settings.public_url,
        services.endpoint.backend,
        settings.gemini_model,
        resample.implementation(),
    )
    for line in summary_lines(services):
        log.log(line.level, line.text)
    if resample.implementation() is not resample.Implementation.C:
        log.warning(
            "the resamplers' C speedups were not built (no C compiler at install): "
            "calls work, at more CPU each (docs/performance.md); reinstall with gcc to build them"
        )
    if not settings.operator_token:
        log.warning(GUARD_WITHOUT_TOKEN)
    config = uvicorn_config(
        create_app(services, probe_gemini_at_start=True),
        host=host,
        port=port,
        lifespan="on",  # the Gemini watch: probes at start, cancelled at shutdown
    )
    server = DrainingServer(config, services.drain)
    try:
        server.run()
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, without draining
        log.warning("stopped at once (second Ctrl-C); calls still running were cut off")
        return 130
    log.info("stopped (%s): calls drained", server.stopped_by or "shutdown")
    return 0
