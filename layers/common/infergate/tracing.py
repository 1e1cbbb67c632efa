"""Spans of a request's calls to MongoDB, Redis and the model server, in its X-Ray trace.

With the template's `Tracing: Active`, Lambda samples requests and records
each invocation as a segment of the request's trace; its runtime hands the
function the trace header (`_X_AMZN_TRACE_ID`: the trace's Root, the
function segment as Parent, Sampled=1) and the X-Ray daemon's address
(`AWS_XRAY_DAEMON_ADDRESS`). A `span` of a sampled request is sent to the
daemon, when it ends, as an independent subsegment of that segment: one UDP
datagram, as X-Ray's documents for sending subsegments separately describe.
A request that is not sampled, or a function without tracing, sends nothing
and pays one environment lookup a span.

Why not the X-Ray SDK (or Powertools' Tracer, built on it): importing it
pulls in botocore, 170 ms more of every cold start, whether a request is
sampled or not. This is the standard library alone.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

TRACE_HEADER = "_X_AMZN_TRACE_ID"
DAEMON_ADDRESS = "AWS_XRAY_DAEMON_ADDRESS"
_HEADER = b'{"format": "json", "version": 1}\n'
_socket: socket.socket | None = None


@contextmanager
def span(name: str, **annotations: str) -> Iterator[None]:
    """Times what runs inside as a subsegment named `name` (MongoDB, Redis, model server) of the
    sampled request's function segment; a failure inside marks it, and goes on."""
    trace = _sampled_trace()
    if trace is None:
        yield
        return
    started = time.time()
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        _send({"type": "subsegment", "name": name, "namespace": "remote", "id": os.urandom(8).hex(),
               "trace_id": trace[0], "parent_id": trace[1], "start_time": started, "end_time": time.time(),
               **({"fault": True} if failed else {}), **({"annotations": annotations} if annotations else {})})


def _sampled_trace() -> tuple[str, str] | None:
    """(Root, Parent) of the request being served, if it is sampled and a daemon listens."""
    header = os.environ.get(TRACE_HEADER)
    if not header or "Sampled=1" not in header or not os.environ.get(DAEMON_ADDRESS):
        return None
    fields = dict(part.split("=", 1) for part in header.split(";") if "=" in part)
    if "Root" not in fields or "Parent" not in fields:
        return None
    return fields["Root"], fields["Parent"]


def _send(document: dict) -> None:
    global _socket
    host, _, port = os.environ[DAEMON_ADDRESS].split()[0].removeprefix("udp:").rpartition(":")
    try:
        if _socket is None:
            _socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _socket.sendto(_HEADER + json.dumps(document).encode(), (host, int(port)))
    except (OSError, ValueError):
        pass  # a trace is worth less than the request it describes
