from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMON_LAYER = ROOT / "layers" / "common"
FUNCTIONS = ROOT / "functions"


def use_common_layer() -> None:
    """Make `infergate` importable the way the layer makes it importable in Lambda."""
    if str(COMMON_LAYER) not in sys.path:
        sys.path.insert(0, str(COMMON_LAYER))
