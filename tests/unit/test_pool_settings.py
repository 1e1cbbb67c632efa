"""MODEL_SERVERS and MODEL_ALIASES as an operator writes them: what is read, and a clear refusal of
what is wrong, naming the entry and field and never repeating a value (a URL may hold a password)."""

from __future__ import annotations

import json

import pytest

from infergate.config import Settings, aliases, pool
from infergate.domain.pool import OPENAI, UNBOUNDED, Server

SETTINGS = Settings.from_env({"OLLAMA_URL": "http://ollama.internal:11434"})


def test_without_a_list_ollama_url_is_a_pool_of_one_never_held_back():
    (only,) = pool(SETTINGS, "")
    assert only.server == Server("ollama") and only.server.slots == UNBOUNDED
    assert only.url == "http://ollama.internal:11434"


def test_a_list_alone_names_the_servers_with_their_slots_weights_models_and_keys():
    listed = [{"name": "gpu-1", "url": "http://10.0.0.1:11434", "slots": 4},
              {"name": "vllm", "url": "https://vllm.internal/", "kind": "openai", "slots": 64, "weight": 2.5,
               "models": ["llama3.1:8b"], "api_key": "sk-secret"}]
    first, second = pool(SETTINGS, json.dumps(listed))
    assert first.server == Server("gpu-1", slots=4)
    assert second.server == Server("vllm", OPENAI, 64, 2.5, ("llama3.1:8b",)) and second.api_key == "sk-secret"
    assert "sk-secret" not in repr(second) and "vllm.internal" not in repr(second)


@pytest.mark.parametrize(("listed", "named"), [
    ([{"name": "a", "url": "http://user:hunter2@10.0.0.1", "slots": 0}], "0.slots"),
    ([{"name": "a b", "url": "http://user:hunter2@10.0.0.1"}], "0.name"),
    ([{"name": "a", "url": "ftp://user:hunter2@10.0.0.1"}], "0.url"),
    ([{"name": "a", "url": "http://user:hunter2@h", "kind": "tgi"}], "0.kind"),
    ([{"name": "a", "url": "http://user:hunter2@h", "secret": "x"}], "0.secret"),
    ([{"name": "a", "url": "http://x"}, {"name": "b", "url": "http://user:hunter2@h", "weight": -1}], "1.weight"),
])
def test_a_wrong_entry_is_refused_naming_its_field_and_not_its_value(listed, named):
    with pytest.raises(ValueError) as refused:
        pool(SETTINGS, json.dumps(listed))
    assert str(refused.value).startswith("MODEL_SERVERS is not valid") and named in str(refused.value)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("listed", ["[]", '[{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]'])
def test_an_empty_list_or_a_name_used_twice_is_refused(listed):
    with pytest.raises(ValueError, match="at least one server, each under its own name"):
        pool(SETTINGS, listed)


def test_not_json_is_refused_without_echoing_it():
    with pytest.raises(ValueError) as refused:
        pool(SETTINGS, "http://user:hunter2@gpu-1")
    assert "hunter2" not in str(refused.value)


def test_aliases_are_names_and_their_models_in_order():
    assert aliases(Settings.from_env({"MODEL_ALIASES": '{"chat": ["big:70b", "small:8b"]}'})) == {
        "chat": ["big:70b", "small:8b"]}
    assert aliases(SETTINGS) == {}
    for wrong in ('{"chat": "big:70b"}', '{"chat": []}', '["big:70b"]'):
        with pytest.raises(ValueError, match="MODEL_ALIASES is not valid"):
            aliases(Settings.from_env({"MODEL_ALIASES": wrong}))
