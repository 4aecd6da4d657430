"""Settings: the one table of environment variables, read and checked at start-up.

Owns: the table (``table.py``), how values are read (``values.py``), what a bad one is
(``errors.py``), the secret policy, loading (``settings.py``) and the docs generated from
the table. May import: the standard library and python-dotenv only; it knows nothing of
calls, protocols or the web (what a setting's *file* holds is checked by the package that
reads it, handed in as ``file_checks``).
"""

from .errors import ConfigError, ConfigErrors, error_lines, read_json_file, single_errors
from .settings import Settings, load_settings, read_environment
from .table import (
    BUILTIN_TOOLS,
    BY_NAME,
    DEFAULT_GREETING,
    DEFAULT_MODEL,
    DEFAULT_SYSTEM_PROMPT,
    DEFAULT_VOICE,
    SECTIONS,
    TABLE,
    VOICES,
    Setting,
)

__all__ = [
    "BUILTIN_TOOLS",
    "BY_NAME",
    "DEFAULT_GREETING",
    "DEFAULT_MODEL",
    "DEFAULT_SYSTEM_PROMPT",
    "DEFAULT_VOICE",
    "SECTIONS",
    "TABLE",
    "VOICES",
    "ConfigError",
    "ConfigErrors",
    "Setting",
    "Settings",
    "error_lines",
    "load_settings",
    "read_environment",
    "read_json_file",
    "single_errors",
]
