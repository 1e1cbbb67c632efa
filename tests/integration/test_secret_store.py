"""Settings kept in Secrets Manager or Parameter Store: read through Powertools Parameters over
HTTP, preferred to the plain value, and, when they cannot be read, a prompt 503 whose log line
names the secret but never holds a value."""

from __future__ import annotations

import io
import json
import socket
import threading
import time

import pytest

from infergate.api.errors import headers_of, status_for
from infergate.bootstrap import Services
from infergate.config import Settings
from infergate.observability import logger
from infergate.secret_store import KeptSettings, SecretUnavailable
from tests.support.aws import secrets_service


@pytest.fixture(scope="module")
def service():
    with secrets_service() as running:
        yield running


@pytest.fixture(autouse=True)
def _reaching(monkeypatch, service):
    for name, value in service.environment.items():
        monkeypatch.setenv(name, value)


def read_kept(reference: str) -> str:
    """What a new instance reads (a provider's client keeps the endpoint it was made with)."""
    return KeptSettings().read(reference)


def test_a_secrets_manager_arn_reads_the_secret_string(service):
    arn = service.keep_secret("infergate/test/mongodb-uri", "mongodb://user:s3cret@db.internal:27017/?replicaSet=rs0")
    assert read_kept(arn) == "mongodb://user:s3cret@db.internal:27017/?replicaSet=rs0"


def test_a_parameter_name_reads_the_secure_string_decrypted(service):
    name = service.keep_parameter("/infergate/test/redis-url", "rediss://:t0ken@cache.internal:6379/0")
    assert read_kept(name) == "rediss://:t0ken@cache.internal:6379/0"


def test_the_kept_value_takes_precedence_over_the_plain_one(service):
    arn = service.keep_secret("infergate/test/precedence", "mongodb://kept:27017")
    name = service.keep_parameter("/infergate/test/precedence", "redis://kept:6379/0")
    settings = Settings(MONGODB_URI="mongodb://plain:27017", MONGODB_URI_SECRET=arn,
                        REDIS_URL="redis://plain:6379/0", REDIS_URL_SECRET=name)
    kept = Services(settings)
    assert (kept.mongodb_uri(), kept.redis_url()) == ("mongodb://kept:27017", "redis://kept:6379/0")
    assert Services(Settings(MONGODB_URI="mongodb://plain:27017")).mongodb_uri() == "mongodb://plain:27017"
    token = service.keep_secret("infergate/test/metrics-token", "scrape-with-this")
    assert Services(Settings(METRICS_TOKEN="plain", METRICS_TOKEN_SECRET=token)).metrics_token() == "scrape-with-this"


def test_a_secret_that_cannot_be_read_is_a_503_naming_it_in_the_log_only(service, monkeypatch):
    lines = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", lines)
    missing = "/infergate/test/not-there"
    with pytest.raises(SecretUnavailable) as refused:
        read_kept(missing)
    assert status_for(refused.value) == 503 and headers_of(refused.value)["Retry-After"]
    assert missing not in refused.value.message
    (line,) = [line for line in map(json.loads, lines.getvalue().splitlines()) if "could not be read" in line["message"]]
    assert line["level"] == "ERROR" and line["kept_at"] == missing


def test_an_empty_secret_is_refused_rather_than_used(service):
    name = service.keep_parameter("/infergate/test/blank", " ")
    with pytest.raises(SecretUnavailable):
        read_kept(name)


def test_a_secrets_endpoint_that_never_answers_fails_within_the_bound(monkeypatch):
    # Accepts connections and never answers: two attempts of two seconds each, then 503,
    # where boto3's defaults would wait a minute per attempt.
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.extend(silent.accept()[0] for _ in range(4)), daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
    started = time.monotonic()
    with pytest.raises(SecretUnavailable):
        read_kept("/infergate/test/hung")
    assert time.monotonic() - started < 15
    silent.close()
