"""Writes layers/common/infergate/settings.schema.json: the validator pydantic compiles from
infergate's Settings (its core schema and config), which a function instance runs at init
(infergate.config.checked) without importing pydantic.

    .venv/bin/python -m devkit.settings_schema      (or: make settings-schema)

tests/build/test_settings_schema.py fails when the committed file is not what this writes now:
change a setting, then run `make settings-schema`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COMMON_LAYER = Path(__file__).resolve().parents[1] / "layers" / "common"
if str(COMMON_LAYER) not in sys.path:
    sys.path.insert(0, str(COMMON_LAYER))

from infergate.config import SCHEMA_FILE  # noqa: E402
from infergate.settings_model import Settings  # noqa: E402


def compiled() -> dict[str, Any]:
    """Settings' validator as pydantic compiles it: the model's fields and its config."""
    Settings.model_rebuild()
    schema = Settings.__pydantic_core_schema__
    return {"schema": schema["schema"], "config": schema["config"]}


def main() -> int:
    SCHEMA_FILE.write_text(json.dumps(compiled(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
