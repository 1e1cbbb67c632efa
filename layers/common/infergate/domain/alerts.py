"""Budget alerts: when a team's or a key's month crosses 50%, 80% or 100% of its token quota or
its budget, or is first refused at it (exact holds may stop short of the last token), one alert
per threshold per month goes to the operator: the template's SNS topic and, if set, a webhook.

The charge that crosses a threshold is seen by exactly one request (each level's charges are
applied one after another), and a refusal at 100% by many; a claim in the store, one per level,
limit, threshold and month, makes each alert leave once whatever the concurrency.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from infergate.domain.ledger import Level

log = logging.getLogger(__name__)

THRESHOLDS = (50, 80, 100)
WATCHED = ("team", "key")  # whose months raise alerts: not each user's per-model quota


@dataclass(frozen=True)
class Alert:
    level: str  # "team" or "key"
    id: str
    limit: str  # "tokens" or "budget"
    threshold: int  # percent
    used: int  # tokens, or micros
    limit_value: int
    period: str

    def claim_id(self) -> str:
        return f"{self.level}:{self.id}:{self.period}:{self.limit}:{self.threshold}"

    def payload(self) -> dict:
        return asdict(self)


class AlertClaims(Protocol):
    def claim(self, alert: Alert) -> bool:
        """True for the first claim of `alert`'s level, limit, threshold and month; False after."""


class AlertSender(Protocol):
    def send(self, alert: Alert) -> None: ...


class Alerts:
    def __init__(self, claims: AlertClaims, senders: Sequence[AlertSender]) -> None:
        self._claims, self._senders = claims, tuple(senders)

    def charged(self, level: Level, period: str, before: tuple[int, int], after: tuple[int, int]) -> None:
        """After a charge took `level`'s month from `before` to `after` (tokens, micros)."""
        kind, tokens = _named(level)
        if kind not in WATCHED:
            return
        for limit, limit_value, was, now in ((tokens, level.token_quota, before[0], after[0]),
                                             ("budget", level.budget_micros, before[1], after[1])):
            if not limit_value:
                continue
            for threshold in THRESHOLDS:
                mark = -(-limit_value * threshold // 100)  # the first whole unit at or past it
                if was < mark <= now:
                    self._raise(Alert(kind, level.id, limit, threshold, now, limit_value, period))

    def refused(self, level: Level, limit: str, period: str, *, used: int) -> None:
        """A request was refused at `level`'s `limit` because too little of it remains: 100%."""
        limit_value = level.token_quota if limit == "tokens" else level.budget_micros
        kind, tokens = _named(level)
        if limit_value is not None and kind in WATCHED:
            self._raise(Alert(kind, level.id, tokens if limit == "tokens" else limit, 100, used, limit_value, period))

    def _raise(self, alert: Alert) -> None:
        try:
            if not self._claims.claim(alert):
                return
        except Exception:  # noqa: BLE001 - an alert never fails the request that raised it
            log.exception("budget alert not claimed", extra={"alert": alert.claim_id()})
            return
        log.warning("budget alert", extra={"alert": alert.payload()})
        for sender in self._senders:
            try:
                sender.send(alert)
            except Exception:  # noqa: BLE001 - one way failing leaves the others
                log.exception("budget alert not delivered", extra={"alert": alert.claim_id(),
                                                                  "to": type(sender).__name__})


def _named(level: Level) -> tuple[str, str]:
    """The level an alert names, and what its token limit is called: a team's month of one model
    is the team's, its id `<team_id>:<model>`, its limit "model_tokens"."""
    if level.kind.endswith("_model"):
        return level.kind.removesuffix("_model"), "model_tokens"
    return level.kind, "tokens"


class NoAlerts:
    """Alerts where no level is watched: the default of a ledger without them."""

    def charged(self, level: Level, period: str, before: tuple[int, int], after: tuple[int, int]) -> None:
        pass

    def refused(self, level: Level, limit: str, period: str, *, used: int) -> None:
        pass
