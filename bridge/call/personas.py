"""Who answers which number: one deployment, several phone numbers, each its own assistant.

``PERSONAS_FILE`` maps a called number (Twilio's ``To``) to any of
``system_prompt``, ``voice``, ``greeting`` and ``tools`` (the names of the
tools that number may use); what a persona leaves out comes from the settings.
A field or tool name the bridge does not know is refused at start-up: a typo
would otherwise quietly give that number the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import BUILTIN_TOOLS, VOICES, ConfigError, ConfigErrors, Settings, read_json_file

FIELDS = ("system_prompt", "voice", "greeting", "tools")
NAME = "PERSONAS_FILE"


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

    def numbers(self) -> dict[str, Persona]:
        return dict(self._by_number)

    @classmethod
    def load(cls, settings: Settings) -> Personas:
        default = Persona(settings.system_prompt, settings.gemini_voice, settings.greeting, None)
        if not settings.personas_file:
            return cls(default, {})
        path = settings.personas_file
        data = read_json_file(NAME, path)
        if not isinstance(data, dict):
            raise ConfigError(NAME, f"{path} must map phone numbers to personas")
        known_tools = BUILTIN_TOOLS | _http_tool_names(settings)
        by_number: dict[str, Persona] = {}
        problems: list[str] = []
        for number, entry in data.items():
            persona = _persona(number, entry, default, known_tools, problems)
            if persona is not None:
                by_number[number] = persona
        if problems:
            raise ConfigErrors([ConfigError(NAME, p) for p in problems])
        return cls(default, by_number)


def _http_tool_names(settings: Settings) -> frozenset[str]:
    if not settings.tools_file:
        return frozenset()
    from ..tools.http_tool import load_http_tools

    return frozenset(tool.name for tool in load_http_tools(settings.tools_file))


def _persona(
    number: str, entry: Any, default: Persona, known_tools: frozenset[str], problems: list[str]
) -> Persona | None:
    if not (number.startswith("+") and number[1:].isdigit()):
        problems.append(f"{number!r} is not an E.164 number such as +14155550100")
        return None
    if not isinstance(entry, dict):
        problems.append(f"{number}: must be an object with {', '.join(FIELDS)}")
        return None
    found = len(problems)
    for key in entry:
        if key not in FIELDS:
            problems.append(f"{number}: unknown field {key!r} (known: {', '.join(FIELDS)})")
    for key in ("system_prompt", "greeting"):
        if key in entry and not isinstance(entry[key], str):
            problems.append(f"{number}: {key} must be text")
    voice = entry.get("voice", default.voice)
    if voice not in VOICES:
        problems.append(f"{number}: unknown voice {voice!r} (names are case-sensitive)")
    tools = entry.get("tools")
    names_ok = isinstance(tools, list) and all(isinstance(t, str) for t in tools)
    if tools is not None and not names_ok:
        problems.append(f"{number}: tools must be a list of tool names")
    elif tools is not None and (unknown := sorted(set(tools) - known_tools)):
        problems.append(
            f"{number}: unknown tool {', '.join(unknown)} (known: {', '.join(sorted(known_tools))})"
        )
    if len(problems) > found:
        return None
    return Persona(
        system_prompt=entry.get("system_prompt", default.system_prompt),
        voice=voice,
        greeting=entry.get("greeting", default.greeting),
        tools=frozenset(tools) if tools is not None else None,
    )
