"""A sampled request's calls to MongoDB, Redis and the model server reach the X-Ray daemon as
subsegments of the function's segment; an unsampled one sends nothing."""

from __future__ import annotations

import json
import socket

import pytest

ROOT, PARENT = "1-6500f1c0-0123456789abcdef01234567", "53995c3f42cd8ad8"


@pytest.fixture
def daemon(monkeypatch):
    """A UDP socket where the X-Ray daemon would listen, and what has arrived there since last asked."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", f"127.0.0.1:{sock.getsockname()[1]}")

    def received() -> list[dict]:
        documents = []
        while True:
            try:
                datagram = sock.recv(65536)
            except TimeoutError:
                return documents
            header, _, body = datagram.partition(b"\n")
            assert json.loads(header) == {"format": "json", "version": 1}
            documents.append(json.loads(body))

    yield received
    sock.close()


def test_a_sampled_chat_sends_a_subsegment_per_store_and_model_call(api, monkeypatch, daemon):
    key = api.register()["api_key"]
    assert daemon() == [], "no request was sampled while registering"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={ROOT};Parent={PARENT};Sampled=1")
    assert api.call("POST", "/v1/chat", key=key, body={"prompt": "hi"})["statusCode"] == 200

    spans = daemon()
    calls = {(document["name"], document.get("annotations", {}).get("operation")) for document in spans}
    assert {("Redis", "admit"), ("Redis", "conclude"), ("model server", None)} <= calls
    assert ("Redis", "metrics") not in calls, "a chat's metrics ride with its conclusion"
    assert {operation for name, operation in calls if name == "MongoDB"} >= {
        "MongoUsageLedger.reserve", "MongoUsageLedger.settle"}
    for document in spans:
        assert (document["type"], document["trace_id"], document["parent_id"]) == ("subsegment", ROOT, PARENT)
        assert len(document["id"]) == 16 and document["start_time"] <= document["end_time"]
        assert document["namespace"] == "remote" and "fault" not in document


def test_an_unsampled_request_sends_nothing(api, monkeypatch, daemon):
    key = api.register()["api_key"]
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={ROOT};Parent={PARENT};Sampled=0")
    assert api.call("POST", "/v1/chat", key=key, body={"prompt": "hi"})["statusCode"] == 200
    assert daemon() == []


def test_a_failed_model_call_is_a_faulted_span(api, monkeypatch, daemon, faulty_ollama_url, faults):
    from tests.support.functions import reset_instance_state

    monkeypatch.setenv("OLLAMA_URL", faulty_ollama_url)
    reset_instance_state()
    key = api.register()["api_key"]
    faults(mode="status", status=500)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={ROOT};Parent={PARENT};Sampled=1")
    assert api.call("POST", "/v1/chat", key=key, body={"prompt": "hi"})["statusCode"] == 502

    [model_call] = [document for document in daemon() if document["name"] == "model server"]
    assert model_call["fault"] is True
