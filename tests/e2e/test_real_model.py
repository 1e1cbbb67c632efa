"""The default `make run` path: no backends given, a real model on the CPU."""

from __future__ import annotations

import json

import pytest

from infergate.domain.messages import Message
from infergate.domain.tokens import prompt_tokens_upper_bound
from tests.support.make_run import start_make_run
from tests.support.waiting import wait_for

pytestmark = pytest.mark.model


def test_a_chat_through_smollm2_is_answered_and_metered(tmp_path):
    running = start_make_run(
        # OLLAMA_AUTODETECT=0: prove the bundled model path even where an Ollama happens to run.
        {"OLLAMA_AUTODETECT": "0", "INFERGATE_DATA_DIR": str(tmp_path / "data")},
        tmp_path / "make-run.log",
    )
    try:
        assert "SmolLM2" in running.output()
        with running.client() as http:
            key = http.post("/v1/register", json={"email": "model@example.com"}).json()["api_key"]
            prompt = "What is the capital of France? Answer in one word."
            chat = http.post("/v1/chat", json={"prompt": prompt, "max_tokens": 24}, headers={"x-api-key": key})
            assert chat.status_code == 200, chat.text
            answer = chat.json()
            assert answer["response"].strip()
            usage = answer["usage"]
            assert 0 < usage["completion_tokens"] <= 24
            # Real tokenizer counts: never above the bound the gateway reserved.
            assert 0 < usage["prompt_tokens"] <= prompt_tokens_upper_bound([Message(role="user", content=prompt)])
            assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
            assert http.get("/v1/usage", headers={"x-api-key": key}).json()["tokens_used"] == usage["total_tokens"]

            # Structured output from the real model: llama.cpp's grammar holds it to the schema.
            schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                        "country": {"type": "string", "maxLength": 20}},
                      "required": ["city", "country"], "additionalProperties": False}
            structured = http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json={
                "model": "smollm2:135m", "max_tokens": 64, "temperature": 0,
                "messages": [{"role": "user", "content": "Name the capital of France and its country."}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}})
            assert structured.status_code == 200, structured.text
            place = json.loads(structured.json()["choices"][0]["message"]["content"])
            assert set(place) == {"city", "country"} and all(isinstance(value, str) for value in place.values())

            a_prompt_counted_by_the_models_tokenizer_fits_and_a_cut_answer_is_charged_by_it(http, running)
    finally:
        running.stop()


def a_prompt_counted_by_the_models_tokenizer_fits_and_a_cut_answer_is_charged_by_it(http, running):
    """`make run` names the bundled model's tokenizer (MODEL_TOKENIZERS): an answer cut off before
    Ollama's count arrives is charged the tokenizer's bound, not the bytes'. (That a prompt the bytes
    would refuse fits is tests/handlers/test_limits_and_usage.py's: the real model would take seconds
    over the 2,000 tokens it keeps of one.)"""
    key = http.post("/v1/register", json={"email": "tokenizer@example.com"}).json()["api_key"]
    headers = {"x-api-key": key}
    spent = http.get("/v1/usage", headers=headers).json()["tokens_used"]
    content = "日本語のテキストです。" * 30
    chat = {"model": "smollm2:135m", "messages": [{"role": "user", "content": content}], "max_tokens": 64,
            "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=chat, headers=headers) as stream:
        assert stream.status_code == 200
        next(stream.iter_lines())  # the answer has begun: the reader leaves

    def charged() -> int:
        return http.get("/v1/usage", headers=headers).json()["tokens_used"] - spent

    wait_for(lambda: charged() > 0, what="the cut answer charged")
    as_bytes = prompt_tokens_upper_bound([Message(role="user", content=content)])
    by_tokenizer = as_bytes - len(content.encode()) + 570  # SmolLM2 counts this text as 570 tokens
    assert by_tokenizer <= charged() <= by_tokenizer + 64 < as_bytes, (charged(), by_tokenizer, as_bytes)
