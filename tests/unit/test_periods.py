from datetime import UTC, date, datetime, timedelta, timezone

from infergate.domain.periods import day_of, months_between, period_end, period_of, period_start


def test_a_period_is_the_utc_calendar_month():
    assert period_of(datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)) == "2026-11"
    # 01:00 on Dec 1st in UTC+2 is still November in UTC.
    assert period_of(datetime(2026, 12, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))) == "2026-11"


def test_a_period_ends_at_midnight_utc_on_the_first():
    assert period_end("2026-11") == datetime(2026, 12, 1, tzinfo=UTC)
    assert period_end("2026-12") == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_start("2027-01") == period_end("2026-12")


def test_day_of():
    assert day_of(datetime(2026, 2, 3, 4, 5, tzinfo=UTC)) == "2026-02-03"


def test_a_range_of_days_names_every_month_it_touches():
    assert months_between(date(2026, 11, 20), date(2027, 2, 3)) == ["2026-11", "2026-12", "2027-01", "2027-02"]
    assert months_between(date(2026, 12, 6), date(2026, 12, 6)) == ["2026-12"]
