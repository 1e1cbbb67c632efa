"""One InferGate under `make run` for the whole package, with stores and a model server of its
own (so that a test may stop them, make the model server misbehave, and read the database),
and settings tight enough to reach every limit quickly.

Every test addresses the gateway from a loopback address of its own (127.0.0.x), which is
the source address the gateway's per-address limits see, so that no test's failed
authentications or registrations count against another's.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pymongo
import pytest
from devkit import backends

from tests.support import services
from tests.support.make_run import RunningApi, start_make_run

SETTINGS = {
    "MAX_CONCURRENT_REQUESTS": "2",
    "AUTH_FAILURES_PER_MINUTE": "10",
    "REGISTER_RATE_LIMIT_PER_HOUR": "1000",
    "OLLAMA_TIMEOUT": "2",
    "OLLAMA_STALL_TIMEOUT": "1",
    "CIRCUIT_BREAKER_FAILURES": "3",
    "CIRCUIT_BREAKER_OPEN_SECONDS": "2",
    "METRICS_TOKEN": "scrape-me-please",
    "POWERTOOLS_LOGGER_LOG_EVENT": "true",
}
_addresses = itertools.count(2)


@dataclass
class Stack:
    """The gateway and what it runs on."""

    api: RunningApi
    mongo: backends.Service
    redis: backends.Service
    model_url: str
    database_name: str

    def client(self, *, timeout: float = 60) -> httpx.Client:
        """A client of its own address: 127.0.0.2, 127.0.0.3, ..."""
        address = f"127.0.0.{next(_addresses)}"
        return httpx.Client(base_url=self.api.url, timeout=timeout, transport=httpx.HTTPTransport(local_address=address))

    def database(self) -> pymongo.database.Database:
        return pymongo.MongoClient(self.mongo.url, tz_aware=True)[self.database_name]

    def register(self, http: httpx.Client) -> dict:
        response = http.post("/v1/register", json={"email": f"{uuid.uuid4().hex[:12]}@example.com"})
        assert response.status_code == 201, response.text
        return response.json()

    def faults(self, mode: str = "none", count: int = 1, **details) -> None:
        """The model server's next `count` chats misbehave as `mode` says (see devkit.ollama.server)."""
        httpx.post(f"{self.model_url}/_devkit/faults", json={"mode": mode, "count": count, **details}).raise_for_status()

    def admin(self, http: httpx.Client) -> dict[str, str]:
        """Headers carrying a new operator's admin key."""
        from infergate.domain.administration import create_admin_key
        from infergate.stores.accounts import MongoAccountStore
        from infergate.stores.mongo import connect

        store = MongoAccountStore(connect(self.mongo.url)[self.database_name])
        _, admin_key = create_admin_key(f"ops-{uuid.uuid4().hex[:6]}", "admin", store=store,
                                                 now=datetime.now(UTC))
        return {"x-api-key": admin_key}

    def log_lines(self) -> list[str]:
        """What the functions and the local API logged while serving (after the runner's banner)."""
        output = self.api.output()
        serving = output[output.index("Ctrl-C stops it."):].splitlines()[1:]
        return [line for line in serving if line.strip() and not line.startswith("Stopping")]

    def json_log(self) -> list[dict]:
        return [json.loads(line) for line in self.log_lines() if line.startswith("{")]


def start_stack(data: Path, **settings: str) -> Iterator[Stack]:
    mongo, redis = backends.start_mongo(":memory:"), backends.start_redis()
    try:
        with services.model_server() as model_url:
            database_name = f"security_{uuid.uuid4().hex[:8]}"
            api = start_make_run(
                {"MONGODB_URI": mongo.url, "MONGODB_DB": database_name, "REDIS_URL": redis.url, "OLLAMA_URL": model_url,
                 "INFERGATE_DATA_DIR": str(data), **SETTINGS, **settings},
                data / "make-run.log",
            )
            try:
                yield Stack(api, mongo, redis, model_url, database_name)
            finally:
                api.stop()
    finally:
        redis.stop()
        mongo.stop()


@pytest.fixture(scope="package")
def stack(tmp_path_factory) -> Iterator[Stack]:
    yield from start_stack(tmp_path_factory.mktemp("security"))


@pytest.fixture
def http(stack) -> Iterator[httpx.Client]:
    with stack.client() as client:
        yield client


@pytest.fixture
def faults(stack):
    """Arms the model server's next chats to misbehave; disarms it afterwards."""
    yield stack.faults
    stack.faults(count=0)


def model_asked(stack: Stack, *request_ids: str) -> bool:
    """Whether the model server has received a chat carrying each of `request_ids`."""
    seen = {r.get("x-request-id") for r in httpx.get(f"{stack.model_url}/_devkit/requests").json()}
    return set(request_ids) <= seen
