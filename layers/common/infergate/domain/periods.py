"""Time as the domain reads it: now, in UTC, and billing periods, which are calendar months
in UTC, named `YYYY-MM`."""

from __future__ import annotations

from datetime import UTC, date, datetime


def whole_seconds(milliseconds: int) -> int:
    """Milliseconds as whole seconds, rounded up: how long to wait."""
    return max(0, -(-milliseconds // 1000))


def utc_now() -> datetime:
    return datetime.now(UTC)


def period_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m")


def period_start(period: str) -> datetime:
    return datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)


def period_end(period: str) -> datetime:
    """The instant the next period begins (00:00 UTC on the 1st)."""
    start = period_start(period)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def day_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def months_between(start: date, end: date) -> list[str]:
    """The months (YYYY-MM) that days `start` to `end` fall in, in order."""
    months, year, month = [], start.year, start.month
    while (year, month) <= (end.year, end.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months
