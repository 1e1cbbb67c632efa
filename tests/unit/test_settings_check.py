"""Settings are checked whole before anything uses them (config.checked): each in its range, and the
plans and aliases they describe; what is wrong is named with its range, never with its value."""

from __future__ import annotations

import pytest

from infergate.config import InvalidSettings, checked


@pytest.mark.parametrize(("env", "named"), [
    ({"MAX_CONCURRENT_REQUESTS": "100000"}, "MAX_CONCURRENT_REQUESTS: input should be less than or equal to 10000"),
    ({"OLLAMA_TIMEOUT": "60"}, "OLLAMA_TIMEOUT: input should be less than or equal to 28"),
    ({"PLANS": '{"team": {"max_output_tokens": 99999}}'}, "PLANS is not valid"),
    ({"MODEL_ALIASES": '{"chat": []}'}, "MODEL_ALIASES is not valid"),
    ({"MODEL_TOKENIZERS": '["a"]'}, "MODEL_TOKENIZERS is not valid"),
    ({"MODEL_PRICES": '{"llama3": {"input_per_million_micros": 0.5, "output_per_million_micros": 1}}'},
     "MODEL_PRICES is not valid: llama3.input_per_million_micros: Input should be a valid integer"),
    ({"MODEL_PRICES": '{"llama3": {"input_per_million_micros": 1}}'},
     "MODEL_PRICES is not valid: llama3.output_per_million_micros: Field required"),
    ({"MODEL_PRICES": '{"llama3": {"input_per_million_micros": -1, "output_per_million_micros": 1}}'},
     "llama3.input_per_million_micros: Input should be greater than or equal to 0"),
    ({"CURRENCY": "dollars"}, "CURRENCY: string should match pattern"),
    ({"MODEL_TOKENIZERS": '{"llama3": "/nowhere/tokenizer.json"}'}, "no readable file for llama3"),
])
def test_a_setting_out_of_range_is_named_with_its_range(env, named):
    with pytest.raises(InvalidSettings) as refused:
        checked(env)
    assert named in str(refused.value)


def test_a_value_is_never_repeated_in_the_refusal():
    with pytest.raises(InvalidSettings) as refused:
        checked({"MAX_REQUEST_BYTES": "s3cr3t-looking-value"})
    assert "MAX_REQUEST_BYTES" in str(refused.value) and "s3cr3t" not in str(refused.value)


def test_settings_in_range_pass():
    assert checked({"MAX_CONCURRENT_REQUESTS": "10000"}).max_concurrent_requests == 10_000


def test_a_tokenizer_named_by_a_readable_file_passes_under_its_models_tagged_name(tmp_path):
    from infergate.config import tokenizer_paths

    named = tmp_path / "tokenizer.json"
    named.write_text("{}")
    settings = checked({"MODEL_TOKENIZERS": f'{{"llama3": "{named}"}}'})
    assert tokenizer_paths(settings) == {"llama3:latest": str(named)}
