"""Token arithmetic done before the model has seen the prompt.

A reservation must never be smaller than what the model will charge, so the
prompt's size is estimated from above: a BPE token covers at least one byte
of UTF-8, and a chat template adds a bounded number of tokens per message
(role markers) and per request (a default system prompt, the assistant
turn). The real count from the model replaces the estimate when charging.
"""

from __future__ import annotations

from collections.abc import Iterable

from infergate.domain.messages import Message

TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_TOKENS_PER_REQUEST = 64
# What one image may cost a vision model: its encoder's tokens (576 for LLaVA, 256 for Gemma 3, up to
# about 1,600 for Llama 3.2 Vision's tiles), with room to spare.
TOKENS_PER_IMAGE = 2048
DEFAULT_MAX_TOKENS = 512


def embedding_tokens_upper_bound(inputs: Iterable[str]) -> int:
    """Each input's bytes, and what the model adds around it (counted as a message's)."""
    return sum(len(text.encode()) + TEMPLATE_TOKENS_PER_MESSAGE for text in inputs)


def prompt_tokens_upper_bound(messages: Iterable[Message], *, extra: str = "") -> int:
    """`extra`: whatever else the model reads as prompt (the tools offered, an answer's schema)."""
    total = TEMPLATE_TOKENS_PER_REQUEST + len(extra.encode())
    for message in messages:
        total += len(message.prompt_text().encode()) + TEMPLATE_TOKENS_PER_MESSAGE + TOKENS_PER_IMAGE * len(message.images)
    return total
