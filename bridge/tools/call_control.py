"""The built-in tools that change the phone call itself: hang up, and transfer."""

from __future__ import annotations

from typing import Any, Protocol

from .base import ToolError


class CallControl(Protocol):
    """What the call does once the assistant's last words have played."""

    def end_after_speech(self) -> None: ...

    def transfer_after_speech(self, number: str) -> None: ...


def end_call_declaration() -> dict[str, Any]:
    return {
        "name": EndCallTool.name,
        "description": (
            "Hang up the phone call. Use it only when the conversation is over: say a short "
            "goodbye first; the line closes after your goodbye has been heard."
        ),
        "parametersJsonSchema": {"type": "object", "properties": {}},
    }


def transfer_call_declaration(allowed: tuple[str, ...]) -> dict[str, Any]:
    return {
        "name": TransferCallTool.name,
        "description": (
            "Transfer the caller to a person at one of the allowed numbers. Tell the caller "
            "you are transferring them first; the transfer starts after that has played."
        ),
        "parametersJsonSchema": {
            "type": "object",
            "properties": {
                "number": {"type": "string", "enum": list(allowed), "description": "E.164"}
            },
            "required": ["number"],
        },
    }


class EndCallTool:
    name = "end_call"

    def __init__(self, control: CallControl) -> None:
        self._control = control

    def declaration(self) -> dict[str, Any]:
        return end_call_declaration()

    async def __call__(self, args: dict[str, Any]) -> Any:
        self._control.end_after_speech()
        return {"status": "The call ends as soon as your goodbye has played."}


class TransferCallTool:
    name = "transfer_call"

    def __init__(self, control: CallControl, allowed: tuple[str, ...]) -> None:
        self._control = control
        self._allowed = allowed

    def declaration(self) -> dict[str, Any]:
        return transfer_call_declaration(self._allowed)

    async def __call__(self, args: dict[str, Any]) -> Any:
        number = str(args.get("number", "")).replace(" ", "").replace("-", "")
        if number not in self._allowed:
            raise ToolError(
                f"{number or 'that number'} is not one this line may transfer to; "
                f"allowed: {', '.join(self._allowed)}"
            )
        self._control.transfer_after_speech(number)
        return {"status": f"Transferring to {number} once your last sentence has played."}
