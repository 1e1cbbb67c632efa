"""The shape of the common layer, held: import-linter's contracts (pyproject.toml) are kept, and
would be broken by an import across them; no module is over 300 lines nor any function over 40,
unless a comment says why."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGE = ROOT / "layers" / "common" / "infergate"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MODULE_LINES, FUNCTION_LINES = 300, 40
# A module or function longer than its bound says why, in a comment that opens so: a module in
# one of its first lines, a function right above its `def` (or its decorators).
WHY = "# Longer than"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter over the layer and the handlers under `root`, with the project's contracts."""
    environment = {**os.environ, "PYTHONPATH": f"{root / 'layers' / 'common'}{os.pathsep}{root}"}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(ROOT / "pyproject.toml")], cwd=root,
                          env=environment, capture_output=True, text=True, timeout=120)


def test_every_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def test_an_import_across_a_contract_breaks_it(tmp_path):
    """A copy of the code with one import across each of two contracts: both are reported."""
    shutil.copytree(ROOT / "layers", tmp_path / "layers")
    shutil.copytree(ROOT / "functions", tmp_path / "functions")
    keys = tmp_path / "layers" / "common" / "infergate" / "domain" / "keys.py"
    keys.write_text(keys.read_text() + "\nimport pydantic  # noqa: E402,F401\n")
    usage = tmp_path / "functions" / "usage" / "usage.py"
    usage.write_text(usage.read_text() + "\nfrom infergate.domain import periods  # noqa: E402,F401\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "2 kept, 2 broken" in result.stdout, result.stdout
    assert "infergate.domain.keys -> pydantic" in result.stdout
    assert "functions.usage.usage -> infergate.domain.periods" in result.stdout


def test_the_domain_contract_names_every_other_module_of_the_package():
    contract = next(c for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
                    if c["id"] == "domain")
    siblings = {f"infergate.{path.stem if path.is_file() else path.name}" for path in PACKAGE.iterdir()
                if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()}
    assert siblings - {"infergate.domain"} <= set(contract["forbidden_modules"])


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("module", modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_is_long_unless_it_says_why(module):
    lines = module.read_text().splitlines()
    if len(lines) > MODULE_LINES:
        assert any(line.startswith(WHY) for line in lines[:30]), f"{len(lines)} lines, and no comment says why"


@pytest.mark.parametrize("module", modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_function_is_long_unless_it_says_why(module):
    lines = module.read_text().splitlines()
    long = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
            if node.end_lineno - node.lineno + 1 > FUNCTION_LINES and not lines[first - 2].strip().startswith(WHY):
                long.append(f"{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long
