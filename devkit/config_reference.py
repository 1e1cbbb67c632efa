"""Writes docs/operating/configuration-reference.md from the code, so that the reference cannot
drift from what it describes: each setting's name and default from infergate's Settings, the
SAM parameter that sets it from template.yaml's functions, and its meaning from that parameter's
Description (`NAME - meaning`), or from the field's `description` for a setting with no parameter.

    .venv/bin/python -m devkit.config_reference      (or: make config-reference)

tests/build/test_docs.py fails when the committed page is not what this writes now, and
tests/build/test_settings.py reads the page's table against the settings and the template.
"""

from __future__ import annotations

import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMMON_LAYER = ROOT / "layers" / "common"
if str(COMMON_LAYER) not in sys.path:
    sys.path.insert(0, str(COMMON_LAYER))

from samtranslator.yaml_helper import yaml_parse  # noqa: E402

from infergate.settings_model import Settings  # noqa: E402

TEMPLATE = ROOT / "template.yaml"
PAGE = ROOT / "docs" / "operating" / "configuration-reference.md"
TABLE_HEADER = "| Variable | SAM parameter | Default | Meaning |"
MAKE_RUN_ONLY = "`make run` only"

# What `make run` alone reads (devkit/run.py): the functions never see these.
MAKE_RUN = {
    "PORT": ("3000", "where the local API listens"),
    "OLLAMA_AUTODETECT": ("1", "`0` skips looking for an Ollama on 127.0.0.1:11434"),
    "INFERGATE_DATA_DIR": (".data", "where the local MongoDB keeps its files, and the logs"),
}

# What each variable the template writes itself is for: a new one stops this script until it is
# described here, since the template can say no more than its value.
WRITTEN = {
    "BUDGET_ALERT_TOPIC_ARN": "the stack's alarm topic, where the chat function (alone allowed to, by "
                              "`BudgetAlertsPolicy`) publishes teams' and keys' budget alerts; a local run has none",
    "POWERTOOLS_SERVICE_NAME": "each function's own name, the `service` of its log lines and metrics; "
                               "`/health` reports it as `service`",
    "POWERTOOLS_METRICS_NAMESPACE": "the CloudWatch namespace of the functions' metrics",
    "AWS_LAMBDA_EXEC_WRAPPER": "starts the chat function through InferGate's own runtime loop "
                               "(`infergate/runtime.py`), which streams its answers (see Streaming)",
}

# A meaning's "see <title>" links to the page (from docs/operating/) that holds <title>.
LINKS = {
    "Secrets": "secrets.md",
    "Redis Cluster": "scaling.md#redis-cluster",
    "Limits": "scaling.md#limits",
    "Deploying to AWS": "deploy.md#logs",
    "A pool of model servers": "../api/pool.md",
    "Prices and cost": "../api/plans-and-limits.md#prices-and-cost",
    "What a prompt is held as": "../api/plans-and-limits.md#what-a-prompt-is-held-as",
    "Plans and limits": "../api/plans-and-limits.md",
    "Teams and budgets": "../accounts/teams-and-budgets.md",
    "Single sign-on": "../accounts/sso.md",
    "Memory and architecture": "../performance.md#memory-and-architecture",
    "Streaming": "../api/streaming.md",
}


@cache
def template() -> dict[str, Any]:
    return yaml_parse(TEMPLATE.read_text())


def environments() -> dict[str, dict[str, Any]]:
    """Each function's variables as the template writes them: the globals', then its own."""
    doc = template()
    shared = ((doc.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
    return {
        name: {**(shared.get("Variables") or {}),
               **((resource.get("Properties", {}).get("Environment") or {}).get("Variables") or {})}
        for name, resource in doc["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def variables() -> list[str]:
    """Every variable any function gets, in the order the template writes them."""
    seen: dict[str, None] = {}
    for environment in environments().values():
        seen.update(dict.fromkeys(environment))
    return list(seen)


def parameter_of(variable: str) -> str:
    """The parameter every function's `variable` refers to, or "" for a value written in the template."""
    values = [environment.get(variable) for environment in environments().values()]
    first = values[0]
    if all(value == first for value in values) and isinstance(first, dict):
        if first.get("Ref") in template().get("Parameters", {}):
            return first["Ref"]
    return ""


def cell(text: str) -> str:
    """Text fit for a table cell: `<` and `|` escaped outside code spans. A pipe inside one reads
    differently on GitHub and in MkDocs, whether escaped or not, so it is refused."""
    parts = text.split("`")
    for index in range(0, len(parts), 2):
        parts[index] = parts[index].replace("<", "&lt;").replace("|", "\\|")
    if any("|" in code for code in parts[1::2]):
        raise SystemExit(f"a `|` inside code cannot stand in a table cell: {text}")
    return "`".join(parts)


def linked(text: str) -> str:
    for title, target in sorted(LINKS.items(), key=lambda item: -len(item[0])):
        text = re.sub(rf"\bsee {re.escape(title)}\b(?!\])", f"see [{title}]({target})", text)
    return text


def bounds(spec: dict[str, Any]) -> str:
    """What a parameter admits, as the template bounds it."""
    allowed = [str(value) for value in spec.get("AllowedValues", ())]
    if allowed and sorted(allowed) != ["false", "true"]:
        return "One of " + ", ".join(f"`{value}`" for value in allowed) + "."
    low, high = spec.get("MinValue"), spec.get("MaxValue")
    if low is not None and high is not None:
        return f"From {low} to {high}."
    if low is not None:
        return f"At least {low}."
    return f"At most {high}." if high is not None else ""


def described(parameter: str) -> str:
    """A parameter's meaning: its Description, less the `NAME - ` that says which setting it sets."""
    spec = template()["Parameters"][parameter]
    text = re.sub(r"^[A-Z][A-Z0-9_]* - ", "", spec.get("Description", "").strip())
    if not text:
        raise SystemExit(f"template.yaml: {parameter} has no Description")
    return " ".join(part for part in (text, bounds(spec)) if part)


def shown(value: Any) -> str:
    """A default as a person would write it in the environment."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`" if str(value) != "" else ""


def setting_rows() -> list[str]:
    """The variables a parameter sets (and the settings the template writes), then `make run`'s own."""
    fields = {field.alias: field for field in Settings.model_fields.values()}
    rows = []
    for variable in [*variables(), *(alias for alias in fields if alias not in variables())]:
        parameter, field = parameter_of(variable), fields.get(variable)
        if not parameter and field is None:
            continue  # written by the template: the next table
        if parameter:
            meaning = described(parameter)
            default = field.default if field is not None else template()["Parameters"][parameter].get("Default", "")
        elif field.description:
            meaning, default = field.description, field.default
        else:
            raise SystemExit(f"{variable} has no parameter: give its field in settings_model.py a description")
        rows.append(f"| `{variable}` | {f'`{parameter}`' if parameter else ''} | {shown(default)} | "
                    f"{cell(linked(meaning))} |")
    for variable, (default, meaning) in MAKE_RUN.items():
        rows.append(f"| `{variable}` | {MAKE_RUN_ONLY} | {shown(default)} | {cell(meaning)} |")
    return rows


def written_value(variable: str) -> str:
    """What the template writes: one value for every function, or each function's own."""
    def one(value: Any) -> str:
        return f"`!Ref {value['Ref']}`" if isinstance(value, dict) and "Ref" in value else shown(value)

    given = {name: environment[variable] for name, environment in environments().items() if variable in environment}
    values = list(given.values())
    if len(given) == len(environments()) and all(value == values[0] for value in values):
        return one(values[0])
    return "; ".join(f"{name}: {one(value)}" for name, value in given.items())


def written_rows() -> list[str]:
    fields = {field.alias for field in Settings.model_fields.values()}
    rows = []
    for variable in variables():
        if parameter_of(variable) or variable in fields:
            continue
        if variable not in WRITTEN:
            raise SystemExit(f"template.yaml writes {variable}: say what it is for in config_reference.WRITTEN")
        rows.append(f"| `{variable}` | {written_value(variable)} | {cell(linked(WRITTEN[variable]))} |")
    return rows


def stack_rows() -> list[str]:
    """The parameters no function gets: they configure AWS resources."""
    used = {parameter_of(variable) for variable in variables()}
    rows = []
    for parameter, spec in template()["Parameters"].items():
        if parameter not in used:
            rows.append(f"| `{parameter}` | {shown(spec.get('Default', ''))} | {cell(linked(described(parameter)))} |")
    return rows


def page() -> str:
    return "\n".join([
        "<!-- Generated by `make config-reference` (devkit/config_reference.py) from infergate's Settings and",
        "template.yaml: edit those, not this page. -->",
        "",
        "# Configuration reference",
        "",
        "Every variable the functions read, the SAM parameter that sets it in AWS, its default and what it",
        "means. `make run` passes each one set in the shell through to the functions. How settings are",
        "checked, and how to add one: [Configuration](configuration.md).",
        "",
        "## The functions' variables",
        "",
        TABLE_HEADER, "|---|---|---|---|", *setting_rows(),
        "",
        "## Written by the template",
        "",
        "The template writes these itself; no parameter sets them.",
        "",
        "| Variable | Value | Meaning |", "|---|---|---|", *written_rows(),
        "",
        "## The stack's parameters",
        "",
        "These configure AWS resources (the network, the API, the functions' size, releases, logs and",
        "alarms) and reach no function ([Deploying to AWS](deploy.md)).",
        "",
        "| SAM parameter | Default | Meaning |", "|---|---|---|", *stack_rows(),
        "",
    ])


def main() -> int:
    PAGE.write_text(page(), encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
