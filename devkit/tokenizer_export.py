"""SmolLM2's tokenizer as Hugging Face's `tokenizer.json`, read from the GGUF file the local
model server runs (its vocabulary, merges and special tokens), so that `make run` can name it
in MODEL_TOKENIZERS and its prompts are counted as the model counts them. SmolLM2's own
pre-tokenizer splits digits one by one, then as GPT-2 does."""

from __future__ import annotations

import json
import os
from pathlib import Path

from devkit.ollama.engines import smollm2_path

CONTROL = 3  # GGUF's token type for special tokens


def smollm2_tokenizer(folder: Path) -> Path:
    """The tokenizer's file in `folder`, written there the first time."""
    path = folder / "smollm2-135m.tokenizer.json"
    if path.exists():
        return path
    from gguf import GGUFReader

    reader = GGUFReader(smollm2_path())

    def strings(name: str) -> list[str]:
        field = reader.fields[name]
        return [bytes(field.parts[index]).decode() for index in field.data]

    tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
    kinds = reader.fields["tokenizer.ggml.token_type"]
    special = [int(kinds.parts[index][0]) == CONTROL for index in kinds.data]
    document = {
        "version": "1.0",
        "added_tokens": [{"id": i, "content": token, "special": True} for i, token in enumerate(tokens) if special[i]],
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
        "model": {"type": "BPE", "vocab": {token: i for i, token in enumerate(tokens)}, "merges": merges},
    }
    folder.mkdir(parents=True, exist_ok=True)
    written = path.with_suffix(f".{os.getpid()}.tmp")
    written.write_text(json.dumps(document))
    written.replace(path)  # whole, or not at all, for a run that reads it at once
    return path
