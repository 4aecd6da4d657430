"""Who answers which number: one deployment, several phone numbers, each its own assistant.

``PERSONAS_FILE`` maps a called number (Twilio's ``To``) to any of
``system_prompt``, ``voice``, ``greeting`` and ``tools`` (the names of the
tools that number may use); what a persona leaves out comes from the settings.
A field or tool name the bridge does not know is refused at start-up: a typo
would otherwise quietly give that number the defaults.

For calls it places and reports, a persona may also have a ``name`` (``POST
/api/calls`` and the pre-call webhook may choose it by name or by number), a
``voicemail`` message for an answering machine (none: hang up on machines), a
``consent`` line Twilio speaks before the assistant (``This call is recorded``),
``record`` (overrides RECORD_CALLS) and ``variables``: default values for the
``{{placeholders}}`` its texts use (``call.variables``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..config import BUILTIN_TOOLS, VOICES, ConfigError, ConfigErrors, Settings, read_json_file
from .variables import VariablesRefused, checked, fill, missing

FIELDS = (
    "name",
    "system_prompt",
    "voice",
    "greeting",
    "tools",
    "voicemail",
    "consent",
    "record",
    "variables",
)
TEXT_FIELDS = ("name", "system_prompt", "greeting", "voicemail", "consent")
DEFAULT_NAME = "default"
NAME = "PERSONAS_FILE"


@dataclass(frozen=True, slots=True)
class Persona:
    system_prompt: str
    voice: str
    greeting: str
    tools: frozenset[str] | None  # None: every configured tool
    number: str = ""  # the number it answers (and calls from); "" for the default
    name: str = DEFAULT_NAME
    voicemail: str = ""  # left on an answering machine; "" hangs up on machines
    consent: str = ""  # spoken by Twilio before the stream connects
    record: bool | None = None  # None: RECORD_CALLS decides
    variables: Mapping[str, str] = field(default_factory=dict)  # defaults for placeholders

    @property
    def key(self) -> str:
        """How a call's records name it: its number, or the default's name."""
        return self.number or DEFAULT_NAME

    def texts(self) -> tuple[str, ...]:
        """What the call's variables fill."""
        return (self.system_prompt, self.greeting, self.voicemail, self.consent)

    def missing(self, variables: Mapping[str, str]) -> list[str]:
        """Placeholders neither ``variables`` nor the persona's defaults give a value."""
        return missing(self.texts(), {**self.variables, **variables})

    def filled(self, variables: Mapping[str, str]) -> Persona:
        """This persona for one call: its texts with the call's variables in them."""
        values = {**self.variables, **variables}
        return replace(
            self,
            system_prompt=fill(self.system_prompt, values),
            greeting=fill(self.greeting, values),
            voicemail=fill(self.voicemail, values),
            consent=fill(self.consent, values),
        )


class Personas:
    def __init__(self, default: Persona, by_number: dict[str, Persona]) -> None:
        self.default = default
        self._by_number = by_number
        self._by_name = {p.name: p for p in by_number.values() if p.name != DEFAULT_NAME}

    def for_number(self, called: str) -> Persona:
        return self._by_number.get(called.replace(" ", ""), self.default)

    def find(self, key: str) -> Persona | None:
        """A persona by its name or its number (``default``: the default one); None if
        there is no such persona."""
        if key == DEFAULT_NAME:
            return self.default
        return self._by_number.get(key.replace(" ", "")) or self._by_name.get(key)

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
        names = [p.name for p in by_number.values() if p.name != DEFAULT_NAME]
        problems += [
            f"two personas are named {n!r}" for n in sorted(set(names)) if names.count(n) > 1
        ]
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
    for key in TEXT_FIELDS:
        if key in entry and not isinstance(entry[key], str):
            problems.append(f"{number}: {key} must be text")
    name = entry.get("name", DEFAULT_NAME)
    if isinstance(name, str) and (name.startswith("+") or not 0 < len(name) <= 64):
        problems.append(f"{number}: name must be 1-64 characters, not a number")
    if "record" in entry and not isinstance(entry["record"], bool):
        problems.append(f"{number}: record must be true or false")
    try:
        defaults = checked(entry.get("variables"), f"{number}: variables")
    except VariablesRefused as exc:
        problems.append(str(exc))
        defaults = {}
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
        number=number,
        name=name,
        voicemail=entry.get("voicemail", ""),
        consent=entry.get("consent", ""),
        record=entry.get("record"),
        variables=defaults,
    )
