"""What the domain tells operators, through a port the edge implements (observability.py):
counts for the functions' metrics, and how each metered request ended, for its access line.
The domain's own log lines go through the standard library's logging, under `infergate`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from infergate.domain.ledger import RequestOutcome


class Telemetry(Protocol):
    def count(self, metric: str, value: int = 1) -> None:
        """Add `value` to the count `metric` (TokensCharged, QuotaExceeded, ...)."""

    def ended(self, outcome: RequestOutcome) -> None:
        """A metered request ended so: its model, tokens, status and the model server's time."""
