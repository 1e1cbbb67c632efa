"""A model's tokenizer read from its tokenizer.json (llm/tokenizer.py), held to the model itself:
SmolLM2-135M on llama.cpp. Its count of a text is never below llama.cpp's, and the prompt bound it
gives is never below the real prompt's count, and well below the bytes' bound."""

from __future__ import annotations

import random

import pytest
from devkit.ollama.engines import LlamaEngine, smollm2_path
from devkit.tokenizer_export import smollm2_tokenizer

from infergate.domain.messages import Message
from infergate.domain.tokens import prompt_tokens_upper_bound
from infergate.llm.tokenizer import UnsupportedTokenizer, load
from tests.support.paths import ROOT

pytestmark = pytest.mark.model


def texts() -> list[str]:
    """English, code, CJK, emoji, accents, whitespace, digits, text that looks like special tokens,
    and random mixtures of them all."""
    chosen = ["Hello, world!", "def f(x):\n    return x**2 + 12345\n", "日本語のテキストです。東京は大きい。",
              "中文字符测试，包括标点。", "😀" * 50, "🎉 party 🎊 time 2026-12-05", "Ünïcödé çàfé naïve",
              "  multiple   spaces\n\n\ttabs", "<|im_start|> not special", "x = [1,2,3]; y = {'a': 1}",
              "The quick brown fox jumps over the lazy dog. " * 20, (ROOT / "docs/architecture.md").read_text()[:6000]]
    draw = random.Random(5)
    alphabets = [(32, 126), (0x4E00, 0x9FFF), (0x1F300, 0x1F64F), (0xC0, 0x24F), (0x400, 0x4FF)]
    for _ in range(40):
        chosen.append("".join(chr(draw.randint(*draw.choice(alphabets))) for _ in range(draw.randint(1, 300))))
    return chosen


@pytest.fixture(scope="module")
def count(tmp_path_factory):
    return load(str(smollm2_tokenizer(tmp_path_factory.mktemp("tokenizers"))))


@pytest.fixture(scope="module")
def engine() -> LlamaEngine:
    return LlamaEngine(smollm2_path())


def test_its_count_of_a_text_is_never_below_the_models(count):
    from llama_cpp import Llama

    model = Llama(model_path=str(smollm2_path()), vocab_only=True, verbose=False)
    for text in texts():
        truth = len(model.tokenize(text.encode(), add_bos=False, special=False))
        assert truth <= count(text) <= truth + 2, repr(text[:60])


@pytest.mark.parametrize("content", ["Hello!", "日本語のテキストです。" * 10, "😀" * 100, "def f(x):\n    return x\n" * 8])
def test_the_prompt_bound_is_never_below_the_prompts_count_and_well_below_the_bytes(engine, count, content):
    conversation = [Message("system", "Be brief."), Message("user", content), Message("assistant", "Sure."),
                    Message("user", content)]
    truth = engine.generate([{"role": m.role, "content": m.content} for m in conversation], num_predict=1,
                            options={}).prompt_tokens
    bound = prompt_tokens_upper_bound(conversation, count=count)
    assert truth <= bound < prompt_tokens_upper_bound(conversation)


def test_a_tokenizer_that_is_not_byte_level_bpe_is_refused(tmp_path):
    unigram = tmp_path / "unigram.json"
    unigram.write_text('{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}')
    with pytest.raises(UnsupportedTokenizer):
        load(str(unigram))
