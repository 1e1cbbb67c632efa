"""A model's tokenizer, read from the `tokenizer.json` that ships beside its weights (Hugging
Face's format), to count prompts as the model will (domain/tokens.py).

Byte-level BPE tokenizers are read: those of Llama 3, Qwen 2 and 3, SmolLM, Mistral's Tekken,
DeepSeek and GPT-2's kin, which is most open models. Their merges become ranks for tiktoken's
BPE (a pair merges before another if its merge comes first), and their pre-tokenizer's rules the
regular expression that splits text before merging. Another kind of tokenizer (SentencePiece's
Unigram or a BPE without byte-level bytes) is refused when loaded, and the model counted in bytes.

Counted against llama.cpp's own tokenizer on SmolLM2-135M (tests/integration/
test_tokenizer.py): the same count on every text tried, or one or two more on long mixed ones,
never fewer. A 125 kB document counts in about 9 ms; loading takes about 0.1 s, once per
instance and model, at its first request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infergate.domain.tokens import Count

# GPT-2's pre-tokenizer, which a ByteLevel pre-tokenizer with `use_regex` applies.
GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class UnsupportedTokenizer(ValueError):
    pass


def load(path: str) -> Count:
    """The count of the tokenizer at `path`; OSError if it cannot be read, UnsupportedTokenizer
    if it is not a byte-level BPE."""
    import tiktoken

    document = json.loads(Path(path).read_text())
    model = document.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("merges"), list):
        raise UnsupportedTokenizer(f"{path}: not a BPE tokenizer ({model.get('type')})")
    encoding = tiktoken.Encoding(Path(path).stem, pat_str=_split(document.get("pre_tokenizer")),
                                 mergeable_ranks=_ranks(model["merges"]), special_tokens={})
    return lambda text: len(encoding.encode_ordinary(text))


def _ranks(merges: list[Any]) -> dict[bytes, int]:
    """Every byte ranks first, then each merge's result in the order of the merges."""
    decode = _byte_decoder()

    def raw(token: str) -> bytes:
        try:
            return bytes(decode[character] for character in token)
        except KeyError:
            raise UnsupportedTokenizer("its tokens are not byte-level") from None

    ranks = {bytes([byte]): byte for byte in range(256)}
    for index, merge in enumerate(merges):
        left, right = merge.split(" ") if isinstance(merge, str) else merge
        ranks.setdefault(raw(left) + raw(right), 256 + index)
    return ranks


def _split(pre_tokenizer: dict | None) -> str:
    """One regular expression doing what the pre-tokenizer's steps do."""
    steps = (pre_tokenizer or {}).get("pretokenizers") if (pre_tokenizer or {}).get("type") == "Sequence" else [pre_tokenizer]
    patterns = []
    for step in steps or []:
        kind = (step or {}).get("type")
        if kind == "Digits":
            patterns.append(r"\p{N}" if step.get("individual_digits") else r"\p{N}+")
        elif kind == "Split" and isinstance((step.get("pattern") or {}).get("Regex"), str):
            patterns.append(step["pattern"]["Regex"])
        elif kind == "ByteLevel":
            if step.get("use_regex", True):
                patterns.append(GPT2_SPLIT)
        else:
            raise UnsupportedTokenizer(f"its pre-tokenizer {kind} is not byte-level BPE's")
    if not patterns:
        raise UnsupportedTokenizer("it has no byte-level pre-tokenizer")
    return "|".join(patterns)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-ins for the 256 bytes, mapped back to the bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return {chr(byte): byte for byte in printable} | {chr(256 + n): byte for n, byte in enumerate(others)}
