"""What a call gets, decided in one place: its persona, its tools and the setup Gemini is
sent. The webhook's pre-warmed session, the call itself, ``check`` and the start-up
summary all ask here, so they cannot disagree about what a number's assistant is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..gemini.wire import SessionConfig
from ..tools.base import Tool
from ..tools.call_control import (
    CallControl,
    EndCallTool,
    TransferCallTool,
    end_call_declaration,
    transfer_call_declaration,
)
from ..tools.http_tool import HttpTool
from .facts import CallFacts
from .personas import Persona, Personas


class BuiltinTool(StrEnum):
    END_CALL = "end_call"
    TRANSFER_CALL = "transfer_call"


@dataclass(frozen=True, slots=True)
class CallPlan:
    """One number's assistant."""

    persona: Persona
    session_config: SessionConfig
    _builtins: tuple[str, ...]
    _http_tools: tuple[HttpTool, ...]
    _transfer_numbers: tuple[str, ...]

    @property
    def tool_names(self) -> list[str]:
        return [*self._builtins, *(tool.name for tool in self._http_tools)]

    def tools(self, control: CallControl) -> list[Tool]:
        """The tools themselves; the built-in ones act on the call through ``control``."""
        tools: list[Tool] = []
        if BuiltinTool.END_CALL in self._builtins:
            tools.append(EndCallTool(control))
        if BuiltinTool.TRANSFER_CALL in self._builtins:
            tools.append(TransferCallTool(control, self._transfer_numbers))
        tools.extend(self._http_tools)
        return tools


class CallPlanner:
    def __init__(
        self,
        personas: Personas,
        http_tools: Sequence[HttpTool],
        *,
        model_resource: str,
        builtin_tools: frozenset[str],
        can_change_calls: bool,
        transfer_numbers: tuple[str, ...],
        vad: dict[str, Any] | None,
    ) -> None:
        self.personas = personas
        self._http_tools = tuple(http_tools)
        self._model = model_resource
        self._transfer_numbers = transfer_numbers
        self._vad = vad
        self.builtins_on = self._builtins_on(builtin_tools, can_change_calls)

    def _builtins_on(self, wanted: frozenset[str], can_change_calls: bool) -> tuple[str, ...]:
        """end_call and transfer_call change the call through Twilio's REST API: they are
        offered only when it can be used (TWILIO_ACCOUNT_SID), transfer only with numbers."""
        if not can_change_calls:
            return ()
        on = [BuiltinTool.END_CALL] if BuiltinTool.END_CALL in wanted else []
        if BuiltinTool.TRANSFER_CALL in wanted and self._transfer_numbers:
            on.append(BuiltinTool.TRANSFER_CALL)
        return tuple(on)

    def for_number(self, called: str) -> CallPlan:
        return self.for_persona(self.personas.for_number(called))

    def persona_for(self, facts: CallFacts | None, called: str) -> Persona:
        """The call's persona with its variables filled in: the one its facts name (the
        pre-call webhook's or POST /api/calls' choice), else the called number's."""
        chosen = self.personas.find(facts.persona) if facts and facts.persona else None
        persona = chosen or self.personas.for_number(called)
        return persona.filled(facts.variables if facts else {})

    def for_call(self, facts: CallFacts | None, called: str) -> CallPlan:
        return self.for_persona(self.persona_for(facts, called))

    def for_persona(self, persona: Persona) -> CallPlan:
        allowed = persona.tools
        builtins = tuple(n for n in self.builtins_on if allowed is None or n in allowed)
        http = tuple(t for t in self._http_tools if allowed is None or t.name in allowed)
        declarations: list[dict[str, Any]] = []
        if BuiltinTool.END_CALL in builtins:
            declarations.append(end_call_declaration())
        if BuiltinTool.TRANSFER_CALL in builtins:
            declarations.append(transfer_call_declaration(self._transfer_numbers))
        declarations += [tool.declaration() for tool in http]
        config = SessionConfig(
            model=self._model,
            voice=persona.voice,
            system_prompt=persona.system_prompt,
            tools=({"functionDeclarations": declarations},) if declarations else (),
            realtime_input_config=(
                {"automaticActivityDetection": self._vad} if self._vad else None
            ),
        )
        return CallPlan(persona, config, builtins, http, self._transfer_numbers)

    def every_setup(self) -> dict[str, CallPlan]:
        """Every distinct assistant: the default, and each persona's (for probes, ``check``)."""
        plans = {"default assistant": self.for_persona(self.personas.default.filled({}))}
        for number, persona in self.personas.numbers().items():
            # As a call without variables would have it: the persona's defaults filled in.
            plans[number] = self.for_persona(persona.filled({}))
        return plans
