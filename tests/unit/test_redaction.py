import json
import logging

from infergate.domain.keys import new_api_key
from infergate.observability import REDACTED, RedactingFormatter, redact


def test_secret_fields_are_replaced_at_any_depth():
    event = {
        "headers": {"X-Api-Key": "anything", "Authorization": "Bearer abc", "Cookie": "session=1", "Accept": "*/*"},
        "multiValueHeaders": {"authorization": ["Bearer abc"], "accept": ["*/*"]},
    }
    cleaned = redact(event)
    assert cleaned["headers"] == {"X-Api-Key": REDACTED, "Authorization": REDACTED, "Cookie": REDACTED, "Accept": "*/*"}
    assert cleaned["multiValueHeaders"] == {"authorization": REDACTED, "accept": ["*/*"]}


def test_keys_and_credentials_inside_text_are_replaced():
    key = new_api_key()
    text = f"failed for {key}; header was Authorization: Bearer {key}; cookie: a=b"
    cleaned = redact(text)
    assert key not in cleaned
    assert "a=b" not in cleaned


def test_the_formatter_redacts_whole_log_lines():
    key = new_api_key()
    formatter = RedactingFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, f"saw {key}", None, None)
    record.event = {"headers": {"x-api-key": key}}
    line = formatter.format(record)
    assert key not in line
    assert json.loads(line)["message"] == "saw igk_" + REDACTED
