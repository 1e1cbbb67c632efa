"""Models' names as Ollama reads them: `name:tag`, and a bare `name` is `name:latest`. Every
list of models (OLLAMA_MODELS, allowed_models, MODEL_PRICES, MODEL_TOKENIZERS) is compared so."""

from __future__ import annotations


def canonical(name: str) -> str:
    return name if ":" in name else f"{name}:latest"
