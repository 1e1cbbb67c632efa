"""Quota answers that tell the truth: every 429 says when to retry, and tokens held by
requests in flight are never called a spent quota."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from tests.support.waiting import wait_for


def with_quota(stack, http, tokens: int) -> tuple[str, str]:
    """A new user whose monthly quota an operator set to `tokens` (and who may have any number
    of chats in flight): their key and id."""
    account = stack.register(http)
    overrides = {"monthly_token_quota": tokens, "max_concurrent_requests": 100}
    changed = http.patch(f"/admin/v1/users/{account['user_id']}", json={"overrides": overrides},
                         headers=stack.admin())
    assert changed.status_code == 200, changed.text
    # The change reaches every authorizer instance within a second: wait until this key shows it.
    wait_for(lambda: http.get("/v1/usage", headers={"x-api-key": account["api_key"]}).json().get("token_quota") == tokens,
             timeout=30, interval=0.1, what="the new quota")
    return account["api_key"], account["user_id"]


def test_concurrent_chats_against_a_small_quota_are_refused_for_holds_not_as_spent(stack, http, faults):
    key, _ = with_quota(stack, http, 300)
    faults(mode="trickle", piece_seconds=0.05, count=30)  # answers take a moment, so that holds overlap
    answers, lock = [], threading.Lock()

    def chat() -> None:
        with stack.client() as own:
            response = own.post("/v1/chat", json={"prompt": "a b c d e", "max_tokens": 8}, headers={"x-api-key": key})
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=chat) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    used = http.get("/v1/usage", headers={"x-api-key": key}).json()
    codes = [response.json()["error"]["code"] for response in answers if response.status_code == 429]
    assert {response.status_code for response in answers} <= {200, 429}
    assert "quota_held_in_flight" in codes, "with 30 at once, holds in flight turned some away"
    if used["token_quota"] - used["tokens_used"] > 100:
        assert "quota_exceeded" not in codes, f"the quota was not spent ({used['tokens_used']}/300)"
    for response in answers:
        if response.status_code == 429:
            assert 1 <= int(response.headers["Retry-After"]) <= 5


def test_a_spent_quota_says_when_the_month_resets(stack, http):
    key, _ = with_quota(stack, http, 100)
    while (response := http.post("/v1/chat", json={"prompt": "hi", "max_tokens": 5},
                                 headers={"x-api-key": key})).status_code == 200:
        pass
    assert response.status_code == 429 and response.json()["error"]["code"] == "quota_exceeded"
    resets_at = datetime.fromisoformat(http.get("/v1/usage", headers={"x-api-key": key}).json()["resets_at"])
    assert abs(int(response.headers["Retry-After"]) - (resets_at - datetime.now(UTC)).total_seconds()) < 60


def test_every_429_carries_retry_after(stack, http, faults):
    key = stack.register(http)["api_key"]
    faults(mode="trickle", piece_seconds=0.3, count=2)
    threads = [threading.Thread(target=lambda: http.post("/v1/chat", json={"prompt": "x", "max_tokens": 3},
                                                        headers={"x-api-key": key})) for _ in range(2)]
    for thread in threads:
        thread.start()
    busy = wait_for(lambda: (r := http.post("/v1/chat", json={"prompt": "x", "max_tokens": 3},
                                            headers={"x-api-key": key})).status_code == 429 and r, what="a full house")
    for thread in threads:
        thread.join()
    limited = None
    for _ in range(100):  # RATE_LIMIT_RPM is 60
        limited = http.get("/v1/usage", headers={"x-api-key": key})
        if limited.status_code == 429:
            break
    for refused in (busy, limited):
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1, refused.text
