"""A Stack: InferGate under `make run` (or `make run-lambda`) and what it runs on (MongoDB, Redis,
a model server), as an end-to-end test talks to it and looks into it.

Every client a stack makes comes from a loopback address of its own (127.0.0.x), the source
address the gateway's per-address limits see, so that no test's failed authentications or
registrations count against another's.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import httpx
import pymongo
from devkit import backends

from tests.support.make_run import RunningApi

_addresses = itertools.count(2)
# A gateway whose every limit is within a test's reach (tests/e2e/conftest.py's `stack`).
TIGHT = {
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


@dataclass
class Stack:
    api: RunningApi
    mongo_url: str
    redis_url: str
    model_url: str
    database_name: str
    data: Path  # the gateway's data folder (INFERGATE_DATA_DIR)
    # The stores the stack started for itself, when it has its own (so that a test may stop them).
    owned: dict[str, backends.Service] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.api.url

    @property
    def mongo(self) -> backends.Service:
        return self.owned["mongo"]

    @property
    def redis(self) -> backends.Service:
        return self.owned["redis"]

    @property
    def environment(self) -> dict[str, str]:
        """Where `make admin-key` and the command line find this gateway's MongoDB."""
        return {"MONGODB_DB": self.database_name, "INFERGATE_DATA_DIR": str(self.data)}

    def output(self) -> str:
        return self.api.output()

    def client(self, *, timeout: float = 60) -> httpx.Client:
        """A client of its own address: 127.0.0.2, 127.0.0.3, ..."""
        address = f"127.0.0.{next(_addresses)}"
        return httpx.Client(base_url=self.url, timeout=timeout, transport=httpx.HTTPTransport(local_address=address))

    @cached_property
    def _mongo_client(self) -> pymongo.MongoClient:
        return pymongo.MongoClient(self.mongo_url, tz_aware=True)

    def database(self) -> pymongo.database.Database:
        return self._mongo_client[self.database_name]

    def register(self, http: httpx.Client | None = None) -> dict:
        """A user registered just now: the registration's answer (api_key, user_id, key_id, ...)."""
        body = {"email": f"user-{uuid.uuid4().hex[:12]}@example.com"}
        if http is None:
            with self.client() as http:
                response = http.post("/v1/register", json=body)
        else:
            response = http.post("/v1/register", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def admin(self) -> dict[str, str]:
        """Headers carrying a new operator's admin key, made straight in the gateway's MongoDB."""
        from infergate.domain.administration import create_admin_key
        from infergate.stores.accounts import MongoAccountStore

        _, admin_key = create_admin_key(f"ops-{uuid.uuid4().hex[:6]}", "admin",
                                        store=MongoAccountStore(self.database()), now=datetime.now(UTC))
        return {"x-api-key": admin_key}

    def log_lines(self) -> list[str]:
        """What the functions and the local API logged while serving (after the runner's banner)."""
        output = self.output()
        serving = output[output.index("Ctrl-C stops it."):].splitlines()[1:]
        return [line for line in serving if line.strip() and not line.startswith("Stopping")]

    def json_log(self) -> list[dict]:
        return [json.loads(line) for line in self.log_lines() if line.startswith("{")]

    def model_asked(self, *request_ids: str) -> bool:
        """Whether the model server has received a chat carrying each of `request_ids`."""
        seen = {r.get("x-request-id") for r in httpx.get(f"{self.model_url}/_devkit/requests").json()}
        return set(request_ids) <= seen

    def stop(self) -> None:
        try:
            self.api.stop()
        finally:
            if "_mongo_client" in self.__dict__:
                self._mongo_client.close()
            for service in self.owned.values():
                service.stop()
