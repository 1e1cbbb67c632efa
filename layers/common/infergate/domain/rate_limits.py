"""Who may make a request now: requests per minute per key, tokens per minute
per user, registrations per hour per source IP.

When Redis cannot be asked, RATE_LIMIT_FAIL_OPEN decides: admit (logged and
counted) or refuse with 503. Quota is enforced in MongoDB either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_lambda_powertools.metrics import MetricUnit

from infergate.domain import keys
from infergate.domain.ports import Limit, LimitState, RateLimiter
from infergate.errors import RateLimited, RateLimiterUnavailable, ServiceUnavailable
from infergate.models.principal import Principal
from infergate.observability import logger, metrics

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


class RateLimits:
    def __init__(self, limiter: RateLimiter, *, fail_open: bool) -> None:
        self._limiter = limiter
        self._fail_open = fail_open

    def admit(self, principal: Principal, *, tokens: int = 0) -> Admission:
        """Admit one request of the caller's key, and `tokens` tokens of the caller's, or raise RateLimited."""
        limits = {"requests per minute": Limit(f"rpm:{principal.key_id}", principal.rate_limit_rpm, MINUTE_MS, 1)}
        if tokens:
            limits["tokens per minute"] = Limit(f"tpm:{principal.user_id}", principal.rate_limit_tpm, MINUTE_MS, tokens)
        return self._check(limits)

    def admit_registration(self, source_ip: str, *, per_hour: int) -> Admission:
        return self._check({"registrations per hour from one address": Limit(f"register:{source_ip}", per_hour, HOUR_MS, 1)})

    def settle_tokens(self, admission: Admission, tokens: int) -> None:
        """Count the tokens a request really used in place of what it was admitted for."""
        if admission.token_limit is None or tokens == admission.token_limit.cost:
            return
        try:
            self._limiter.adjust(admission.token_limit, ticket=admission.ticket, cost=tokens)
        except RateLimiterUnavailable:
            logger.warning("token count not corrected: rate limiter unavailable")

    def _check(self, named: dict[str, Limit]) -> Admission:
        """`named` maps each limit to how a refusal names it; the first is the requests limit."""
        limits = list(named.values())
        ticket = keys.new_id("rl")
        try:
            decision = self._limiter.admit(limits, ticket=ticket)
        except RateLimiterUnavailable as error:
            metrics.add_metric(name="RateLimiterUnavailable", unit=MetricUnit.Count, value=1)
            if not self._fail_open:
                logger.error("rate limiter unavailable; refusing the request (RATE_LIMIT_FAIL_OPEN=false)")
                raise ServiceUnavailable("Rate limits cannot be checked right now; retry shortly.",
                                         headers={"Retry-After": "1"}) from error
            logger.warning("rate limiter unavailable; admitting the request (RATE_LIMIT_FAIL_OPEN=true)")
            return Admission(ticket)
        admission = Admission(
            ticket,
            requests=decision.states[0],
            tokens=decision.states[1] if len(limits) > 1 else None,
            token_limit=limits[1] if len(limits) > 1 else None,
        )
        if not decision.allowed:
            retry_after = max(1, _seconds(decision.retry_after_ms))
            metrics.add_metric(name="RateLimited", unit=MetricUnit.Count, value=1)
            exceeded = [f"{limit.limit} {name}" for (name, limit), state in zip(named.items(), decision.states, strict=True)
                        if state.remaining < limit.cost]
            raise RateLimited(f"Rate limit reached ({', '.join(exceeded)}); retry in {retry_after} s.",
                              retry_after=retry_after, headers=admission.headers())
        return admission

