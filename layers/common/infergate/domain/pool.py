"""The pool of model servers: what each is (its slots, its weight, the models it is said to
serve), what discovery found on it, and, for one request, the servers that may serve it in the
order they are preferred.

A request's route names each model it may be served as (an alias's models, in fallback order)
and, for each, the servers that serve it. Which of them takes the request (`choose`) is decided
where every instance's requests in flight are counted, atomically (stores/pool.py runs the same
rule in Redis): the first model of the route with a server that has a slot for the request, and
of its servers, the one that served the conversation's earlier turns, else one with the model
loaded, then the fewest requests in flight for its weight. A server whose circuit breaker is
open is passed over; a server has a slot for a request when its requests in flight and those
waiting ahead of it in line are fewer than its slots.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from infergate.domain.messages import Message
from infergate.domain.model_server import ModelEntry

OLLAMA, OPENAI = "ollama", "openai"
# OpenAI-compatible servers that say, as they answer, how many tokens the prompt took: asked to,
# a cut answer is charged that count rather than the prompt's bound.
VLLM, LLAMA_CPP = "vllm", "llama.cpp"
# A server given no number of slots (the one-server shorthand) is never held back by the gateway.
UNBOUNDED = 1_000_000


@dataclass(frozen=True)
class Server:
    """A model server as the operator configured it."""

    name: str
    kind: str = OLLAMA  # "ollama" (its native API), "openai" (any OpenAI-compatible server), "vllm", "llama.cpp"
    slots: int = UNBOUNDED  # requests it serves at once: the gateway never sends it more
    weight: float = 1.0  # its share of the load against the others'
    models: tuple[str, ...] | None = None  # the models it serves, when said; else discovered


@dataclass(frozen=True)
class Holdings:
    """What discovery last found on a server: the models it serves and those it has loaded."""

    models: tuple[ModelEntry, ...] | None  # None: it has never been reached
    loaded: frozenset[str] = frozenset()
    reachable: bool = True  # whether it answered the last discovery


class Catalog(Protocol):
    def holdings(self) -> Mapping[str, Holdings]:
        """Each server's holdings, by name, as discovery last found them (shared by every instance)."""


@dataclass(frozen=True)
class Candidate:
    server: str
    slots: int
    weight: float
    loaded: bool  # the model is in the server's memory: no load to wait for


@dataclass(frozen=True)
class Choice:
    """One model a request may be served as, and the servers that serve it."""

    model: str
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class Route:
    """Where a request may go: its choices in fallback order, under the name it asked for."""

    asked: str
    choices: tuple[Choice, ...]
    pooled: bool = True  # more than one server is configured (else its breaker is "the model server's")
    conversation: str | None = None  # a key of the conversation's start: its server is remembered
    continued: bool = False  # the request continues a conversation: its last server is preferred

    def servers(self) -> list[str]:
        """Every server of the route, each once, in the order they first appear."""
        return list(dict.fromkeys(candidate.server for choice in self.choices for candidate in choice.candidates))


@dataclass(frozen=True)
class Placement:
    """The server a request was given a slot on, and the model it is served as there."""

    server: str
    model: str
    probe: bool = False  # the one call a half-open breaker lets through


@dataclass(frozen=True)
class Seat:
    """What the pool made of a request: a placement, a place in line (every server it may use is
    full), or neither (every server it may use is unhealthy, one may be tried in `retry_ms`)."""

    placement: Placement | None = None
    waiting: bool = False
    retry_ms: int = 0


@dataclass(frozen=True)
class Departure:
    """A request leaving its server: how the server did (None: it was not asked, or the failure
    was the caller's), how long it took, and the route (whose conversation it served)."""

    placement: Placement
    healthy: bool | None
    latency_ms: int
    route: Route | None = None


@dataclass(frozen=True)
class ServerState:
    """A server as the pool sees it now, for operators."""

    name: str
    breaker: str  # "closed", "open" or "half_open"
    in_flight: int
    requests_last_minute: int
    failures_last_minute: int
    p50_ms: int | None  # the median latency of the last minute's requests


class PoolStore(Protocol):
    """Every instance's requests in flight, per server, and the servers' breakers, shared. Each
    method raises RateLimiterUnavailable if the store cannot be asked."""

    def place(self, route: Route, *, ticket: str, exclude: Sequence[str] = ()) -> Seat:
        """A free slot for `ticket` on the best server of `route` not in `exclude`, taken; else its
        place in line, kept (the caller must `wait` and ask again, or `leave`)."""

    def wait(self, ticket: str, seconds: float) -> None:
        """Returns when a slot `ticket` waits for may have been freed, or after `seconds`."""

    def leave(self, route: Route, *, ticket: str) -> None:
        """`ticket` gives up its place in line."""

    def release(self, departure: Departure, *, ticket: str) -> None:
        """The slot given back; the server's breaker hears how it did."""

    def states(self, servers: Sequence[str]) -> list[ServerState]:
        """Each server's breaker, requests in flight and last minute."""


@dataclass(frozen=True)
class Load:
    """A server as a choice sees it."""

    usable: bool  # its breaker is closed or lets a probe through, and the request has not tried it
    in_flight: int = 0
    ahead: int = 0  # requests waiting in its line ahead of this one


def choose(route: Route, loads: Mapping[str, Load], *, last: str | None = None, tick: int = 0) -> Placement | None:
    """Where the request goes (the rule above), or None if no server of the route has a slot for
    it. `last`: the server the conversation last went to; `tick` turns the order in which equal
    servers are looked at (the store's clock, in ms), so that ties do not all go to one."""
    for choice in route.choices:
        best: tuple[tuple[int, float], Candidate] | None = None
        count = len(choice.candidates)
        for turn in range(count):
            candidate = choice.candidates[(tick + turn) % count]
            load = loads.get(candidate.server)
            if load is None or not load.usable or load.in_flight + load.ahead >= candidate.slots:
                continue
            tier = 0 if route.continued and last == candidate.server else 1 if candidate.loaded else 2
            rank = (tier, load.in_flight / candidate.weight)
            if best is None or rank < best[0]:
                best = (rank, candidate)
        if best is not None:
            return Placement(best[1].server, choice.model)
    return None


def conversation_key(user_id: str, messages: Sequence[Message]) -> str:
    """What every turn of a conversation has in common: its messages up to the first of the user's."""
    start = []
    for message in messages:
        start.append(f"{message.role}\x1f{message.content}")
        if message.role == "user":
            break
    return hashlib.sha256("\x1e".join([user_id, *start]).encode()).hexdigest()[:32]


def unchecked_placement(route: Route, exclude: Sequence[str] = ()) -> Placement | None:
    """Where a request goes when the pool's store cannot be asked: the first server of the first
    choice not excluded, one with the model loaded first. No slot is counted: the store is down."""
    for choice in route.choices:
        candidates = sorted((c for c in choice.candidates if c.server not in exclude), key=lambda c: not c.loaded)
        if candidates:
            return Placement(candidates[0].server, choice.model)
    return None
