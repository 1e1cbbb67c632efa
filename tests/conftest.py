"""Shared fixtures: real MongoDB, Redis and model servers, started once per session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pymongo
import pytest
import redis as redis_lib

from tests.support import services
from tests.support.paths import use_common_layer

use_common_layer()


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    with services.mongo_url() as url:
        yield url


@pytest.fixture(scope="session")
def mongo_client(mongo_uri: str) -> Iterator[pymongo.MongoClient]:
    from infergate.stores.mongo import connect

    client = connect(mongo_uri, maxPoolSize=32)  # the tests' threads stand for many instances at once
    yield client
    client.close()


@pytest.fixture
def database(mongo_client: pymongo.MongoClient):
    """A fresh database per test, with InferGate's indexes, dropped afterwards."""
    from infergate.stores.mongo import ensure_indexes

    name = f"infergate_test_{uuid.uuid4().hex[:12]}"
    database = mongo_client[name]
    ensure_indexes(database)
    yield database
    mongo_client.drop_database(name)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with services.redis_url() as url:
        yield url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis_lib.Redis]:
    client = services.redis_client_of(redis_url)
    client.flushall()  # the suite's own server (or cluster): nobody else's data is here
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory) -> Iterator[str]:
    with services.redis_cluster_url(tmp_path_factory.mktemp("redis-cluster")) as url:
        yield url


@pytest.fixture(params=["server", "cluster"])
def redis_target(request) -> services.RedisTarget:
    """Each of the suite's Redises in turn: a single server, then a cluster of three masters, flushed."""
    if request.param == "cluster":
        target = services.RedisTarget(request.getfixturevalue("redis_cluster_url"), cluster=True)
    else:
        target = services.RedisTarget(request.getfixturevalue("redis_url"), cluster=services.redis_is_cluster())
    client = target.client()
    client.flushall()
    client.close()
    return target


@pytest.fixture
def redis_on_both(redis_target) -> Iterator[redis_lib.Redis]:
    """A client of each of the suite's Redises in turn (redis_target), as InferGate configures them."""
    client = redis_target.client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def ollama_url() -> Iterator[str]:
    with services.model_server() as url:
        yield url


@pytest.fixture(scope="session")
def faulty_ollama_url() -> Iterator[str]:
    """A model server of its own, for tests that make it misbehave."""
    with services.model_server() as url:
        yield url


@pytest.fixture
def faults(faulty_ollama_url: str):
    """Arms the faulty server's next chats to misbehave; disarms it afterwards."""
    import httpx

    def arm(mode: str = "none", count: int = 1, **details) -> None:
        httpx.post(f"{faulty_ollama_url}/_devkit/faults", json={"mode": mode, "count": count, **details}).raise_for_status()

    yield arm
    httpx.post(f"{faulty_ollama_url}/_devkit/faults", json={"count": 0})
