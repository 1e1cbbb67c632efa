"""How template.yaml deploys: the functions' network (VPC), the limits (stage throttling, the chat
function's reserved concurrency), safe rollouts (a `live` alias per function, shifted by
CodeDeploy and rolled back by the release alarms), for the template's defaults and for each
environment of samconfig.toml, as SAM's translator turns them into CloudFormation."""

from __future__ import annotations

import copy
import re
import tomllib
from functools import cache
from typing import Any

import pytest
from devkit.release import stamped

from tests.support.paths import ROOT
from tests.support.sam import translated

SAMCONFIG = ROOT / "samconfig.toml"
FUNCTIONS = {"AuthorizerFunction", "OpsFunction", "RegisterFunction", "ChatFunction", "UsageFunction",
             "KeysFunction", "AdminFunction"}
# The alarms a bad release sets off; the others are about load or the model server.
RELEASE_ALARMS = {"FunctionErrorsAlarm", "ApiErrorRateAlarm"}
# The routes that stream (functions/chat/chat.py STREAMED).
CHAT_ROUTES = {"/v1/chat", "/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/responses"}
ENVIRONMENTS = ("dev", "staging", "prod", "localstack")


@pytest.fixture(autouse=True)
def _region(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@cache
def document() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse((ROOT / "template.yaml").read_text())


@cache
def samconfig() -> dict[str, Any]:
    return tomllib.loads(SAMCONFIG.read_text())


def overrides(environment: str) -> dict[str, str]:
    """An environment's parameter_overrides, as `sam deploy --config-env` reads them."""
    from samcli.cli.types import CfnParameterOverridesType

    text = samconfig()[environment]["deploy"]["parameters"].get("parameter_overrides", "")
    return dict(CfnParameterOverridesType().convert(text, None, None))


NO_VALUE = object()
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}


class Evaluated:
    """What CloudFormation makes of the translated template's conditions and parameters: the
    intrinsics the template's conditional settings use (Ref, Fn::If, Fn::Equals, Fn::Not, Fn::And,
    Fn::Or, Fn::Join, Fn::Select, Fn::Split and Fn::Sub's string form), resolved for given
    parameter values."""

    def __init__(self, parameters: dict[str, str]) -> None:
        self.values: dict[str, Any] = {}
        for name, spec in document()["Parameters"].items():
            value = str(parameters.get(name, spec.get("Default", "")))
            self.values[name] = value.split(",") if spec["Type"] == "CommaDelimitedList" else value
        self.conditions: dict[str, bool] = {}
        for name in document()["Conditions"]:
            self.condition(name)

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self(document()["Conditions"][name]))
        return self.conditions[name]

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in map(self, value) if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if value == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        if set(value) == {"Ref"} and value["Ref"] in self.values:
            return self.values[value["Ref"]]
        if "Fn::If" in value:
            condition, then, otherwise = value["Fn::If"]
            return self(then if self.condition(condition) else otherwise)
        if set(value) == {"Condition"}:
            return self.condition(value["Condition"])
        if "Fn::And" in value:
            return all(map(self, value["Fn::And"]))
        if "Fn::Or" in value:
            return any(map(self, value["Fn::Or"]))
        if "Fn::Select" in value:
            index, items = value["Fn::Select"]
            return self(items)[int(index)]
        if "Fn::Split" in value:
            separator, text = value["Fn::Split"]
            return str(self(text)).split(separator)
        if "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
            known = {**PSEUDO, **self.values}  # others (resources' names and attributes) stay as written
            return re.sub(r"\$\{([A-Za-z0-9:]+)\}", lambda name: str(known.get(name[1], name[0])), value["Fn::Sub"])
        if "Fn::Equals" in value:
            left, right = (self(item) for item in value["Fn::Equals"])
            return str(left) == str(right)
        if "Fn::Not" in value:
            return not self(value["Fn::Not"][0])
        if "Fn::Join" in value:
            separator, items = value["Fn::Join"]
            return separator.join(map(str, self(items)))
        return {key: item for key, item in ((key, self(item)) for key, item in value.items()) if item is not NO_VALUE}


def deployed(parameters: dict[str, str]) -> dict[str, dict]:
    """The resources CloudFormation makes for these parameter values, their settings resolved."""
    evaluate = Evaluated(parameters)
    return {name: evaluate(resource) for name, resource in translated(parameters)["Resources"].items()
            if evaluate.conditions.get(resource.get("Condition"), True)}


def of_type(resources: dict[str, dict], kind: str) -> dict[str, dict]:
    return {name: resource for name, resource in resources.items() if resource["Type"] == kind}


def integrations(resources: dict[str, dict]) -> dict[tuple[str, str], dict]:
    paths = resources["InferGateApi"]["Properties"]["Body"]["paths"]
    return {(method, path): operation["x-amazon-apigateway-integration"]
            for path, item in paths.items() for method, operation in item.items()}


PARAMETER_SETS = {"defaults": {}, **{environment: overrides(environment) for environment in ENVIRONMENTS}}


def test_the_functions_are_the_ones_this_file_expects():
    assert set(of_type(document()["Resources"], "AWS::Serverless::Function")) == FUNCTIONS


# ---- Network ----

def test_the_functions_run_outside_any_vpc_unless_subnets_are_given():
    for name in FUNCTIONS:
        assert "VpcConfig" not in deployed({})[name]["Properties"], name


def test_given_subnets_every_function_runs_in_them_with_the_security_groups():
    resources = deployed({"SubnetIds": "subnet-a,subnet-b", "SecurityGroupIds": "sg-1"})
    for name in FUNCTIONS:
        assert resources[name]["Properties"]["VpcConfig"] == {
            "SubnetIds": ["subnet-a", "subnet-b"], "SecurityGroupIds": ["sg-1"]}, name


def test_every_function_may_make_the_network_interfaces_a_vpc_needs():
    # SAM adds the managed policy whenever VpcConfig is set, the !If included.
    for name in FUNCTIONS:
        policies = deployed({})[f"{name}Role"]["Properties"]["ManagedPolicyArns"]
        assert "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole" in policies, name


# ---- Secrets ----

MONGODB_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:infergate/prod/mongodb-uri-AbC123"
REDIS_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:infergate/prod/redis-url-XyZ789"


def secret_grants(resources: dict[str, dict]) -> dict[str, list[dict]]:
    """Every statement of every IAM policy in `resources` that lets a role read a secret or a
    parameter, by the resource that grants it."""
    grants: dict[str, list[dict]] = {}
    for name, resource in resources.items():
        properties = resource.get("Properties", {})
        documents = [properties.get("PolicyDocument")] + [policy["PolicyDocument"] for policy in properties.get("Policies", [])]
        for document_ in filter(None, documents):
            for statement in document_["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if any(action.startswith(("secretsmanager:", "ssm:", "kms:")) for action in actions):
                    grants.setdefault(name, []).append(statement)
    return grants


@pytest.mark.parametrize("environment", PARAMETER_SETS)
def test_without_kept_settings_no_role_may_read_any_secret(environment):
    assert secret_grants(deployed(PARAMETER_SETS[environment])) == {}


def test_each_function_may_read_the_secret_and_the_parameter_named_and_nothing_else():
    resources = deployed({"MongoDbUriSecret": MONGODB_ARN, "RedisUrlSecret": "/infergate/prod/redis-url"})
    assert secret_grants(resources) == {"StoreSecretsPolicy": [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": MONGODB_ARN},
        {"Effect": "Allow", "Action": "ssm:GetParameter",
         "Resource": "arn:aws:ssm:us-east-1:123456789012:parameter/infergate/prod/redis-url"},
    ]}
    roles = resources["StoreSecretsPolicy"]["Properties"]["Roles"]
    assert sorted(role["Ref"] for role in roles) == sorted(f"{name}Role" for name in FUNCTIONS)


@pytest.mark.parametrize(("parameters", "readable"), [
    ({"MongoDbUriSecret": "/infergate/prod/mongodb-uri"},
     [("ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/infergate/prod/mongodb-uri")]),
    ({"RedisUrlSecret": REDIS_ARN}, [("secretsmanager:GetSecretValue", REDIS_ARN)]),
    ({"MongoDbUriSecret": MONGODB_ARN, "RedisUrlSecret": REDIS_ARN},
     [("secretsmanager:GetSecretValue", MONGODB_ARN), ("secretsmanager:GetSecretValue", REDIS_ARN)]),
])
def test_one_kept_setting_or_both_from_either_service(parameters, readable):
    (statements,) = secret_grants(deployed(parameters)).values()
    assert [(statement["Action"], statement["Resource"]) for statement in statements] == readable


def test_every_function_is_told_where_each_setting_is_kept():
    resources = deployed({"MongoDbUriSecret": MONGODB_ARN, "RedisUrlSecret": "/infergate/prod/redis-url"})
    for name in FUNCTIONS:
        variables = resources[name]["Properties"]["Environment"]["Variables"]
        assert (variables["MONGODB_URI_SECRET"], variables["REDIS_URL_SECRET"]) == (
            MONGODB_ARN, "/infergate/prod/redis-url"), name


@pytest.mark.parametrize(("kept_at", "readable"), [
    (MONGODB_ARN, ("secretsmanager:GetSecretValue", MONGODB_ARN)),
    ("/infergate/prod/metrics-token",
     ("ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/infergate/prod/metrics-token")),
])
def test_the_metrics_tokens_secret_is_for_the_ops_function_alone(kept_at, readable):
    resources = deployed({"MetricsTokenSecret": kept_at})
    (statement,) = secret_grants(resources)["MetricsTokenSecretPolicy"]
    assert (statement["Action"], statement["Resource"]) == readable and set(secret_grants(resources)) == {
        "MetricsTokenSecretPolicy"}
    assert resources["MetricsTokenSecretPolicy"]["Properties"]["Roles"] == [{"Ref": "OpsFunctionRole"}]


@pytest.mark.parametrize(("value", "accepted"), [
    ("", True), (MONGODB_ARN, True), ("/infergate/prod/mongodb-uri", True),
    ("arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:db-AbC123", True),
    # A name or a partial ARN would leave the grant (the full ARN) and the read apart.
    ("infergate/prod/mongodb-uri", False),
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:infergate/prod/mongodb-uri", False),
    ("arn:aws:ssm:us-east-1:123456789012:parameter/infergate/prod/mongodb-uri", False),
    ("mongodb://user:password@db:27017", False),
])
def test_a_kept_setting_is_a_full_secret_arn_or_a_parameter_name(value, accepted):
    for parameter in ("MongoDbUriSecret", "RedisUrlSecret", "MetricsTokenSecret"):
        pattern = document()["Parameters"][parameter]["AllowedPattern"]
        assert bool(re.fullmatch(pattern, value)) is accepted, (parameter, value)


# ---- Limits ----

@pytest.mark.parametrize("environment", PARAMETER_SETS)
def test_the_stage_throttles_every_route_as_the_parameters_say(environment):
    parameters = PARAMETER_SETS[environment]
    (stage,) = of_type(deployed(parameters), "AWS::ApiGateway::Stage").values()
    (setting,) = stage["Properties"]["MethodSettings"]
    assert setting == {"ResourcePath": "/*", "HttpMethod": "*", "MetricsEnabled": True,
                       "ThrottlingRateLimit": parameters.get("ThrottleRateLimit", "100"),
                       "ThrottlingBurstLimit": parameters.get("ThrottleBurstLimit", "200")}


def test_throttling_defaults_are_100_a_second_and_bursts_of_200():
    parameters = document()["Parameters"]
    assert parameters["ThrottleRateLimit"]["Default"] == 100
    assert parameters["ThrottleBurstLimit"]["Default"] == 200
    assert parameters["ThrottleRateLimit"]["MinValue"] == parameters["ThrottleBurstLimit"]["MinValue"] == 1


def test_the_chat_function_has_reserved_concurrency_only_when_it_is_set():
    assert "ReservedConcurrentExecutions" not in deployed({})["ChatFunction"]["Properties"]
    resources = deployed({"ChatReservedConcurrency": "12"})
    assert resources["ChatFunction"]["Properties"]["ReservedConcurrentExecutions"] == "12"
    for name in FUNCTIONS - {"ChatFunction"}:
        assert "ReservedConcurrentExecutions" not in resources[name]["Properties"], name
    assert document()["Parameters"]["ChatReservedConcurrency"]["Default"] == 0


# ---- Safe rollouts ----

@pytest.mark.parametrize("environment", PARAMETER_SETS)
def test_every_function_is_served_through_its_live_alias(environment):
    resources = deployed(PARAMETER_SETS[environment])
    for name in FUNCTIONS:
        alias = resources[f"{name}Aliaslive"]
        assert alias["Type"] == "AWS::Lambda::Alias"
        assert alias["Properties"]["Name"] == "live"
        assert alias["Properties"]["FunctionName"] == {"Ref": name}
        (version,) = [key for key in of_type(resources, "AWS::Lambda::Version") if key.startswith(f"{name}Version")]
        assert alias["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [version, "Version"]}
    for route, integration in integrations(resources).items():
        target = integration["uri"].split("/functions/${")[1].split("}")[0]
        assert target.removesuffix("Aliaslive") in FUNCTIONS and target.endswith("Aliaslive"), route
    for name, permission in of_type(resources, "AWS::Lambda::Permission").items():
        assert permission["Properties"]["FunctionName"]["Ref"].endswith("Aliaslive"), name


@pytest.mark.parametrize("environment", PARAMETER_SETS)
def test_the_chat_routes_keep_api_gateways_streaming_integration_on_the_alias(environment):
    for (method, path), integration in integrations(deployed(PARAMETER_SETS[environment])).items():
        uri = integration["uri"]  # its Fn::Sub resolved (pseudo parameters) but for the function's ARN
        if path in CHAT_ROUTES:
            assert integration["responseTransferMode"] == "STREAM", path
            assert uri.endswith("/2021-11-15/functions/${ChatFunctionAliaslive}/response-streaming-invocations"), path
        else:
            assert "responseTransferMode" not in integration, path
            assert uri.endswith("Aliaslive}/invocations") and "/2015-03-31/functions/" in uri, path


def test_api_gateway_calls_the_authorizers_alias():
    resources = deployed({})
    authorizer = resources["InferGateApi"]["Properties"]["Body"]["securityDefinitions"]["ApiKeyAuthorizer"]
    uri = authorizer["x-amazon-apigateway-authorizer"]["authorizerUri"]
    assert uri["Fn::Sub"][1]["__FunctionArn__"] == {"Ref": "AuthorizerFunctionAliaslive"}


@pytest.mark.parametrize("environment", [name for name, parameters in PARAMETER_SETS.items()
                                         if parameters.get("CodeDeployEnabled", "true") == "true"])
def test_codedeploy_shifts_each_alias_and_rolls_it_back_on_the_release_alarms(environment):
    parameters = PARAMETER_SETS[environment]
    resources = deployed(parameters)
    groups = of_type(resources, "AWS::CodeDeploy::DeploymentGroup")
    assert set(groups) == {f"{name}DeploymentGroup" for name in FUNCTIONS}
    kind = parameters.get("DeploymentType", "Canary10Percent5Minutes")
    for name in FUNCTIONS:
        group = groups[f"{name}DeploymentGroup"]["Properties"]
        assert group["DeploymentConfigName"] == {
            "Fn::Sub": ["CodeDeployDefault.Lambda${ConfigName}", {"ConfigName": kind}]}, name
        assert group["AlarmConfiguration"]["Enabled"] is True
        assert {alarm["Name"]["Ref"] for alarm in group["AlarmConfiguration"]["Alarms"]} == RELEASE_ALARMS, name
        assert "DEPLOYMENT_STOP_ON_ALARM" in group["AutoRollbackConfiguration"]["Events"]
        assert group["AutoRollbackConfiguration"]["Enabled"] is True
        assert resources[f"{name}Aliaslive"]["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["DeploymentGroupName"] == {
            "Ref": f"{name}DeploymentGroup"}
    assert "ServerlessDeploymentApplication" in resources


@pytest.mark.parametrize("environment", [name for name, parameters in PARAMETER_SETS.items()
                                         if parameters.get("CodeDeployEnabled", "true") == "false"])
def test_without_codedeploy_there_are_no_codedeploy_resources_and_the_alias_moves_at_once(environment):
    resources = deployed(PARAMETER_SETS[environment])
    assert not [resource for resource in resources.values() if resource["Type"].startswith("AWS::CodeDeploy::")]
    assert "CodeDeployServiceRole" not in resources
    for name in FUNCTIONS:
        assert "UpdatePolicy" not in resources[f"{name}Aliaslive"], name


def test_the_release_alarms_watch_every_function_and_the_whole_api():
    alarms = document()["Resources"]
    watched = {metric["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"]
               for metric in alarms["FunctionErrorsAlarm"]["Properties"]["Metrics"] if "MetricStat" in metric}
    # By FunctionName alone: every version's errors, the new one's while it takes its share.
    assert watched == FUNCTIONS
    dimensions = {d["Name"] for metric in alarms["ApiErrorRateAlarm"]["Properties"]["Metrics"] if "MetricStat" in metric
                  for d in metric["MetricStat"]["Metric"]["Dimensions"]}
    assert dimensions == {"ApiName", "Stage"}


def test_deployment_type_offers_canary_linear_and_all_at_once_and_defaults_to_a_canary():
    parameter = document()["Parameters"]["DeploymentType"]
    assert parameter["Default"] == "Canary10Percent5Minutes"
    assert {"Canary10Percent5Minutes", "Linear10PercentEveryMinute", "AllAtOnce"} <= set(parameter["AllowedValues"])
    assert document()["Parameters"]["CodeDeployEnabled"]["Default"] == "true"


def test_any_change_to_a_function_or_its_layers_publishes_a_new_version():
    for name, resource in of_type(document()["Resources"], "AWS::Serverless::Function").items():
        assert resource["Properties"]["AutoPublishAliasAllProperties"] is True, name
    for name, resource in of_type(document()["Resources"], "AWS::Serverless::LayerVersion").items():
        assert resource["Properties"]["PublishLambdaVersion"] is True, name

    def published(layer_location: str) -> set[str]:
        template = copy.deepcopy(document())
        for resource in of_type(template["Resources"], "AWS::Serverless::LayerVersion").values():
            resource["Properties"]["ContentUri"] = layer_location
        return set(of_type(translated(template=template)["Resources"], "AWS::Lambda::Version"))

    before, after = published("s3://bucket/layer-1.zip"), published("s3://bucket/layer-2.zip")
    assert len(before) == len(after) == len(FUNCTIONS)
    assert not before & after, "a new layer must publish a new version of every function"


def versions(resources: dict[str, dict]) -> dict[str, str]:
    """Each function's version that its `live` alias serves, by function."""
    return {name: resources[f"{name}Aliaslive"]["Properties"]["FunctionVersion"]["Fn::GetAtt"][0] for name in FUNCTIONS}


def test_a_release_names_every_version_after_its_fingerprint_settings_included():
    first, second = "1a2b3c4d5e" + "0" * 54, "9f8e7d6c5b" + "0" * 54
    released = {release: versions(translated(template=stamped(document(), release))["Resources"])
                for release in (first, second)}
    assert released[first] == {name: f"{name}Version1a2b3c4d5e" for name in FUNCTIONS}
    assert not set(released[first].values()) & set(released[second].values())
    # Without a release, a setting's new value names no new version (SAM hashes the template as written).
    assert versions(translated({"OllamaUrl": "http://a:11434"})["Resources"]) == versions(
        translated({"OllamaUrl": "http://b:11434"})["Resources"])


# ---- samconfig.toml ----

def test_samconfig_has_dev_staging_and_prod_each_its_own_stack():
    for environment in ("dev", "staging", "prod"):
        deploy = samconfig()[environment]["deploy"]["parameters"]
        assert deploy["stack_name"] == f"infergate-{environment}"
        assert deploy["capabilities"] == "CAPABILITY_IAM" and deploy["resolve_s3"] is True
    assert samconfig()["default"]["global"]["parameters"]["stack_name"] == "infergate"
    assert samconfig()["localstack"]["deploy"]["parameters"]["stack_name"] == "infergate"


def test_dev_and_localstack_deploy_without_codedeploy_and_staging_and_prod_with_a_canary():
    for environment in ("dev", "localstack"):
        assert overrides(environment)["CodeDeployEnabled"] == "false", environment
    for environment in ("staging", "prod"):
        assert overrides(environment)["CodeDeployEnabled"] == "true", environment
        assert overrides(environment)["DeploymentType"].startswith("Canary"), environment
        assert samconfig()[environment]["deploy"]["parameters"]["confirm_changeset"] is True
    retention = {environment: int(overrides(environment)["LogRetentionDays"]) for environment in ("dev", "staging", "prod")}
    assert retention["dev"] < retention["staging"] <= retention["prod"]
    for environment in ("dev", "staging", "prod"):
        assert overrides(environment)["AlarmEmail"] == "", environment


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_samconfig_override_is_a_template_parameter_with_a_value_it_accepts(environment):
    parameters = document()["Parameters"]
    for name, value in overrides(environment).items():
        assert name in parameters, name
        spec = parameters[name]
        if "AllowedValues" in spec:
            assert value in map(str, spec["AllowedValues"]), (name, value)
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), (name, value)
        if spec["Type"] == "Number":
            assert spec.get("MinValue", float("-inf")) <= float(value) <= spec.get("MaxValue", float("inf")), name


# ---- The team's own domain ----

DOMAIN = {"DomainName": "api.example.com", "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc"}


def test_without_a_domain_the_api_is_served_on_api_gateways_name_alone():
    resources = deployed({})
    assert not of_type(resources, "AWS::ApiGateway::DomainName")
    assert not of_type(resources, "AWS::ApiGateway::BasePathMapping")


def test_a_domain_is_served_over_tls_1_2_and_maps_to_the_stage():
    resources = deployed(DOMAIN)
    [domain] = of_type(resources, "AWS::ApiGateway::DomainName").values()
    assert domain["Properties"]["DomainName"] == "api.example.com"
    assert domain["Properties"]["SecurityPolicy"] == "TLS_1_2"
    assert domain["Properties"]["RegionalCertificateArn"] == DOMAIN["CertificateArn"]
    assert domain["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    [mapping] = of_type(resources, "AWS::ApiGateway::BasePathMapping").values()
    assert mapping["Properties"]["RestApiId"] == {"Ref": "InferGateApi"}
    stage = mapping["Properties"]["Stage"]["Ref"]
    assert resources[stage]["Type"] == "AWS::ApiGateway::Stage", "the mapping waits for the stage it names"


def test_a_domain_without_its_certificate_is_refused_before_anything_is_made():
    rule = document()["Rules"]["DomainNeedsItsCertificate"]
    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "DomainName"}, ""]}]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "CertificateArn"}, ""]}]}


# ---- The documentation's first deploy ----

def test_the_docs_first_deploy_names_parameters_the_template_takes_and_deploys():
    """The OVERRIDES of the step-by-step first deploy (docs/operating/deploy.md): each a parameter,
    each value accepted, and what they deploy: the functions in the subnets, reading the two secrets named."""
    from samcli.cli.types import CfnParameterOverridesType

    page = (ROOT / "docs" / "operating" / "deploy.md").read_text()
    start = page.index("\n## A first deploy into a VPC with secrets\n")
    end = page.find("\n## ", start + 1)
    section = page[start:end if end != -1 else len(page)]
    (given,) = re.findall(r"make deploy ENV=prod OVERRIDES='([^']+)'", section)
    parameters = {**overrides("prod"), **dict(CfnParameterOverridesType().convert(given, None, None))}
    for name, value in parameters.items():
        spec = document()["Parameters"][name]
        assert re.fullmatch(spec.get("AllowedPattern", ".*"), value), (name, value)
    resources = deployed(parameters)
    assert resources["ChatFunction"]["Properties"]["VpcConfig"]["SubnetIds"] == parameters["SubnetIds"].split(",")
    assert resources["ChatFunction"]["Properties"]["ReservedConcurrentExecutions"] == "10"
    granted = [statement["Resource"] for statement in secret_grants(resources)["StoreSecretsPolicy"]]
    assert granted == [parameters["MongoDbUriSecret"], "arn:aws:ssm:us-east-1:123456789012:parameter/infergate/prod/redis-url"]
