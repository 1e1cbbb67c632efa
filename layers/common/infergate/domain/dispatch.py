"""Dispatch: getting an admitted request onto a server of its route and, if that server fails
before it has generated anything, onto another, unseen by the caller.

A request admitted while every server it may use was full waits in line for a slot (the pool's
store keeps the line, in arrival order) until QUEUE_TIMEOUT_SECONDS or its deadline, then is
refused with ModelBusy; while it waits it holds nothing a dead function could leak, only a
place in line that lapses when it stops asking. A request whose server failed before the first
token gives that server's slot back (its breaker hears of the failure) and is seated again
on a server not yet tried, within its deadline.

When the store cannot be asked, a request goes to the first untried server of its route, uncounted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from infergate.domain.errors import ModelBusy, ModelNotFound, RateLimiterUnavailable, ServiceUnavailable, UpstreamError
from infergate.domain.pool import Departure, Placement, PoolStore, Route, Seat, unchecked_placement

log = logging.getLogger(__name__)

# What a request refused for want of a slot is told to wait, at the least.
BUSY_RETRY_SECONDS = 1
# A request moves to another server only with at least this long left before its deadline.
MIN_ATTEMPT_SECONDS = 0.5


class Dispatcher:
    def __init__(self, store: PoolStore, *, queue_seconds: float, unavailable: Callable[[Route, int], Exception],
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`unavailable`: the refusal of a route none of whose servers may be asked (Gatekeeper's)."""
        self._store, self._queue_seconds, self._unavailable, self.clock = store, queue_seconds, unavailable, clock

    def seating(self, route: Route, seat: Seat, *, ticket: str, seconds: float) -> Seating:
        """Where a request admitted with `seat` sits, for the `seconds` it may take from now."""
        return Seating(self, route, seat, ticket=ticket, deadline=self.clock() + seconds)

    def seated(self, route: Route, seat: Seat, *, ticket: str, deadline: float) -> Placement:
        """The server an admitted request was given, or, if it was given a place in line, the one
        it gets within QUEUE_TIMEOUT_SECONDS and its `deadline` (monotonic seconds); else ModelBusy."""
        if seat.placement is not None:
            return seat.placement
        placement = self._waited(route, ticket, exclude=(), until=min(self.clock() + self._queue_seconds, deadline))
        if placement is None:
            raise ModelBusy(f"Every server of model '{route.asked}' is busy; retry in {BUSY_RETRY_SECONDS} s.",
                            retry_after=BUSY_RETRY_SECONDS)
        return placement

    def moved(self, route: Route, departure: Departure, *, ticket: str, tried: Sequence[str],
              deadline: float) -> Placement | None:
        """The server a request goes to next, once `departure` (from a server that failed before
        the first token) has given back its slot: one not in `tried`, waited for as long as a
        request may wait in line, within `deadline`; None if there is none."""
        self.release(departure, ticket=ticket)
        if not set(route.servers()) - set(tried):
            return None
        try:
            return self._waited(route, ticket, exclude=tried, until=min(self.clock() + self._queue_seconds, deadline))
        except ServiceUnavailable:
            return None  # every other server is unhealthy: the failure the request had is its answer

    def leave(self, route: Route, *, ticket: str) -> None:
        """A request in line gives up its place (it was refused for something else)."""
        try:
            self._store.leave(route, ticket=ticket)
        except RateLimiterUnavailable:
            log.warning("a place in line not given up: the pool's store is unavailable; it lapses by itself")

    def release(self, departure: Departure, *, ticket: str) -> None:
        try:
            self._store.release(departure, ticket=ticket)
        except RateLimiterUnavailable:
            log.warning("a server slot not given back: the pool's store is unavailable; its lease ends it")

    def _waited(self, route: Route, ticket: str, *, exclude: Sequence[str], until: float) -> Placement | None:
        """A slot on a server of `route` not in `exclude`, waited for in line until `until`; None
        if none came free in time; the route's refusal if none may be asked."""
        try:
            while True:
                seat = self._store.place(route, ticket=ticket, exclude=exclude)
                if seat.placement is not None:
                    return seat.placement
                if not seat.waiting:
                    raise self._unavailable(route, seat.retry_ms or 1000)
                left = until - self.clock()
                if left <= 0:
                    self._store.leave(route, ticket=ticket)
                    return None
                self._store.wait(ticket, left)
        except RateLimiterUnavailable:
            log.warning("the pool's store is unavailable; the request goes to the first server of its route")
            return unchecked_placement(route, exclude)



class Seating:
    """Where one admitted request sits: the server it is on (`placement`, None once it holds none),
    every server it was sent to (`servers`), and until when it may go on."""

    def __init__(self, dispatcher: Dispatcher, route: Route, seat: Seat, *, ticket: str, deadline: float) -> None:
        self._dispatcher, self.route, self._seat, self._ticket, self.deadline = dispatcher, route, seat, ticket, deadline
        self.placement: Placement | None = None
        self.servers: list[str] = []
        self._since = dispatcher.clock()

    @property
    def model(self) -> str:
        """The model the request is served as: the one its server serves, of those it may be."""
        return self.placement.model if self.placement else self.route.choices[0].model

    def sit(self) -> None:
        """Take the server admission gave, or wait in line for one (ModelBusy if none comes)."""
        self._sat(self._dispatcher.seated(self.route, self._seat, ticket=self._ticket, deadline=self.deadline))

    def fail_over(self, error: BaseException) -> bool:
        """After `error` from its server before any token, whether the request moved to another
        server, within its deadline; if not, `error` is its answer."""
        if self.placement is None or not server_failed(error) or self.seconds_left() < MIN_ATTEMPT_SECONDS:
            return False
        if not set(self.route.servers()) - set(self.servers):
            return False  # no other server: closing tells this one's breaker, as for any failure
        log.warning("the model server failed before answering; trying another",
                    extra={"server": self.placement.server, "error": getattr(error, "code", type(error).__name__)})
        moved = self._dispatcher.moved(self.route, Departure(self.placement, healthy_after(error), self._latency_ms()),
                                       ticket=self._ticket, tried=self.servers, deadline=self.deadline)
        self.placement = None  # its slot was given back
        if moved is None:
            return False
        self._sat(moved)
        return True

    def departure(self, healthy: bool | None) -> Departure | None:
        """The request leaving its server, which did so; None if it holds no server's slot."""
        if self.placement is None:
            return None
        return Departure(self.placement, healthy, self._latency_ms(), self.route)

    def seconds_left(self) -> float:
        return max(0.001, self.deadline - self._dispatcher.clock())

    def _sat(self, placement: Placement) -> None:
        self.placement = placement
        self.servers.append(placement.server)
        self._since = self._dispatcher.clock()

    def _latency_ms(self) -> int:
        return int((self._dispatcher.clock() - self._since) * 1000)


def server_failed(error: BaseException) -> bool:
    """Whether `error` is the server's, so that another server may answer: it failed, was busy or
    does not have the model; not the caller's own bad request."""
    return isinstance(error, UpstreamError | ModelNotFound)


def healthy_after(error: BaseException) -> bool:
    """How a server that ended a call with `error` did, for its breaker."""
    return not (isinstance(error, UpstreamError) and error.server_unwell)
