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


def test_any_header_or_query_parameter_named_as_a_credential_is_redacted():
    secret = "s3cr3t-value-42"
    credentials = ("Proxy-Authorization", "api-key", "X-Auth-Token", "X-Amz-Security-Token", "X-Session-Token",
                   "X-Amz-Signature", "client_secret", "id_token")
    event = {
        "headers": {**{name: secret for name in credentials}, "Accept": "*/*", "X-Request-Id": "r-1"},
        "multiValueHeaders": {name.lower(): [secret] for name in credentials},
        "queryStringParameters": {"token": secret, "access_token": secret, "period": "2026-11"},
        "path": f"/v1/usage?token={secret}&period=2026-11",
        "body": f'{{"note": "X-Auth-Token: {secret}"}}',
    }
    line = RedactingFormatter().format(_record("event", event=event))
    assert secret not in line
    logged = json.loads(line)["event"]
    assert logged["headers"]["Accept"] == "*/*" and logged["headers"]["X-Request-Id"] == "r-1"
    assert logged["queryStringParameters"]["period"] == "2026-11"


def test_counts_and_ids_named_like_tokens_are_kept():
    fields = {"prompt_tokens": 5, "completion_tokens": 7, "max_tokens": 9, "tokens_used": 12, "key_id": "key_1"}
    assert redact(fields) == fields
    assert redact("The 113 tokens used before it ended were charged.") == "The 113 tokens used before it ended were charged."


def _record(message: str, **extra) -> logging.LogRecord:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, message, None, None)
    for name, value in extra.items():
        setattr(record, name, value)
    return record


def test_the_userinfo_of_any_url_is_redacted_wherever_it_is():
    fields = {"metadata": {"url": "https://u:p4ssw0rd@host/x?token=abc", "db": "mongodb+srv://ops:s3cr3t@cluster0/db"},
              "message": "could not reach redis://:hunter2@10.0.0.5:6379/0 in time"}
    text = str(redact(fields))
    assert not any(secret in text for secret in ("p4ssw0rd", "s3cr3t", "hunter2", "ops:", "u:p")), text
    assert "https://[REDACTED]@host/x" in text and "redis://[REDACTED]@10.0.0.5:6379/0" in text
    assert redact("write to ada@example.com or see https://example.com/a@b") == (
        "write to ada@example.com or see https://example.com/a@b"), "an address or a path's @ is not userinfo"
