"""The model policy: which models a request may name (what the servers serve, within
OLLAMA_MODELS if set, and the aliases MODEL_ALIASES defines), and the route a request for one
takes (domain/pool.py).

Ollama names models `name:tag` and reads a bare `name` as `name:latest`. A server that has
never been reached is taken to serve any model: the call itself will tell (its 404 is the same
400). A server that has been reached keeps the models it last served while it is down, so that
a model whose only servers are down is unavailable (503), not unknown (400).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from infergate.domain.errors import ModelNotFound, UpstreamError
from infergate.domain.model_names import canonical
from infergate.domain.model_server import ModelEntry
from infergate.domain.pool import Candidate, Catalog, Choice, Holdings, Route, Server


class ModelPolicy:
    def __init__(self, servers: Sequence[Server], catalog: Catalog, *, default: str,
                 allowed: frozenset[str] | None, aliases: Mapping[str, Sequence[str]] | None = None,
                 affinity: bool = True) -> None:
        """`affinity`: a conversation's later turns prefer the server that served its earlier ones."""
        self.servers = tuple(servers)
        self._affinity = affinity
        self._catalog = catalog
        self.default = default
        self._allowed = None if allowed is None else frozenset(canonical(name) for name in allowed)
        self.aliases = {name: tuple(models) for name, models in (aliases or {}).items()}

    def route(self, requested: str | None, *, conversation: str | None = None, continued: bool = False) -> Route:
        """Where a request for `requested` (the default model if None) may go; ModelNotFound naming
        it if no server serves it, before anything is held. `conversation`: a key of its start,
        under which its server is remembered; `continued`: whether it continues one."""
        name = requested or self.default
        holdings = self._catalog.holdings()
        choices = []
        for model in self.aliases.get(name, (name,)):
            if self._allowed is not None and canonical(model) not in self._allowed:
                continue
            candidates = tuple(Candidate(server.name, server.slots, server.weight, loaded)
                               for server in self.servers
                               if (loaded := _serves(server, holdings.get(server.name), model)) is not None)
            if candidates:
                choices.append(Choice(model, candidates))
        if not choices:
            raise ModelNotFound.naming(name)
        if not self._affinity:
            conversation, continued = None, False
        return Route(name, tuple(choices), pooled=len(self.servers) > 1, conversation=conversation,
                     continued=continued)

    def available(self) -> list[ModelEntry]:
        """The models a request may name: every server's, within OLLAMA_MODELS, and the aliases."""
        holdings = self._catalog.holdings()
        known: dict[str, ModelEntry] = {}
        for server in self.servers:
            found = holdings.get(server.name)
            entries = [ModelEntry(name, None) for name in server.models] if server.models is not None else (
                list(found.models) if found is not None and found.models is not None else None)
            for entry in entries or []:
                if self._allowed is None or canonical(entry.name) in self._allowed:
                    known.setdefault(entry.name, entry)
        if not known and all(server.models is None and (holdings.get(server.name) is None
                                                         or holdings[server.name].models is None)
                             for server in self.servers):
            raise UpstreamError("The model server could not be asked which models it has.")
        return [*known.values(), *(ModelEntry(alias, None) for alias in self.aliases if alias not in known)]


def _serves(server: Server, found: Holdings | None, model: str) -> bool | None:
    """Whether `server` has `model` loaded (True), serves it without it loaded (False), or does not
    serve it (None)."""
    wanted = canonical(model)
    if server.models is not None:
        names = server.models
    elif found is None or found.models is None:
        return False  # never reached: the call will tell
    else:
        names = tuple(entry.name for entry in found.models)
    if wanted not in {canonical(name) for name in names}:
        return None
    return found is not None and wanted in {canonical(name) for name in found.loaded}
