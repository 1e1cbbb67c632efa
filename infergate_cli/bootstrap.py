"""The first admin key, made straight in MongoDB: every other change goes through the API.

MONGODB_URI and MONGODB_DB say where (as for the functions); on a developer's machine
with `make run` running, where its own MongoDB listens is read from its data folder.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from infergate_cli.client import ApiError

ROOT = Path(__file__).resolve().parent.parent
RUNNING = Path(os.environ.get("INFERGATE_DATA_DIR") or ROOT / ".data") / "backends.json"


def create_admin_key(name: str, role: str) -> dict:
    sys.path.insert(0, str(ROOT / "layers" / "common"))
    from pymongo.errors import PyMongoError

    from infergate.api.errors import status_for
    from infergate.domain.administration import create_admin_key as create
    from infergate.domain.errors import InferGateError
    from infergate.domain.periods import utc_now
    from infergate.stores.accounts import MongoAccountStore
    from infergate.stores.mongo import connect, ensure_indexes

    uri, database = _where()
    try:
        db = connect(uri, serverSelectionTimeoutMS=5000)[database]
        ensure_indexes(db)
        record, api_key = create(name, role, store=MongoAccountStore(db), now=utc_now())
    except InferGateError as error:
        raise ApiError(status_for(error), error.code, error.message) from None
    except PyMongoError as error:
        raise ApiError(0, "database_unreachable", f"MongoDB at {uri.split('@')[-1]} could not be used: "
                                                  f"{type(error).__name__}.") from None
    return {"key_id": record.key_id, "name": record.name, "role": record.role, "api_key": api_key}


def _where() -> tuple[str, str]:
    uri = os.environ.get("MONGODB_URI")
    if not uri and RUNNING.exists():
        uri = json.loads(RUNNING.read_text()).get("MONGODB_URI")
    if not uri:
        raise ApiError(0, "no_database", "Set MONGODB_URI (and MONGODB_DB), or run `make run` first.")
    return uri, os.environ.get("MONGODB_DB", "infergate")
