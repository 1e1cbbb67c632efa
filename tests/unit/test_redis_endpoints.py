"""Which REDIS_URLs take a cluster client by themselves: ElastiCache's endpoints that only a
cluster client can use, so that pointing InferGate at one needs no REDIS_CLUSTER as well."""

from __future__ import annotations

import pytest

from infergate.stores.redis_client import names_a_cluster


@pytest.mark.parametrize("url", [
    "rediss://clustercfg.limits.ab12cd.euw1.cache.amazonaws.com:6379",
    "rediss://:token@limits-ab12cd.serverless.euw1.cache.amazonaws.com:6379/0",
    "rediss://user:token@CLUSTERCFG.Limits.ab12cd.use1.cache.amazonaws.com:6379",
])
def test_an_elasticache_cluster_endpoint_names_a_cluster(url):
    assert names_a_cluster(url)


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0",
    "rediss://master.limits.ab12cd.euw1.cache.amazonaws.com:6379",  # a replication group's primary
    "rediss://limits.ab12cd.ng.0001.euw1.cache.amazonaws.com:6379",  # a node of a cluster-mode-disabled group
    "redis://clustercfg.example.com:6379",  # not ElastiCache's: REDIS_CLUSTER says so
])
def test_other_endpoints_do_not(url):
    assert not names_a_cluster(url)
