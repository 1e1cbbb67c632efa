"""The model policy: which models a request may name (the server's own, within OLLAMA_MODELS if set).

Ollama names models `name:tag` and reads a bare `name` as `name:latest`.
"""

from __future__ import annotations

from infergate.domain.errors import ModelNotFound, UpstreamError
from infergate.domain.model_server import ModelCatalog, ModelEntry


def canonical(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


class ModelPolicy:
    def __init__(self, catalog: ModelCatalog, *, default: str, allowed: frozenset[str] | None) -> None:
        self._catalog = catalog
        self.default = default
        self._allowed = None if allowed is None else frozenset(canonical(name) for name in allowed)

    def resolve(self, requested: str | None) -> str:
        """The model to call, or ModelNotFound naming it, before anything is reserved."""
        name = requested or self.default
        if self._allowed is not None and canonical(name) not in self._allowed:
            raise ModelNotFound.naming(name)
        known = self._catalog.models()
        # If the server cannot say what it has, the call itself will tell (404 → the same 400).
        if known is not None and canonical(name) not in {canonical(entry.name) for entry in known}:
            raise ModelNotFound.naming(name)
        return name

    def available(self) -> list[ModelEntry]:
        known = self._catalog.models()
        if known is None:
            raise UpstreamError("The model server could not be asked which models it has.")
        return [entry for entry in known if self._allowed is None or canonical(entry.name) in self._allowed]
