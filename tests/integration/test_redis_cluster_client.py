"""A function instance that starts while its Redis Cluster is unreachable: its client fails each
call as a call to a down Redis does, and becomes the cluster's client once a node answers."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest
import redis
from bench.wiretap import Wiretap, redis_commands

from infergate.stores import redis_client
from infergate.stores.redis_client import OUTAGE_SECONDS, connect
from tests.support.waiting import wait_for


def test_an_unreachable_cluster_fails_each_call_as_a_down_redis_does():
    with _bound() as unanswered:
        client = connect(f"redis://127.0.0.1:{unanswered.getsockname()[1]}/0", cluster=True)
        with pytest.raises(redis.ConnectionError):
            client.ping()
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError, match="unreachable a moment ago"):
            client.get("k")  # during the outage, at once
        assert time.monotonic() - started < OUTAGE_SECONDS


def test_the_client_reaches_the_cluster_once_a_node_answers(redis_cluster_url, monkeypatch):
    monkeypatch.setattr(redis_client, "OUTAGE_SECONDS", 0.05)
    node = urlsplit(redis_cluster_url)
    with _bound() as address:
        client = connect(f"redis://127.0.0.1:{address.getsockname()[1]}/0", cluster=True)
        with pytest.raises(redis.ConnectionError):
            client.ping()
        echo = client.register_script("return ARGV[1]")  # as the stores register theirs when made
        # A node answers at the address the client was given, as after a failover.
        Wiretap((node.hostname, node.port), redis_commands, listener=address)
        wait_for(lambda: _pings(client), timeout=10, what="the cluster to answer")
        client.set("{s1}k", "v")
        assert client.get("{s1}k") == b"v"
        assert echo(keys=["{s1}k"], args=["here"]) == b"here"


def _bound() -> socket.socket:
    """A socket bound to a port of its own but not listening: connections to it are refused."""
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    return bound


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False
