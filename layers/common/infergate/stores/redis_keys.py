"""Where InferGate's keys lie in Redis: every script's keys share one hash slot, so that a Redis
Cluster (ElastiCache Serverless, Valkey or Redis in cluster mode) runs them; it refuses a script
whose keys lie in different slots (CROSSSLOT).

- A request's own state lies in its subject's shard: one of SHARDS hash tags, `{s<n>}`, where n
  is a hash of the subject (a user's id; a source address, for a registration). There lie its
  key's and its user's limit windows, the user's slots, when the key was last used, and the
  shard's share of the request total and of the metrics. A user's state all shares a shard;
  a shard holds many users, and the shards spread over the cluster's masters.
- The pool (each server's breaker, slots, line and last minute, the conversations, the
  holdings) lies under one tag, `{pool}`: choosing a server compares them all at once.
- Totals kept per shard (requests, metrics) are summed when read.
- What is only ever touched one key at a time (the accounts version, failed authentications
  per address) needs no tag.

On one Redis server the tags change nothing. REDIS_KEY_PREFIX may hold no braces, so that
the tags here are the ones Redis reads.
"""

from __future__ import annotations

import zlib

SHARDS = 256


def shard(prefix: str, subject: str) -> str:
    """The start of every key of `subject`'s shard."""
    return f"{prefix}{{s{zlib.crc32(subject.encode()) % SHARDS}}}:"


def shards(prefix: str) -> list[str]:
    """The start of every shard's keys, for totals summed across them."""
    return [f"{prefix}{{s{number}}}:" for number in range(SHARDS)]


def pool(prefix: str) -> str:
    """The start of every key of the pool's."""
    return f"{prefix}{{pool}}:"
