"""Streamed chats, timed at the client: time to the first and to the last token.

Part of `make bench` (bench/hotpath.py starts what it measures and calls
`measure`, then `report`). The model server here answers one token every
`TOKEN_SECONDS`, so that a stream has something to spread out.

Every sample is one request on a kept-alive connection, c=1, read by a
client that timestamps each read from the socket as it returns
(`http.client`'s `read1`, at most what one chunk has brought): TTFT is the
arrival of the first piece of content (the first NDJSON line of the model
server's `/api/chat`, or the first `data:` event with `delta.content` of
`/v1/chat/completions`, not the role-only chunk), TTLT that of the last piece
of content (not the done line, nor `data: [DONE]`). Buffered (`stream:
false`) requests are timed from the request to the whole body read. Samples
run in rounds, one request for each target and mode a round, the order
rotating each round.

The other API shapes on the same metered path are timed the same way, streamed
only, through `make run` (`api_targets`): `POST /v1/messages` (Anthropic), whose
content is the `content_block_delta` events with a `text_delta` (not
message_start, the ping or content_block_start), and `POST /v1/responses`
(OpenAI Responses, `store: false`), whose content is the
`response.output_text.delta` events (not response.created, in_progress or
output_item.added). `report` gives their TTFT and TTLT as ratios to the same
gateway's /v1/chat/completions.

`make run`'s server drops a keep-alive connection idle for 5 s; with more
targets a round is longer than that, so a connection idle for more than
IDLE_SECONDS is reopened, and every connection is opened before its request
is timed.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from dataclasses import dataclass, field

TOKEN_SECONDS = 0.05
# A connection idle longer than this is reopened (untimed) before its next request: the gateway
# drops one idle for 5 s.
IDLE_SECONDS = 4.0
# The API shapes beside /v1/chat/completions, by path: the SSE shape their content comes in.
API_PATHS = {"/v1/messages": "messages", "/v1/responses": "responses"}
RATIO_GOAL = 1.1


@dataclass
class StreamTarget:
    name: str
    host: str
    port: int
    path: str
    streamed_body: bytes
    buffered_body: bytes | None  # None: streamed only
    headers: dict[str, str]
    ndjson: bool  # the model server's /api/chat; else server-sent events
    shape: str = "chat"  # of the events: "chat" (chat completions), "messages" or "responses"
    gateway: str = ""  # for an API shape's target, the gateway whose /v1/chat/completions it is compared with


@dataclass
class Sample:
    total: float
    first: float | None = None
    last: float | None = None
    pieces: int = 0


@dataclass
class Samples:
    streamed: list[Sample] = field(default_factory=list)
    buffered: list[Sample] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


def targets(model_url: str, gateways: dict[str, str], key: str, *, model: str, prompt: str,
            max_tokens: int, apis: tuple[str, ...] = ("make run",)) -> list[StreamTarget]:
    """The model server's own /api/chat, and each gateway's /v1/chat/completions, streamed or not;
    then, for the gateways in `apis`, /v1/messages and /v1/responses streamed (api_targets)."""
    def at(url: str) -> tuple[str, int]:
        host, port = url.removeprefix("http://").split(":")
        return host, int(port)

    messages = [{"role": "user", "content": prompt}]

    def direct(stream: bool) -> bytes:
        return json.dumps({"model": model, "messages": messages, "stream": stream,
                           "options": {"num_predict": max_tokens}}).encode()

    def openai(stream: bool) -> bytes:
        return json.dumps({"model": model, "messages": messages, "max_tokens": max_tokens, "stream": stream}).encode()

    found = [StreamTarget("direct", *at(model_url), "/api/chat", direct(True), direct(False),
                          {"Content-Type": "application/json"}, ndjson=True)]
    for name, url in gateways.items():
        found.append(StreamTarget(name, *at(url), "/v1/chat/completions", openai(True), openai(False),
                                  {"Content-Type": "application/json", "x-api-key": key}, ndjson=False))
    for name, url in gateways.items():
        if name in apis:
            found.extend(api_targets(name, url, key, model=model, prompt=prompt, max_tokens=max_tokens))
    return found


def api_bodies(*, model: str, prompt: str, max_tokens: int, stream: bool) -> dict[str, bytes]:
    """The same chat as /v1/chat/completions' body, in each API shape's words: the same prompt,
    model and token limit; the Responses API's not kept (`store: false`), as a chat is not."""
    messages = [{"role": "user", "content": prompt}]
    return {
        "/v1/messages": json.dumps({"model": model, "max_tokens": max_tokens, "messages": messages,
                                    "stream": stream}).encode(),
        "/v1/responses": json.dumps({"model": model, "input": prompt, "max_output_tokens": max_tokens,
                                     "stream": stream, "store": False}).encode(),
    }


def api_targets(gateway: str, url: str, key: str, *, model: str, prompt: str, max_tokens: int) -> list[StreamTarget]:
    """`gateway`'s /v1/messages and /v1/responses, streamed only, named "<gateway> <path>"."""
    host, port = url.removeprefix("http://").split(":")
    bodies = api_bodies(model=model, prompt=prompt, max_tokens=max_tokens, stream=True)
    return [StreamTarget(f"{gateway} {path}", host, int(port), path, bodies[path], None,
                         {"Content-Type": "application/json", "x-api-key": key}, ndjson=False, shape=shape,
                         gateway=gateway)
            for path, shape in API_PATHS.items()]


def _content(unit: bytes, ndjson: bool, shape: str = "chat") -> str:
    """The content a line (NDJSON) or an event (SSE) carries, "" when none: for /v1/messages a
    text_delta's text, for /v1/responses an output_text.delta's delta; an error event raises."""
    if ndjson:
        line = unit.strip()
        return (json.loads(line).get("message") or {}).get("content") or "" if line else ""
    lines = unit.decode().splitlines()
    text = "".join(line[5:].strip() for line in lines if line.startswith("data:"))
    if not text or text == "[DONE]":
        return ""
    reply = json.loads(text)
    if shape == "chat":
        if "error" in reply:
            raise RuntimeError(f"error event: {text[:200]}")
        choices = reply.get("choices") or []
        return (choices[0].get("delta") or {}).get("content") or "" if choices else ""
    kind = next((line[6:].strip() for line in lines if line.startswith("event:")), "") or reply.get("type", "")
    if kind in ("error", "response.failed"):
        raise RuntimeError(f"{kind} event: {text[:200]}")
    if shape == "messages":
        delta = (reply.get("delta") or {}) if kind == "content_block_delta" else {}
        return (delta.get("text") or "") if delta.get("type") == "text_delta" else ""
    return (reply.get("delta") or "") if kind == "response.output_text.delta" else ""


def request(connection: http.client.HTTPConnection, target: StreamTarget, *, stream: bool) -> Sample:
    """One request, timed from just before it is sent: for a streamed one, the arrival of its
    first and last pieces of content and the end of its body; for a buffered one, the end of its body."""
    started = time.perf_counter()
    connection.request("POST", target.path, body=target.streamed_body if stream else target.buffered_body,
                       headers=target.headers)
    response = connection.getresponse()
    if not stream:
        body = response.read()
        total = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"status {response.status}: {body[:200]!r}")
        return Sample(total=total)
    if response.status != 200:
        raise RuntimeError(f"status {response.status}: {response.read()[:200]!r}")
    separator = b"\n" if target.ndjson else b"\n\n"
    sample, pending = Sample(total=0.0), b""
    while True:
        data = response.read1(65536)
        arrived = time.perf_counter() - started
        if not data:
            break
        pending += data.replace(b"\r\n", b"\n") if not target.ndjson else data
        *units, pending = pending.split(separator)
        for unit in units:
            if _content(unit, target.ndjson, target.shape):
                sample.first = arrived if sample.first is None else sample.first
                sample.last, sample.pieces = arrived, sample.pieces + 1
    sample.total = time.perf_counter() - started
    if pending.strip() and _content(pending, target.ndjson, target.shape):  # a last unit without its separator
        sample.first = sample.total if sample.first is None else sample.first
        sample.last, sample.pieces = sample.total, sample.pieces + 1
    if sample.first is None:
        raise RuntimeError("no content streamed")
    return sample


def measure(found: list[StreamTarget], samples: int, *, warm: int = 1) -> dict[str, Samples]:
    """`samples` rounds, each one streamed and one buffered request to every target (streamed
    only to one without a buffered body), c=1, the order rotating each round; `warm` rounds
    before them are not counted. A connection is opened, or reopened when it has been idle for
    IDLE_SECONDS, before its request is timed."""
    runs = [(target, stream) for target in found for stream in (True, False)
            if stream or target.buffered_body is not None]
    connections: dict[str, http.client.HTTPConnection] = {}
    used: dict[str, float] = {}
    results = {target.name: Samples() for target in found}
    for round_ in range(warm + samples):
        shift = round_ % len(runs)
        for target, stream in runs[shift:] + runs[:shift]:
            if target.name in connections and time.monotonic() - used[target.name] > IDLE_SECONDS:
                connections.pop(target.name).close()
            try:
                if target.name not in connections:
                    connections[target.name] = http.client.HTTPConnection(target.host, target.port, timeout=60)
                    connections[target.name].connect()
                sample = request(connections[target.name], target, stream=stream)
            except (OSError, RuntimeError, ValueError, http.client.HTTPException) as error:
                if target.name in connections:
                    connections.pop(target.name).close()
                if round_ >= warm:
                    outcome = f"{'streamed' if stream else 'buffered'} {type(error).__name__}: {str(error)[:80]}"
                    results[target.name].errors[outcome] = results[target.name].errors.get(outcome, 0) + 1
                continue
            finally:
                used[target.name] = time.monotonic()
            if round_ >= warm:
                (results[target.name].streamed if stream else results[target.name].buffered).append(sample)
    for connection in connections.values():
        connection.close()
    return results


def _median_ms(values: list[float | None]) -> float:
    present = [value * 1000 for value in values if value is not None]
    return statistics.median(present) if present else float("nan")


@dataclass
class Medians:
    ttft: float
    ttlt: float
    buffered: float
    pieces: float
    samples: int

    @classmethod
    def of(cls, samples: Samples) -> Medians:
        return cls(ttft=_median_ms([s.first for s in samples.streamed]),
                   ttlt=_median_ms([s.last for s in samples.streamed]),
                   buffered=_median_ms([s.total for s in samples.buffered]),
                   pieces=statistics.median([s.pieces for s in samples.streamed]) if samples.streamed else 0,
                   samples=min(len(samples.streamed), len(samples.buffered)) if samples.buffered
                   else len(samples.streamed))


def report(results: dict[str, Samples], *, token_seconds: float = TOKEN_SECONDS,
           apis: list[StreamTarget] = ()) -> list[str]:
    """The section's lines: per target the medians, per gateway what it adds and the two goals;
    then the API shapes' targets (those of `apis` streamed only) against their gateway's chat completions."""
    shapes = {target.name: target for target in apis if target.buffered_body is None and target.name in results}
    medians = {name: Medians.of(samples) for name, samples in results.items() if name not in shapes}
    direct = medians["direct"]
    lines = [(f"{'target':<16} {'samples':>7} {'pieces':>6} {'TTFT ms':>8} {'TTLT ms':>8} {'buffered ms':>11} "
              f"{'+TTFT ms':>9} {'+buffered ms':>12}  errors")]
    for name, figures in medians.items():
        errors = results[name].errors
        extra = "" if name == "direct" else f"{figures.ttft - direct.ttft:>9.1f} {figures.buffered - direct.buffered:>12.1f}"
        lines.append(f"{name:<16} {figures.samples:>7} {figures.pieces:>6.0f} {figures.ttft:>8.1f} {figures.ttlt:>8.1f} "
                     f"{figures.buffered:>11.1f} {extra:>22}  {sum(errors.values()) or ''} "
                     f"{'; '.join(f'{k} x{v}' for k, v in errors.items())}".rstrip())
    lines.append("")
    for name, figures in medians.items():
        if name == "direct":
            continue
        if not figures.samples or not direct.samples:
            lines.append(f"{name}: no samples, no verdict")
            continue
        added_ttft, added_buffered = figures.ttft - direct.ttft, figures.buffered - direct.buffered
        first = "met" if added_ttft <= added_buffered else "NOT met"
        last = "met" if figures.ttlt <= figures.buffered else "NOT met"
        lines.append(f"{name}: (1) added TTFT {added_ttft:.1f} ms <= added buffered total {added_buffered:.1f} ms: {first}; "
                     f"(2) streamed TTLT {figures.ttlt:.1f} ms <= buffered total {figures.buffered:.1f} ms "
                     f"({figures.ttlt - figures.buffered:+.1f} ms): {last}; "
                     f"first-to-last token spread {figures.ttlt - figures.ttft:.0f} ms "
                     f"(direct {direct.ttlt - direct.ttft:.0f} ms)")
    spread = (direct.pieces - 1) * token_seconds * 1000
    for name, figures in medians.items():
        if name != "direct" and figures.ttlt - figures.ttft < spread / 2:
            lines.append(f"  warning: through {name} the pieces arrived within {figures.ttlt - figures.ttft:.0f} ms "
                         f"of each other (the model spreads them over ~{spread:.0f} ms): the stream was buffered")
    if shapes:
        lines.extend(api_report({name: results[name] for name in shapes}, list(shapes.values()), medians, spread))
    return lines


def api_report(results: dict[str, Samples], apis: list[StreamTarget], medians: dict[str, Medians],
               spread: float) -> list[str]:
    """The API shapes' medians, each beside its gateway's /v1/chat/completions in the same rounds:
    TTFT and TTLT over chat's, the TTFT the gateway adds (minus direct's) over chat's, and whether
    TTFT is within RATIO_GOAL of chat's."""
    direct = medians["direct"]
    lines = ["", "Streamed, the other API shapes beside /v1/chat/completions (same rounds; TTFT: first text "
                 "delta, TTLT: last; x chat: over the same gateway's /v1/chat/completions):",
             f"{'target':<26} {'samples':>7} {'pieces':>6} {'TTFT ms':>8} {'TTLT ms':>8} {'+TTFT ms':>9} "
             f"{'TTFT x chat':>11} {'TTLT x chat':>11} {'+TTFT x chat':>12}  errors"]
    verdicts = []
    for target in apis:
        figures, errors = Medians.of(results[target.name]), results[target.name].errors
        chat = medians.get(target.gateway)
        if chat is None or not figures.samples or not chat.samples:
            lines.append(f"{target.name:<26} {figures.samples:>7}  no samples to compare  "
                         f"{sum(errors.values()) or ''} {'; '.join(f'{k} x{v}' for k, v in errors.items())}".rstrip())
            verdicts.append(f"{target.name}: no samples, no verdict")
            continue
        ttft, ttlt = figures.ttft / chat.ttft, figures.ttlt / chat.ttlt
        added = (figures.ttft - direct.ttft) / (chat.ttft - direct.ttft)
        lines.append(f"{target.name:<26} {figures.samples:>7} {figures.pieces:>6.0f} {figures.ttft:>8.1f} "
                     f"{figures.ttlt:>8.1f} {figures.ttft - direct.ttft:>9.1f} {ttft:>10.2f}x {ttlt:>10.2f}x "
                     f"{added:>11.2f}x  {sum(errors.values()) or ''} "
                     f"{'; '.join(f'{k} x{v}' for k, v in errors.items())}".rstrip())
        verdicts.append(f"{target.name}: TTFT {figures.ttft:.1f} ms = {ttft:.2f}x {target.gateway} "
                        f"/v1/chat/completions' {chat.ttft:.1f} ms: "
                        f"{'within' if ttft <= RATIO_GOAL else 'NOT within'} {RATIO_GOAL}x "
                        f"(what the gateway adds to it: {figures.ttft - direct.ttft:.1f} against "
                        f"{chat.ttft - direct.ttft:.1f} ms, {added:.2f}x); TTLT {ttlt:.2f}x")
        if figures.ttlt - figures.ttft < spread / 2:
            verdicts.append(f"  warning: through {target.name} the pieces arrived within "
                            f"{figures.ttlt - figures.ttft:.0f} ms of each other: the stream was buffered")
    return lines + [""] + verdicts
