import io
import json

from tests.handlers.conftest import body


def test_health_is_open_and_says_ok(api):
    response = api.call("GET", "/health")
    assert response["statusCode"] == 200
    health = body(response)
    assert health["status"] == "OK"
    assert set(health) == {"status", "service", "uptime", "timestamp"}


def test_metrics_counts_requests_across_instances(api):
    from tests.handlers.conftest import Api

    other_instance = Api()
    before = body(api.call("GET", "/metrics"))["totalRequests"]
    api.call("GET", "/health")
    other_instance.call("GET", "/health")
    metrics = body(api.call("GET", "/metrics"))
    assert metrics["totalRequests"] == before + 3
    assert metrics["memoryUsage"]["rss_bytes"] > 0 and metrics["uptime"] >= 0


def test_no_log_line_holds_a_key_even_when_events_are_logged(api, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    from infergate.observability import logger
    from tests.handlers.conftest import Api

    log = io.StringIO()
    # Powertools' own handler and formatter, writing where this test can read.
    monkeypatch.setattr(logger.registered_handler, "stream", log)
    logged_api = Api()  # handlers loaded with event logging on
    key = logged_api.register()["api_key"]
    logged_api.call("POST", "/v1/chat", key=key, body={"prompt": "hi"})
    logged_api.call("GET", "/v1/usage", headers={"Authorization": f"Bearer {key}", "Cookie": "session=s3cr3t"})
    logged_api.authorize("GET", "/v1/usage", {"x-api-key": key[:-1] + "0"})
    output = log.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert sum("multiValueHeaders" in str(line) for line in lines) >= 5, "every event was expected in the log"
    assert key not in output and key[:-1] not in output
    assert "s3cr3t" not in output
