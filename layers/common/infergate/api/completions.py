"""OpenAI's legacy Completions (POST /v1/completions): a prompt, and for fill-in-the-middle a
suffix, as the domain's ChatTask; the answer as a text completion, whole or streamed."""

from __future__ import annotations

from collections.abc import Iterator

from infergate.api.app import App, parse_body
from infergate.api.chat import usage
from infergate.api.openai import sampling_options
from infergate.api.streaming import error_event, sse
from infergate.domain.errors import InferGateError
from infergate.domain.inference import ChatResult, ChatStream, ChatTask
from infergate.domain.messages import Message
from infergate.observability import note
from infergate.schemas.completions import CompletionChoice, CompletionRequest, TextCompletion


def request(app: App) -> tuple[CompletionRequest, ChatTask]:
    body = parse_body(app, CompletionRequest)
    note(end_user=body.user)
    return body, ChatTask(messages=[Message(role="user", content=body.text)], model=body.model,
                          max_tokens=body.max_tokens, options=sampling_options(body), suffix=body.suffix,
                          end_user=body.user)


def _finish_reason(result: ChatResult) -> str:
    return "length" if result.done_reason == "length" else "stop"


def completion(result: ChatResult) -> TextCompletion:
    return TextCompletion(id=f"cmpl-{result.id}", created=int(result.created.timestamp()), model=result.model,
                          choices=[CompletionChoice(text=result.content, finish_reason=_finish_reason(result))],
                          usage=usage(result))


def event_stream(stream: ChatStream, *, include_usage: bool) -> Iterator[str]:
    """A chunk per piece of the text as the model produces it, then one with the finish reason,
    the usage when asked for, and `data: [DONE]`; an answer cut off ends with an error event."""
    created = int(stream.created.timestamp())

    def chunk(text: str, finish_reason: str | None = None) -> str:
        return sse(TextCompletion(id=f"cmpl-{stream.id}", created=created, model=stream.model, choices=[
            CompletionChoice(text=text, finish_reason=finish_reason)]).model_dump_json())

    try:
        for piece in stream:
            if isinstance(piece, str):
                yield chunk(piece)
    except InferGateError as failure:
        yield error_event(failure)
        return
    finally:
        stream.close()
    result = stream.result
    assert result is not None
    yield chunk("", _finish_reason(result))
    if include_usage:
        yield sse(TextCompletion(id=f"cmpl-{stream.id}", created=created, model=stream.model, choices=[],
                                 usage=usage(result)).model_dump_json())
    yield sse("[DONE]")
