"""Who may make a request now: requests per minute per key and per user, tokens per minute per user,
chats in flight per user, registrations per hour per source IP, and, for a call to a model
server, which server takes it (domain/pool.py).

Admitting a request is one step on the limit store: it counts the request in the request
total, notes when the caller's key was used, refuses the request at once while every server
it may use is unhealthy, counts it under every limit or none and, if it is admitted, gives it a
slot on a server or its place in line. Concluding it is one more: the tokens it really used
replace its worst case, its slots are given back, and its server's breaker hears how it did.

When Redis cannot be asked, RATE_LIMIT_FAIL_OPEN decides for API requests: admit (logged and
counted) or refuse with 503. Quota and the requests in flight are held in MongoDB either way
(domain/meter.py), and without the pool's counts a request goes to the first server of its route. Registrations always fail closed:
each one is a new quota, so an unlimited run of them is never let through.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from infergate.domain import keys
from infergate.domain.errors import (
    BreakerOpen,
    ModelUnavailable,
    RateLimited,
    RateLimiterUnavailable,
    ServiceUnavailable,
    TooManyConcurrentRequests,
)
from infergate.domain.periods import whole_seconds
from infergate.domain.pool import Departure, Route, Seat, unchecked_placement
from infergate.domain.principal import Principal
from infergate.domain.telemetry import Telemetry

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Limit:
    """At most `limit` units per `window_ms` under `key`; this request costs `cost` units."""

    key: str
    limit: int
    window_ms: int
    cost: int

    @property
    def kind(self) -> str:
        """What the limit counts (rpm, tpm, register): the start of its key."""
        return self.key.split(":", 1)[0]


@dataclass(frozen=True)
class Slots:
    """At most `limit` requests in flight at once under `key`; each holds its slot until it
    ends, or, if its function dies first, until its lease of `lease_ms` runs out."""

    key: str
    limit: int
    lease_ms: int


@dataclass(frozen=True)
class LimitState:
    limit: int
    remaining: int
    reset_after_ms: int  # until the oldest counted request leaves the window


@dataclass(frozen=True)
class Verdict:
    """What the limit store decided of one request."""

    allowed: bool
    states: tuple[LimitState, ...]  # one per Limit asked about, in order
    retry_after_ms: int  # when a limit refused the request
    unavailable_ms: int = 0  # > 0: refused because every server it may use is unhealthy
    slots_full: bool = False  # refused because every slot of the user's was taken
    seat: Seat | None = None  # for an admitted model call: its server, or its place in line


@dataclass(frozen=True)
class Conclusion:
    """How an admitted request ended, for the limits and the pool."""

    ticket: str
    subject: str  # whose request it was (Admission.subject)
    token_limit: Limit | None  # the limit whose count becomes `tokens`
    tokens: int
    slots: Slots | None = None  # whose slot the request held, to free it
    departure: Departure | None = None  # the server slot it held, to give back


class LimitStore(Protocol):
    def admit(self, limits: Sequence[Limit], *, ticket: str, subject: str, key_id: str = "",
              slots: Slots | None = None, route: Route | None = None) -> Verdict:
        """Count the request in the request total and note that `key_id` was used; refuse it if
        every server of `route` is unhealthy; then, if it fits every limit and a slot is free,
        count `ticket` under all of them, give it the slot and seat it on a server of `route` (or
        in line), atomically; else do none of it. `subject`: whose request it is (a user, an address),
        whose state lies together. Raises RateLimiterUnavailable if it cannot ask."""

    def conclude(self, conclusion: Conclusion) -> None:
        """Correct the token count, free the slots and tell the server's breaker, in one step."""


@dataclass(frozen=True)
class Admission:
    """A request let through, with the limits' standing (for the response's rate-limit headers)."""

    ticket: str
    subject: str  # whose request: a user's id, or a registration's source
    requests: LimitState | None = None
    tokens: LimitState | None = None
    token_limit: Limit | None = None  # to correct the token count once the real one is known
    slots: Slots | None = None  # whose slot the request holds until it is concluded
    seat: Seat | None = None  # a model call's server, or its place in line (domain/dispatch.py)


class Gatekeeper:
    """Admits requests against their limits (or refuses them, saying which and for how long),
    and concludes them."""

    def __init__(self, store: LimitStore, *, fail_open: bool, lease_seconds: float, telemetry: Telemetry) -> None:
        """`lease_seconds`: how long a model call may hold its slot if its function dies."""
        self._store = store
        self._fail_open = fail_open
        self._lease_ms = int(lease_seconds * 1000)
        self._telemetry = telemetry

    def admit(self, principal: Principal, *, tokens: int = 0, route: Route | None = None) -> Admission:
        """Admit one request of the caller's key and `tokens` tokens of the caller's, or raise
        RateLimited. With a `route`, the request is a model call: it takes one of the user's
        slots (TooManyConcurrentRequests when none is free) and a server's, or a place in line;
        it is refused (BreakerOpen, or ModelUnavailable in a pool) while every server of the
        route is unhealthy."""
        plan = principal.plan
        limits = {"requests per minute": Limit(f"rpm:{principal.key_id}", plan.rate_limit_rpm, MINUTE_MS, 1),
                  "requests per minute across your keys": Limit(f"urpm:{principal.user_id}", plan.rate_limit_user_rpm,
                                                                MINUTE_MS, 1)}
        if tokens:
            limits["tokens per minute"] = Limit(f"tpm:{principal.user_id}", plan.rate_limit_tpm, MINUTE_MS, tokens)
        slots = Slots(f"slots:{principal.user_id}", plan.max_concurrent_requests, self._lease_ms) if route else None
        return self._check(limits, principal.user_id, key_id=principal.key_id, slots=slots, route=route)

    def admit_registration(self, source_ip: str, *, per_hour: int) -> Admission:
        return self._check({"registrations per hour from one address": Limit(f"register:{source_ip}", per_hour, HOUR_MS, 1)},
                           f"register:{source_ip}", fail_open=False)

    def conclude(self, admission: Admission, *, tokens: int, departure: Departure | None = None) -> None:
        """Count the tokens a request really used in place of its worst case, give back its
        slots, and tell its server's breaker how the server did (in `departure`)."""
        correction = admission.token_limit if admission.token_limit and tokens != admission.token_limit.cost else None
        if correction is None and departure is None and admission.slots is None:
            return  # nothing to tell
        try:
            self._store.conclude(Conclusion(admission.ticket, admission.subject, correction, tokens, admission.slots,
                                            departure))
        except RateLimiterUnavailable:
            log.warning("token count not corrected: rate limiter unavailable")

    def too_many_in_flight(self, limit: int, admission: Admission | None = None) -> TooManyConcurrentRequests:
        """The refusal of a request beyond the `limit` its user's plan allows in flight."""
        self._telemetry.count("TooManyConcurrentRequests")
        return TooManyConcurrentRequests(
            f"You have {limit} requests in flight, as many as your plan allows at once; retry when one has "
            "finished.", retry_after=1, limit="concurrency", requests=admission.requests if admission else None,
            tokens=admission.tokens if admission else None)

    @staticmethod
    def unavailable(route: Route, retry_ms: int) -> ServiceUnavailable:
        """The refusal of a request none of whose servers may be asked for `retry_ms`."""
        retry_after = max(1, whole_seconds(retry_ms))
        if not route.pooled:
            return BreakerOpen(f"The model server is failing; the gateway is giving it a rest. Retry in {retry_after} s.",
                               retry_after=retry_after)
        return ModelUnavailable(f"Every server of model '{route.asked}' is failing; the gateway is giving them a "
                                f"rest. Retry in {retry_after} s.", retry_after=retry_after)

    def _check(self, named: dict[str, Limit], subject: str, *, key_id: str = "", slots: Slots | None = None,
               route: Route | None = None, fail_open: bool | None = None) -> Admission:
        """`named` maps each limit to how a refusal names it: requests limits, then, for a request
        that asks for tokens, the tokens limit. `fail_open`, when given, overrides RATE_LIMIT_FAIL_OPEN."""
        limits = list(named.values())
        token_limit = limits[-1] if limits[-1].kind == "tpm" else None
        ticket = keys.new_id("rl")
        try:
            verdict = self._store.admit(limits, ticket=ticket, subject=subject, key_id=key_id, slots=slots, route=route)
        except RateLimiterUnavailable as error:
            fail_open = self._fail_open if fail_open is None else fail_open
            return self._unchecked(Admission(ticket, subject, token_limit=token_limit, slots=slots), route,
                                   fail_open=fail_open, error=error)
        if verdict.unavailable_ms and route is not None:
            self._telemetry.count("CircuitBreakerOpen")
            raise self.unavailable(route, verdict.unavailable_ms)
        counted = len(limits) - (token_limit is not None)
        admission = Admission(
            ticket,
            subject,
            # The requests limit nearest its end is the one a client must heed: its headers say it.
            requests=min(verdict.states[:counted], key=lambda state: state.remaining),
            tokens=verdict.states[-1] if token_limit else None,
            token_limit=token_limit,
            slots=slots if verdict.allowed else None,
            seat=verdict.seat if verdict.allowed else None,
        )
        if verdict.slots_full:
            raise self.too_many_in_flight(slots.limit, admission)  # type: ignore[union-attr]
        if not verdict.allowed:
            raise self._refusal(named, verdict, admission)
        return admission

    def _unchecked(self, unchecked: Admission, route: Route | None, *, fail_open: bool,
                   error: RateLimiterUnavailable) -> Admission:
        """The request, admitted unchecked while Redis cannot be asked, or refused if failing closed."""
        self._telemetry.count("RateLimiterUnavailable")
        if not fail_open:
            log.error("rate limiter unavailable; refusing the request")
            raise ServiceUnavailable("Rate limits cannot be checked right now; retry shortly.", retry_after=1) from error
        log.warning("rate limiter unavailable; admitting the request (RATE_LIMIT_FAIL_OPEN=true)")
        # The script may have run and only its reply been lost: concluding takes back whatever
        # it counted (the slots, the worst case), and is a no-op if it never ran.
        return replace(unchecked, seat=Seat(unchecked_placement(route)) if route is not None else None)

    def _refusal(self, named: dict[str, Limit], verdict: Verdict, admission: Admission) -> RateLimited:
        retry_after = max(1, whole_seconds(verdict.retry_after_ms))
        self._telemetry.count("RateLimited")
        refusing = [(name, limit) for (name, limit), state in zip(named.items(), verdict.states, strict=True)
                    if state.remaining < limit.cost]
        exceeded = ", ".join(f"{limit.limit} {name}" for name, limit in refusing)
        return RateLimited(f"Rate limit reached ({exceeded}); retry in {retry_after} s.", retry_after=retry_after,
                           limit=refusing[0][1].kind if refusing else "rpm", requests=admission.requests,
                           tokens=admission.tokens)
