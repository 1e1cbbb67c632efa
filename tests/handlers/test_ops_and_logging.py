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


def test_readiness_asks_each_dependency_and_says_how_each_did(api):
    response = api.call("GET", "/health/ready")
    assert response["statusCode"] == 200
    ready = body(response)
    assert ready["status"] == "ready"
    assert set(ready["checks"]) == {"mongodb", "redis", "model_server"}
    assert all(check["status"] == "ok" and check["latency_ms"] >= 0 for check in ready["checks"].values())


def test_a_dependency_down_or_hung_makes_it_not_ready_within_the_checks_deadline(api, monkeypatch):
    import socket
    import time

    from devkit.backends import free_port

    from infergate.bootstrap import READY_SECONDS
    from tests.handlers.conftest import header
    from tests.support.functions import reset_instance_state

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("OLLAMA_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
        reset_instance_state()
        started = time.monotonic()
        response = api.call("GET", "/health/ready")
        assert time.monotonic() - started < READY_SECONDS + 1.5
    assert response["statusCode"] == 503 and header(response, "Retry-After")
    checks = body(response)["checks"]
    assert body(response)["status"] == "not_ready"
    assert checks["mongodb"]["status"] == "ok"
    assert checks["redis"]["status"] == checks["model_server"]["status"] == "failing"
    assert checks["model_server"]["error"] in {"timeout", "TimeoutError"}
    assert "127.0.0.1" not in response["body"], "no address is given away"


def test_metrics_can_be_kept_to_holders_of_a_token(api, monkeypatch):
    from tests.handlers.conftest import header
    from tests.support.functions import reset_instance_state

    assert api.call("GET", "/metrics")["statusCode"] == 200  # open without METRICS_TOKEN
    monkeypatch.setenv("METRICS_TOKEN", "scrape-me-7")
    reset_instance_state()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic scrape-me-7"}):
        refused = api.call("GET", "/metrics", headers=headers)
        assert refused["statusCode"] == 401 and body(refused)["error"]["code"] == "unauthorized"
        assert header(refused, "WWW-Authenticate") == "Bearer"
    assert api.call("GET", "/metrics", headers={"Authorization": "Bearer scrape-me-7"})["statusCode"] == 200
