"""What a tool is: a declaration Gemini reads, and a coroutine the bridge runs."""

from __future__ import annotations

from typing import Any, Protocol


class ToolError(Exception):
    """A failure the model should hear about (it becomes ``{"error": ...}``)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class Tool(Protocol):
    @property
    def name(self) -> str: ...

    def declaration(self) -> dict[str, Any]:
        """The ``functionDeclarations`` entry sent in ``setup``."""
        ...

    async def __call__(self, args: dict[str, Any]) -> Any:
        """Run with the model's arguments; return JSON-able output or raise ToolError."""
        ...
