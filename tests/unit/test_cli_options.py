"""The command line's common options (--url, --key, --json) work before the command or after it,
as people type them; one given after the command wins over one before it and over the environment."""

from __future__ import annotations

import pytest
from infergate_cli.__main__ import parser


@pytest.mark.parametrize("argv", [
    ["--json", "--url", "http://gw", "--key", "iga_x", "users", "list", "--limit", "5"],
    ["users", "list", "--limit", "5", "--json", "--url", "http://gw", "--key", "iga_x"],
    ["users", "--json", "list", "--url", "http://gw", "--limit", "5", "--key", "iga_x"],
    ["--url", "http://gw", "users", "list", "--json", "--key", "iga_x", "--limit", "5"],
])
def test_the_common_options_go_anywhere(argv):
    arguments = parser().parse_args(argv)
    assert (arguments.url, arguments.key, arguments.json, arguments.limit) == ("http://gw", "iga_x", True, 5)


def test_an_option_after_the_command_wins_and_the_environment_is_the_default(monkeypatch):
    monkeypatch.setenv("INFERGATE_URL", "http://from-env")
    assert parser().parse_args(["servers"]).url == "http://from-env"
    assert parser().parse_args(["servers"]).json is False
    assert parser().parse_args(["--url", "http://before", "audit", "--url", "http://after"]).url == "http://after"
    assert parser().parse_args(["--url", "http://before", "keys", "revoke", "key_1"]).url == "http://before"
