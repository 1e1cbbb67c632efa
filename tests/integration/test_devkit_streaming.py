"""Streamed responses through the local API, as API Gateway's streaming integration answers them.

A tiny function of the test's own streams numbered lines through InferGate's StreamedResponse,
and writes down how each stream ended. It runs both ways the devkit runs functions: in a worker
process (`make run`), and under devkit's Runtime API with InferGate's runtime loop started by
the chat function's exec wrapper (`make run-lambda`). Over real HTTP, each test shows what a
client sees: chunks as they are produced, a cut on a failure mid-stream, 502 where API Gateway
could not read the function's answer; and what the function sees: a stream closed once its
reader has gone, its instance then free for the next request.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from devkit import gateway, template
from devkit.functions import FunctionPool, InvocationError, WorkerInstance
from devkit.gateway import LocalApiGateway, LocalApiServer

from tests.support.paths import COMMON_LAYER, FUNCTIONS, ROOT
from tests.support.waiting import wait_for

RUNTIME_PYTHON = ROOT / ".lambda-runtime" / "bin" / "python3"
WAIT = 30  # seconds: far beyond what any answer here takes on a loaded machine

HANDLER = '''
import json, os, time
from pathlib import Path

from infergate.runtime import StreamedResponse


def handle(event, context):
    ask = json.loads(event.get("body") or "{}")
    mode = ask.get("mode", "stream")
    if mode == "dict":
        time.sleep(ask.get("sleep", 0))
        return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": f"whole from {os.getpid()}"}
    if mode == "raise":
        raise ValueError("no stream today")
    return StreamedResponse({"statusCode": 200, "headers": {"Content-Type": "application/x-ndjson", "X-Probe": "yes"}},
                            lines(ask))


def lines(ask):
    """Numbered lines, `gap` seconds apart; with `ack`, each after the client has said it saw the one before."""
    ended = "closed"  # unless the loop gets further: closed at a yield, by the runtime
    try:
        for i in range(ask["count"]):
            acked = None
            if i:
                time.sleep(ask.get("gap", 0))
                if "ack" in ask:
                    acked = seen(Path(f"{ask['ack']}{i - 1}"))
            yield (json.dumps({"i": i, "at": time.time(), "pid": os.getpid(), "acked": acked}) + "\\n").encode()
        if ask.get("fail"):
            ended = "failed"
            raise RuntimeError("the model went away")
        ended = "finished"
    finally:
        if "marker" in ask:
            Path(ask["marker"]).write_text(ended)


def seen(path, timeout=10):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
'''

TEMPLATE = '''
Globals:
  Function:
    Runtime: python3.12
    Handler: fn.handle
    CodeUri: Function
    Layers: [!Ref Common]
    Environment:
      Variables:
        AWS_LAMBDA_EXEC_WRAPPER: /var/task/stream-runtime
Resources:
  Common:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: {layer}
  Streamer:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 20
      Events:
        Streamed:
          Type: Api
          Properties: {{Path: /stream, Method: POST, ResponseTransferMode: RESPONSE_STREAM}}
        Buffered:
          Type: Api
          Properties: {{Path: /buffered, Method: POST}}
  Brief:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 2
      Events:
        Streamed:
          Type: Api
          Properties: {{Path: /brief, Method: POST, ResponseTransferMode: RESPONSE_STREAM}}
'''


@dataclass
class Local:
    """The test's function served by the local API, one instance at most per function: a request
    can only be served once the one before has freed the instance."""

    server: LocalApiServer
    pools: dict[str, FunctionPool]
    folder: Path

    def marker(self, name: str) -> Path:
        return self.folder / name


def build(tmp_path: Path, runtime: str) -> tuple[template.Template, Callable[[template.FunctionSpec], Callable]]:
    """The function's folder, its layer and template, and how to start an instance of it."""
    code = tmp_path / "Function"
    code.mkdir()
    (code / "fn.py").write_text(HANDLER)
    if runtime == "workers":  # make run imports layers from the source tree
        layer = COMMON_LAYER
    else:  # as sam build lays a layer out: python/ is Lambda's /opt/python
        if not RUNTIME_PYTHON.exists():
            pytest.skip(f"no Lambda runtime virtualenv at {RUNTIME_PYTHON} (make test creates it)")
        shutil.copy(FUNCTIONS / "chat" / "stream-runtime", code / "stream-runtime")
        layer = tmp_path / "Common"
        (layer / "python").mkdir(parents=True)
        (layer / "python" / "infergate").symlink_to(COMMON_LAYER / "infergate", target_is_directory=True)
    (tmp_path / "template.yaml").write_text(TEMPLATE.format(layer=layer))
    spec = template.load(tmp_path / "template.yaml")

    def start(function: template.FunctionSpec) -> Callable:
        if runtime == "workers":
            return lambda: WorkerInstance(function, function.environment)
        from devkit.runtime_api import lambda_instance

        return lambda: lambda_instance(function, function.environment, runtime_python=RUNTIME_PYTHON)

    return spec, start


@pytest.fixture(params=["workers", "runtime_api"])
def local(request, tmp_path: Path) -> Iterator[Local]:
    spec, start = build(tmp_path, request.param)
    pools = {name: FunctionPool(function, start(function), max_instances=1) for name, function in spec.functions.items()}
    server = LocalApiServer(("127.0.0.1", 0), LocalApiGateway(spec.api, pools))
    server.start()
    try:
        yield Local(server, pools, tmp_path)
    finally:
        server.stop()
        for pool in pools.values():
            pool.close()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes = b""
    lines: list[dict] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # time.time() as each line was read
    complete: bool = False  # the body ended as it should: its last chunk, or all its Content-Length


def post(local: Local, path: str, ask: dict, *, on_line: Callable[[dict], None] | None = None,
         leave_after: int | None = None) -> Answer:
    """POST `ask`, reading a chunked answer chunk by chunk off the socket; with `leave_after`, the
    client closes its connection once it has read that many lines."""
    body = json.dumps(ask).encode()
    with socket.create_connection(local.server.server_address[:2], timeout=WAIT) as sock, sock.makefile("rb") as reader:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: local\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (path.encode(), len(body), body))
        answer = Answer(int(reader.readline().split()[1]), {})
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            answer.headers[name.strip().lower()] = value.strip()
        if answer.headers.get("transfer-encoding") != "chunked":
            answer.body = reader.read(int(answer.headers["content-length"]))
            answer.complete = True
            return answer
        pending = b""
        while size_line := reader.readline():
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                answer.complete = reader.readline() == b"\r\n"
                break
            pending += reader.read(size)
            reader.read(2)
            *whole, pending = pending.split(b"\n")
            for text in whole:
                answer.arrivals.append(time.time())
                answer.lines.append(json.loads(text))
                if on_line:
                    on_line(answer.lines[-1])
                if leave_after and len(answer.lines) >= leave_after:
                    return answer
        return answer


def ended(marker: Path) -> str:
    """How the function's stream ended, once it has: finished, failed, or closed by the runtime."""
    return wait_for(lambda: marker.exists() and marker.read_text(), timeout=WAIT, what=f"the stream's end in {marker.name}")


def test_the_template_says_which_routes_stream(tmp_path):
    spec, _ = build(tmp_path, "workers")
    assert {(route.path, route.streams) for route in spec.api.routes} == {
        ("/stream", True), ("/buffered", False), ("/brief", True)}


def test_chunks_reach_the_client_as_they_are_produced(local):
    answer = post(local, "/stream", {"count": 8, "gap": 0.2, "marker": str(local.marker("m"))})
    assert answer.status == 200 and answer.complete
    assert answer.headers["content-type"] == "application/x-ndjson" and answer.headers["x-probe"] == "yes"
    assert answer.headers["x-amzn-requestid"] and "content-length" not in answer.headers
    assert [line["i"] for line in answer.lines] == list(range(8))
    # The first line was read before the function had even produced the last (1.4 s later).
    assert answer.arrivals[0] < answer.lines[-1]["at"]
    assert all(arrival >= line["at"] for arrival, line in zip(answer.arrivals, answer.lines, strict=True))
    assert ended(local.marker("m")) == "finished"


def test_each_chunk_is_read_before_the_next_is_produced(local):
    """The function makes each line only once the client has said it saw the one before: a
    response held back until the end would leave every line unacknowledged."""
    ack = local.folder / "seen-"
    answer = post(local, "/stream", {"count": 4, "ack": str(ack)}, on_line=lambda line: Path(f"{ack}{line['i']}").touch())
    assert answer.complete
    assert [line["acked"] for line in answer.lines] == [None, True, True, True]


def test_a_client_that_leaves_closes_the_functions_stream_and_frees_its_instance(local):
    marker = local.marker("left")
    first = post(local, "/stream", {"count": 200, "gap": 0.05, "marker": str(marker)}, leave_after=1)
    # Closed where it yields (GeneratorExit), long before its 10 s of lines were through.
    assert ended(marker) == "closed"
    after = post(local, "/stream", {"count": 1})
    assert after.complete and after.lines[0]["pid"] == first.lines[0]["pid"]  # the same instance, free again


def test_a_failure_mid_stream_cuts_the_response(local):
    marker = local.marker("failed")
    answer = post(local, "/stream", {"count": 2, "fail": True, "marker": str(marker)})
    assert answer.status == 200
    assert [line["i"] for line in answer.lines] == [0, 1]
    assert not answer.complete  # the connection closed without the last chunk
    assert ended(marker) == "failed"
    assert post(local, "/stream", {"count": 1}).complete


def test_what_is_not_a_stream_on_a_streamed_route_is_502(local):
    for mode in ("dict", "raise"):
        answer = post(local, "/stream", {"mode": mode})
        assert answer.status == 502 and json.loads(answer.body) == {"message": "Internal server error"}
    assert post(local, "/stream", {"count": 1}).complete


def test_a_buffered_route_answers_whole_and_refuses_a_stream(local):
    whole = post(local, "/buffered", {"mode": "dict"})
    assert whole.status == 200 and whole.body.startswith(b"whole from ")
    assert whole.headers["content-length"] == str(len(whole.body)) and "transfer-encoding" not in whole.headers

    marker = local.marker("refused")
    refused = post(local, "/buffered", {"count": 200, "gap": 0.05, "marker": str(marker)})
    assert refused.status == 502
    assert ended(marker) == "closed"
    assert post(local, "/buffered", {"mode": "dict"}).body == whole.body  # the same instance, free again


def test_a_stream_is_bound_by_the_functions_timeout_not_the_integrations(local, monkeypatch):
    monkeypatch.setattr(gateway, "INTEGRATION_TIMEOUT", 0.5)
    streamed = post(local, "/stream", {"count": 5, "gap": 0.25})
    assert streamed.complete and len(streamed.lines) == 5
    assert post(local, "/buffered", {"mode": "dict", "sleep": 1.5}).status == 504


def test_a_stream_past_the_functions_timeout_is_cut_and_a_fresh_instance_serves_next(local):
    cut = post(local, "/brief", {"count": 200, "gap": 0.05})
    assert cut.lines and not cut.complete
    # Cut at the 2 s timeout, not after the stream's 10 s.
    assert cut.arrivals[-1] - cut.lines[0]["at"] < 8
    after = post(local, "/brief", {"count": 1})
    assert after.complete and after.lines[0]["pid"] != cut.lines[0]["pid"]


def test_a_cancel_that_comes_after_the_stream_ended_is_not_taken_for_an_invocation(local):
    """The gateway may cancel a stream whose function has already finished: the instance must
    take its next invocation as it comes."""
    pool = local.pools["Streamer"]
    marker = local.marker("finished")
    stream = pool.invoke(_event({"count": 2, "marker": str(marker)}), timeout=None)
    assert ended(marker) == "finished"
    stream.cancel()
    answer = pool.invoke(_event({"mode": "dict"}), timeout=10)
    assert answer["statusCode"] == 200 and answer["body"].startswith("whole from ")


def test_the_runtime_api_instance_reports_its_init_and_its_init_errors(tmp_path):
    from devkit.runtime_api import RuntimeApiInstance

    spec, _ = build(tmp_path, "runtime_api")
    function = spec.functions["Streamer"]
    instance = RuntimeApiInstance(function, function.environment, runtime_python=RUNTIME_PYTHON)
    try:
        assert instance.init_reported.is_set() and instance.init_ms and instance.init_ms > 0
    finally:
        instance.kill()
    broken = replace(function, handler="missing.handle")
    with pytest.raises(InvocationError) as failed:
        RuntimeApiInstance(broken, broken.environment, runtime_python=RUNTIME_PYTHON)
    assert "No module named 'missing'" in failed.value.error["errorMessage"]


def _event(ask: dict) -> dict:
    """As much of a proxy event as the test's function reads."""
    return {"body": json.dumps(ask), "isBase64Encoded": False}
