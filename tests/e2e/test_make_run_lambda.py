"""`make run-lambda` end to end: sam build's output under the real Lambda runtime, over HTTP."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import httpx
import pytest

from tests.support import services
from tests.support.make_run import start_make_run
from tests.support.spreading import answers_asked_after
from tests.support.waiting import wait_for


def runtime_processes(handler: str) -> list[int]:
    """The Python runtimes (awslambdaric, or InferGate's own behind an exec wrapper; not an
    emulator) serving `handler`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environment = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(argv[0].decode()).name.startswith("python") and b"_HANDLER=" + handler.encode() in environment:
            found.append(int(proc.name))
    return found


@pytest.fixture(scope="module")
def api(gateway_of):
    return gateway_of("lambda", target="run-lambda")


def refused_within_a_second(http, key: str, code: str) -> None:
    """Every request asked for a second or more after the change is refused with `code`."""
    def ask() -> tuple[int, str | None]:
        answer = http.get("/v1/usage", headers={"x-api-key": key})
        return answer.status_code, answer.json()["error"]["code"] if answer.status_code != 200 else None

    later = answers_asked_after(1.0, ask, at_least=1)
    assert set(later) == {(401, code)}, later


def test_rotating_and_revoking_keys_through_the_lambda_runtime(api):
    with api.client() as http:
        account = http.post("/v1/register", json={"email": "rotate@example.com"}).json()
        own = {"x-api-key": account["api_key"]}
        rotated = http.post(f"/v1/keys/{account['key_id']}/rotate", json={"grace_seconds": 0}, headers=own)
        assert rotated.status_code == 201, rotated.text
        successor = rotated.json()["api_key"]
        refused_within_a_second(http, account["api_key"], "api_key_expired")

        spare = http.post("/v1/keys", json={"name": "spare"}, headers={"x-api-key": successor}).json()
        assert http.get("/v1/usage", headers={"x-api-key": spare["api_key"]}).status_code == 200
        revoked = http.delete(f"/v1/keys/{spare['key_id']}", headers={"x-api-key": successor})
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        refused_within_a_second(http, spare["api_key"], "invalid_api_key")
        statuses = {k["name"]: k["status"] for k in http.get("/v1/keys", headers={"x-api-key": successor}).json()["data"]}
        assert statuses == {"default": "active", "spare": "revoked"}


def test_register_chat_usage_and_a_wrong_key_through_the_lambda_runtime(api):
    assert "under the Lambda runtime emulator" in api.output()
    with api.client() as http:
        registered = http.post("/v1/register", json={"email": "lambda@example.com"})
        assert registered.status_code == 201, registered.text
        key = registered.json()["api_key"]

        chat = http.post("/v1/chat", json={"prompt": "through the runtime"}, headers={"x-api-key": key})
        assert chat.status_code == 200, chat.text
        assert chat.json()["response"] == "You said: through the runtime"
        assert chat.headers["X-RateLimit-Limit"] == "60"

        usage = http.get("/v1/usage", headers={"x-api-key": key})
        assert usage.status_code == 200 and usage.json()["tokens_used"] == chat.json()["usage"]["total_tokens"]

        wrong = http.get("/v1/usage", headers={"x-api-key": key[:-3] + "abc"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"

    import openai

    sdk = openai.OpenAI(base_url=f"{api.url}/v1", api_key=key, max_retries=0)
    completion = sdk.chat.completions.create(model="smollm2:135m", messages=[{"role": "user", "content": "via sdk"}],
                                             extra_headers={"Idempotency-Key": "lambda-1"})
    assert completion.choices[0].message.content == "You said: via sdk"
    # Every function ran under the runtime, and reported its cold start.
    assert api.output().count("INIT REPORT") >= 4


def test_the_built_layer_serves_the_console_and_its_files(api):
    with api.client() as http:
        page = http.get("/console")
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html"), page.text
        script = page.text.split('src="console/assets/')[1].split('"')[0]
        served = http.get(f"/console/assets/{script}")
        assert served.status_code == 200 and "InferGate's console" in served.text


def wait_until_tokens_are_held(url: str, key: str, timeout: float = 120) -> None:
    """Until GET /v1/usage shows tokens held for a request in flight (a chat reserves its worst case
    before it asks the model)."""
    with httpx.Client(base_url=url, timeout=60) as http:
        def held() -> bool:
            usage = http.get("/v1/usage", headers={"x-api-key": key})
            assert usage.status_code == 200, usage.text
            return usage.json()["tokens_reserved"] > 0

        wait_for(held, timeout=timeout, what="tokens held for the request in flight")


def test_a_crashed_runtime_is_a_502_and_the_next_request_gets_a_fresh_one(tmp_path, mongo_uri, redis_url):
    # Seven tokens a second apart: the answer is still streaming for seconds after the model is asked.
    with services.model_server("--token-delay", "1.0") as slow_model:
        running = start_make_run(
            {"MONGODB_URI": mongo_uri, "MONGODB_DB": f"e2e_crash_{tmp_path.name}", "REDIS_URL": redis_url,
             "OLLAMA_URL": slow_model, "INFERGATE_DATA_DIR": str(tmp_path / "data")},
            tmp_path / "make-run-lambda.log", target="run-lambda",
        )
        try:
            with running.client() as http:
                key = http.post("/v1/register", json={"email": "crash@example.com"}).json()["api_key"]
                result: dict = {}
                request = threading.Thread(target=lambda: result.update(response=http.post(
                    "/v1/chat", json={"prompt": "one two three four five"}, headers={"x-api-key": key})))
                request.start()
                # The runtime dies holding the request's tokens, mid-answer.
                wait_until_tokens_are_held(running.url, key)
                services.wait_until_the_model_is_asked(slow_model)
                victims = runtime_processes("chat.lambda_handler")
                assert victims, running.output()
                for pid in victims:
                    os.kill(pid, signal.SIGKILL)
                request.join(30)
                crashed = result["response"]
                assert crashed.status_code == 502
                assert crashed.json()["error"]["code"] == "gateway_error"

                again = http.post("/v1/chat", json={"prompt": "hi"}, headers={"x-api-key": key})
                assert again.status_code == 200, again.text
                usage = http.get("/v1/usage", headers={"x-api-key": key}).json()
            # The crashed request was never settled: only the second was charged.
            assert usage["tokens_used"] == again.json()["usage"]["total_tokens"]
            assert usage["tokens_reserved"] > 0  # the dead request's hold, until it expires
        finally:
            running.stop()
