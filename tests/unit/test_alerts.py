"""Which charges raise which budget alerts: 50%, 80% and 100% of a team's or key's quota or budget,
each when a charge first reaches it, and 100% when a request is refused at the limit."""

from __future__ import annotations

from infergate.domain.alerts import Alert, Alerts
from infergate.domain.ledger import Level

TEAM = Level("team", "team_1", 1000, 3)  # 1,000 tokens; a budget of 3 micros


class Claims:
    def __init__(self) -> None:
        self.claimed: set[str] = set()

    def claim(self, alert: Alert) -> bool:
        first = alert.claim_id() not in self.claimed
        self.claimed.add(alert.claim_id())
        return first


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.sent.append(alert)


def watched() -> tuple[Alerts, Recorder]:
    recorder = Recorder()
    return Alerts(Claims(), [recorder]), recorder


def test_each_threshold_is_raised_by_the_charge_that_reaches_it_once():
    alerts, recorder = watched()
    alerts.charged(TEAM, "2026-12", (0, 0), (499, 1))
    alerts.charged(TEAM, "2026-12", (499, 1), (500, 1))  # 50% of the tokens exactly
    alerts.charged(TEAM, "2026-12", (500, 1), (990, 3))  # past 80% and to 100% of the budget (2 and 3 of 3)
    alerts.charged(TEAM, "2026-12", (990, 3), (1000, 3))  # 100% of the tokens
    assert [(a.limit, a.threshold, a.used) for a in recorder.sent] == [
        ("tokens", 50, 500), ("tokens", 80, 990), ("budget", 50, 3), ("budget", 80, 3), ("budget", 100, 3),
        ("tokens", 100, 1000)]
    assert recorder.sent[0].payload() == {"level": "team", "id": "team_1", "limit": "tokens", "threshold": 50,
                                          "used": 500, "limit_value": 1000, "period": "2026-12"}


def test_a_refusal_at_the_limit_is_its_100_percent_once_and_an_unset_limit_raises_nothing():
    alerts, recorder = watched()
    for _ in range(3):
        alerts.refused(TEAM, "tokens", "2026-12", used=990)
    alerts.refused(Level("key", "key_1", None, 50), "tokens", "2026-12", used=10)
    alerts.charged(Level("key", "key_1", None, None), "2026-12", (0, 0), (10**9, 10**9))
    assert [(a.id, a.limit, a.threshold, a.used) for a in recorder.sent] == [("team_1", "tokens", 100, 990)]


def test_a_sender_that_fails_leaves_the_others_and_the_request():
    class Broken:
        def send(self, alert: Alert) -> None:
            raise OSError("unreachable")

    recorder = Recorder()
    Alerts(Claims(), [Broken(), recorder]).charged(TEAM, "2026-12", (0, 0), (500, 0))
    assert len(recorder.sent) == 1
