"""The id that follows a request through logs, the model server and the response."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

HEADER = "x-request-id"
# A caller's own id is kept only if it is safe to echo and to log.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(event: Mapping[str, Any]) -> str:
    """The caller's `x-request-id` if it sent a sensible one, else API Gateway's request id."""
    headers = event.get("headers") or {}
    for name, value in headers.items():
        if name.lower() == HEADER and isinstance(value, str) and _ACCEPTABLE.match(value):
            return value
    return str((event.get("requestContext") or {}).get("requestId") or "")
