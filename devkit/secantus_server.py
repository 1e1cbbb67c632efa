"""secantusdb as `secantusd-py` runs it, but sweeping expired (TTL) documents every five seconds.

    python -m devkit.secantus_server --host H --port P --storage-path S   (any secantusd-py option)

Why: secantus' TTL sweeper holds a WiredTiger snapshot from one sweep to the next. Its loop
(secantus/storage.py, Storage._ttl_sweep_loop) drops its session at the start of a sweep, not at the
end; Storage.prune_ttl, for a collection with a TTL index, looks up the collection's row (_coll_options,
a cursor search on table:secantus_collections) and leaves that cursor positioned, so the thread then
waits out the interval holding a snapshot. WiredTiger keeps every version written after that snapshot
(the oldest transaction is pinned), and writes on any collection grow slower until the next sweep. A
collection without a TTL index is skipped before that lookup, so only a database with one suffers;
InferGate's has one (responses.expires_at, infergate.stores.mongo.ensure_indexes). Seen with
WiredTiger's "transaction range of IDs currently pinned", which then grows for the whole interval; a
sweep that deleted documents did not leave it pinned, one that found nothing to delete (the usual) did.

Measured (secantusdb 0.7.0b3, ':memory:'; 8 threads each calling find_one_and_update(upsert=True) on 8
documents holding 2 KB, retryWrites=False as infergate.stores.mongo.connect has it; 4 minutes a run):

    no TTL index, secantusd-py                850-1,400 requests/s throughout, one dip to 500
                                              (0.6-1.2 ms of the server's CPU each)
    TTL index, secantusd-py (sweep each 60 s) 930-1,260 requests/s (one dip to 390) until the second
                                              sweep (~2 min in: the first deleted the expired ones),
                                              then 57-68 (11-18 ms CPU each), back for an instant at
                                              the third
    TTL index, sweep each 5 s                 870-1,100 throughout
    TTL index, sweep each 1 s                 855-1,285 throughout
    TTL index, sweep each 60 s, the sweeper's snapshot released after each sweep: 940-1,350 throughout
    this module, TTL index                    540-1,220 throughout (0.7-1.2 ms CPU each)
    this module, no TTL index                 890-1,310 throughout

(A shared 2-CPU machine: the spread is other work's; the fall to a 15th-20th is not.)

A sweep every five seconds pins a snapshot for at most that long, and measured as well as one every
second at a fifth of the cost below. secantusd-py cannot be told so: its CLI
(secantus.cli.main) builds SecantusDBServer without ttl_sweep_seconds, though it reads the setting from
secantusd.toml ([storage] ttl_sweep_seconds) and SecantusDBServer takes it. So this runs that same CLI
(options, config file, logging, signals) with the one argument given to SecantusDBServer.

The cost: each sweep reads every document of each collection with a TTL index while holding secantus'
storage lock, about 20 ms for 1,000 documents of 2 KB, 175 ms for 10,000, 930 ms for 50,000: nothing for
a test's database, and at most a few percent of a long-lived `make run` database's time that keeps
10,000 responses. One keeping far more would want the other remedy, releasing the sweeper's snapshot
after each sweep (a patch of secantus' own loop), which keeps the 60 s.
"""

from __future__ import annotations

import functools
import sys

from secantus import cli
from secantus.server import SecantusDBServer

TTL_SWEEP_SECONDS = 5.0


def main(argv: list[str] | None = None) -> int:
    cli.SecantusDBServer = functools.partial(SecantusDBServer, ttl_sweep_seconds=TTL_SWEEP_SECONDS)
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
