"""Who may make a request now: requests per minute per key, tokens per minute per user,
chats in flight per user, registrations per hour per source IP, and, for a chat, whether
the model server may be asked.

Admitting a request is one step on the store: it counts the request in the
request total, notes when the caller's key was used, refuses the request at
once while the model server's circuit breaker is open, and counts it under
every limit or none. Concluding it is one more:
the tokens it really used replace its worst case, and the circuit breaker
hears how the model server did.

When Redis cannot be asked, RATE_LIMIT_FAIL_OPEN decides for API requests:
admit (logged and counted) or refuse with 503. Quota is enforced in MongoDB
either way, and without the breaker's state calls go to the model server.
Registrations always fail closed: each one is a new quota, so an
unlimited run of them is never let through.
"""

from __future__ import annotations

from dataclasses import dataclass

from infergate.domain import keys
from infergate.domain.ports import AdmissionStore, Conclusion, Limit, LimitState, Slots
from infergate.domain.principal import Principal
from infergate.errors import RateLimited, RateLimiterUnavailable, ServiceUnavailable, TooManyConcurrentRequests
from infergate.observability import count, logger, note

MINUTE_MS = 60_000
HOUR_MS = 3_600_000


def _seconds(milliseconds: int) -> int:
    return max(0, -(-milliseconds // 1000))


@dataclass(frozen=True)
class Admission:
    """A request let through, with the limits' standing for its response headers."""

    ticket: str
    requests: LimitState | None = None
    tokens: LimitState | None = None
    token_limit: Limit | None = None  # to correct the token count once the real one is known
    probe: bool = False  # the one call a half-open circuit breaker lets through
    slots: Slots | None = None  # whose slot the request holds until it is concluded

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.requests is not None:
            headers |= {
                "X-RateLimit-Limit": str(self.requests.limit),
                "X-RateLimit-Remaining": str(self.requests.remaining),
                "X-RateLimit-Reset": str(_seconds(self.requests.reset_after_ms)),
            }
        if self.tokens is not None:
            headers |= {
                "X-RateLimit-Limit-Tokens": str(self.tokens.limit),
                "X-RateLimit-Remaining-Tokens": str(self.tokens.remaining),
                "X-RateLimit-Reset-Tokens": str(_seconds(self.tokens.reset_after_ms)),
            }
        return headers


class AdmissionControl:
    def __init__(self, store: AdmissionStore, *, fail_open: bool, lease_seconds: float) -> None:
        """`lease_seconds`: how long a model call may hold its slot if its function dies."""
        self._store = store
        self._fail_open = fail_open
        self._lease_ms = int(lease_seconds * 1000)

    def admit(self, principal: Principal, *, tokens: int = 0, guard_model: bool = False) -> Admission:
        """Admit one request of the caller's key and `tokens` tokens of the caller's, or raise
        RateLimited. With `guard_model`, the request is a model call: it takes one of the
        user's slots (TooManyConcurrentRequests when none is free), and is refused with
        ServiceUnavailable while the breaker is open."""
        limits = {"requests per minute": Limit(f"rpm:{principal.key_id}", principal.rate_limit_rpm, MINUTE_MS, 1)}
        if tokens:
            limits["tokens per minute"] = Limit(f"tpm:{principal.user_id}", principal.rate_limit_tpm, MINUTE_MS, tokens)
        slots = Slots(f"slots:{principal.user_id}", principal.max_concurrent_requests, self._lease_ms) if guard_model else None
        return self._check(limits, guarded=guard_model, key_id=principal.key_id, slots=slots)

    def admit_registration(self, source_ip: str, *, per_hour: int) -> Admission:
        return self._check({"registrations per hour from one address": Limit(f"register:{source_ip}", per_hour, HOUR_MS, 1)},
                           fail_open=False)

    def conclude(self, admission: Admission, *, tokens: int, model_healthy: bool | None) -> None:
        """Count the tokens a request really used in place of its worst case, and tell the
        breaker how the model server did (`None`: it was not asked)."""
        correction = admission.token_limit if admission.token_limit and tokens != admission.token_limit.cost else None
        if correction is None and model_healthy is None and not admission.probe and admission.slots is None:
            return  # nothing to tell
        try:
            self._store.conclude(Conclusion(admission.ticket, correction, tokens, admission.probe, model_healthy,
                                            admission.slots))
        except RateLimiterUnavailable:
            logger.warning("token count not corrected: rate limiter unavailable")

    def breaker_open(self) -> bool | None:
        """Whether the model server's circuit breaker is open (or probing); None if unknown."""
        try:
            return self._store.breaker_open()
        except RateLimiterUnavailable:
            return None

    def _check(self, named: dict[str, Limit], *, guarded: bool = False, key_id: str = "",
               slots: Slots | None = None, fail_open: bool | None = None) -> Admission:
        """`named` maps each limit to how a refusal names it; the first is the requests limit.
        `fail_open`, when given, overrides RATE_LIMIT_FAIL_OPEN."""
        limits = list(named.values())
        ticket = keys.new_id("rl")
        try:
            decision = self._store.admit(limits, ticket=ticket, guarded=guarded, key_id=key_id, slots=slots)
        except RateLimiterUnavailable as error:
            count("RateLimiterUnavailable")
            if not (self._fail_open if fail_open is None else fail_open):
                logger.error("rate limiter unavailable; refusing the request")
                raise ServiceUnavailable("Rate limits cannot be checked right now; retry shortly.",
                                         headers={"Retry-After": "1"}) from error
            logger.warning("rate limiter unavailable; admitting the request (RATE_LIMIT_FAIL_OPEN=true)")
            # The script may have run and only its reply been lost: concluding takes back whatever
            # it counted (the slot, the worst case), and is a no-op if it never ran.
            return Admission(ticket, token_limit=limits[1] if len(limits) > 1 else None, slots=slots)
        if decision.breaker_retry_ms:
            count("CircuitBreakerOpen")
            retry_after = max(1, _seconds(decision.breaker_retry_ms))
            raise ServiceUnavailable(
                f"The model server is failing; the gateway is giving it a rest. Retry in {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )
        admission = Admission(
            ticket,
            requests=decision.states[0],
            tokens=decision.states[1] if len(limits) > 1 else None,
            token_limit=limits[1] if len(limits) > 1 else None,
            probe=decision.probe,
            slots=slots if decision.allowed else None,
        )
        if decision.slots_full:
            count("TooManyConcurrentRequests")
            note(limit="concurrency")
            raise TooManyConcurrentRequests(
                f"You have {slots.limit} requests in flight, as many as your plan allows at once; "  # type: ignore[union-attr]
                "retry when one has finished.", retry_after=1, headers=admission.headers())
        if not decision.allowed:
            retry_after = max(1, _seconds(decision.retry_after_ms))
            count("RateLimited")
            exceeded = [f"{limit.limit} {name}" for (name, limit), state in zip(named.items(), decision.states, strict=True)
                        if state.remaining < limit.cost]
            # The limit's kind (rpm, tpm, register), for the rate_limited metric.
            note(limit=next((limit.key.split(":", 1)[0] for limit, state in zip(limits, decision.states, strict=True)
                             if state.remaining < limit.cost), "rpm"))
            raise RateLimited(f"Rate limit reached ({', '.join(exceeded)}); retry in {retry_after} s.",
                              retry_after=retry_after, headers=admission.headers())
        return admission
