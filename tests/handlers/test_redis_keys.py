"""Every key InferGate writes in Redis carries REDIS_KEY_PREFIX, so that a Redis shared with
others, or an ACL that allows only the prefix (`~infergate:*`), serves it whole."""

from __future__ import annotations

import uuid

from tests.handlers.conftest import body
from tests.support import services
from tests.support.functions import reset_instance_state


def test_every_key_written_carries_the_prefix(api, redis_client, monkeypatch):
    prefix = f"acl-{uuid.uuid4().hex[:8]}:"
    monkeypatch.setenv("REDIS_KEY_PREFIX", prefix)
    reset_instance_state()
    before = set(redis_client.scan_iter(count=1000))

    key = api.register(f"acl-{uuid.uuid4().hex[:6]}@example.com")["api_key"]
    chat = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    for stream in (False, True):
        for _ in range(2):  # the second is a replay of the first
            response = api.call("POST", "/v1/chat/completions", key=key, body={**chat, "stream": stream},
                                headers={"Idempotency-Key": f"acl-{stream}"})
            assert response["statusCode"] == 200, body(response)
    assert api.call("POST", "/v1/messages", key=key, body={**chat, "max_tokens": 3})["statusCode"] == 200
    api.call("GET", "/v1/usage", key=key)
    api.call("GET", "/v1/keys", key=key)
    api.call("GET", "/v1/usage", key="igk_" + "x" * 40, expect_allowed=False)  # a failed authentication

    written = {name.decode() for name in set(redis_client.scan_iter(count=1000)) - before}
    assert written and all(name.startswith(prefix) for name in written), sorted(
        name for name in written if not name.startswith(prefix))


def script_calls(redis_client) -> int:
    """Scripts run so far, on every master of a cluster."""
    if services.redis_is_cluster():
        every = redis_client.info("commandstats", target_nodes=redis_client.PRIMARIES).values()
    else:
        every = [redis_client.info("commandstats")]
    return sum(stats.get(name, {}).get("calls", 0) for stats in every for name in ("cmdstat_evalsha", "cmdstat_eval"))


def test_a_chat_costs_two_scripts_in_redis_its_metrics_included(api, redis_client):
    # On a cluster the user's shard and the pool are asked apart: two scripts each way.
    scripts = 4 if services.redis_is_cluster() else 2
    key = api.register(f"trips-{uuid.uuid4().hex[:6]}@example.com")["api_key"]
    chat = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    for stream in (False, True):
        api.call("POST", "/v1/chat/completions", key=key, body={**chat, "stream": stream})  # its scripts loaded
        before = script_calls(redis_client)
        answered = api.call("POST", "/v1/chat/completions", key=key, body={**chat, "stream": stream})
        assert answered["statusCode"] == 200
        assert script_calls(redis_client) - before == scripts, f"stream={stream}: admission, then conclusion with metrics"
