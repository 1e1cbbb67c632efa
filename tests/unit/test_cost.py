"""bench/cost.py: the arithmetic of a million requests, against figures worked out by hand from a fixed
price list and fixed settings (not the live files); then that the real prices.json says where and when
each price was read, and that every function's memory and architecture come from the template."""

from __future__ import annotations

import argparse
import json
from decimal import Decimal
from pathlib import Path

import pytest
from bench import cost
from samtranslator.yaml_helper import yaml_parse

D = Decimal
PRICES = {
    "lambda_requests_x86_64": D("0.20"),
    "lambda_requests_arm64": D("0.20"),
    "lambda_gb_second_x86_64": D("0.0000166667"),
    "lambda_gb_second_arm64": D("0.0000133334"),
    "api_gateway_rest_requests": D("3.50"),
    "elasticache_serverless_valkey_gb_hour": D("0.084"),
    "elasticache_serverless_valkey_million_ecpus": D("0.0023"),
    "mongodb_atlas_m10_hour": D("0.08"),
}
TODAY = cost.Setup(
    authorizer=cost.Function("AuthorizerFunction", 512, "x86_64"),
    chat=cost.Function("ChatFunction", 512, "x86_64"),
    other=cost.Function("UsageFunction", 512, "x86_64"),
    auth_ttl=0,
)
# 90 % chats of 20 s + 0.05 s, 10 % other calls of 0.05 s, the authorizer 0.01 s.
WORKLOAD = cost.Workload(chat_share=D("0.9"), chat_seconds=D("20.05"), other_seconds=D("0.05"),
                         authorizer_seconds=D("0.01"), cache_hits=D("0.9"))


def test_duration_is_billed_rounded_up_to_the_millisecond():
    assert cost.billed(D("20.05")) == D("20.05")
    assert cost.billed(D("0.0101")) == D("0.011")
    assert cost.billed(D("0.0005")) == D("0.001")


def test_a_million_requests_with_todays_settings():
    lines = cost.per_million(TODAY, WORKLOAD, PRICES)
    # TTL 0: every one of the million requests is authorized; 1e6 x 0.5 GB x 0.01 s.
    assert lines["AuthorizerFunction"] == (D(5000), D("0.20") + D(5000) * D("0.0000166667"))
    # 900,000 chats x 0.5 GB x 20.05 s.
    assert lines["ChatFunction"] == (D(9022500), D("0.18") + D(9022500) * D("0.0000166667"))
    # 100,000 other calls x 0.5 GB x 0.05 s.
    assert lines["UsageFunction"] == (D(2500), D("0.02") + D(2500) * D("0.0000166667"))
    assert lines["API Gateway (REST)"] == (D(0), D("3.50"))
    # 0.2833335 + 150.55530075 + 0.06166675 + 3.50
    assert sum(dollars for _, dollars in lines.values()) == D("154.400301")


def test_a_smaller_arm64_chat_function_and_a_cached_authorizer():
    alternative = cost.Setup(
        authorizer=cost.Function("AuthorizerFunction", 128, "arm64"),
        chat=cost.Function("ChatFunction", 208, "arm64"),
        other=cost.Function("UsageFunction", 512, "arm64"),
        auth_ttl=300,
    )
    lines = cost.per_million(alternative, WORKLOAD, PRICES)
    # 90 % answered from the cache: 100,000 invocations x 0.125 GB x 0.01 s.
    assert lines["AuthorizerFunction"] == (D(125), D("0.02") + D(125) * D("0.0000133334"))
    # 900,000 x 208/1024 GB (0.203125) x 20.05 s.
    assert lines["ChatFunction"] == (D("3665390.625"), D("0.18") + D("3665390.625") * D("0.0000133334"))
    assert lines["UsageFunction"] == (D(2500), D("0.02") + D(2500) * D("0.0000133334"))


def test_the_cache_hit_share_counts_only_while_the_authorizer_has_a_ttl():
    lines = cost.per_million(TODAY, cost.Workload(D(1), D(1), D(1), D("0.01"), cache_hits=D("0.5")), PRICES)
    assert lines["AuthorizerFunction"][0] == D(5000)


def test_the_stores_a_month_and_per_million_requests():
    monthly = cost.stores(WORKLOAD, PRICES, redis_gb=D(1), requests_per_month=10_000_000)
    valkey, ecpus, atlas = ((month, per) for _, month, per in monthly)
    assert valkey == (D("61.320"), D("6.1320"))  # 1 GB x $0.084 x 730 h, over 10 million requests
    # 0.9 x 3 + 0.1 x 1 = 2.8 ECPUs a request: 2.8 million ECPUs a million requests.
    assert ecpus == (D("2.8") * D("0.0023") * 10, D("2.8") * D("0.0023"))
    assert atlas == (D("58.40"), D("5.840"))


def test_valkey_is_metered_for_a_tenth_of_a_gb_at_least():
    [(_, month, _), *_] = cost.stores(WORKLOAD, PRICES, redis_gb=D("0.01"), requests_per_month=1_000_000)
    assert month == D("0.1") * D("0.084") * 730


def test_the_table_shows_both_columns_and_their_ratio():
    alternative = cost.Setup(TODAY.authorizer, cost.Function("ChatFunction", 256, "x86_64"), TODAY.other, 0)
    lines = cost.table(TODAY, alternative, WORKLOAD, PRICES, stores_per_million=D(0))
    chat = next(line for line in lines if line.startswith("ChatFunction"))
    assert chat.split() == ["ChatFunction", "512", "MB", "x86_64", "9,022,500.00", "150.56",
                            "256", "MB", "x86_64", "4,511,250.00", "75.37", "0.50x"]


def test_the_mix_is_the_share_of_chats():
    assert cost._share_of_chats("90:10") == D("0.9")
    assert cost._share_of_chats("1:3") == D("0.25")
    with pytest.raises(argparse.ArgumentTypeError):
        cost._share_of_chats("0:0")


def test_every_price_in_prices_json_says_where_and_when_it_was_read():
    prices = json.loads(cost.PRICES.read_text())["prices"]
    assert set(PRICES) <= set(prices)
    for name, entry in prices.items():
        assert D(str(entry["usd"])) > 0, name
        assert entry["source"].startswith("https://"), name
        assert entry["seen_at"].startswith("https://"), name
        assert len(entry["read"]) == 10 and entry["read"][4] == entry["read"][7] == "-", name
        assert isinstance(entry["confirmed"], bool), name
        assert entry["confirmed"] or entry["note"], name
    assert cost.load_prices()[0] == {name: D(str(entry["usd"])) for name, entry in prices.items()}


def test_memory_and_architecture_come_from_globals_unless_a_function_or_a_parameter_says_otherwise(tmp_path: Path):
    template = tmp_path / "template.yaml"
    template.write_text("""
Parameters:
  ChatMemory: {Type: Number, Default: 1024}
  Arch: {Type: String, Default: arm64}
  Archs: {Type: CommaDelimitedList, Default: x86_64}
Globals:
  Function: {MemorySize: 512, Architectures: [!Ref Arch]}
Resources:
  Plain: {Type: AWS::Serverless::Function, Properties: {Handler: a.b}}
  Own: {Type: AWS::Serverless::Function, Properties: {MemorySize: 256, Architectures: [x86_64]}}
  Referred: {Type: AWS::Serverless::Function, Properties: {MemorySize: !Ref ChatMemory, Architectures: !Ref Archs}}
  Bucket: {Type: AWS::S3::Bucket}
""")
    functions, ttl = cost.read_template(template)
    assert functions == {
        "Plain": cost.Function("Plain", 512, "arm64"),
        "Own": cost.Function("Own", 256, "x86_64"),
        "Referred": cost.Function("Referred", 1024, "x86_64"),
    }
    assert ttl == 0  # no API, no authorizer


def test_without_globals_a_function_has_lambdas_defaults(tmp_path: Path):
    template = tmp_path / "template.yaml"
    template.write_text("Resources:\n  Bare: {Type: AWS::Serverless::Function, Properties: {Handler: a.b}}\n")
    assert cost.read_template(template)[0] == {"Bare": cost.Function("Bare", 128, "x86_64")}


def test_the_real_template_every_function_and_the_authorizers_ttl():
    document = yaml_parse(cost.TEMPLATE.read_text())

    def value(written):  # the test's own reading: a !Ref is its parameter's Default
        return document["Parameters"][written["Ref"]]["Default"] if isinstance(written, dict) else written

    function_globals = document["Globals"]["Function"]
    names = {name for name, r in document["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    functions, ttl = cost.read_template()
    assert set(functions) == names and {cost.AUTHORIZER, cost.CHAT, cost.OTHER} <= names
    for name, function in functions.items():
        props = {**function_globals, **document["Resources"][name]["Properties"]}
        assert function.memory == int(value(props.get("MemorySize", 128))), name
        architectures = value(props.get("Architectures", ["x86_64"]))
        if isinstance(architectures, str):  # a CommaDelimitedList parameter's Default
            architectures = architectures.split(",")
        assert [function.architecture] == [value(a) for a in architectures], name
    api = next(r["Properties"] for r in document["Resources"].values() if r["Type"] == "AWS::Serverless::Api")
    identity = api["Auth"]["Authorizers"][api["Auth"]["DefaultAuthorizer"]].get("Identity", {})
    assert ttl == int(value(identity.get("ReauthorizeEvery", 300)))


def test_the_tool_runs_with_the_real_files(capsys):
    cost.main(["--chat-memory", "208", "--architecture", "arm64"])
    out = capsys.readouterr().out
    assert "Total per million requests" in out and "208 MB arm64" in out
