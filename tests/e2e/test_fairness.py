"""Fairness and free model time: no user locks the others out, none uses the model for free,
none occupies the whole model server."""

from __future__ import annotations

import threading
import uuid

from tests.support.waiting import wait_for


def in_threads(*calls):
    results, threads = [None] * len(calls), []
    for index, call in enumerate(calls):
        def run(index=index, call=call):
            results[index] = call()
        threads.append(threading.Thread(target=run))
        threads[-1].start()
    return threads, results


def test_long_answers_cut_by_the_deadline_are_charged_and_lock_nobody_out(stack, http, faults):
    users = [stack.register(http)["api_key"] for _ in range(5)]
    faults(mode="trickle", piece_seconds=0.4, count=5)  # each answer outlasts OLLAMA_TIMEOUT (2 s) while flowing
    threads, results = in_threads(*[
        lambda key=key: http.post("/v1/chat", json={"prompt": "tell me everything", "max_tokens": 50},
                                  headers={"x-api-key": key})
        for key in users])
    for thread in threads:
        thread.join()
    assert [response.status_code for response in results] == [504] * 5, [r.text for r in results]
    for key in users:
        assert http.get("/v1/usage", headers={"x-api-key": key}).json()["tokens_used"] > 0, "tokens made are charged"

    bystander = stack.register(http)["api_key"]
    served = http.post("/v1/chat", json={"prompt": "hi", "max_tokens": 5}, headers={"x-api-key": bystander})
    assert served.status_code == 200, "the breaker stayed closed: the model server was never unwell"


def test_a_user_holds_at_most_their_plans_chats_in_flight(stack, http, faults):
    key = stack.register(http)["api_key"]
    faults(mode="trickle", piece_seconds=0.3, count=2)
    slow = [f"slow-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    threads, results = in_threads(*[
        lambda rid=rid: http.post("/v1/chat", json={"prompt": "one two three", "max_tokens": 4},
                                  headers={"x-api-key": key, "x-request-id": rid})
        for rid in slow])
    wait_for(lambda: stack.model_asked(*slow), what="both slow chats in flight")

    refused = http.post("/v1/chat", json={"prompt": "hi", "max_tokens": 5}, headers={"x-api-key": key})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_concurrent_requests"
    assert int(refused.headers["Retry-After"]) >= 1

    for thread in threads:
        thread.join()
    assert [response.status_code for response in results] == [200, 200]
    again = http.post("/v1/chat", json={"prompt": "hi", "max_tokens": 5}, headers={"x-api-key": key})
    assert again.status_code == 200, "each finished chat gave its slot back"
