"""A short end-to-end check of any running InferGate: local, LocalStack or AWS.

    python -m infergate_cli.smoke --url BASE_URL [--key API_KEY]      (or: make smoke API_URL=... [API_KEY=...])

Registers a user (unless given a key), then chats, lists the models,
streams a chat with the first (or --model), reads the usage, and checks that a wrong key and an unknown route
are refused in the API's error shape. Each step prints its status and time;
the exit status is 0 when every step passed, 1 when one failed.

It uses the standard library alone, so it runs wherever Python 3.11 does.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> dict:
        return json.loads(self.body)


class StepFailed(Exception):
    pass


class Gateway:
    def __init__(self, url: str, *, timeout: float) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SystemExit(f"not an http(s) URL: {url!r}")
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._connect = lambda: kind(parts.hostname, parts.port, timeout=timeout)
        self._base = parts.path

    def send(self, method: str, path: str, *, key: str | None = None, body: dict | None = None) -> Answer:
        connection = self._connect()
        try:
            headers = {"Content-Type": "application/json", "x-request-id": f"smoke-{uuid.uuid4().hex[:12]}"}
            if key:
                headers["x-api-key"] = key
            connection.request(method, self._base + path, body=json.dumps(body) if body is not None else None,
                               headers=headers)
            response = connection.getresponse()
            return Answer(response.status, response.read(), {k.lower(): v for k, v in response.getheaders()})
        finally:
            connection.close()


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise StepFailed(what)


def steps(gateway: Gateway, key: str | None, model: str | None) -> list[tuple[str, Callable[[], str]]]:
    """Each step's name and its check, which returns what it saw and raises StepFailed."""
    state: dict = {"key": key}
    chat_body = {"prompt": "Say hello in three words.", "max_tokens": 8, **({"model": model} if model else {})}

    def register() -> str:
        if state["key"]:
            return "skipped: a key was given"
        answer = gateway.send("POST", "/v1/register", body={"email": f"smoke-{uuid.uuid4().hex[:10]}@example.com"})
        expect(answer.status == 201, f"201 expected, got {answer.status}: {answer.body[:200]!r}")
        state["key"] = answer.json()["api_key"]
        return f"201, key {state['key'][:8]}…"

    def chat() -> str:
        answer = gateway.send("POST", "/v1/chat", key=state["key"], body=chat_body)
        expect(answer.status == 200, f"200 expected, got {answer.status}: {answer.body[:200]!r}")
        usage = answer.json()["usage"]
        expect(usage["total_tokens"] > 0, "the answer was charged no tokens")
        state["charged"] = usage["total_tokens"]
        return f"200, {usage['total_tokens']} tokens"

    def stream() -> str:
        body = {"model": model or state["model"], "messages": [{"role": "user", "content": chat_body["prompt"]}],
                "max_tokens": 8, "stream": True}
        answer = gateway.send("POST", "/v1/chat/completions", key=state["key"], body=body)
        expect(answer.status == 200, f"200 expected, got {answer.status}: {answer.body[:200]!r}")
        events = [line.removeprefix(b"data: ") for line in answer.body.splitlines() if line.startswith(b"data: ")]
        expect(answer.headers.get("content-type", "").startswith("text/event-stream"), "not text/event-stream")
        expect(bool(events) and events[-1] == b"[DONE]", "the stream did not end with [DONE]")
        return f"200, {len(events)} events"

    def usage() -> str:
        answer = gateway.send("GET", "/v1/usage", key=state["key"])
        expect(answer.status == 200, f"200 expected, got {answer.status}")
        used = answer.json()["tokens_used"]
        expect(used >= state.get("charged", 0), f"usage says {used} tokens, fewer than the chat was charged")
        return f"200, {used} tokens used this month"

    def models() -> str:
        answer = gateway.send("GET", "/v1/models", key=state["key"])
        expect(answer.status == 200, f"200 expected, got {answer.status}")
        names = [entry["id"] for entry in answer.json()["data"]]
        expect(bool(names), "no model is served")
        state["model"] = names[0]
        return f"200, {', '.join(names[:3])}"

    def wrong_key() -> str:
        answer = gateway.send("GET", "/v1/usage", key="igk_" + "0" * 40)
        expect(answer.status == 401, f"401 expected, got {answer.status}")
        expect(answer.json()["error"]["code"] == "invalid_api_key", f"invalid_api_key expected: {answer.body!r}")
        return "401 invalid_api_key"

    def unknown_route() -> str:
        answer = gateway.send("GET", "/v1/no-such-route")
        expect(answer.status == 404, f"404 expected, got {answer.status}")
        expect(answer.json()["error"]["code"] == "not_found", f"not_found expected: {answer.body!r}")
        return "404 not_found"

    return [("register", register), ("chat", chat), ("models", models), ("stream", stream), ("usage", usage),
            ("wrong key", wrong_key), ("unknown route", unknown_route)]


def run(url: str, key: str | None, *, model: str | None = None, timeout: float = 60, out=sys.stdout) -> bool:
    """Runs every step against `url`, printing each; True if all passed."""
    print(f"smoke test of {url}", file=out)
    passed = True
    for name, check in steps(Gateway(url, timeout=timeout), key, model):
        started = time.monotonic()
        try:
            seen, ok = check(), True
        except (StepFailed, OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as error:
            seen, ok = f"{type(error).__name__}: {error}" if not isinstance(error, StepFailed) else str(error), False
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<14} {(time.monotonic() - started) * 1000:8.1f} ms  {seen}",
              file=out, flush=True)
        passed = passed and ok
    print("passed" if passed else "FAILED", file=out)
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infergate-smoke", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("API_URL"), help="the gateway's base URL (API_URL)")
    parser.add_argument("--key", default=os.environ.get("API_KEY") or None, help="a user's API key (API_KEY)")
    parser.add_argument("--model", default=os.environ.get("MODEL") or None, help="the model to chat with")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("give the gateway's base URL: --url or API_URL")
    return 0 if run(args.url, args.key, model=args.model, timeout=args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
