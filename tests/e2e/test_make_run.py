"""`make run` end to end over HTTP: the path a user walks with the README's quick start and its curl examples."""

from __future__ import annotations

import threading

import httpx
import pytest
from devkit.backends import port_open

from tests.support import services
from tests.support.make_run import start_make_run


@pytest.fixture
def api(tmp_path, mongo_uri, redis_url, ollama_url):
    running = start_make_run(
        {"MONGODB_URI": mongo_uri, "MONGODB_DB": f"e2e_{tmp_path.name}", "REDIS_URL": redis_url, "OLLAMA_URL": ollama_url,
         "POWERTOOLS_LOGGER_LOG_EVENT": "true", "INFERGATE_DATA_DIR": str(tmp_path / "data")},
        tmp_path / "make-run.log",
    )
    yield running
    running.stop()


def test_register_chat_usage_and_a_wrong_key(api):
    with api.client() as http:
        registered = http.post("/v1/register", json={"email": "grace@example.com"})
        assert registered.status_code == 201
        assert registered.headers["x-request-id"]
        key = registered.json()["api_key"]

        chat = http.post("/v1/chat", json={"prompt": "hello gateway"}, headers={"x-api-key": key, "x-request-id": "e2e-1"})
        assert chat.status_code == 200, chat.text
        assert chat.headers["x-request-id"] == "e2e-1"
        assert chat.json()["response"] == "You said: hello gateway"
        charged = chat.json()["usage"]["total_tokens"]

        usage = http.get("/v1/usage", headers={"Authorization": f"Bearer {key}"})
        assert usage.status_code == 200
        assert usage.json()["tokens_used"] == charged and usage.json()["requests"] == 1

        wrong = http.get("/v1/usage", headers={"x-api-key": key[:-2] + "xx"})
        assert wrong.status_code == 401
        # API Gateway's own answer, OpenAI's error shape and Anthropic's at once.
        assert wrong.json() == {"type": "error", "error": {"message": "The API key is not valid.",
                                                           "type": "authentication_error", "param": None,
                                                           "code": "invalid_api_key"}}
        assert wrong.headers["x-request-id"]

        missing = http.post("/v1/chat", json={"prompt": "hi"})
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"

        nowhere = http.get("/v2/nothing")
        assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == "not_found"

        assert http.get("/health").json()["status"] == "OK"
        assert http.get("/metrics").json()["totalRequests"] >= 4

    # Event logging was on for every function, and still no key reached a log line.
    assert "multiValueHeaders" in api.output()
    assert key not in api.output()


def test_bad_input_is_a_json_error_never_a_500(api):
    with api.client() as http:
        for body in (b"{", b"[]", b'{"email": 5}', b"\xff\xfe"):
            response = http.post("/v1/register", content=body)
            assert response.status_code == 400, body
            assert response.json()["error"]["code"] == "invalid_request"


def test_stopping_lets_a_request_in_flight_finish(tmp_path, mongo_uri, redis_url):
    with services.model_server("--token-delay", "0.25") as slow_model:
        running = start_make_run(
            {"MONGODB_URI": mongo_uri, "MONGODB_DB": f"e2e_stop_{tmp_path.name}", "REDIS_URL": redis_url,
             "OLLAMA_URL": slow_model, "INFERGATE_DATA_DIR": str(tmp_path / "data")},
            tmp_path / "make-run.log",
        )
        port = int(running.url.rsplit(":", 1)[1])
        with running.client() as http:
            key = http.post("/v1/register", json={"email": "late@example.com"}).json()["api_key"]
            result: dict = {}
            request = threading.Thread(target=lambda: result.update(
                response=http.post("/v1/chat", json={"prompt": "one two three four five six"}, headers={"x-api-key": key})))
            request.start()
            services.wait_until_the_model_is_asked(slow_model)  # the answer is streaming: eight tokens at 0.25 s
            running.stop()
            request.join(30)
        assert result["response"].status_code == 200
        assert result["response"].json()["response"] == "You said: one two three four five six"
        assert not port_open("127.0.0.1", port)
        assert "Stopped." in running.output()


def test_it_starts_its_own_mongodb_and_redis_and_a_restart_keeps_the_data(tmp_path, ollama_url):
    environment = {"OLLAMA_URL": ollama_url, "INFERGATE_DATA_DIR": str(tmp_path / "data")}
    first = start_make_run(environment, tmp_path / "first.log")
    try:
        assert "Starting MongoDB" in first.output() and "Starting Redis" in first.output()
        with first.client() as http:
            key = http.post("/v1/register", json={"email": "kept@example.com"}).json()["api_key"]
            assert http.post("/v1/chat", json={"prompt": "remember me"}, headers={"x-api-key": key}).status_code == 200
    finally:
        first.stop()
    assert (tmp_path / "data" / "mongodb").is_dir()

    second = start_make_run(environment, tmp_path / "second.log")
    try:
        with second.client() as http:
            usage = http.get("/v1/usage", headers={"x-api-key": key})
            assert usage.status_code == 200 and usage.json()["requests"] == 1
    finally:
        second.stop()
    # Everything it started has stopped with it.
    assert "Stopped." in second.output()
    with pytest.raises(httpx.HTTPError):
        httpx.get(second.url + "/health", timeout=1)
