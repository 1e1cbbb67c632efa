"""`make run REDIS_CLUSTER=3`: the gateway on a Redis Cluster of three masters (redis-server's own
cluster mode), as on ElastiCache Serverless. Every script's keys share a hash slot, so nothing
is refused CROSSSLOT; limits hold exactly under concurrency, chats are charged once, a replayed
Idempotency-Key is a replay, and the metrics add up across the shards."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.make_run import start_make_run


@pytest.fixture(scope="module")
def clustered(tmp_path_factory, mongo_uri, ollama_url):
    folder = tmp_path_factory.mktemp("cluster")
    running = start_make_run({"REDIS_CLUSTER": "3", "MONGODB_URI": mongo_uri, "MONGODB_DB": f"e2e_cluster_{folder.name}",
                              "OLLAMA_URL": ollama_url, "INFERGATE_DATA_DIR": str(folder / "data"),
                              "RATE_LIMIT_RPM": "20", "MAX_CONCURRENT_REQUESTS": "100",
                              "METRICS_TOKEN": "scrape"}, folder / "make-run.log")
    yield running
    running.stop()


def test_it_starts_on_a_cluster_of_three_masters(clustered):
    assert "Redis Cluster of 3 masters" in clustered.output()


def test_a_keys_limit_admits_exactly_its_figure_under_concurrency(clustered):
    with clustered.client() as http:
        key = http.post("/v1/register", json={"email": "burst@example.com"}).json()["api_key"]

    def chat(_: int) -> int:
        with clustered.client() as client:
            return client.post("/v1/chat", json={"prompt": "hi", "max_tokens": 3}, headers={"x-api-key": key}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(chat, range(24)))
    assert statuses.count(200) == 20 and statuses.count(429) == 4, statuses
    with clustered.client() as http:
        usage = http.get("/v1/usage", headers={"x-api-key": key})
    assert usage.status_code == 429


def test_chats_streamed_or_not_are_charged_once_and_a_retry_is_a_replay(clustered):
    with clustered.client() as http:
        key = http.post("/v1/register", json={"email": "once@example.com"}).json()["api_key"]
        headers = {"Authorization": f"Bearer {key}"}
        body = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5,
                "stream_options": {"include_usage": True}}
        told = 0
        for stream in (False, True):
            retry = {**headers, "Idempotency-Key": f"cluster-{stream}"}
            first = http.post("/v1/chat/completions", json={**body, "stream": stream}, headers=retry)
            again = http.post("/v1/chat/completions", json={**body, "stream": stream}, headers=retry)
            assert first.status_code == again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
            told += usage_of(first.text, stream)
        usage = http.get("/v1/usage", headers=headers).json()
        assert (usage["requests"], usage["tokens_used"]) == (2, told)

        metrics = http.get("/metrics", params={"format": "prometheus"}, headers={"Authorization": "Bearer scrape"})
        assert metrics.status_code == 200
        assert 'infergate_requests_total{route="/v1/chat/completions",status="200"} 4' in metrics.text


def usage_of(text: str, streamed: bool) -> int:
    import json

    if not streamed:
        return json.loads(text)["usage"]["total_tokens"]
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    return next(event["usage"]["total_tokens"] for event in events if event.get("usage"))
