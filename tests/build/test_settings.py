"""One list of settings: what the code reads (infergate.config.Settings), what template.yaml
declares and hands every function, what `make run` passes through, and the README's
configuration table all agree, names and defaults alike."""

from __future__ import annotations

import logging
import re
import uuid
from functools import cache
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.shared import constants as powertools_constants
from devkit import run, template
from samtranslator.yaml_helper import yaml_parse

from infergate.config import Settings
from tests.support.paths import ROOT

TEMPLATE = ROOT / "template.yaml"
README = ROOT / "README.md"
TABLE_HEADER = "| Variable | SAM parameter | Default | Meaning |"
MAKE_RUN_ONLY = "`make run` only"
ENVIRON_READ = re.compile(
    r"""(?:environ\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]*)["']|environ\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\]"""
)

FIELDS = {field.alias: (name, field) for name, field in Settings.model_fields.items()}


@cache
def document() -> dict[str, Any]:
    return yaml_parse(TEMPLATE.read_text())


@cache
def functions() -> dict[str, template.FunctionSpec]:
    return template.load(TEMPLATE).functions


def raw_environments() -> dict[str, dict[str, Any]]:
    """Each function's variables as written: the globals', then its own."""
    globals_ = ((document().get("Globals") or {}).get("Function") or {}).get("Environment") or {}
    return {
        name: {**(globals_.get("Variables") or {}),
               **((resource.get("Properties", {}).get("Environment") or {}).get("Variables") or {})}
        for name, resource in document()["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def parameter_of(variable: str) -> str:
    """The SAM parameter every function's `variable` refers to, or "" for a value written in the template."""
    values = {repr(environment.get(variable)) for environment in raw_environments().values()}
    assert len(values) == 1, f"{variable} differs between functions: {sorted(values)}"
    value = next(iter(raw_environments().values())).get(variable)
    if isinstance(value, dict) and value.get("Ref") in (document().get("Parameters") or {}):
        return value["Ref"]
    return ""


def means_the_default(variable: str, text: str) -> bool:
    """Whether `text`, as the value of `variable`, is what Settings uses when the variable is unset."""
    name, field = FIELDS[variable]
    if text == "":
        return field.default == ""
    return getattr(Settings.model_validate({variable: text}), name) == field.default


def admitted(variable: str, text: str) -> bool:
    try:
        Settings.model_validate({variable: text})
    except ValueError:
        return False
    return True


@cache
def table() -> dict[str, dict[str, str]]:
    """The README's configuration table: variable → its parameter, default and meaning."""
    lines = README.read_text().splitlines()
    assert TABLE_HEADER in lines, "the README has no configuration table"
    rows: dict[str, dict[str, str]] = {}
    for line in lines[lines.index(TABLE_HEADER) + 2:]:
        if not line.startswith("|"):
            break
        variable, parameter, default, meaning = (cell.strip() for cell in line.strip().strip("|").split("|", 3))
        variable = variable.strip("`")
        assert variable not in rows, f"{variable} is listed twice"
        rows[variable] = {"parameter": parameter.strip("`"), "default": default.strip("`"), "meaning": meaning}
    return rows


# What Lambda itself sets in every function's environment, for its runtime (infergate/runtime.py).
LAMBDA_RUNTIME_VARIABLES = frozenset({
    "AWS_LAMBDA_RUNTIME_API", "_HANDLER", "LAMBDA_TASK_ROOT", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_LOG_FORMAT",
})


@cache
def read_by_code(*roots: str) -> frozenset[str]:
    """Variables the product's own code reads from the environment by name, beyond those Lambda sets."""
    names = set()
    for root in roots:
        for source in (ROOT / root).rglob("*.py"):
            names.update(a or b for a, b in ENVIRON_READ.findall(source.read_text()))
    return frozenset(names) - LAMBDA_RUNTIME_VARIABLES


POWERTOOLS_VARIABLES = frozenset(
    value for name, value in vars(powertools_constants).items() if name.endswith("_ENV") and isinstance(value, str)
)


def configuration_section() -> str:
    text = README.read_text()
    start = text.index("\n## Configuration\n")
    return text[start:text.index("\n## ", start + 1)]


# --- the template ---


def test_every_setting_reaches_every_function():
    for name, function in functions().items():
        missing = sorted(set(FIELDS) - set(function.environment))
        assert not missing, f"template.yaml gives {name} no {', '.join(missing)}"


@pytest.mark.parametrize("variable", sorted(FIELDS))
def test_the_template_default_is_the_settings_default(variable):
    for name, function in functions().items():
        value = function.environment.get(variable)
        assert value is not None, f"template.yaml gives {name} no {variable}"
        assert means_the_default(variable, value), (
            f"{variable}: template.yaml's default {value!r} is not Settings' {FIELDS[variable][1].default!r}"
        )


def test_a_parameter_says_which_setting_it_sets():
    parameters = document()["Parameters"]
    for variable in sorted(FIELDS):
        parameter = parameter_of(variable)
        if not parameter:
            continue  # written in the template itself; the README's table shows no parameter for it
        description = parameters[parameter].get("Description", "")
        assert description.startswith(variable), f"{parameter}'s Description should start with {variable}"


@pytest.mark.parametrize("variable", sorted(FIELDS))
def test_a_parameter_has_the_bounds_its_setting_has(variable):
    """A bound the setting has, its parameter has too: a deploy with a value out of range fails at
    CloudFormation, before any function would fail its init on it."""
    parameter = parameter_of(variable)
    if not parameter:
        pytest.skip(f"{variable} is not a parameter")
    spec = document()["Parameters"][parameter]
    for rule in FIELDS[variable][1].metadata:
        for bound, attribute in (("MinValue", "ge"), ("MaxValue", "le")):
            if getattr(rule, attribute, None) is not None:
                assert spec.get(bound) == getattr(rule, attribute), f"{parameter}'s {bound} should be {getattr(rule, attribute)}"


@pytest.mark.parametrize("variable", sorted(FIELDS))
def test_a_parameter_admits_nothing_at_its_bounds_that_settings_refuses(variable):
    parameter = parameter_of(variable)
    if not parameter:
        pytest.skip(f"{variable} is not a parameter")
    spec = document()["Parameters"][parameter]
    name, field = FIELDS[variable]
    numeric = field.annotation in (int, float)
    assert (spec["Type"] == "Number") == numeric, f"{parameter} is {spec['Type']} for a {field.annotation} setting"
    for bound in ("MinValue", "MaxValue"):
        if bound in spec:
            assert admitted(variable, str(spec[bound])), f"{parameter}'s {bound} {spec[bound]} is refused by Settings"
    for value in spec.get("AllowedValues", ()):
        assert admitted(variable, str(value)), f"{parameter} allows {value!r}, which Settings refuses"
    if field.annotation is bool:
        assert sorted(spec.get("AllowedValues", ())) == ["false", "true"], f"{parameter} should allow true or false"


def test_make_run_passes_every_setting_from_the_shell_to_every_function(monkeypatch):
    for variable in FIELDS:
        monkeypatch.delenv(variable, raising=False)
    for function in functions().values():
        environment = run.function_environment(function, {})
        assert set(FIELDS) <= set(environment), sorted(set(FIELDS) - set(environment))

    shell = {variable: f"from-the-shell-{index}" for index, variable in enumerate(sorted(FIELDS))}
    for variable, value in shell.items():
        monkeypatch.setenv(variable, value)
    for name, function in functions().items():
        environment = run.function_environment(function, {})
        wrong = sorted(variable for variable, value in shell.items() if environment.get(variable) != value)
        assert not wrong, f"make run does not pass {', '.join(wrong)} to {name}"


def test_the_log_level_make_run_passes_through_is_the_one_the_functions_log_at(monkeypatch):
    level = table()["LOG_LEVEL"]["parameter"]
    assert document()["Parameters"][level]["Default"] != "DEBUG"
    for variable in ("LOG_LEVEL", "POWERTOOLS_LOG_LEVEL", powertools_constants.LAMBDA_LOG_LEVEL_ENV):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    for name, function in functions().items():
        with monkeypatch.context() as inside:
            for variable, value in run.function_environment(function, {}).items():
                inside.setenv(variable, value)
            logger = Logger(service=f"settings-test-{uuid.uuid4().hex}")
            assert logger.log_level == logging.DEBUG, f"LOG_LEVEL=DEBUG does not reach {name}'s logger"


def test_what_the_functions_code_reads_directly_is_declared_and_documented():
    section = configuration_section()
    for variable in sorted(read_by_code("layers", "functions")):
        for name, function in functions().items():
            assert variable in function.environment, f"template.yaml gives {name} no {variable}"
        assert f"`{variable}`" in section, f"the README's Configuration section does not name {variable}"


# --- the README's table ---


def test_the_table_lists_every_setting_with_its_parameter_and_default():
    rows = table()
    for variable in sorted(FIELDS):
        assert variable in rows, f"the README's configuration table has no {variable}"
        row = rows[variable]
        assert row["parameter"] == parameter_of(variable), (
            f"{variable}: the table says parameter {row['parameter']!r}, template.yaml {parameter_of(variable)!r}"
        )
        assert means_the_default(variable, row["default"]), (
            f"{variable}: the table's default {row['default']!r} is not Settings' {FIELDS[variable][1].default!r}"
        )


def test_the_table_lists_every_parameter_the_functions_get():
    listed = {row["parameter"] for row in table().values()}
    for environment in raw_environments().values():
        for variable, value in environment.items():
            if isinstance(value, dict) and value.get("Ref") in document()["Parameters"]:
                assert value["Ref"] in listed, f"the README's configuration table has no {variable} ({value['Ref']})"


def test_the_table_lists_only_variables_that_something_reads():
    # Settings, the functions' own code and Powertools read what the functions get.
    read_by_functions = set(FIELDS) | read_by_code("layers", "functions") | POWERTOOLS_VARIABLES
    for variable, row in table().items():
        if row["meaning"].startswith(MAKE_RUN_ONLY):
            assert variable in read_by_code("devkit"), f"{variable} is listed as {MAKE_RUN_ONLY}, but devkit never reads it"
            continue
        assert variable in read_by_functions, f"the table lists {variable}, which no function reads"
        values = set()
        for name, function in functions().items():
            assert variable in function.environment, f"the table lists {variable}, but template.yaml gives {name} none"
            values.add(function.environment[variable])
        if variable not in FIELDS:
            assert row["parameter"] == parameter_of(variable), f"{variable}: the table's parameter is not template.yaml's"
            assert values == {row["default"]}, f"{variable}: the table's default {row['default']!r}, template.yaml's {values}"

