"""settings.schema.json is Settings' validator as pydantic compiles it now: what a function's init
checks its settings with (infergate.config.checked), without importing pydantic."""

from __future__ import annotations

import json
import re

import pytest
from devkit import settings_schema
from pydantic import ValidationError

from infergate.config import SCHEMA_FILE, InvalidSettings, checked
from infergate.settings_model import Settings


def test_the_committed_schema_is_what_pydantic_compiles_from_settings():
    assert json.loads(SCHEMA_FILE.read_text()) == settings_schema.compiled(), "run `make settings-schema`"


@pytest.mark.parametrize("env", [{}, {"RATE_LIMIT_FAIL_OPEN": "no", "OLLAMA_TIMEOUT": "7.5", "RATE_LIMIT_RPM": "12"},
                                 {"OLLAMA_TIMEOUT": "60"}, {"MAX_REQUEST_BYTES": "many", "REDIS_KEY_PREFIX": "a b"}])
def test_checked_gives_what_settings_gives_and_refuses_what_it_refuses(env):
    try:
        expected = Settings.from_env(env).model_dump()
    except ValidationError as error:
        named = "; ".join(f"{'.'.join(str(part) for part in e['loc'])}: {e['msg'].lower()}" for e in error.errors())
        with pytest.raises(InvalidSettings, match=re.escape(named)):
            checked(env)
    else:
        assert vars(checked(env)) == expected


def test_a_functions_init_imports_no_pydantic():
    import subprocess
    import sys

    from tests.support.paths import COMMON_LAYER

    code = ("import sys; from infergate.bootstrap import instance; import infergate.api.authorizer, infergate.api.chat; "
            "instance(); print(sorted(m for m in sys.modules if m.startswith('pydantic.') or m == 'pydantic'))")
    result = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(COMMON_LAYER)}, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"
