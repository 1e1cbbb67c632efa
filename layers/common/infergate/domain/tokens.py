"""Token arithmetic done before the model has seen the prompt.

A reservation must never be smaller than what the model will charge, so the
prompt's size is counted from above, and the count the model reports replaces it when
charging. Each message's text is counted by the model's tokenizer where the operator named one
(MODEL_TOKENIZERS), else as its UTF-8 bytes (a BPE token covers at least one byte); a chat
template adds a bounded number of tokens per message (role markers) and per request (a default
system prompt, the assistant turn). Where the model server does not report the prompt's count
(Ollama, for an answer cut off before its end), this bound is what is charged: a tokenizer
makes it close to the truth, bytes keep it safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from infergate.domain.messages import Message
from infergate.domain.model_names import canonical

log = logging.getLogger(__name__)

TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_TOKENS_PER_REQUEST = 64
# What one image may cost a vision model: its encoder's tokens (576 for LLaVA, 256 for Gemma 3, up to
# about 1,600 for Llama 3.2 Vision's tiles), with room to spare.
TOKENS_PER_IMAGE = 2048
DEFAULT_MAX_TOKENS = 512

Count = Callable[[str], int]  # a text's tokens, never fewer than the model counts


def utf8_bytes(text: str) -> int:
    """Tokens of any byte-level tokenizer, from above: a token covers at least one byte."""
    return len(text.encode())


def embedding_tokens_upper_bound(inputs: Iterable[str], *, count: Count = utf8_bytes) -> int:
    """Each input's tokens, and what the model adds around it (counted as a message's)."""
    return sum(count(text) + TEMPLATE_TOKENS_PER_MESSAGE for text in inputs)


def prompt_tokens_upper_bound(messages: Iterable[Message], *, extra: str = "", count: Count = utf8_bytes) -> int:
    """`extra`: whatever else the model reads as prompt (the tools offered, an answer's schema)."""
    total = TEMPLATE_TOKENS_PER_REQUEST + (count(extra) if extra else 0)
    for message in messages:
        total += count(message.prompt_text()) + TEMPLATE_TOKENS_PER_MESSAGE + TOKENS_PER_IMAGE * len(message.images)
    return total


class Tokenizers:
    """The counters of the models whose tokenizers the operator named, each loaded on first use:
    a model without one, or an alias with any model without one, is counted in bytes."""

    def __init__(self, loaders: Mapping[str, Callable[[], Count]], *, default: str,
                 aliases: Mapping[str, Sequence[str]]) -> None:
        """`loaders`: by model name (`name:tag`), how to load its tokenizer's count."""
        self._loaders, self._default, self._aliases = dict(loaders), default, aliases
        self._loaded: dict[str, Count] = {}

    def count_for(self, requested: str | None) -> Count:
        """How the prompts of a request for `requested` (the default model if None) are counted."""
        name = requested or self._default
        models = [canonical(model) for model in self._aliases.get(name, (name,))]
        if not self._loaders or not all(model in self._loaders for model in models):
            return utf8_bytes
        counts = [self._load(model) for model in models]
        return counts[0] if len(counts) == 1 else lambda text: max(count(text) for count in counts)

    @property
    def named(self) -> bool:
        return bool(self._loaders)

    def _load(self, model: str) -> Count:
        if model not in self._loaded:
            try:
                self._loaded[model] = self._loaders[model]()
            except (OSError, ValueError) as error:  # counted in bytes, which is never too few
                log.error("a tokenizer could not be loaded; counting in bytes", extra={"model": model, "error": str(error)})
                self._loaded[model] = utf8_bytes
        return self._loaded[model]
