"""Function calling: the tools a call's assistant may use, and running them safely.

Owns: the tool interface, the runner (deadlines, answers for every call), the built-in
call-control tools and operators' HTTP tools. May import: gemini (its function-call
types), config, observability, threads."""

from .base import Tool, ToolError
from .runner import ToolRunner

__all__ = ["Tool", "ToolError", "ToolRunner"]
