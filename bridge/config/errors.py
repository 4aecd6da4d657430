"""What a bad setting is: one line naming the variable, or many at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A missing or invalid setting; ``str()`` is one line naming the variable."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


class ConfigErrors(ConfigError):
    """Every problem found in one pass; ``str()`` is one line per problem."""

    def __init__(self, errors: list[ConfigError]) -> None:
        Exception.__init__(self, "\n".join(str(e) for e in errors))
        self.errors = errors
        self.name = errors[0].name
        self.problem = errors[0].problem


def single_errors(error: ConfigError) -> list[ConfigError]:
    """The single problems in ``error``, whether it holds one or many."""
    return error.errors if isinstance(error, ConfigErrors) else [error]


def error_lines(error: ConfigError) -> list[str]:
    """One line per problem, whether ``error`` holds one or many."""
    return [str(e) for e in single_errors(error)]


def read_json_file(name: str, path: str) -> Any:
    """A setting's JSON file; a ConfigError naming ``name`` says where it is broken (line and
    column, as an editor shows them) or why it cannot be read."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        where = f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
        raise ConfigError(name, f"{path} is not valid JSON: {where}") from None
    except OSError as exc:
        raise ConfigError(name, f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(name, f"cannot read {path}: not UTF-8 text") from None
