"""One gateway per test module, under `make run` (or `make run-lambda`), on the session's backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.make_run import RunningApi, start_make_run


@pytest.fixture(scope="module")
def gateway_of(tmp_path_factory, mongo_uri, redis_url, ollama_url) -> Iterator[Callable[..., RunningApi]]:
    """Starts a gateway named `name` (its own database and data folder), with `settings` in its
    environment; every one started is stopped when the module ends."""
    started: list[RunningApi] = []

    def start(name: str, *, target: str = "run", **settings: str) -> RunningApi:
        folder = tmp_path_factory.mktemp(name)
        running = start_make_run(
            {"MONGODB_URI": mongo_uri, "MONGODB_DB": f"e2e_{name}_{folder.name}", "REDIS_URL": redis_url,
             "OLLAMA_URL": ollama_url, "INFERGATE_DATA_DIR": str(folder / "data"), **settings},
            folder / f"make-{target}.log", target=target,
        )
        running.environment = {"MONGODB_DB": f"e2e_{name}_{folder.name}", "INFERGATE_DATA_DIR": str(folder / "data")}
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
