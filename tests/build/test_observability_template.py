"""What template.yaml sets up to watch a deployed gateway: log groups with a retention, the
API's access logs, the dashboard and the alarms, and that each names metrics the gateway emits
under the names and dimensions it emits them with."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import cache
from typing import Any

import pytest
from devkit import template

from tests.support.paths import COMMON_LAYER, ROOT
from tests.support.sam import translated

TEMPLATE = ROOT / "template.yaml"
# What CloudWatch Logs accepts as a retention (RetentionInDays).
RETENTIONS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653]
ACCESS_LOG_VARIABLES = {
    "$context.requestId", "$context.extendedRequestId", "$context.identity.sourceIp", "$context.httpMethod",
    "$context.resourcePath", "$context.status", "$context.responseLatency", "$context.integrationLatency",
    "$context.authorizer.status", "$context.authorizer.latency", "$context.authorizer.error",
    "$context.error.responseType", "$context.requestTime",
    # The caller's x-request-id on protected routes, as the authorizer hands it on.
    "$context.authorizer.correlationId",
}
# The functions' own metrics the dashboard shows (namespace InferGate).
EMF_METRICS = {"TokensCharged", "RateLimited", "TooManyConcurrentRequests", "QuotaExceeded", "QuotaHeldInFlight",
               "UpstreamFailures", "CircuitBreakerOpen", "StreamsClosedByClient"}
DASHBOARD_ROUTES = {("POST", "/v1/chat"), ("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings"),
                    ("GET", "/v1/usage"), ("POST", "/v1/completions"), ("POST", "/v1/messages"), ("POST", "/v1/responses")}
PSEUDO_PARAMETERS = {"AWS::StackName", "AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::URLSuffix"}


@cache
def document() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse(TEMPLATE.read_text())


def resources(kind: str | None = None) -> dict[str, dict]:
    return {name: resource for name, resource in document()["Resources"].items()
            if kind is None or resource["Type"] == kind}


def functions() -> dict[str, dict]:
    return resources("AWS::Serverless::Function")


def service_names() -> dict[str, str]:
    """Each function's POWERTOOLS_SERVICE_NAME: the `service` dimension of its metrics."""
    return {name: resource["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
            for name, resource in functions().items()}


def substituted(text: str, placeholder: str = "x") -> str:
    """`text` as Fn::Sub gives it, each ${...} a dummy value and each ${!...} the literal ${...}."""
    return re.sub(r"\$\{(!?)([^}]*)\}", lambda m: "${" + m[2] + "}" if m[1] else placeholder, text)


def sub_names(text: str) -> set[str]:
    """What the ${...} placeholders of a Fn::Sub string name (a resource, parameter or X.Attribute)."""
    return {name.split(".")[0] if "::" not in name else name
            for name in re.findall(r"\$\{(?!!)([^}]*)\}", text)}


@cache
def dashboard_text() -> str:
    (dashboard,) = resources("AWS::CloudWatch::Dashboard").values()
    return dashboard["Properties"]["DashboardBody"]["Fn::Sub"]


@cache
def dashboard() -> dict:
    return json.loads(substituted(dashboard_text()))


def metric_lines(widget: dict) -> list[list]:
    return [line for line in widget["properties"].get("metrics", []) if isinstance(line, list)]


def dimensions_of(line: list) -> dict[str, str]:
    """A dashboard metric [namespace, name, dim, value, ..., {options}]'s dimensions."""
    pairs = [item for item in line[2:] if not isinstance(item, dict)]
    return dict(zip(pairs[::2], pairs[1::2], strict=True))


def alarm_metrics(alarm: dict) -> list[dict]:
    """Every metric an alarm reads: {Namespace, MetricName, Dimensions}."""
    properties = alarm["Properties"]
    if "MetricName" in properties:
        return [{key: properties[key] for key in ("Namespace", "MetricName", "Dimensions")}]
    return [query["MetricStat"]["Metric"] for query in properties["Metrics"] if "MetricStat" in query]


def test_log_retention_is_a_parameter_with_the_values_cloudwatch_logs_accepts():
    parameter = document()["Parameters"]["LogRetentionDays"]
    assert parameter["Type"] == "Number"
    assert parameter["AllowedValues"] == RETENTIONS
    assert parameter["Default"] == 30


def test_every_function_writes_to_a_log_group_of_the_stack_kept_for_the_retention_days():
    groups = resources("AWS::Logs::LogGroup")
    named = {}
    for name, function in functions().items():
        config = function["Properties"]["LoggingConfig"]
        group = config["LogGroup"]["Ref"]
        assert groups[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
        named[name] = group
        # Its own LoggingConfig replaces the globals' under devkit: it must keep the format.
        assert config["LogFormat"] == "JSON", name
    assert len(set(named.values())) == len(named), "two functions share a log group"
    for name, spec in template.load(TEMPLATE).functions.items():
        assert spec.environment["AWS_LAMBDA_LOG_FORMAT"] == "JSON", name


def test_sam_hands_each_function_its_log_group_and_json_format(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    translated_resources = translated()["Resources"]
    for name in functions():
        assert translated_resources[name]["Properties"]["LoggingConfig"] == {
            "LogFormat": "JSON", "LogGroup": {"Ref": f"{name}LogGroup"}}


@pytest.fixture
def stage(monkeypatch) -> dict:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    (stage,) = [resource for resource in translated()["Resources"].values() if resource["Type"] == "AWS::ApiGateway::Stage"]
    return stage["Properties"]


def test_the_stage_writes_access_logs_to_a_log_group_kept_for_the_retention_days(stage):
    destination = stage["AccessLogSetting"]["DestinationArn"]["Fn::Sub"]
    assert destination.startswith("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:")
    (group,) = sub_names(destination) - PSEUDO_PARAMETERS
    assert resources()[group]["Type"] == "AWS::Logs::LogGroup"
    assert resources()[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_access_log_format_is_one_json_object_of_api_gateway_variables(stage):
    text = stage["AccessLogSetting"]["Format"]
    assert "\n" not in text
    line = json.loads(text)
    assert ACCESS_LOG_VARIABLES <= set(line.values())
    # Each value one variable, in quotes: whatever API Gateway writes stays a JSON string.
    assert all(re.fullmatch(r"\$context\.[A-Za-z.]+", value) for value in line.values()), line
    # Nothing the caller writes (API Gateway does not escape it): no user agent, no raw path.
    assert not {"$context.identity.userAgent", "$context.path"} & set(line.values())


def test_the_stage_publishes_metrics_per_route(stage):
    # The same entry throttles the stage (tests/build/test_deploy_template.py).
    assert any(setting.items() >= {"ResourcePath": "/*", "HttpMethod": "*", "MetricsEnabled": True}.items()
               for setting in stage["MethodSettings"])


def test_the_api_is_named_after_the_stack_as_the_dashboard_and_alarms_expect():
    assert resources()["InferGateApi"]["Properties"]["Name"] == {"Ref": "AWS::StackName"}


def test_the_api_waits_for_the_accounts_logging_role_when_the_stack_makes_it():
    assert resources()["InferGateApi"]["DependsOn"] == "ApiGatewayAccountReady"
    ready = resources()["ApiGatewayAccountReady"]
    assert ready["Metadata"]["AccountSetting"] == {
        "Fn::If": ["CreatesApiGatewayAccountRole", {"Ref": "ApiGatewayAccount"}, ""]}
    account, role = resources()["ApiGatewayAccount"], resources()["ApiGatewayCloudWatchRole"]
    assert account["Properties"]["CloudWatchRoleArn"] == {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]}
    for resource in (account, role):
        assert resource["Condition"] == "CreatesApiGatewayAccountRole"
        # Other APIs of the account log with the role: deleting the stack must not take it away.
        assert resource["DeletionPolicy"] == "Retain"
    assert document()["Conditions"]["CreatesApiGatewayAccountRole"] == {
        "Fn::Equals": [{"Ref": "CreateApiGatewayAccountRole"}, "true"]}


def test_the_dashboard_is_json_and_every_placeholder_names_something_the_template_has():
    assert isinstance(dashboard()["widgets"], list)
    known = set(document()["Parameters"]) | set(resources()) | PSEUDO_PARAMETERS
    assert sub_names(dashboard_text()) <= known, sub_names(dashboard_text()) - known


def test_the_dashboard_shows_every_metric_the_gateway_counts_for_operators():
    shown = set()
    for widget in dashboard()["widgets"]:
        for line in metric_lines(widget):
            if line[0] == "InferGate":
                shown.add(line[1])
                assert dimensions_of(line) in [{"service": service} for service in service_names().values()], line
        for query in widget["properties"].get("metrics", []):
            if isinstance(query, dict):  # a search across the functions that count it
                shown |= set(re.findall(r"""SEARCH\('\{InferGate,service\} MetricName="(\w+)"'""", query["expression"]))
    assert EMF_METRICS <= shown, f"the dashboard does not show {EMF_METRICS - shown}"


def test_the_dashboard_shows_requests_errors_and_latency_of_each_main_route():
    shown: dict[str, set[tuple[str, str]]] = {}
    for widget in dashboard()["widgets"]:
        stat = widget["properties"].get("stat")
        for line in metric_lines(widget):
            if line[0] == "AWS/ApiGateway" and "Resource" in dimensions_of(line):
                dims = dimensions_of(line)
                assert {"ApiName", "Stage"} <= set(dims), line
                shown.setdefault(f"{line[1]} {stat}" if line[1] == "Latency" else line[1], set()).add(
                    (dims["Method"], dims["Resource"]))
    routes = {(route.method, route.path) for route in template.load(TEMPLATE).api.routes}
    for metric in ("Count", "4XXError", "5XXError", "Latency p50", "Latency p99"):
        assert DASHBOARD_ROUTES <= shown.get(metric, set()), metric
        assert shown[metric] <= routes, f"{metric}: no such route {shown[metric] - routes}"


def test_the_dashboard_shows_each_functions_errors_throttles_concurrency_and_duration():
    for metric, stat in (("Errors", None), ("Throttles", None), ("ConcurrentExecutions", None), ("Duration", "p99")):
        widgets = [widget for widget in dashboard()["widgets"]
                   if any(line[:2] == ["AWS/Lambda", metric] for line in metric_lines(widget))]
        assert widgets, metric
        if stat:
            assert all(widget["properties"]["stat"] == stat for widget in widgets), metric
        for name in functions():  # in the text as written: substituted, every ${Function} looks alike
            assert f'"AWS/Lambda", "{metric}", "FunctionName", "${{{name}}}"' in dashboard_text(), (metric, name)


def test_every_alarm_notifies_the_topic_when_it_goes_off_and_when_it_is_over():
    alarms = resources("AWS::CloudWatch::Alarm")
    assert len(alarms) >= 6
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["Properties"]["OKActions"] == [{"Ref": "AlarmTopic"}], name
    assert resources()["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    assert set(resources("AWS::CloudWatch::Alarm")) <= sub_names(dashboard_text()), "the dashboard's alarm widget"


def test_alarms_read_metrics_under_the_names_and_dimensions_they_are_published_with():
    routes = {(route.method, route.path) for route in template.load(TEMPLATE).api.routes}
    for name, alarm in resources("AWS::CloudWatch::Alarm").items():
        for metric in alarm_metrics(alarm):
            dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            if metric["Namespace"] == "AWS/ApiGateway":
                assert dims["ApiName"] == {"Ref": "AWS::StackName"} and dims["Stage"] == {"Ref": "StageName"}, name
                if "Resource" in dims:
                    assert (dims["Method"], dims["Resource"]) in routes, name
            elif metric["Namespace"] == "InferGate":
                assert dims == {"service": "infergate-chat"} == {"service": service_names()["ChatFunction"]}, name
            else:
                assert metric["Namespace"] == "AWS/Lambda"
                assert dims["FunctionName"]["Ref"] in functions(), name


def test_the_alarms_cover_errors_latency_the_model_server_and_the_functions():
    alarms = resources("AWS::CloudWatch::Alarm")
    read = {name: {(m["Namespace"], m["MetricName"]) for m in alarm_metrics(alarm)} for name, alarm in alarms.items()}
    assert {("AWS/ApiGateway", "5XXError"), ("AWS/ApiGateway", "Count")} <= read["ApiErrorRateAlarm"]
    assert read["ApiLatencyAlarm"] == {("AWS/ApiGateway", "Latency")}
    assert read["UpstreamFailureRateAlarm"] == {("InferGate", "UpstreamFailures"), ("InferGate", "Requests")}
    assert read["CircuitBreakerOpenAlarm"] == {("InferGate", "CircuitBreakerOpen")}
    for metric, alarm in (("Errors", "FunctionErrorsAlarm"), ("Throttles", "FunctionThrottlesAlarm")):
        watched = {m["Dimensions"][0]["Value"]["Ref"] for m in alarm_metrics(alarms[alarm]) if m["MetricName"] == metric}
        assert watched == set(functions()), alarm

    # Streamed answers are long by nature: the latency alarm leaves the streaming routes out.
    streamed = {route.path for route in template.load(TEMPLATE).api.routes if route.streams}
    latency_routes = {next(d["Value"] for d in m["Dimensions"] if d["Name"] == "Resource")
                      for m in alarm_metrics(alarms["ApiLatencyAlarm"])}
    assert streamed and not streamed & latency_routes

    breaker = alarms["CircuitBreakerOpenAlarm"]["Properties"]
    assert breaker["Period"] == 60
    assert breaker["EvaluationPeriods"] == breaker["DatapointsToAlarm"] == {"Ref": "BreakerAlarmMinutes"}
    assert document()["Parameters"]["BreakerAlarmMinutes"]["Default"] == 5
    for alarm in alarms.values():
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"


def test_the_email_subscription_exists_only_when_an_address_is_given():
    assert document()["Parameters"]["AlarmEmail"]["Default"] == ""
    assert document()["Conditions"]["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    (subscription,) = resources("AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email",
                                          "Endpoint": {"Ref": "AlarmEmail"}}
    assert "Condition" not in resources()["AlarmTopic"]


def test_the_functions_metrics_carry_the_service_dimension_the_template_looks_for():
    """The dashboard and the alarms read the functions' metrics by namespace, name and the
    `service` dimension: that is what Powertools publishes, given the template's settings."""
    chat = template.load(TEMPLATE).functions["ChatFunction"].environment
    environment = {**os.environ, "PYTHONPATH": str(COMMON_LAYER),
                   "POWERTOOLS_SERVICE_NAME": chat["POWERTOOLS_SERVICE_NAME"],
                   "POWERTOOLS_METRICS_NAMESPACE": chat["POWERTOOLS_METRICS_NAMESPACE"]}
    script = ("import json; from infergate.observability import count, metrics; count('UpstreamFailures'); "
              "print(json.dumps(metrics.serialize_metric_set()))")
    result = subprocess.run([sys.executable, "-c", script], check=False, env=environment, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    emitted = json.loads(result.stdout.strip().splitlines()[-1])
    (directive,) = emitted["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "InferGate"
    assert directive["Dimensions"] == [["service"]]
    assert emitted["service"] == "infergate-chat"
