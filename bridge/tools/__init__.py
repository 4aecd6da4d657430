"""Function calling: the tools a call's assistant may use, and running them safely."""

from .base import Tool, ToolError
from .runner import ToolRunner

__all__ = ["Tool", "ToolError", "ToolRunner"]
