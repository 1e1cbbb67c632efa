"""The development model server thinks and fills in the middle as Ollama does, over real HTTP:
a model that can think streams its thoughts before its answer and is charged for both; one that
cannot is refused with Ollama's own 400; a `suffix` is filled in on /api/generate and on the
OpenAI-compatible /v1/completions alike, whole or streamed, for the same tokens either way."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from devkit import backends
from devkit.ollama.engines import DeterministicEngine, smollm2_path
from devkit.ollama.server import full_name

from tests.support import services

THINKER = "thinker:latest"
PLAIN = "smollm2:135m"
QUESTION = "why is the sky blue"
PROMPT, SUFFIX = "def add(a, b):", "    return a + b"
FILL = "Filling in before: return a + b"
FILL_PROMPT_TOKENS = DeterministicEngine.FILL_TEMPLATE_TOKENS + 3 + 4  # the template, the prompt's words, the suffix's


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with services.model_server("--thinking-model", THINKER, models=(PLAIN, THINKER)) as served:
        yield served


@pytest.fixture(scope="module")
def llama_url() -> Iterator[str]:
    """The real SmolLM2, which can neither think nor fill in the middle."""
    pytest.importorskip("llama_cpp", reason="the model runtime is not installed (make model-runtime)")
    try:
        smollm2_path()
    except RuntimeError as missing:
        pytest.skip(str(missing))
    service = backends.start_model_server(engine="llama", models=[PLAIN, "tiny"])
    try:
        yield service.url
    finally:
        service.stop()


def chat(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": QUESTION}], **extra}


def ndjson(url: str, path: str, body: dict) -> list[dict]:
    with httpx.stream("POST", f"{url}{path}", json=body) as response:
        assert response.status_code == 200
        return [json.loads(line) for line in response.iter_lines() if line]


def events(url: str, body: dict) -> list[dict | str]:
    """A streamed /v1/completions answer's events, [DONE] as the string it is."""
    with httpx.stream("POST", f"{url}/v1/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
        data = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    return [item if item == "[DONE]" else json.loads(item) for item in data]


# -- think ---------------------------------------------------------------------


def test_a_thinking_model_streams_its_thoughts_first_and_is_charged_for_them(url):
    *pieces, final = ndjson(url, "/api/chat", chat(THINKER, think=True))
    thoughts = [p for p in pieces if "thinking" in p["message"]]
    assert pieces[:len(thoughts)] == thoughts, "every thought comes before the answer"
    assert all(p["message"]["content"] == "" and p["done"] is False for p in thoughts)
    assert "".join(p["message"]["thinking"] for p in thoughts) == f"Thinking about: {QUESTION}"
    assert "".join(p["message"]["content"] for p in pieces) == f"You said: {QUESTION}"
    assert final["done"] is True and final["done_reason"] == "stop" and "thinking" not in final["message"]
    assert final["eval_count"] == len(pieces) == 7 + 7, "thinking tokens are output tokens"
    assert final["prompt_eval_count"] == DeterministicEngine.count_prompt_tokens(chat(THINKER)["messages"])


def test_a_whole_answer_carries_its_thoughts_beside_it(url):
    body = httpx.post(f"{url}/api/chat", json=chat(THINKER, think="high", stream=False)).json()
    assert body["message"] == {"role": "assistant", "content": f"You said: {QUESTION}",
                               "thinking": f"Thinking about: {QUESTION}"}
    assert body["eval_count"] == 14


def test_generate_thinks_in_its_own_field(url):
    *pieces, final = ndjson(url, "/api/generate", {"model": THINKER, "prompt": QUESTION, "think": True})
    assert "".join(p.get("thinking", "") for p in pieces) == f"Thinking about: {QUESTION}"
    assert "".join(p["response"] for p in pieces) == f"You said: {QUESTION}"
    assert pieces[0]["response"] == "" and "thinking" not in final and final["eval_count"] == 14
    assert len(final["context"]) == final["prompt_eval_count"] + final["eval_count"]


def test_num_predict_bounds_thoughts_and_answer_together(url):
    body = httpx.post(f"{url}/api/chat", json=chat(THINKER, think=True, stream=False,
                                                     options={"num_predict": 9})).json()
    assert body["message"]["thinking"] == f"Thinking about: {QUESTION}" and body["message"]["content"] == "You said:"
    assert (body["eval_count"], body["done_reason"]) == (9, "length")


def test_without_think_or_with_think_false_nobody_thinks(url):
    for extra in ({}, {"think": False}):
        body = httpx.post(f"{url}/api/chat", json=chat(THINKER, stream=False, **extra)).json()
        assert "thinking" not in body["message"] and body["eval_count"] == 7
    plain = httpx.post(f"{url}/api/chat", json=chat(PLAIN, think=False, stream=False))
    assert plain.status_code == 200 and plain.json()["message"]["content"] == f"You said: {QUESTION}"


def test_a_model_that_cannot_think_is_refused_with_ollamas_400(url):
    refusal = {"error": '"smollm2:135m" does not support thinking'}
    for path, body in (("/api/chat", chat(PLAIN, think=True)),
                       ("/api/generate", {"model": PLAIN, "prompt": "hi", "think": "low"})):
        answer = httpx.post(f"{url}{path}", json=body)
        assert (answer.status_code, answer.json()) == (400, refusal)


def test_a_think_ollama_cannot_read_is_400(url):
    answer = httpx.post(f"{url}/api/chat", json=chat(THINKER, think="deeply"))
    assert answer.status_code == 400
    assert answer.json() == {
        "error": 'invalid think value: "deeply" (must be "high", "medium", "low", "max", true, or false)'}


# -- suffix --------------------------------------------------------------------


def test_generate_fills_in_the_middle_and_counts_the_suffix_in_the_prompt(url):
    body = {"model": PLAIN, "prompt": PROMPT, "suffix": SUFFIX}
    whole = httpx.post(f"{url}/api/generate", json={**body, "stream": False}).json()
    assert whole["response"] == FILL and whole["done"] is True and whole["done_reason"] == "stop"
    assert (whole["prompt_eval_count"], whole["eval_count"]) == (FILL_PROMPT_TOKENS, 7)
    assert len(whole["context"]) == FILL_PROMPT_TOKENS + 7 and all(isinstance(t, int) for t in whole["context"])
    *pieces, final = ndjson(url, "/api/generate", body)
    assert all(set(p) == {"model", "created_at", "response", "done"} and p["done"] is False for p in pieces)
    assert "".join(p["response"] for p in pieces) == FILL and final["response"] == ""
    assert {key: final[key] for key in ("prompt_eval_count", "eval_count", "context")} == {
        key: whole[key] for key in ("prompt_eval_count", "eval_count", "context")}


def test_generate_with_an_empty_prompt_only_loads_the_model(url):
    body = httpx.post(f"{url}/api/generate", json={"model": PLAIN, "prompt": ""}).json()
    assert (body["done"], body["done_reason"], body["response"]) == (True, "load", "")
    assert "eval_count" not in body


def test_a_raw_generate_has_no_context(url):
    body = httpx.post(f"{url}/api/generate", json={"model": PLAIN, "prompt": "hi", "raw": True, "stream": False}).json()
    assert body["response"] == "You said: hi" and "context" not in body


def test_v1_completions_fills_in_the_middle_whole(url):
    body = httpx.post(f"{url}/v1/completions", json={"model": PLAIN, "prompt": PROMPT, "suffix": SUFFIX}).json()
    assert body["object"] == "text_completion" and body["model"] == PLAIN
    assert body["choices"] == [{"text": FILL, "index": 0, "finish_reason": "stop"}]
    assert body["usage"] == {"prompt_tokens": FILL_PROMPT_TOKENS, "completion_tokens": 7,
                             "total_tokens": FILL_PROMPT_TOKENS + 7}, "the same tokens as on /api/generate"
    short = httpx.post(f"{url}/v1/completions", json={"model": PLAIN, "prompt": PROMPT, "suffix": SUFFIX,
                                                      "max_tokens": 2}).json()
    assert short["choices"][0]["text"] == "Filling in" and short["choices"][0]["finish_reason"] == "length"


def test_v1_completions_streams_pieces_then_the_finish_then_usage(url):
    *chunks, finish, usage, done = events(url, {"model": PLAIN, "prompt": PROMPT, "suffix": SUFFIX,
                                                "stream_options": {"include_usage": True}})
    assert done == "[DONE]"
    assert all(c["object"] == "text_completion" and c["choices"][0]["finish_reason"] is None for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == FILL and len(chunks) == 7
    assert finish["choices"] == [{"text": "", "index": 0, "finish_reason": "stop"}]
    assert usage["choices"] == [] and usage["usage"]["prompt_tokens"] == FILL_PROMPT_TOKENS
    assert usage["usage"]["completion_tokens"] == 7
    assert len({c["id"] for c in (*chunks, finish, usage)}) == 1


def test_v1_completions_without_include_usage_ends_at_its_finish(url):
    *_, finish, done = events(url, {"model": PLAIN, "prompt": "hello there"})
    assert done == "[DONE]" and finish["choices"][0]["finish_reason"] == "stop" and "usage" not in finish


def test_v1_completions_errors(url):
    unknown = httpx.post(f"{url}/v1/completions", json={"model": "ghost", "prompt": "x"})
    assert unknown.status_code == 404
    listed = httpx.post(f"{url}/v1/completions", json={"model": PLAIN, "prompt": ["x"]})
    assert listed.status_code == 400 and "cannot unmarshal array" in listed.json()["error"]["message"]


# -- a real model that can do neither -------------------------------------------


@pytest.mark.model
def test_smollm2_cannot_fill_in_the_middle_nor_think(llama_url):
    insert = httpx.post(f"{llama_url}/api/generate", json={"model": PLAIN, "prompt": PROMPT, "suffix": SUFFIX})
    assert (insert.status_code, insert.json()) == (
        400, {"error": "registry.ollama.ai/library/smollm2:135m does not support insert"})
    untagged = httpx.post(f"{llama_url}/api/generate", json={"model": "tiny", "prompt": PROMPT, "suffix": SUFFIX})
    assert untagged.json() == {"error": "registry.ollama.ai/library/tiny:latest does not support insert"}
    think = httpx.post(f"{llama_url}/api/chat", json=chat(PLAIN, think=True))
    assert (think.status_code, think.json()) == (400, {"error": '"smollm2:135m" does not support thinking'})
    openai = httpx.post(f"{llama_url}/v1/completions", json={"model": PLAIN, "prompt": PROMPT, "suffix": SUFFIX})
    assert openai.status_code == 400
    assert openai.json()["error"]["message"] == "registry.ollama.ai/library/smollm2:135m does not support insert"


@pytest.mark.parametrize(("model", "named"), [
    ("smollm2:135m", "registry.ollama.ai/library/smollm2:135m"),
    ("tiny", "registry.ollama.ai/library/tiny:latest"),
    ("me/coder", "registry.ollama.ai/me/coder:latest"),
    ("hf.co/me/coder:Q4", "hf.co/me/coder:Q4"),
])
def test_errors_name_a_model_in_full_as_ollama_does(model, named):
    assert full_name(model) == named
