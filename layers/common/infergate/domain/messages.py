"""A conversation as the domain sees it: messages, the tools a model may call, and its calls."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    """A model's call of a tool: `arguments` is the JSON object it gave."""

    id: str
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant's calls
    tool_name: str | None = None  # for a tool's result: which tool answered
    tool_call_id: str | None = None  # for a tool's result: the call it answers, when the caller named it
    images: tuple[str, ...] = ()  # base64, for vision models

    def prompt_text(self) -> str:
        """Everything of the message that the model reads as prompt."""
        calls = [{"name": call.name, "arguments": call.arguments} for call in self.tool_calls]
        return self.content + (json.dumps(calls) if calls else "") + (self.tool_name or "")


@dataclass(frozen=True)
class Tool:
    """A function the model may call, its parameters a JSON schema."""

    name: str
    description: str
    parameters: Mapping[str, Any]

    def prompt_text(self) -> str:
        return json.dumps({"name": self.name, "description": self.description, "parameters": self.parameters})
