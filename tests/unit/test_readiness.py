from infergate.readiness import ReadinessCheck


def test_dependencies_are_asked_at_most_once_a_second_and_a_failure_says_its_kind():
    asked, now = [], [0.0]

    def database() -> None:
        asked.append(now[0])

    def cache() -> None:
        raise ConnectionRefusedError("refused")

    checking = ReadinessCheck({"database": database, "cache": cache}, timeout=1, fresh_for=1, clock=lambda: now[0])
    first = checking.latest()
    assert not first.ready and first.checks["cache"].error == "ConnectionRefusedError" and first.checks["database"].ok
    now[0] = 0.5
    assert checking.latest() is first and asked == [0.0], "answered from the last check"
    now[0] = 1.0
    checking.latest()
    assert asked == [0.0, 1.0]
