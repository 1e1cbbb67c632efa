"""Gateways for end-to-end tests, each a Stack (tests/support/stack.py): `make run` (or `make
run-lambda`) on the session's stores and model server, a database and Redis key prefix of its
own, shared by the tests of a module. `stack` is one such gateway for the whole package, with
limits tight enough to reach each quickly."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from devkit import backends

from tests.support import services
from tests.support.make_run import start_make_run
from tests.support.stack import TIGHT, Stack


def _starter(tmp_path_factory, mongo_uri: str, redis_url: str, ollama_url: str,
             started: list[Stack]) -> Callable[..., Stack]:
    def start(name: str, *, target: str = "run", model_url: str | None = None, own_stores: bool = False,
              **settings: str) -> Stack:
        """A gateway named `name`, with `settings` in its environment; with `own_stores`, on a MongoDB
        and a Redis of its own, which a test may stop."""
        folder = tmp_path_factory.mktemp(name)
        owned = {"mongo": backends.start_mongo(":memory:"), "redis": backends.start_redis()} if own_stores else {}
        stores = (owned["mongo"].url, owned["redis"].url) if own_stores else (mongo_uri, redis_url)
        database, model = f"e2e_{name}_{folder.name}", model_url or ollama_url
        environment = {"MONGODB_URI": stores[0], "MONGODB_DB": database, "REDIS_URL": stores[1], "OLLAMA_URL": model,
                       # Limits and the breaker of its own, whatever else shares the Redis.
                       "REDIS_KEY_PREFIX": f"e2e:{name}:{folder.name}:", "INFERGATE_DATA_DIR": str(folder / "data"),
                       "REDIS_CLUSTER": str(services.redis_is_cluster() and not own_stores).lower(), **settings}
        try:
            api = start_make_run(environment, folder / f"make-{target}.log", target=target)
        except BaseException:
            for service in owned.values():
                service.stop()
            raise
        stack = Stack(api, stores[0], stores[1], model, database, folder / "data", owned)
        started.append(stack)
        return stack

    return start


@pytest.fixture(scope="module")
def gateway_of(tmp_path_factory, mongo_uri, redis_url, ollama_url) -> Iterator[Callable[..., Stack]]:
    """Starts gateways for a module's tests; every one started is stopped when the module ends."""
    started: list[Stack] = []
    yield _starter(tmp_path_factory, mongo_uri, redis_url, ollama_url, started)
    for stack in started:
        stack.stop()


@pytest.fixture(scope="package")
def stack(tmp_path_factory, mongo_uri, redis_url, faulty_ollama_url) -> Iterator[Stack]:
    """The package's gateway with tight limits, on the model server that `faults` makes misbehave."""
    started: list[Stack] = []
    yield _starter(tmp_path_factory, mongo_uri, redis_url, faulty_ollama_url, started)("tight", **TIGHT)
    for running in started:
        running.stop()


@pytest.fixture
def http(stack) -> Iterator[httpx.Client]:
    """A client of the tight `stack`, from an address of its own."""
    with stack.client() as client:
        yield client
