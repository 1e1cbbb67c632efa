"""The MongoDB that tests and `make run` start (devkit.secantus_server, by backends.start_mongo) sweeps
expired documents every TTL_SWEEP_SECONDS, not every 60 s as secantusd-py does: devkit/secantus_server.py
says why. A server that still swept once a minute fails here, in 30 s rather than 60."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pymongo
import pytest
from devkit import backends

from tests.support.waiting import wait_for

# Generous for a sweep every TTL_SWEEP_SECONDS (5), and still short of secantus' own 60 s.
DEADLINE_SECONDS = 30


@pytest.fixture(scope="module")
def collection() -> Iterator[pymongo.collection.Collection]:
    service = backends.start_mongo(":memory:")
    client = pymongo.MongoClient(service.url, tz_aware=True)
    try:
        kept = client["ttl_test"]["kept"]
        kept.create_index("expires_at", expireAfterSeconds=0)
        yield kept
    finally:
        client.close()
        service.stop()


def test_expired_documents_are_swept_again_and_again_and_the_others_kept(collection):
    now = datetime.now(UTC)
    collection.insert_one({"_id": "current", "expires_at": now + timedelta(hours=1)})
    # One after another: each goes at a later sweep, so the sweeper runs on, not just once.
    for name in ("expired", "expired later"):
        collection.insert_one({"_id": name, "expires_at": datetime.now(UTC) - timedelta(seconds=1)})
        wait_for(lambda: collection.find_one({"_id": name}) is None, timeout=DEADLINE_SECONDS,
                 what=f"the sweep of {name!r}")
    assert collection.find_one({"_id": "current"}) is not None
