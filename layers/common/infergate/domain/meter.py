"""Metering: the one place where a request to the model server is admitted, its worst case
held, and then charged its real counts or nothing. Every API surface goes through it.

  Meter.open  which model, and the servers that serve it (model_policy)  400 before anything is held
              → admit (Redis: request total, requests/min per key, tokens/min per user, a slot
                of the user's and one of a server's, or a place in line)
                                             503 at once while every server of the model is unhealthy
              → hold the most it can cost, capped to what remains (MongoDB, one guarded update)
              → if every server was full, wait in line for a slot (dispatch)   503 model_busy
  then, on the MeteredCall it gives, if its server fails before the first token, fail_over to
  another (dispatch); and exactly one of:
    settle(usage)       charge the counts the model reported, never more than was held
    cut(usage, cut)     charge what was generated before the answer was cut off
    release(error)      charge nothing: the request failed before the model generated anything
  close               conclude (Redis: the real token count, the slots given back; the server's
                      breaker hears how it did)

A MeteredCall is a context manager: leaving its block without settling releases the hold,
so the failure path is the default one. Each ending logs the request (the ledger's request
log, and its access line through Telemetry). A hold that is neither settled nor released
(the function crashed or timed out) expires by itself after its time to live, so no failure
can hold a user's quota for longer than that, and none is ever charged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

from infergate.domain import keys
from infergate.domain.admission import Admission, Gatekeeper
from infergate.domain.alerts import Alerts, NoAlerts
from infergate.domain.dispatch import Dispatcher, healthy_after
from infergate.domain.errors import (
    InferGateError,
    ModelNotAllowed,
    ModelNotFound,
    ServiceUnavailable,
    UpstreamError,
)
from infergate.domain.ledger import HoldsFull, LevelRefused, RequestOutcome, Reservation, UsageLedger
from infergate.domain.model_policy import ModelPolicy
from infergate.domain.model_server import CLIENT_CLOSED, CutOff
from infergate.domain.periods import period_of
from infergate.domain.pool import Departure, Placement, Route
from infergate.domain.prices import PriceList, WorstCost
from infergate.domain.principal import Principal
from infergate.domain.refusals import level_refusal, user_quota_refusal
from infergate.domain.telemetry import Telemetry

log = logging.getLogger(__name__)

# Comfortably longer than a buffered chat can run (API Gateway stops waiting at 29 s), so a
# live request always finds its reservation when it settles; streams get longer (bootstrap).
RESERVATION_TTL = timedelta(minutes=2)


@dataclass(frozen=True)
class Estimate:
    """What a request may cost, worked out before the model has seen it."""

    request_id: str
    model: str | None  # as the request named it; None for the default
    end_user: str | None  # who, behind a shared key, asked: recorded on the request log
    prompt_bound: int  # the prompt's tokens, bounded from above
    worst_case: int  # the prompt's bound and the most the answer may take
    minimum: int  # the least that must remain of the quota for the request to be worth making
    conversation: str | None = None  # a key of the conversation's start (domain/pool.py)
    continued: bool = False  # the request continues a conversation: its last server is preferred


@dataclass(frozen=True)
class Usage:
    """What the model reported using."""

    model: str
    prompt_tokens: int | None  # None when the server did not say: the prompt's bound is charged
    completion_tokens: int


@dataclass(frozen=True)
class Charge:
    outcome: RequestOutcome  # the request as logged
    tokens: int  # what the ledger charged: never more than was held


class Meter:
    def __init__(self, gatekeeper: Gatekeeper, ledger: UsageLedger, models: ModelPolicy, dispatcher: Dispatcher,
                 telemetry: Telemetry, *, clock: Callable[[], datetime],
                 reservation_ttl: timedelta = RESERVATION_TTL, prices: PriceList | None = None,
                 currency: str = "USD", alerts: Alerts | NoAlerts = NoAlerts()) -> None:
        self.gatekeeper, self.ledger, self.models, self.dispatcher = gatekeeper, ledger, models, dispatcher
        self.telemetry, self.clock, self.reservation_ttl = telemetry, clock, reservation_ttl
        self.prices, self.currency, self.alerts = prices or PriceList(), currency, alerts

    def open(self, principal: Principal, estimate: Estimate,
             on_admitted: Callable[[Admission], None] = lambda admission: None, *, seconds: float) -> MeteredCall:
        """The request's model resolved, the request admitted, its worst case held and a server's
        slot given it; the call may take `seconds` from now, waiting for that slot included; `on_admitted`
        hears of the admission before anything else can refuse it. Nothing held if this raises."""
        if not principal.may_use(named := estimate.model or self.models.default):
            raise ModelNotAllowed.naming(named)  # before anything is counted: nothing was asked of a model
        try:
            route = self.models.route(estimate.model, conversation=estimate.conversation, continued=estimate.continued)
        except ModelNotFound:
            # Counted as any request is (it is one), but no slot is taken for a call never made.
            admission = self.gatekeeper.admit(principal, tokens=estimate.worst_case)
            on_admitted(admission)
            self.gatekeeper.conclude(admission, tokens=0)
            raise
        admission = self.gatekeeper.admit(principal, tokens=estimate.worst_case, route=route)
        on_admitted(admission)
        try:
            reservation = self._reserve(principal, estimate, route)
        except BaseException:
            seat = admission.seat
            if seat is not None and seat.waiting:
                self.dispatcher.leave(route, ticket=admission.ticket)
            departure = Departure(seat.placement, None, 0) if seat is not None and seat.placement else None
            self.gatekeeper.conclude(admission, tokens=0, departure=departure)
            raise
        call = MeteredCall(self, principal, estimate, admission, route, reservation, seconds)
        try:
            call.seating.sit()
        except BaseException as error:
            call.close(error)
            raise
        return call

    def _reserve(self, principal: Principal, estimate: Estimate, route: Route) -> Reservation:
        """Hold the request's worst case at the user's month and their team's, capped to what remains
        there but not below its minimum; else why not (refusals.py), or TooManyConcurrentRequests."""
        now = self.clock()
        worst = WorstCost(self.prices.most_of(estimate.model, (choice.model for choice in route.choices)),
                          estimate.prompt_bound, estimate.worst_case - estimate.prompt_bound)
        wanted = Reservation(keys.new_id("chat"), principal.user_id, period_of(now), estimate.worst_case,
                             now + self.reservation_ttl, micros=worst(estimate.worst_case),
                             levels=principal.levels(route.asked))
        quota, in_flight = principal.quota_for(wanted.period), principal.plan.max_concurrent_requests
        try:
            # The ledger holds the concurrency limit too, where Redis's slots cannot (Redis away, or
            # its data lost): each hold is a request in flight.
            reservation = self.ledger.reserve(wanted, minimum=estimate.minimum, quota=quota, now=now,
                                              most_held=in_flight, worst=worst)
        except HoldsFull:
            raise self.gatekeeper.too_many_in_flight(in_flight) from None
        except LevelRefused as refused:
            if not refused.in_flight:  # too little remains: the limit is reached, whatever was charged
                limit = refused.level.token_quota if refused.limit == "tokens" else refused.level.budget_micros
                self.alerts.refused(refused.level, refused.limit, wanted.period, used=(limit or 0) - refused.remaining)
            refusal = level_refusal(refused, period=wanted.period, now=now, currency=self.currency)
            self.telemetry.count(type(refusal).__name__)
            raise refusal from None
        if reservation is not None:
            return reservation
        spent = self.ledger.usage(principal.user_id, wanted.period, now=now).tokens_used
        refusal = user_quota_refusal(quota=quota, spent=spent, minimum=estimate.minimum, period=wanted.period, now=now)
        self.telemetry.count(type(refusal).__name__)
        raise refusal


class MeteredCall:
    """One admitted, reserved call to a model server, until it is settled, cut or released, and
    closed. Its `seating` says which server it is on (dispatch.py)."""

    def __init__(self, meter: Meter, principal: Principal, estimate: Estimate, admission: Admission, route: Route,
                 reservation: Reservation, seconds: float) -> None:
        self._meter, self._principal, self._estimate, self._admission = meter, principal, estimate, admission
        self.reservation = reservation
        assert admission.seat is not None, "a model call's admission has a seat"
        self.seating = meter.dispatcher.seating(route, admission.seat, ticket=admission.ticket, seconds=seconds)
        self._started = time.monotonic()
        self._used = 0  # tokens the request really used, for tokens per minute
        self._server_healthy: bool | None = None  # how its server did; None if it was not asked
        self.ended = False
        self._closed = False

    @property
    def placement(self) -> Placement | None:
        return self.seating.placement

    @property
    def model(self) -> str:
        return self.seating.model

    def fail_over(self, error: BaseException) -> bool:
        """After `error` from its server before any token, whether the request moved to another
        server (within its deadline); if not, `error` is its answer."""
        moved = self.seating.fail_over(error)
        if moved:
            self._meter.telemetry.count("Failovers")
        return moved

    def seconds_left(self) -> float:
        return self.seating.seconds_left()

    @property
    def id(self) -> str:
        """The answer's id: its reservation's."""
        return self.reservation.reservation_id

    @property
    def request_id(self) -> str:
        return self._estimate.request_id

    def settle(self, usage: Usage) -> Charge:
        """Charge the counts the model reported (never past what was held) and log the request."""
        if usage.prompt_tokens is None:
            # Ollama omits prompt_eval_count when it serves the prompt from its cache. Absence is
            # not "free": charge the bound that was held for the prompt.
            log.warning("model did not report prompt tokens; charging the bound",
                        extra={"bound": self._estimate.prompt_bound})
        self._server_healthy = True
        return self._charge(usage, "ok")

    def cut(self, usage: Usage, cut: CutOff) -> Charge:
        """Charge what the model generated before the answer was cut off, and log why it was."""
        self._server_healthy = not cut.server_unwell
        self._meter.telemetry.count("StreamsClosedByClient" if cut.code == CLIENT_CLOSED else "UpstreamFailures")
        return self._charge(usage, cut.code, detail=cut.reason)

    def release(self, error: BaseException) -> None:
        """Charge nothing for a request that failed before the model generated anything, and log
        why; the breaker hears whether the failure blames the model server."""
        self.ended = True
        self._server_healthy = healthy_after(error) if self.placement else None
        if isinstance(error, ModelNotFound):
            log.warning("the model server does not have the model", extra={"model": self.model})
        elif isinstance(error, UpstreamError):
            self._meter.telemetry.count("UpstreamFailures")
        code = error.code if isinstance(error, InferGateError) else "internal_error"
        detail = getattr(error, "message", type(error).__name__)
        try:
            self._meter.ledger.release(self.reservation, self._outcome(self.model, code, detail=detail))
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            # Nothing was charged; the reservation expires by itself.
            log.exception("could not release a reservation", extra={"reservation_id": self.id})

    def close(self, error: BaseException | None = None) -> None:
        """End the call: released (for `error`, if given) unless it was settled or cut, then
        concluded with what it really used; at most once."""
        if self._closed:
            return
        self._closed = True
        if not self.ended:
            self.release(error or InferGateError("The call ended without an answer.", code="internal_error"))
        self._meter.gatekeeper.conclude(self._admission, tokens=self._used,
                                        departure=self.seating.departure(self._server_healthy))

    def __enter__(self) -> MeteredCall:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close(error)

    def _charge(self, usage: Usage, status: str, *, detail: str | None = None) -> Charge:
        """Settle the reservation to the request's outcome: the tokens charged.

        If the ledger does not answer in time, whether the charge was recorded is unknown:
        a write sent to a hung MongoDB lands when it resumes. The answer exists and is
        given, as charged, so that no caller is charged for an answer withheld; should the
        write never land, the hold expires and the request goes unbilled, which the log
        and the ChargesUnconfirmed metric say."""
        self.ended = True
        prompt_tokens = self._estimate.prompt_bound if usage.prompt_tokens is None else usage.prompt_tokens
        outcome = self._outcome(usage.model, status, prompt_tokens=prompt_tokens,
                                completion_tokens=usage.completion_tokens, detail=detail)
        self._used = outcome.total_tokens
        try:
            charged = self._meter.ledger.settle(self.reservation, outcome,
                                                quota=self._principal.quota_for(self.reservation.period))
        except ServiceUnavailable:
            log.error("charge not confirmed: the ledger did not answer",
                      extra={"reservation_id": self.id, "tokens": outcome.total_tokens})
            self._meter.telemetry.count("ChargesUnconfirmed")
            charged = min(outcome.total_tokens, self.reservation.tokens)
        if charged < outcome.total_tokens:
            log.error("model used more than was reserved; the excess is logged unbilled",
                      extra={"reserved": self.reservation.tokens, "used": outcome.total_tokens, "charged": charged})
        self._meter.telemetry.count("TokensCharged", charged)
        return Charge(outcome, charged)

    def _outcome(self, model: str, status: str, *, prompt_tokens: int = 0, completion_tokens: int = 0,
                 detail: str | None = None) -> RequestOutcome:
        """How the request ended, for its line in the request log and its access line."""
        outcome = RequestOutcome(
            request_id=self._estimate.request_id, user_id=self._principal.user_id, key_id=self._principal.key_id,
            model=model, status=status, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            latency_ms=int((time.monotonic() - self._started) * 1000),  # the model's part of the request
            at=self._meter.clock(), detail=detail, end_user=self._estimate.end_user,
            servers=tuple(self.seating.servers), price=self._meter.prices.of(self._estimate.model, model),
        )
        self._meter.telemetry.ended(outcome)
        return outcome

