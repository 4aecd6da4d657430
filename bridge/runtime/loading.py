"""The settings a server runs with: the table's, and what their files hold.

``config`` reads and checks the variables; what TOOLS_FILE, PERSONAS_FILE and
TWIML_DIR point at is checked by the packages that read those files, handed to
it here, so a bad tool, persona or TwiML key is reported at start-up together
with every other bad setting's line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..call.personas import Personas
from ..config import Settings, load_settings
from ..tools.http_tool import load_http_tools
from ..twilio.twiml import TwimlSettings


def _tools(settings: Settings) -> None:
    if settings.tools_file:
        load_http_tools(settings.tools_file)


def _personas(settings: Settings) -> None:
    if settings.personas_file:
        Personas.load(settings)


def _twiml(settings: Settings) -> None:
    TwimlSettings.load(settings.twiml_dir)


def load(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> Settings:
    """Every setting and every settings file checked; raises ConfigErrors naming each problem."""
    return load_settings(environ, env_file, file_checks=(_tools, _personas, _twiml))
