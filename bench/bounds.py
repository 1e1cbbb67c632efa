"""Benchmark: what a prompt is charged where the model server does not count it, against the
truth, counted in UTF-8 bytes (the default) and by the model's tokenizer (MODEL_TOKENIZERS).

Where Ollama cuts an answer off before its end (a client gone, a deadline), it has not yet said
how many tokens the prompt took, and InferGate charges the prompt's bound and a token for each
piece generated (domain/meter.py; tests/e2e/test_real_model.py checks it through `make run`).
The truth is what the model counts: SmolLM2-135M on llama.cpp, the prompt as its chat template
renders it, as Ollama would report it had the answer ended. For each prompt, "bound/true" is the
bound over that count; for a cut answer, the charge (bound + pieces) over the true cost (count +
pieces). A vLLM or llama-server configured as such says the count as it answers: 1.00.

    .venv/bin/python bench/bounds.py            (also the last section of make bench)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]

from devkit.model_setup import model_runtime_installed  # noqa: E402

from infergate.domain.messages import Message  # noqa: E402
from infergate.domain.tokens import prompt_tokens_upper_bound  # noqa: E402

CUT_AFTER = 5  # pieces generated before the cut, as in the case that showed the problem

PROMPTS = {
    "English, one line": [Message("user", "What is the capital of France?")],
    "English, a page": [Message("user", (ROOT / "docs/architecture.md").read_text()[:3000])],
    "code": [Message("user", "Fix this:\n" + (ROOT / "layers/common/infergate/domain/tokens.py").read_text()[:3000])],
    "CJK": [Message("user", "日本語のテキストです。東京は大きい都市です。" * 40)],
    "emoji": [Message("user", "🎉😀🚀❤️" * 150)],
    "a conversation (6 turns)": [
        Message("system", "You are a careful coding assistant."),
        *[message for turn in range(3) for message in (
            Message("user", f"Step {turn}: explain what this does.\n" + (ROOT / "bench/wiretap.py").read_text()[:700]),
            Message("assistant", "It counts the commands a client sends to each store, on the wire. " * 4))],
    ],
}


def measure() -> list[tuple[str, int, float, float, float, float]]:
    """Per prompt: its true count, then bound/true in bytes and by the tokenizer, then the same for
    an answer cut after CUT_AFTER pieces."""
    from devkit.ollama.engines import LlamaEngine, smollm2_path
    from devkit.tokenizer_export import smollm2_tokenizer

    from infergate.llm.tokenizer import load

    count = load(str(smollm2_tokenizer(Path(tempfile.mkdtemp(prefix="infergate-tokenizer-")))))
    engine = LlamaEngine(smollm2_path(), context_tokens=8192)
    rows = []
    for name, messages in PROMPTS.items():
        truth = engine.generate([{"role": m.role, "content": m.content} for m in messages], num_predict=1,
                                options={}).prompt_tokens
        as_bytes = prompt_tokens_upper_bound(messages)
        by_tokenizer = prompt_tokens_upper_bound(messages, count=count)
        rows.append((name, truth, as_bytes / truth, by_tokenizer / truth, (as_bytes + CUT_AFTER) / (truth + CUT_AFTER),
                     (by_tokenizer + CUT_AFTER) / (truth + CUT_AFTER)))
    return rows


def report() -> None:
    if not model_runtime_installed():
        print("\nPrompt bounds: skipped (the model runtime is not installed: make model-runtime)")
        return
    print("\nWhat a prompt is charged where the model server does not count it (an Ollama answer cut off), "
          f"against SmolLM2-135M's own count; a cut answer is cut after {CUT_AFTER} pieces")
    print(f"  {'prompt':<26} {'true':>6}   {'bound/true':>21}   {'cut answer: charged/true':>24}")
    print(f"  {'':<26} {'tokens':>6}   {'bytes':>10} {'tokenizer':>10}   {'bytes':>11} {'tokenizer':>12}")
    for name, truth, as_bytes, by_tokenizer, cut_bytes, cut_tokenizer in measure():
        print(f"  {name:<26} {truth:>6}   {as_bytes:>9.2f}x {by_tokenizer:>9.2f}x   {cut_bytes:>10.2f}x "
              f"{cut_tokenizer:>11.2f}x")
    print("  vLLM or llama-server configured as such (they say the count as they answer): 1.00x")


if __name__ == "__main__":
    report()
