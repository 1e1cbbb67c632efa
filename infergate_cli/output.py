"""Tables for people (the API's JSON goes out as it is with --json)."""

from __future__ import annotations

from collections.abc import Sequence


def table(kind: str, reply) -> str:
    return {
        "users": lambda: _users(reply),
        "user": lambda: _user(reply),
        "revoked": lambda: f"revoked {reply['key_id']}",
        "usage": lambda: _usage(reply),
        "audit": lambda: _audit(reply),
        "servers": lambda: _servers(reply),
        "teams": lambda: _rows(("TEAM", "NAME", "QUOTA", "BUDGET", "MODELS"), [
            (t["team_id"], t["name"], t["monthly_token_quota"], _money_or_none(t["monthly_budget_micros"]),
             ",".join(t["allowed_models"] or []) or None) for t in reply["data"]])
        + (f"\nmore: --cursor {reply['next_cursor']}" if reply["next_cursor"] else ""),
        "team": lambda: _team(reply),
        "service_account": lambda: (f"service account {reply['user_id']} ({reply['name']}) of {reply['team_id']}\n"
                                    f"key {reply['key_id']}: {reply['api_key']}\n(shown once: keep it now)"),
        "prices": lambda: _rows(("MODEL", f"INPUT {reply['currency']}/M", f"OUTPUT {reply['currency']}/M"), [
            (model, _money(price["input_per_million_micros"]), _money(price["output_per_million_micros"]))
            for model, price in sorted(reply["prices"].items())]),
        "admin_key": lambda: _admin_key(reply),
        "admin_keys": lambda: _rows(("KEY", "NAME", "ROLE", "STATUS", "CREATED"), [
            (k["key_id"], k["name"], k["role"], k["status"], k["created_at"][:19]) for k in reply["data"]]),
    }[kind]()


def _rows(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(value) if value is not None else "-" for value in row] for row in [header, *rows]]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]
    return "\n".join("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def _users(page) -> str:
    text = _rows(("USER", "EMAIL", "PLAN", "STATUS", "CREATED"),
                 [(u["user_id"], u["email"], u["plan"], u["status"], u["created_at"][:19]) for u in page["data"]])
    return text + (f"\nmore: --cursor {page['next_cursor']}" if page["next_cursor"] else "")


def _user(user) -> str:
    lines = [f"user      {user['user_id']}", f"email     {user['email'] or '-'}", f"plan      {user['plan']}",
             f"status    {user['status']}"]
    if user["overrides"]:
        lines.append("overrides " + ", ".join(f"{name}={value}" for name, value in user["overrides"].items()))
    if user["grants"]:
        lines.append("grants    " + ", ".join(f"{period}: {tokens}" for period, tokens in user["grants"].items()))
    if "usage" in user:
        usage = user["usage"]
        lines.append(f"usage     {usage['tokens_used']} of {usage['token_quota']} tokens in {usage['period']}, "
                     f"{usage['requests']} requests")
        lines += ["", _rows(("KEY", "NAME", "PREFIX", "STATUS", "LAST USED"),
                            [(k["key_id"], k["name"], k["prefix"], k["status"], (k["last_used_at"] or "")[:19] or None)
                             for k in user["keys"]])]
    return "\n".join(lines)


def _usage(summary) -> str:
    head = (f"{summary['period']}: {summary['tokens_used']} tokens, {summary['requests']} requests, "
            f"{summary['users']} users, {_money(summary['cost_micros'])} {summary['currency']}")
    return head + "\n\n" + _rows(("USER", "TOKENS", "REQUESTS", f"COST {summary['currency']}"),
                                 [(t["user_id"], t["tokens"], t["requests"], _money(t["cost_micros"]))
                                  for t in summary["top"]])


def _team(team) -> str:
    lines = [f"team      {team['team_id']}", f"name      {team['name']}",
             f"quota     {team['monthly_token_quota'] if team['monthly_token_quota'] is not None else '-'} tokens",
             f"budget    {_money_or_none(team['monthly_budget_micros']) or '-'}",
             f"models    {','.join(team['allowed_models'] or []) or 'any'}"]
    if "usage" in team:
        usage = team["usage"]
        lines.append(f"usage     {usage['tokens_used']} tokens, {_money(usage['cost_micros'])} {team['currency']}, "
                     f"{usage['requests']} requests; held {usage['tokens_reserved']} tokens")
        lines += ["", _rows(("MEMBER", "EMAIL OR NAME", "KIND"),
                            [(m["user_id"], m["email"] or m["name"], m["kind"]) for m in team["members"]])]
    return "\n".join(lines)


def _money_or_none(micros: int | None) -> str | None:
    return None if micros is None else _money(micros)


def _money(micros: int) -> str:
    """Micros as the currency's units, every digit kept: 1234567 is 1.234567."""
    whole, part = divmod(micros, 1_000_000)
    return f"{whole}.{part:06d}"


def _audit(page) -> str:
    text = _rows(("AT", "ACTOR", "ACTION", "SUBJECT"),
                 [(e["at"][:19], e["actor"], e["action"], f"{e['subject']['type']} {e['subject']['id']}")
                  for e in page["data"]])
    return text + (f"\nmore: --cursor {page['next_cursor']}" if page["next_cursor"] else "")


def _servers(listing) -> str:
    return _rows(("SERVER", "KIND", "HEALTHY", "BREAKER", "IN FLIGHT", "SLOTS", "LAST MINUTE", "FAILED", "P50 MS",
                  "MODELS (* LOADED)"),
                 [(s["name"], s["kind"], "yes" if s["healthy"] else "no", s["breaker"], s["in_flight"], s["slots"],
                   s["requests_last_minute"], s["failures_last_minute"], s["p50_ms"],
                   " ".join(m + ("*" if m in s["loaded"] else "") for m in s["models"])) for s in listing["data"]])


def _admin_key(key) -> str:
    if "api_key" not in key:  # revoked
        return f"admin key {key['key_id']} ({key['role']}) for {key['name']}: {key['status']}"
    return (f"admin key {key['key_id']} ({key['role']}) for {key['name']}:\n\n  {key['api_key']}\n\n"
            "It is shown once; InferGate keeps only its hash.")
