"""The default `make run` path: no backends given, a real model on the CPU."""

from __future__ import annotations

import json

import pytest

from infergate.domain.messages import Message
from infergate.domain.tokens import prompt_tokens_upper_bound
from tests.support.make_run import start_make_run

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
    finally:
        running.stop()
