"""Which tools a model is offered, and how a forced call is obtained.

`auto` offers the tools and lets the model choose; `none` offers none.
Forcing a call (`required`, or one named function) is honoured by
constraining the answer, through the model server's structured output, to
the function's parameters (with several functions, to one object naming the
function and giving its arguments); the answer is then returned as that
call. That works with any model that can produce JSON, tool-trained or not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infergate.domain import keys
from infergate.domain.errors import UpstreamError
from infergate.domain.messages import Tool, ToolCall

AUTO, NONE, REQUIRED = "auto", "none", "required"


@dataclass(frozen=True)
class ToolUse:
    """What the model is sent: tools to choose from, or an answer format forcing one call."""

    offered: tuple[Tool, ...] = ()
    forced: tuple[Tool, ...] = ()  # non-empty: the answer is constrained to a call of one of these

    @property
    def answer_format(self) -> Mapping[str, Any] | None:
        if not self.forced:
            return None
        if len(self.forced) == 1:
            return self.forced[0].parameters
        return {"anyOf": [
            {"type": "object", "properties": {"name": {"const": tool.name}, "arguments": tool.parameters},
             "required": ["name", "arguments"]}
            for tool in self.forced
        ]}

    def forced_call(self, answer: str) -> ToolCall:
        """The forced call the constrained answer makes."""
        try:
            data = json.loads(answer)
        except ValueError:
            raise UpstreamError("The model's answer was not the JSON its format asked for.", server_unwell=False) from None
        if len(self.forced) == 1:
            name, arguments = self.forced[0].name, data
        elif isinstance(data, dict):
            name, arguments = data.get("name"), data.get("arguments")
        else:
            name, arguments = None, None
        if not isinstance(arguments, dict) or name not in {tool.name for tool in self.forced}:
            raise UpstreamError("The model's answer did not name a function it was offered.", server_unwell=False)
        return ToolCall(new_call_id(), name, arguments)


def tool_use(tools: Sequence[Tool], choice: str) -> ToolUse:
    """`choice`: auto, none, required, or a function's name (one of `tools`)."""
    if not tools or choice == NONE:
        return ToolUse()
    if choice == AUTO:
        return ToolUse(offered=tuple(tools))
    if choice == REQUIRED:
        return ToolUse(forced=tuple(tools))
    return ToolUse(forced=tuple(tool for tool in tools if tool.name == choice))


def new_call_id() -> str:
    return keys.new_id("call")
