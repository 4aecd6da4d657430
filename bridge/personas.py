"""Who answers which number: one deployment, several phone numbers, each its own assistant.

``PERSONAS_FILE`` maps a called number (Twilio's ``To``) to any of
``system_prompt``, ``voice``, ``greeting`` and ``tools`` (the names of the
tools that number may use); what a persona leaves out comes from the settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import VOICES, ConfigError, Settings

FIELDS = {"system_prompt", "voice", "greeting", "tools"}


@dataclass(frozen=True, slots=True)
class Persona:
    system_prompt: str
    voice: str
    greeting: str
    tools: frozenset[str] | None  # None: every configured tool


class Personas:
    def __init__(self, default: Persona, by_number: dict[str, Persona]) -> None:
        self.default = default
        self._by_number = by_number

    def for_number(self, called: str) -> Persona:
        return self._by_number.get(called.replace(" ", ""), self.default)

    @classmethod
    def load(cls, settings: Settings) -> Personas:
        default = Persona(settings.system_prompt, settings.gemini_voice, settings.greeting, None)
        if not settings.personas_file:
            return cls(default, {})
        path = settings.personas_file
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(
                "PERSONAS_FILE", f"cannot read {path} ({exc.__class__.__name__})"
            ) from None
        if not isinstance(data, dict):
            raise ConfigError("PERSONAS_FILE", "must map phone numbers to personas")
        by_number = {}
        for number, entry in data.items():
            if not (isinstance(number, str) and number.startswith("+") and number[1:].isdigit()):
                raise ConfigError("PERSONAS_FILE", f"{number!r} is not an E.164 number")
            if not isinstance(entry, dict) or not set(entry) <= FIELDS:
                raise ConfigError(
                    "PERSONAS_FILE", f"{number}: fields may be {', '.join(sorted(FIELDS))}"
                )
            voice = entry.get("voice", default.voice)
            if voice not in VOICES:
                raise ConfigError("PERSONAS_FILE", f"{number}: unknown voice {voice!r}")
            tools = entry.get("tools")
            if tools is not None and not (
                isinstance(tools, list) and all(isinstance(t, str) for t in tools)
            ):
                raise ConfigError("PERSONAS_FILE", f"{number}: tools must be a list of tool names")
            by_number[number] = Persona(
                system_prompt=str(entry.get("system_prompt", default.system_prompt)),
                voice=voice,
                greeting=str(entry.get("greeting", default.greeting)),
                tools=frozenset(tools) if tools is not None else None,
            )
        return cls(default, by_number)
