"""What one million requests cost on AWS for a request mix and a generation length: API Gateway,
Lambda and the stores, from template.yaml's settings and the published prices in bench/prices.json
(us-east-1, first tier, no free tier).

Of a million requests, a share are chats (--mix); the rest are short calls on protected routes of
another function (usage and keys calls, at UsageFunction's settings).
  - API Gateway: every request is one REST API call.
  - Lambda, each function: its invocations at the request price, plus its GB-seconds (memory in GB,
    1024 MB to the GB, times the duration rounded up to the millisecond) at its architecture's
    price. A streamed chat holds the chat function while the model generates: it lasts --seconds
    plus the function's own --overhead. Every request is authorized first, but for those API
    Gateway answers from the authorizer's cache: none while its TTL (Identity.ReauthorizeEvery)
    is 0, as today; otherwise the share --auth-cache-hits, an assumption (it depends on how often
    each key calls within the TTL).
  - The stores bill by the month: ElastiCache Serverless for Valkey holding --redis-gb, and a
    MongoDB Atlas M10 cluster, shown a month and per million at --requests-per-month. Valkey's
    ECPUs are per request: a chat's three script calls, another request's one, at least an ECPU
    each (a lower bound: scripts may take more).
Left out: free tiers, tiers past the first, data transfer out, CloudWatch, X-Ray, and Lambda's
charge for streamed bytes past 6 MB a response (a chat's answer is kilobytes).
Memory and architecture are the template's (Globals.Function, overridden per function; a `!Ref`,
its parameter's Default), beside an alternative the options give (--chat-memory, --authorizer-memory,
--other-memory, --architecture for every function, --auth-ttl).

    .venv/bin/python bench/cost.py [--seconds 20] [--mix 90:10] [--chat-memory 208 --architecture arm64]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
PRICES = ROOT / "bench" / "prices.json"

MILLION = Decimal(1_000_000)
AUTHORIZER, CHAT, OTHER = "AuthorizerFunction", "ChatFunction", "UsageFunction"
# Lambda's own defaults, where neither the function nor Globals.Function names a value.
DEFAULT_MEMORY, DEFAULT_ARCHITECTURE = 128, "x86_64"
# With no ReauthorizeEvery, SAM sets no TTL and API Gateway keeps an authorizer's answer 300 s.
API_GATEWAY_DEFAULT_TTL = 300
# Redis script calls on the wire (docs/performance.md, make bench: EVALSHA 3.00 a chat: admit, conclude and the
# shared metrics, which every other request feeds too).
ECPUS_PER_CHAT, ECPUS_PER_OTHER = 3, 1
# ElastiCache Serverless for Valkey meters at least 100 MB a cache (AWS's pricing page).
VALKEY_MINIMUM_GB = Decimal("0.1")
HOURS_PER_MONTH = Decimal(730)  # as AWS's and MongoDB's monthly figures count them


@dataclass(frozen=True)
class Function:
    name: str
    memory: int  # MB
    architecture: str  # x86_64 or arm64


@dataclass(frozen=True)
class Setup:
    """The functions a request may invoke, and how long API Gateway caches the authorizer's answer."""

    authorizer: Function
    chat: Function
    other: Function
    auth_ttl: int  # seconds; 0: every request is authorized afresh

    @property
    def functions(self) -> tuple[Function, Function, Function]:
        return self.authorizer, self.chat, self.other


@dataclass(frozen=True)
class Workload:
    chat_share: Decimal  # of all requests; the rest are other requests
    chat_seconds: Decimal  # generation plus overhead
    other_seconds: Decimal
    authorizer_seconds: Decimal
    cache_hits: Decimal  # share of requests answered from the authorizer's cache, when it has a TTL


def read_template(path: Path = TEMPLATE) -> tuple[dict[str, Function], int]:
    """Every function's memory and architecture, and the default authorizer's TTL."""
    document = yaml_parse(path.read_text())
    defaults = {name: spec.get("Default") for name, spec in (document.get("Parameters") or {}).items()}
    function_globals = (document.get("Globals") or {}).get("Function") or {}
    functions = {}
    for name, resource in document["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            props = {**function_globals, **(resource.get("Properties") or {})}
            functions[name] = Function(name, int(_resolve(props.get("MemorySize", DEFAULT_MEMORY), defaults)),
                                       _architecture(props.get("Architectures", [DEFAULT_ARCHITECTURE]), defaults))
    return functions, _authorizer_ttl(document, defaults)


def _resolve(value: Any, defaults: dict[str, Any]) -> Any:
    """A value as written, or the Default of the parameter a `!Ref` names."""
    if not isinstance(value, dict):
        return value
    if set(value) != {"Ref"} or value["Ref"] not in defaults:
        raise ValueError(f"cannot read {value!r}: only plain values and !Ref to a parameter are understood")
    return defaults[value["Ref"]]


def _architecture(value: Any, defaults: dict[str, Any]) -> str:
    # A list of one, written out or a parameter's (a CommaDelimitedList's Default is a string).
    value = _resolve(value, defaults)
    first = value.split(",")[0] if isinstance(value, str) else _resolve(value[0], defaults)
    return str(first).strip()


def _authorizer_ttl(document: dict, defaults: dict[str, Any]) -> int:
    for resource in document["Resources"].values():
        auth = (resource.get("Properties") or {}).get("Auth") or {}
        if resource["Type"] == "AWS::Serverless::Api" and auth.get("DefaultAuthorizer"):
            identity = auth["Authorizers"][auth["DefaultAuthorizer"]].get("Identity") or {}
            return int(_resolve(identity.get("ReauthorizeEvery", API_GATEWAY_DEFAULT_TTL), defaults))
    return 0  # no authorizer, no cache


def load_prices(path: Path = PRICES) -> tuple[dict[str, Decimal], str]:
    """Each price by name, exact, and the dates they were read."""
    entries = json.loads(path.read_text(), parse_float=Decimal)["prices"]
    return {name: Decimal(entry["usd"]) for name, entry in entries.items()}, ", ".join(
        sorted({entry["read"] for entry in entries.values()}))


def billed(seconds: Decimal) -> Decimal:
    """Lambda bills a duration rounded up to the millisecond."""
    return (seconds * 1000).to_integral_value(rounding=ROUND_CEILING) / 1000


def lambda_line(function: Function, invocations: Decimal, seconds: Decimal,
                prices: dict[str, Decimal]) -> tuple[Decimal, Decimal]:
    """(GB-seconds, dollars) of `invocations` of `function` lasting `seconds` each."""
    gb_seconds = invocations * Decimal(function.memory) / 1024 * billed(seconds)
    dollars = (invocations / MILLION * prices[f"lambda_requests_{function.architecture}"]
               + gb_seconds * prices[f"lambda_gb_second_{function.architecture}"])
    return gb_seconds, dollars


def per_million(setup: Setup, workload: Workload, prices: dict[str, Decimal]) -> dict[str, tuple[Decimal, Decimal]]:
    """(GB-seconds, dollars) of each line for a million requests; API Gateway has no GB-seconds."""
    chats = MILLION * workload.chat_share
    # Chats and the other calls are all on protected routes.
    authorizations = MILLION * (1 - workload.cache_hits) if setup.auth_ttl else MILLION
    return {
        setup.authorizer.name: lambda_line(setup.authorizer, authorizations, workload.authorizer_seconds, prices),
        setup.chat.name: lambda_line(setup.chat, chats, workload.chat_seconds, prices),
        setup.other.name: lambda_line(setup.other, MILLION - chats, workload.other_seconds, prices),
        "API Gateway (REST)": (Decimal(0), prices["api_gateway_rest_requests"]),
    }


def stores(workload: Workload, prices: dict[str, Decimal], redis_gb: Decimal,
           requests_per_month: Decimal) -> list[tuple[str, Decimal, Decimal]]:
    """(line, dollars a month, dollars per million requests) of each store."""
    millions = requests_per_month / MILLION
    valkey = max(redis_gb, VALKEY_MINIMUM_GB) * prices["elasticache_serverless_valkey_gb_hour"] * HOURS_PER_MONTH
    ecpus_per_request = workload.chat_share * ECPUS_PER_CHAT + (1 - workload.chat_share) * ECPUS_PER_OTHER
    ecpus = ecpus_per_request * prices["elasticache_serverless_valkey_million_ecpus"]  # a million requests'
    atlas = prices["mongodb_atlas_m10_hour"] * HOURS_PER_MONTH
    return [
        (f"ElastiCache Serverless for Valkey, {redis_gb} GB stored"
         + (f" (metered as {VALKEY_MINIMUM_GB})" if redis_gb < VALKEY_MINIMUM_GB else ""), valkey, valkey / millions),
        (f"ElastiCache ECPUs, {ecpus_per_request} a request", ecpus * millions, ecpus),
        ("MongoDB Atlas M10 (three-node replica set on AWS)", atlas, atlas / millions),
    ]


# A line of the table: its name, then memory, architecture, GB-seconds and dollars for today and the alternative.
ROW = "{:<28} {:>7} {:<7} {:>15} {:>10}   {:>7} {:<7} {:>15} {:>10}   {:>9}"


def _row(name: str, today: tuple, alternative: tuple) -> str:
    """`today` and `alternative`: (Function or None, GB-seconds or None, dollars)."""
    cells = []
    for function, gb_seconds, dollars in (today, alternative):
        cells += [f"{function.memory} MB" if function else "", function.architecture if function else "",
                  "" if gb_seconds is None else f"{gb_seconds:,.2f}", f"{dollars:,.2f}"]
    return ROW.format(name, *cells, f"{alternative[2] / today[2]:.2f}x" if today[2] else "-")


def table(today: Setup, alternative: Setup, workload: Workload, prices: dict[str, Decimal],
          stores_per_million: Decimal) -> list[str]:
    """The lines per million requests, today's beside the alternative's, and the totals."""
    now, then = per_million(today, workload, prices), per_million(alternative, workload, prices)
    functions = {f.name: (f, g) for f, g in zip(today.functions, alternative.functions)}
    lines = [f"{'':<28} {'today':<45}   {'alternative':<45}",
             ROW.format("", "memory", "arch", "GB-s/million", "$/million", "memory", "arch", "GB-s/million",
                        "$/million", "alt/today")]
    for name in now:
        function, changed = functions.get(name, (None, None))
        lines.append(_row(name, (function, now[name][0] if function else None, now[name][1]),
                          (changed, then[name][0] if changed else None, then[name][1])))
    lines.append(_row("Stores (below)", (None, None, stores_per_million), (None, None, stores_per_million)))
    totals = [sum(dollars for _, dollars in line.values()) + stores_per_million for line in (now, then)]
    lines.append(_row("Total per million requests", (None, None, totals[0]), (None, None, totals[1])))
    return lines


def report(today: Setup, alternative: Setup, workload: Workload, prices: dict[str, Decimal], read: str,
           args: argparse.Namespace) -> str:
    cached = [f"TTL {s.auth_ttl} s, {workload.cache_hits if s.auth_ttl else 0:.0%} of requests answered from it"
              for s in (today, alternative)]
    store_lines = stores(workload, prices, args.redis_gb, args.requests_per_month)
    stores_per_million = sum(per for _, _, per in store_lines)
    head = [f"What one million requests cost on AWS: us-east-1, first-tier prices read {read} (bench/prices.json)",
            (f"Mix: {workload.chat_share:.0%} chats, each holding {CHAT} {workload.chat_seconds} s "
             f"({args.seconds} s generating + {args.overhead} s of its own);"),
            (f"     {1 - workload.chat_share:.0%} other requests ({OTHER}, {workload.other_seconds} s each); "
             f"the authorizer {workload.authorizer_seconds} s a call"),
            f"Authorizer cache: today {cached[0]}; alternative {cached[1]}", ""]
    tail = ["", (f"{'Stores, at a stated size (the same in both columns)':<62} {'$ a month':>10}   "
                 f"$ per million at {args.requests_per_month:,.0f} requests a month")]
    tail += [f"  {name:<60} {monthly:>10,.2f}   {per:>10,.2f}" for name, monthly, per in store_lines]
    lines = head + table(today, alternative, workload, prices, stores_per_million) + tail
    return "\n".join(line.rstrip() for line in lines)


def _between(low: str, high: str | None = None) -> Callable[[str], Decimal]:
    """An argparse type: a number from `low` to `high` (argparse shows ArgumentTypeError as a usage error)."""
    def parse(text: str) -> Decimal:
        try:
            value = Decimal(text)
        except InvalidOperation:  # not a ValueError: argparse would let it out as a traceback
            value = Decimal("NaN")
        if not value.is_finite() or value < Decimal(low) or (high is not None and value > Decimal(high)):
            raise argparse.ArgumentTypeError(f"expected a number from {low} to {high or 'any'}: {text!r}")
        return value
    return parse


def _share_of_chats(text: str) -> Decimal:
    """`chats:others`, in any units (90:10, 9:1): the chats' share."""
    parts = text.split(":")
    chats, others = (_between("0")(part) for part in parts) if len(parts) == 2 else (Decimal(0), Decimal(0))
    if chats + others == 0:
        raise argparse.ArgumentTypeError(f"expected chats:others, such as 90:10, not both 0: {text!r}")
    return chats / (chats + others)


def _memory(text: str) -> int:
    if not text.isdigit() or not 128 <= int(text) <= 10240:
        raise argparse.ArgumentTypeError(f"Lambda's memory is 128 to 10240 MB: {text!r}")
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    number, share = _between("0"), _between("0", "1")
    workload = parser.add_argument_group("the workload (the same for both columns)")
    workload.add_argument("--seconds", type=number, default=Decimal(20), help="a chat's generation time (20)")
    workload.add_argument("--overhead", type=number, default=Decimal("0.05"), help="the chat function's own (0.05)")
    workload.add_argument("--authorizer-seconds", type=number, default=Decimal("0.01"), help="(0.01)")
    workload.add_argument("--other-seconds", type=number, default=Decimal("0.05"), help="another request's (0.05)")
    workload.add_argument("--mix", type=_share_of_chats, default="100:0", help="chats:other requests (100:0)")
    workload.add_argument("--auth-cache-hits", type=share, default=Decimal("0.9"),
                          help="share of requests answered from the authorizer's cache while its TTL is not 0 (0.9)")
    workload.add_argument("--requests-per-month", type=_between("1"), default=Decimal(10_000_000), help="(10 million)")
    workload.add_argument("--redis-gb", type=number, default=Decimal(1), help="data in Valkey (1 GB)")
    alternative = parser.add_argument_group("the alternative (each unset is today's)")
    alternative.add_argument("--chat-memory", type=_memory, help="MB")
    alternative.add_argument("--authorizer-memory", type=_memory, help="MB")
    alternative.add_argument("--other-memory", type=_memory, help=f"MB ({OTHER}'s)")
    alternative.add_argument("--architecture", choices=["x86_64", "arm64"], help="every function's")
    alternative.add_argument("--auth-ttl", type=int, help="seconds API Gateway caches the authorizer's answer")
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument("--prices", type=Path, default=PRICES)
    return parser.parse_args(argv)


def alternative_of(today: Setup, args: argparse.Namespace) -> Setup:
    def changed(function: Function, memory: int | None) -> Function:
        return replace(function, memory=memory or function.memory,
                       architecture=args.architecture or function.architecture)

    return Setup(changed(today.authorizer, args.authorizer_memory), changed(today.chat, args.chat_memory),
                 changed(today.other, args.other_memory), today.auth_ttl if args.auth_ttl is None else args.auth_ttl)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    functions, ttl = read_template(args.template)
    today = Setup(functions[AUTHORIZER], functions[CHAT], functions[OTHER], ttl)
    prices, read = load_prices(args.prices)
    workload = Workload(args.mix, args.seconds + args.overhead, args.other_seconds, args.authorizer_seconds,
                        args.auth_cache_hits)
    print(report(today, alternative_of(today, args), workload, prices, read, args))


if __name__ == "__main__":
    main()
