import pytest
from pydantic import ValidationError

from infergate.api import chat, openai
from infergate.api.caller import authorizer_context, caller_from
from infergate.domain.ledger import Level
from infergate.domain.messages import Message
from infergate.domain.plans import Plan
from infergate.domain.principal import Principal
from infergate.schemas.accounts import RegisterRequest
from infergate.schemas.chat import ChatRequest
from infergate.schemas.openai import ChatCompletionRequest


@pytest.mark.parametrize("email", ["ada@example.com", "  Ada.Lovelace+ai@Example.co.uk "])
def test_emails_are_accepted_and_normalised(email):
    assert RegisterRequest(email=email).email == email.strip().lower()


@pytest.mark.parametrize("email", ["", "ada", "ada@", "@example.com", "ada@example", "a b@example.com", "a@b@c.com", "x" * 250 + "@e.com"])
def test_bad_emails_are_refused(email):
    with pytest.raises(ValidationError):
        RegisterRequest(email=email)


def test_register_refuses_unknown_fields():
    with pytest.raises(ValidationError):
        RegisterRequest.model_validate({"email": "ada@example.com", "plan": "pro"})


def test_a_prompt_becomes_one_user_message():
    request = ChatRequest(prompt="hi")
    assert [(m.role, m.content) for m in chat.task(request).messages] == [("user", "hi")]


def test_messages_are_kept_as_sent():
    request = ChatRequest.model_validate({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]})
    assert [m.role for m in chat.task(request).messages] == ["system", "user"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"prompt": "a", "messages": [{"role": "user", "content": "b"}]},
        {"prompt": ""},
        {"messages": []},
        {"messages": [{"role": "tool", "content": "x"}]},
        {"prompt": "a", "max_tokens": 0},
        {"prompt": "a", "max_tokens": 5000},
        {"prompt": "a", "model": "bad model name"},
        {"prompt": "a", "temperature": 2},
        {"prompt": "x" * 200_001},
    ],
)
def test_chat_requests_that_are_refused(body):
    with pytest.raises(ValidationError):
        ChatRequest.model_validate(body)


def test_the_principal_survives_api_gateways_stringified_context():
    principal = Principal(user_id="usr_1", key_id="key_1", plan=Plan(
        name="free", monthly_token_quota=100, rate_limit_rpm=60, rate_limit_tpm=1000, max_output_tokens=512))
    stringified = {key: str(value) for key, value in authorizer_context(principal).items()}
    stringified["principalId"] = "usr_1"
    assert caller_from(stringified) == principal


def test_a_principal_with_every_level_survives_the_context_and_holds_each_for_its_model():
    plan = Plan(name="team", monthly_token_quota=100, rate_limit_rpm=60, rate_limit_tpm=1000, max_output_tokens=512,
                model_quotas=(("big", 50),))
    principal = Principal(user_id="usr_1", key_id="key_2", plan=plan, allowed_models=frozenset({"big:latest"}),
                          team=Level("team", "team_1", 1000, 5000), key_budget=Level("key", "key_1", None, 0),
                          key_line="key_1", team_model_quotas=frozenset({("big:latest", 70)}),
                          key_model_quotas=frozenset({("big:latest", 30), ("small:latest", 9)}))
    stringified = {key: str(value) for key, value in authorizer_context(principal).items()}
    assert caller_from(stringified) == principal
    assert {(level.kind, level.id, level.token_quota) for level in principal.levels("big")} == {
        ("team", "team_1", 1000), ("key", "key_1", None), ("team_model", "team_1:big:latest", 70),
        ("user_model", "usr_1:big:latest", 50), ("key_model", "key_1:big:latest", 30)}


def test_both_chat_shapes_become_the_domains_messages():
    completion = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]})
    assert openai.chat_task(completion).messages == [Message(role="system", content="be brief"),
                                                     Message(role="user", content="hi")]
    assert chat.task(ChatRequest(prompt="hi")).messages == [Message(role="user", content="hi")]
