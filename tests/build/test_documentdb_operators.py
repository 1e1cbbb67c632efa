"""Every MongoDB operator InferGate's code uses is accounted for in tests/data/documentdb/supported.txt:
listed there as supported by Amazon DocumentDB 5.0, or as a known gap under "not supported". A new
operator fails here until someone has looked it up on the DocumentDB page that file cites.

Which strings are operators: a whole string constant in layers/common/infergate/**/*.py (read with
`ast`, so docstrings and Lua never match) that is `$`, a lowercase letter, then letters and digits
only: the shape of every MongoDB operator name ($gt, $setOnInsert, $concatArrays). That shape
leaves out variables ("$$r.tokens"), field paths with `_` or `.` ("$tokens_used", "$_holds") and
anything not MongoDB's ("$LATEST"). A one-word field path ("$requests") has an operator's shape:
those are FIELD_PATHS, which must never name a listed operator.

A name alone does not say its role: $set is a supported update operator but an unsupported stage
on 5.0. So the stages of every pipeline (the list given to aggregate(), or as an update to
update_one/update_many/find_one_and_update) are checked against the file's stage block, and the
operators of every partialFilterExpression against its partial-index block; a known gap is
listed with its role, as `stage:$set` or `partial-filter:$type`.
"""

from __future__ import annotations

import ast
import functools
import re

from tests.support.paths import ROOT

PACKAGE = ROOT / "layers" / "common" / "infergate"
LISTED = ROOT / "tests" / "data" / "documentdb" / "supported.txt"
OPERATOR = re.compile(r"\$[a-z][A-Za-z0-9]*")
FIELD_PATHS = {"$requests", "$reservations", "$committed", "$cost", "$day", "$days", "$keys", "$models", "$owner",
               "$tally", "$tokens", "$version"}
STAGES, PARTIAL, GAPS = "aggregation pipeline stages", "partial index filter operators", "not supported"
PIPELINE_ARGUMENT = {"aggregate": 0, "update_one": 1, "update_many": 1, "find_one_and_update": 1}


def blocks() -> dict[str, set[str]]:
    """The file's entries (a line's first word), by the comment line above them."""
    named: dict[str, set[str]] = {}
    name = ""
    for line in LISTED.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            name = line.lstrip("# ").split(" (")[0]
        elif line.strip():
            named.setdefault(name, set()).add(line.split()[0])
    return named


@functools.cache
def nodes() -> tuple[tuple[ast.AST, str], ...]:
    """Every node of the package's modules, with its module's path: parsed once for all the tests."""
    return tuple((node, path.relative_to(ROOT).as_posix()) for path in sorted(PACKAGE.rglob("*.py"))
                 for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))


def is_operator(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str) and bool(OPERATOR.fullmatch(node.value))
            and node.value not in FIELD_PATHS)


def operators(node: ast.AST) -> list[str]:
    """`node`'s name, if it is a string constant naming an operator."""
    return [node.value] if is_operator(node) else []


def stages(node: ast.AST) -> list[str]:
    """The stages of the pipeline `node` runs, if it is a call given one as a list."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in PIPELINE_ARGUMENT:
        pipeline = node.args[PIPELINE_ARGUMENT[node.func.attr]:][:1]
        if pipeline and isinstance(pipeline[0], ast.List):
            return [key.value for stage in pipeline[0].elts if isinstance(stage, ast.Dict)
                    for key in stage.keys if isinstance(key, ast.Constant)]
    return []


def partial_filter(node: ast.AST) -> list[str]:
    """The operators of the partialFilterExpression `node` passes, if it is a call that passes one."""
    keywords = node.keywords if isinstance(node, ast.Call) else []
    filters = [keyword.value for keyword in keywords if keyword.arg == "partialFilterExpression"]
    return [inner.value for expression in filters for inner in ast.walk(expression) if is_operator(inner)]


def used(names_in) -> dict[str, set[str]]:
    """The names `names_in` finds, and the files they are in."""
    found: dict[str, set[str]] = {}
    for node, where in nodes():
        for name in names_in(node):
            found.setdefault(name, set()).add(where)
    return found


def unlisted(found: dict[str, set[str]], accepted) -> str:
    return "; ".join(f"{name} in {', '.join(sorted(found[name]))}" for name in sorted(found) if not accepted(name))


def test_every_operator_is_listed():
    entries = set().union(*blocks().values())
    listed = {entry.split(":")[-1] for entry in entries}
    assert not FIELD_PATHS & listed, f"FIELD_PATHS holds an operator: {FIELD_PATHS & listed}"
    found = used(operators)
    assert {"$inc", "$expr", "$filter", "$lookup"} <= found.keys(), "the scan found too little"
    missing = unlisted(found, lambda name: name in listed)
    assert not missing, (f"not in {LISTED.relative_to(ROOT)}: {missing}. Look each up on the page that file "
                         "cites and list it (under `# not supported` if DocumentDB 5.0 lacks it), "
                         "or, if it is a one-word field path, add it to FIELD_PATHS")


def test_every_stage_and_partial_filter_operator_is_listed_in_its_role():
    named = blocks()
    for role, block, names_in in (("stage", STAGES, stages), ("partial-filter", PARTIAL, partial_filter)):
        found = used(names_in)
        assert found, f"no {role} found: the scan is broken"
        missing = unlisted(found, lambda name: name in named[block] or f"{role}:{name}" in named[GAPS])
        assert not missing, (f"used as {role} but not in the `# {block}` block of {LISTED.relative_to(ROOT)}, "
                             f"nor as `{role}:<name>` under `# {GAPS}`: {missing}")
