"""infergate [--url URL] [--key KEY] [--json] COMMAND ...   (the options also go after the command)

  users list [--email E] [--plan P] [--limit N] [--cursor C]
  users show USER_ID
  users set-plan USER_ID PLAN
  users suspend USER_ID | users reactivate USER_ID
  users grant USER_ID TOKENS
  keys revoke KEY_ID
  teams list | teams show TEAM_ID | teams add-member TEAM_ID USER_ID | teams remove-member TEAM_ID USER_ID
  teams add-service-account TEAM_ID --name N
  teams create --name N [--quota T] [--budget-micros M] [--models a,b] [--model-quotas a=T,b=T]
  teams set TEAM_ID [--name N] [--quota T|none] [--budget-micros M|none] [--models a,b|none]
  usage top [--period YYYY-MM] [--top N]
  usage export --by team|user|key|model [--month YYYY-MM | --start YYYY-MM-DD --end YYYY-MM-DD]
                                                               CSV, e.g. > december.csv
  servers
  prices
  audit [--limit N] [--cursor C] [--actor A] [--subject ID] [--action NAME]
  admin-keys list | admin-keys create --name NAME [--role admin|viewer] | admin-keys revoke KEY_ID
  admin-key create --name NAME [--role admin|viewer]     straight to MongoDB: the first key

The admin API's base URL and key come from --url/--key or INFERGATE_URL and
INFERGATE_ADMIN_KEY. Exit codes: 0 done; 1 refused (bad input, a conflict);
2 bad arguments; 3 not found; 4 not allowed (no key, a wrong key, a viewer's
key for a change); 5 the gateway failed or could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from infergate_cli import output
from infergate_cli.client import AdminApi, ApiError

EXIT_REFUSED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_NOT_ALLOWED, EXIT_FAILED = 1, 2, 3, 4, 5


def _common(*, defaults: bool) -> argparse.ArgumentParser:
    """--url, --key and --json, which go before the command or after it, as people type them.
    Only the root has their defaults: a command's copy sets them only when they are given there."""
    common = argparse.ArgumentParser(add_help=False)
    default = (lambda value: value) if defaults else (lambda value: argparse.SUPPRESS)
    common.add_argument("--url", default=default(os.environ.get("INFERGATE_URL")),
                        help="the gateway's base URL (INFERGATE_URL)")
    common.add_argument("--key", default=default(os.environ.get("INFERGATE_ADMIN_KEY")),
                        help="an admin key (INFERGATE_ADMIN_KEY)")
    common.add_argument("--json", action="store_true", default=default(False), help="print the API's JSON, for scripts")
    return common


class _Commands:
    """A command's subcommands, each taking the common options too."""

    def __init__(self, parser: argparse.ArgumentParser, dest: str) -> None:
        self._subparsers, self._common = parser.add_subparsers(dest=dest, required=True), _common(defaults=False)

    def add_parser(self, name: str, **options) -> argparse.ArgumentParser:
        return self._subparsers.add_parser(name, parents=[self._common], **options)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="infergate", description="Operate an InferGate gateway.",
                                   parents=[_common(defaults=True)])
    topics = _Commands(root, "topic")

    users = topics.add_parser("users", help="users: list, show, set-plan, suspend, reactivate, grant")
    user_commands = _Commands(users, "command")
    listing = user_commands.add_parser("list", help="list or search users")
    listing.add_argument("--email", help="emails starting with this")
    listing.add_argument("--plan")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--cursor", help="the next page, from the previous page's next_cursor")
    user_commands.add_parser("show", help="one user, with keys and this month's usage").add_argument("user_id")
    set_plan = user_commands.add_parser("set-plan", help="move a user to another plan")
    set_plan.add_argument("user_id")
    set_plan.add_argument("plan")
    user_commands.add_parser("suspend", help="refuse every key of a user").add_argument("user_id")
    user_commands.add_parser("reactivate", help="undo a suspension").add_argument("user_id")
    grant = user_commands.add_parser("grant", help="extra tokens for this month")
    grant.add_argument("user_id")
    grant.add_argument("tokens", type=int)

    keys = topics.add_parser("keys", help="keys: revoke")
    _Commands(keys, "command").add_parser("revoke", help="revoke any key").add_argument("key_id")

    _team_commands(topics)

    usage = _Commands(topics.add_parser("usage", help="usage across users: top, export"), "command")
    top = usage.add_parser("top", help="totals and the heaviest users")
    top.add_argument("--period", help="YYYY-MM; this month unless given")
    top.add_argument("--top", type=int, default=10)
    export = usage.add_parser("export", help="a month (or days) by team, user, key or model, as CSV on standard output")
    export.add_argument("--month", help="YYYY-MM; this month unless given, or a range of days is")
    export.add_argument("--start", help="YYYY-MM-DD: the first day of a range of days, with --end")
    export.add_argument("--end", help="YYYY-MM-DD: the range's last day, itself included")
    export.add_argument("--by", choices=["team", "user", "key", "model"], required=True)

    topics.add_parser("servers", help="the model servers: health, breaker, models, load")
    topics.add_parser("prices", help="what each model's tokens cost (MODEL_PRICES)")
    audit = topics.add_parser("audit", help="the audit log, newest first")
    audit.add_argument("--limit", type=int, default=20)
    audit.add_argument("--cursor")
    audit.add_argument("--actor", help="a part of who made the change: an operator's name or admin key id")
    audit.add_argument("--subject", help="the id of what changed: a user, a key, a team")
    audit.add_argument("--action", help="what was done, e.g. change_user, revoke_key")

    admin_keys = _Commands(topics.add_parser("admin-keys", help="admin keys: list, create, revoke (audited)"),
                           "command")
    admin_keys.add_parser("list", help="every admin key, never a secret")
    made = admin_keys.add_parser("create", help="a new admin key, shown once")
    made.add_argument("--name", required=True, help="who or what will use it; the audit log names it")
    made.add_argument("--role", choices=["admin", "viewer"], default="admin")
    admin_keys.add_parser("revoke", help="revoke an admin key everywhere within a second").add_argument("key_id")

    admin_key = topics.add_parser("admin-key", help="make an admin key, straight in MongoDB (MONGODB_URI)")
    create = _Commands(admin_key, "command").add_parser("create")
    create.add_argument("--name", required=True, help="who or what will use it; the audit log names it")
    create.add_argument("--role", choices=["admin", "viewer"], default="admin")
    return root


def _team_commands(topics: _Commands) -> None:
    teams = _Commands(topics.add_parser("teams", help="teams: list, show, create, set, add-member, remove-member"),
                      "command")
    listing = teams.add_parser("list", help="every team, a page at a time")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--cursor")
    teams.add_parser("show", help="one team: its figures, its month and its members").add_argument("team_id")
    create = teams.add_parser("create", help="a team, with a monthly token quota, budget and models if given")
    create.add_argument("--name", required=True)
    change = teams.add_parser("set", help="set a team's figures; `none` clears one")
    change.add_argument("team_id")
    change.add_argument("--name")
    for command in (create, change):
        command.add_argument("--quota", type=_figure, help="tokens a month, across its members")
        command.add_argument("--budget-micros", type=_figure, help="millionths of CURRENCY a month")
        command.add_argument("--models", type=_models, help="comma-separated: the models its members may use")
        command.add_argument("--model-quotas", type=_model_quotas,
                             help="comma-separated model=tokens: a monthly quota of each of those models")
    service = teams.add_parser("add-service-account", help="a principal of the team's with a key and no person")
    service.add_argument("team_id")
    service.add_argument("--name", required=True, help="what it is for; its key is shown once")
    for name, verb in (("add-member", "add a user to"), ("remove-member", "take a user out of")):
        member = teams.add_parser(name, help=f"{verb} a team")
        member.add_argument("team_id")
        member.add_argument("user_id")


_NONE = object()  # `none` on the command line: clear the figure


def _figure(text: str) -> object:
    return _NONE if text == "none" else int(text)


def _models(text: str) -> object:
    return _NONE if text == "none" else [name.strip() for name in text.split(",") if name.strip()]


def _model_quotas(text: str) -> object:
    if text == "none":
        return _NONE
    try:
        return {model.strip(): int(tokens) for model, tokens in (entry.rsplit("=", 1) for entry in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError("model=tokens[,model=tokens...], or none") from None


def _team_figures(arguments: argparse.Namespace) -> dict[str, object]:
    given = {"name": getattr(arguments, "name", None), "monthly_token_quota": arguments.quota,
             "monthly_budget_micros": arguments.budget_micros, "allowed_models": arguments.models,
             "model_quotas": arguments.model_quotas}
    return {name: None if value is _NONE else value for name, value in given.items() if value is not None}


def _teams(api: AdminApi, arguments: argparse.Namespace) -> tuple[str, object]:
    match arguments.command:
        case "list":
            return "teams", api.get("/admin/v1/teams", limit=arguments.limit, cursor=arguments.cursor)
        case "show":
            return "team", api.get(f"/admin/v1/teams/{arguments.team_id}")
        case "create":
            return "team", api.send("POST", "/admin/v1/teams", _team_figures(arguments))
        case "set":
            return "team", api.send("PATCH", f"/admin/v1/teams/{arguments.team_id}", _team_figures(arguments))
        case "add-service-account":
            return "service_account", api.send("POST", f"/admin/v1/teams/{arguments.team_id}/service-accounts",
                                               {"name": arguments.name})
        case "add-member":
            return "user", api.send("POST", f"/admin/v1/teams/{arguments.team_id}/members",
                                    {"user_id": arguments.user_id})
        case _:
            return "user", api.send("DELETE", f"/admin/v1/teams/{arguments.team_id}/members/{arguments.user_id}")


def run(arguments: argparse.Namespace) -> tuple[str, object]:
    """(what kind of thing came back, the API's JSON for it)."""
    if arguments.topic == "admin-key":
        from infergate_cli.bootstrap import create_admin_key

        return "admin_key", create_admin_key(arguments.name, arguments.role)
    api = AdminApi(arguments.url, arguments.key)
    match arguments.topic, getattr(arguments, "command", None):
        case "users", "list":
            return "users", api.get("/admin/v1/users", email=arguments.email, plan=arguments.plan,
                                    limit=arguments.limit, cursor=arguments.cursor)
        case "users", "show":
            return "user", api.get(f"/admin/v1/users/{arguments.user_id}")
        case "users", "set-plan":
            return "user", api.send("PATCH", f"/admin/v1/users/{arguments.user_id}", {"plan": arguments.plan})
        case "users", "suspend" | "reactivate":
            status = "suspended" if arguments.command == "suspend" else "active"
            return "user", api.send("PATCH", f"/admin/v1/users/{arguments.user_id}", {"status": status})
        case "users", "grant":
            return "user", api.send("POST", f"/admin/v1/users/{arguments.user_id}/grants", {"tokens": arguments.tokens})
        case "keys", "revoke":
            return "revoked", api.send("DELETE", f"/admin/v1/keys/{arguments.key_id}")
        case "teams", _:
            return _teams(api, arguments)
        case "usage", "export":
            return "csv", api.text("/admin/v1/usage", period=arguments.month, start=arguments.start, end=arguments.end,
                                   by=arguments.by, format="csv")
        case "usage", "top":
            return "usage", api.get("/admin/v1/usage", period=arguments.period, top=arguments.top)
        case "admin-keys", "list":
            return "admin_keys", api.get("/admin/v1/admin-keys")
        case "admin-keys", "create":
            return "admin_key", api.send("POST", "/admin/v1/admin-keys", {"name": arguments.name,
                                                                          "role": arguments.role})
        case "admin-keys", "revoke":
            return "admin_key", api.send("DELETE", f"/admin/v1/admin-keys/{arguments.key_id}")
        case "servers", _:
            return "servers", api.get("/admin/v1/servers")
        case "prices", _:
            return "prices", api.get("/admin/v1/prices")
        case "audit", _:
            return "audit", api.get("/admin/v1/audit", limit=arguments.limit, cursor=arguments.cursor,
                                    actor=arguments.actor, subject=arguments.subject, action=arguments.action)
    raise AssertionError("argparse admits no other command")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    try:
        kind, reply = run(arguments)
    except ApiError as error:
        print(f"infergate: {error.code}: {error.message}", file=sys.stderr)
        if error.code in ("no_url", "no_database"):
            return EXIT_USAGE
        if error.status == 404:
            return EXIT_NOT_FOUND
        if error.status in (401, 403):
            return EXIT_NOT_ALLOWED
        return EXIT_FAILED if error.status >= 500 or error.status == 0 else EXIT_REFUSED
    if kind == "csv":
        sys.stdout.write(str(reply))
        return 0
    print(json.dumps(reply, indent=2) if arguments.json else output.table(kind, reply))
    return 0


if __name__ == "__main__":
    sys.exit(main())
