"""Loads a function's handler module in-process, fresh for each test, as a new instance would."""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass, field
from types import ModuleType

from tests.support.paths import FUNCTIONS

_counter = itertools.count()


def load_handler(relative: str) -> ModuleType:
    path = FUNCTIONS / relative
    spec = importlib.util.spec_from_file_location(f"infergate_fn_{path.stem}_{next(_counter)}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class LambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = field(default_factory=lambda: f"lambda-{next(_counter)}")

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def reset_instance_state() -> None:
    """Forget every per-instance client and cached setting, as a fresh Lambda instance would."""
    from infergate import bootstrap

    bootstrap.reset()
