"""Connections grow with function instances, not with requests: eight instances of each function
under load, and the sockets each store sees counted (the machine's own TCP table), before and
after three times as many requests. An instance serves one request at a time, so it holds one
MongoDB connection (a pool of one) besides the driver's monitor (polling: one more), and one
Redis connection (one per master on a cluster)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest

INSTANCES = 8
MONGODB_PER_INSTANCE, REDIS_PER_INSTANCE = 2, 1


@pytest.fixture(scope="module")
def loaded(gateway_of):
    return gateway_of("connections", own_stores=True, DEVKIT_INSTANCES=str(INSTANCES),
                      DEVKIT_MAX_INSTANCES=str(INSTANCES), RATE_LIMIT_RPM="100000", RATE_LIMIT_USER_RPM="100000",
                      MAX_CONCURRENT_REQUESTS="100")


def established_to(port: int) -> int:
    """Sockets connected to `port` on this machine, as their clients hold them."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:  # ESTABLISHED, remote port
                    count += 1
    return count


def chats(loaded, clients: list, key: str, count: int) -> None:
    """`count` chats, as many at once as there are instances, each client sending its share."""
    def share(http) -> set[int]:
        return {http.post("/v1/chat", json={"prompt": "hi", "max_tokens": 3}, headers={"x-api-key": key}).status_code
                for _ in range(count // len(clients))}

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        assert set().union(*pool.map(share, clients)) == {200}


def test_connections_stay_within_a_bound_per_instance_whatever_the_requests(loaded):
    mongo, redis = urlparse(loaded.mongo_url).port, urlparse(loaded.redis_url).port
    key = loaded.register()["api_key"]
    clients = [loaded.client() for _ in range(INSTANCES)]
    try:
        chats(loaded, clients, key, 80)
        first = established_to(mongo), established_to(redis)
        chats(loaded, clients, key, 240)
        after = established_to(mongo), established_to(redis)
    finally:
        for http in clients:
            http.close()
    # The authorizer's instances and the chat function's, and the registration's one.
    instances = 2 * INSTANCES + 1
    assert after[0] <= MONGODB_PER_INSTANCE * instances, after
    assert after[1] <= REDIS_PER_INSTANCE * instances, after
    assert after[0] <= first[0] and after[1] <= first[1], f"they grew with the requests: {first} then {after}"
