"""A chat request from admission to charge.

  rate limit (Redis) → reserve the most it can cost (MongoDB) → ask the model
  → settle to the real token counts, or release the reservation on failure.

A reservation that is neither settled nor released (the function crashed or
timed out) expires by itself after RESERVATION_TTL, so no failure can hold
a user's quota for longer than that, and none is ever charged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from infergate.clock import utc_now
from infergate.domain import keys
from infergate.domain.periods import period_of
from infergate.domain.ports import ChatModel, Completion, RateLimiter, Reservation, RequestOutcome, UsageLedger
from infergate.domain.tokens import DEFAULT_MAX_TOKENS, prompt_tokens_upper_bound
from infergate.errors import InferGateError, QuotaExceeded, RateLimited, RateLimiterUnavailable
from infergate.models.chat import ChatRequest, ChatResponse, TokenUsage
from infergate.models.principal import Principal
from infergate.observability import logger

# Comfortably longer than any function can run (API Gateway stops waiting at 29 s),
# so a live request always finds its reservation when it settles.
RESERVATION_TTL = timedelta(minutes=2)
RATE_WINDOW_MS = 60_000


@dataclass
class ChatService:
    limiter: RateLimiter
    ledger: UsageLedger
    model: ChatModel
    default_model: str
    clock: Callable[[], datetime] = utc_now

    def chat(self, principal: Principal, request: ChatRequest, *, request_id: str) -> ChatResponse:
        self._admit(principal)
        messages = request.conversation()
        model = request.model or self.default_model
        max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
        prompt_estimate = prompt_tokens_upper_bound(messages)

        now = self.clock()
        reservation = Reservation(
            reservation_id=keys.new_id("chat"),
            user_id=principal.user_id,
            period=period_of(now),
            tokens=prompt_estimate + max_tokens,
            expires_at=now + RESERVATION_TTL,
        )
        if not self.ledger.reserve(reservation, quota=principal.monthly_token_quota, now=now):
            raise QuotaExceeded(
                f"This request may use up to {reservation.tokens} tokens, more than remain of "
                f"your monthly quota of {principal.monthly_token_quota}. It resets at the start of next month."
            )

        started = time.monotonic()
        try:
            completion = self.model.chat(model=model, messages=messages, max_tokens=max_tokens, request_id=request_id)
        except BaseException as error:
            status = error.code if isinstance(error, InferGateError) else "internal_error"
            self._release(reservation, self._outcome(principal, reservation, request_id, model, status, started))
            raise

        prompt_tokens = completion.prompt_tokens
        if prompt_tokens is None:
            # Ollama omits prompt_eval_count when it serves the prompt from its cache.
            # Absence is not "free": charge the bound that was reserved for the prompt.
            logger.warning("model did not report prompt tokens; charging the estimate", extra={"estimate": prompt_estimate})
            prompt_tokens = prompt_estimate
        outcome = self._outcome(
            principal, reservation, request_id, completion.model, "ok", started,
            prompt_tokens=prompt_tokens, completion_tokens=completion.completion_tokens,
        )
        self.ledger.settle(reservation, outcome)
        return _response(reservation.reservation_id, completion, outcome)

    def _release(self, reservation: Reservation, outcome: RequestOutcome) -> None:
        try:
            self.ledger.release(reservation, outcome)
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            # Nothing was charged; the reservation expires by itself.
            logger.exception("could not release a reservation", extra={"reservation_id": reservation.reservation_id})

    def _admit(self, principal: Principal) -> None:
        try:
            decision = self.limiter.hit(f"rpm:{principal.key_id}", limit=principal.rate_limit_rpm, window_ms=RATE_WINDOW_MS)
        except RateLimiterUnavailable:
            # Quota is enforced in MongoDB regardless; an unreachable Redis only loosens request pacing.
            logger.warning("rate limiter unavailable; admitting the request")
            return
        if not decision.allowed:
            retry_after = max(1, -(-decision.reset_after_ms // 1000))
            raise RateLimited(
                f"Rate limit of {decision.limit} requests per minute reached; retry in {retry_after} s.",
                retry_after=retry_after,
            )

    def _outcome(
        self, principal: Principal, reservation: Reservation, request_id: str, model: str, status: str,
        started: float, *, prompt_tokens: int = 0, completion_tokens: int = 0,
    ) -> RequestOutcome:
        return RequestOutcome(
            request_id=request_id,
            user_id=principal.user_id,
            key_id=principal.key_id,
            model=model,
            status=status,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=int((time.monotonic() - started) * 1000),
            at=self.clock(),
        )


def _response(chat_id: str, completion: Completion, outcome: RequestOutcome) -> ChatResponse:
    return ChatResponse(
        id=chat_id,
        model=completion.model,
        response=completion.content,
        usage=TokenUsage(
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            total_tokens=outcome.total_tokens,
        ),
    )
