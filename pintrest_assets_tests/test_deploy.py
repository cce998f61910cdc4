"""The deployment files under deploy/ agree with the code: the S3 sink's layout, the gateway's
routes, and the resources the settings name."""

from __future__ import annotations

import inspect
import json
import re
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import yaml

from pintrest_assets import deploy
from pintrest_assets.kafka import sink_layout
from pintrest_assets.kinesis import proxy_contract as kinesis_proxy
from pintrest_assets.gateway.http import API_KEY_HEADER
from pintrest_assets.gateway.server import DEFAULT_PORT, ROUTES, Gateway
from pintrest_assets.kafka.rest_proxy_v2 import topic_path
from pintrest_assets.settings import Settings
from pintrest_assets.topics import TOPICS

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CONNECTOR = DEPLOY / "msk-connect" / "s3-sink-connector.properties"
KAFKA_OPENAPI = DEPLOY / "api-gateway" / "kafka-rest-proxy.openapi.yaml"
KINESIS_OPENAPI = DEPLOY / "api-gateway" / "kinesis-proxy.openapi.yaml"
IAM = DEPLOY / "iam"

USER_ID = "0e95b18877fd"
REGION = "eu-west-2"
GIVEN = {
    "ACCOUNT_ID": "123456789012",
    "MSK_BOOTSTRAP_SERVERS": "b-1.msk.example:9098,b-2.msk.example:9098",
    "MSK_CLUSTER_NAME": "pinterest-msk-cluster",
    "MSK_CLUSTER_UUID": "8e2a6f3c-5b1d-4c7e-9f0a-1d2c3b4a5e6f-2",
    "REST_PROXY_HOST": "rest-proxy-nlb.elb.example",
    "VPC_LINK_ID": "abc123",
}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "x-amazon-apigateway-any-method")


@pytest.fixture(params=["s3://user-0e95b18877fd-bucket", "s3://user-0e95b18877fd-bucket/landing/"])
def settings(request, tmp_path) -> Settings:
    return Settings.from_env(
        {"PINTREST_HOME": str(tmp_path), "PINTREST_USER_ID": USER_ID, "PINTREST_BUCKET": request.param}
    )


def rendered(path: Path, settings: Settings) -> str:
    return deploy.render(path, settings, GIVEN, environ={"AWS_DEFAULT_REGION": REGION})


def read_properties(text: str) -> dict[str, str]:
    """The ``key=value`` lines of a Java properties file (the subset the deploy files use)."""
    props = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip().replace("\\\\", "\\")
    return props


def bucket_prefix(settings: Settings) -> str:
    """The key prefix PINTREST_BUCKET puts before the sink's keys ('' or 'landing/')."""
    path = settings.bucket.removeprefix("s3://").partition("/")[2].strip("/")
    return f"{path}/" if path else ""


def bucket_name(settings: Settings) -> str:
    return settings.bucket.removeprefix("s3://").partition("/")[0]


def operations(openapi: dict) -> dict[tuple[str, str], dict]:
    return {
        (method.upper(), path): operation
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def statements(policy: dict) -> list[dict]:
    assert policy["Version"] == "2012-10-17"
    return policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]


def listed(value) -> list[str]:
    return value if isinstance(value, list) else [value]


def policy(name: str, settings: Settings) -> dict:
    return json.loads(rendered(IAM / name, settings))


# -- rendering -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(p.relative_to(DEPLOY) for p in DEPLOY.rglob("*") if p.is_file()), ids=str)
def test_every_deploy_file_renders_with_the_settings_and_the_given_values(path, settings):
    text = rendered(DEPLOY / path, settings)
    assert not deploy.placeholders(text)
    if path.suffix == ".json":
        json.loads(text)
    elif path.suffix == ".yaml":
        yaml.safe_load(text)


def test_a_missing_value_is_named_with_where_it_comes_from(tmp_path):
    local = Settings.from_env({"PINTREST_HOME": str(tmp_path)})  # the embedded default: a directory bucket
    with pytest.raises(deploy.MissingValues) as raised:
        deploy.render(IAM / "s3-sink-connector-policy.json", local, environ={})
    message = str(raised.value)
    assert set(raised.value.missing) == {
        "BUCKET",
        "TOPICS_DIR",
        "REGION",
        "ACCOUNT_ID",
        "MSK_CLUSTER_NAME",
        "MSK_CLUSTER_UUID",
    }
    assert "PINTREST_BUCKET=s3://" in message and "AWS_DEFAULT_REGION" in message and "ACCOUNT_ID=<" in message


def test_a_value_that_would_need_quoting_is_refused(settings):
    with pytest.raises(deploy.ConfigError, match="ACCOUNT_ID"):
        deploy.render(
            IAM / "kinesis-proxy-policy.json", settings, GIVEN | {"ACCOUNT_ID": '1" , "x'}, {"AWS_REGION": REGION}
        )


def test_the_command_prints_the_rendered_file(settings, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PINTREST_HOME", str(settings.home))
    monkeypatch.setenv("PINTREST_USER_ID", USER_ID)
    monkeypatch.setenv("PINTREST_BUCKET", settings.bucket)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    assert deploy.main(["deploy/iam/kinesis-reader-policy.json", "ACCOUNT_ID=123456789012"]) == 0
    assert json.loads(capsys.readouterr().out) == policy("kinesis-reader-policy.json", settings)
    assert deploy.main(["deploy/iam/kinesis-reader-policy.json"]) == 2
    assert "ACCOUNT_ID" in capsys.readouterr().err


# -- the S3 sink connector = the gateway's sink layout ---------------------------------------------


def connector_key(props: dict[str, str], topic: str, partition: int, offset: int) -> str:
    """The key the S3 sink connector writes with these properties, by its documented naming."""
    assert props["partitioner.class"] == "io.confluent.connect.storage.partitioner.DefaultPartitioner"
    assert props["format.class"] == "io.confluent.connect.s3.format.json.JsonFormat"
    assert props["s3.compression.type"] == "none"
    d, f, width = props["directory.delim"], props["file.delim"], int(props["filename.offset.zero.pad.width"])
    return f"{props['topics.dir']}{d}{topic}{d}partition={partition}{d}{topic}{f}{partition}{f}{offset:0{width}d}.json"


def test_the_connector_lands_objects_where_the_lake_reads_them(settings):
    props = read_properties(rendered(CONNECTOR, settings))
    assert props["connector.class"] == "io.confluent.connect.s3.S3SinkConnector"
    assert props["s3.bucket.name"] == bucket_name(settings)
    assert props["s3.region"] == REGION
    for spec in TOPICS:
        topic = spec.topic(USER_ID)
        for offset in (0, 42, 9_999_999_999):
            key = bucket_prefix(settings) + sink_layout.object_key(topic, 0, offset)
            assert connector_key(props, topic, 0, offset) == key
            assert sink_layout.parse_object_key(key.removeprefix(bucket_prefix(settings))) is not None


def test_the_connector_flushes_and_rotates_as_the_gateway_does(settings):
    props = read_properties(rendered(CONNECTOR, settings))
    defaults = inspect.signature(Gateway).parameters
    assert int(props["flush.size"]) == defaults["flush_size"].default
    assert int(props["rotate.schedule.interval.ms"]) == defaults["rotate_interval_ms"].default


def test_the_connector_reads_exactly_the_users_topics(settings):
    regex = read_properties(rendered(CONNECTOR, settings))["topics.regex"]
    for spec in TOPICS:
        assert re.fullmatch(regex, spec.topic(USER_ID))
        assert not re.fullmatch(regex, spec.topic("other"))
        assert not re.fullmatch(regex, spec.topic(USER_ID + "x"))


# -- API Gateway = the gateway's routes ----------------------------------------------------------


def test_the_kafka_openapi_routes_are_the_gateways_rest_proxy_routes(settings):
    openapi = yaml.safe_load(rendered(KAFKA_OPENAPI, settings))
    served = {(route.method, route.template) for route in ROUTES if route.kind == "rest-proxy"}
    assert set(operations(openapi)) == served
    assert ("POST", topic_path("{topic}")) in served  # the route the project's client produces to


def test_every_kafka_route_proxies_to_the_rest_proxy_and_requires_the_api_key(settings):
    openapi = yaml.safe_load(rendered(KAFKA_OPENAPI, settings))
    assert openapi["x-amazon-apigateway-api-key-source"] == "HEADER"
    assert openapi["components"]["securitySchemes"]["api_key"] == {
        "type": "apiKey",
        "name": API_KEY_HEADER,
        "in": "header",
    }
    for (method, path), operation in operations(openapi).items():
        assert operation["security"] == [{"api_key": []}]
        integration = operation["x-amazon-apigateway-integration"]
        assert integration["type"] == "http_proxy"
        assert integration["httpMethod"] == method
        assert integration["uri"] == f"http://{GIVEN['REST_PROXY_HOST']}:{DEFAULT_PORT}{path}"
        assert (integration["connectionType"], integration["connectionId"]) == ("VPC_LINK", GIVEN["VPC_LINK_ID"])
        params = re.findall(r"\{([^}]+)\}", path)
        assert {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"} == set(params)
        assert integration.get("requestParameters", {}) == {
            f"integration.request.path.{p}": f"method.request.path.{p}" for p in params
        }


# The contract's routes: (method, path template) -> Kinesis action.
KINESIS_ACTIONS = {(method, template): action for method, template, action in kinesis_proxy.ROUTES}


def test_the_kinesis_openapi_routes_are_the_gateways_kinesis_routes(settings):
    openapi = yaml.safe_load(rendered(KINESIS_OPENAPI, settings))
    served = {(route.method, route.template) for route in ROUTES if route.kind == "kinesis"}
    assert served, "the gateway serves no Kinesis-proxy routes"
    assert set(operations(openapi)) == served == set(KINESIS_ACTIONS)


def test_the_kinesis_openapi_calls_one_kinesis_action_per_route_with_the_api_key(settings):
    openapi = yaml.safe_load(rendered(KINESIS_OPENAPI, settings))
    assert openapi["x-amazon-apigateway-api-key-source"] == "HEADER"
    assert openapi["components"]["securitySchemes"]["api_key"] == {
        "type": "apiKey",
        "name": API_KEY_HEADER,
        "in": "header",
    }
    routes = operations(openapi)
    assert set(routes) == set(KINESIS_ACTIONS)
    for route, operation in routes.items():
        assert operation["security"] == [{"api_key": []}]
        integration = operation["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws" and integration["httpMethod"] == "POST"
        assert integration["uri"] == f"arn:aws:apigateway:{REGION}:kinesis:action/{KINESIS_ACTIONS[route]}"
        assert integration["credentials"] == f"arn:aws:iam::{GIVEN['ACCOUNT_ID']}:role/{USER_ID}-kinesis-access-role"
        assert integration["requestParameters"] == {
            "integration.request.header.Content-Type": "'application/x-amz-json-1.1'"
        }
        assert set(integration["requestTemplates"]) == {"application/json"}
    templates = {
        route: op["x-amazon-apigateway-integration"]["requestTemplates"]["application/json"]
        for route, op in routes.items()
    }
    put_record = templates[("PUT", "/streams/{stream-name}/record")]
    assert '"Data": "$util.base64Encode($input.json(\'$.Data\'))"' in put_record
    assert '"StreamName": "$input.params(\'stream-name\')"' in put_record
    assert (
        '$util.base64Encode($input.json("$.records[$foreach.index].data"))'
        in templates[("PUT", "/streams/{stream-name}/records")]
    )


def test_the_kinesis_proxy_role_may_call_exactly_the_actions_of_its_routes(settings):
    allowed = {
        action
        for statement in statements(policy("kinesis-proxy-policy.json", settings))
        for action in listed(statement["Action"])
    }
    assert allowed == {f"kinesis:{action}" for action in KINESIS_ACTIONS.values()}


# -- IAM = the resources the settings name ---------------------------------------------------------


def stream_arns(settings: Settings) -> set[str]:
    return {
        f"arn:aws:kinesis:{REGION}:{GIVEN['ACCOUNT_ID']}:stream/streaming-{settings.user_id}-{spec.name}"
        for spec in TOPICS
    }


def test_no_policy_allows_more_than_it_names(settings):
    for path in IAM.glob("*.json"):
        for statement in statements(json.loads(rendered(path, settings))):
            assert statement["Effect"] == "Allow", path.name
            assert "NotAction" not in statement and "NotResource" not in statement, path.name
            assert not any(a.endswith("*") for a in listed(statement["Action"])), path.name
            if statement.get("Resource") == "*":  # the one action that takes no resource
                assert listed(statement["Action"]) == ["kinesis:ListStreams"], path.name


@pytest.mark.parametrize("name", ["s3-reader-policy.json", "s3-sink-connector-policy.json"])
def test_the_bucket_policies_name_the_bucket_and_the_users_topic_objects(settings, name):
    bucket, prefix = bucket_name(settings), bucket_prefix(settings)
    objects_pattern = f"{prefix}{sink_layout.topic_prefix(USER_ID)[:-1]}.*"  # topics/<user_id>.*
    s3 = [s for s in statements(policy(name, settings)) if listed(s["Action"])[0].startswith("s3:")]
    assert {r for s in s3 for r in listed(s["Resource"])} == {
        f"arn:aws:s3:::{bucket}",
        f"arn:aws:s3:::{bucket}/{objects_pattern}",
    }
    list_bucket = [s for s in s3 if "s3:ListBucket" in listed(s["Action"])]
    assert [s["Condition"] for s in list_bucket] == [{"StringLike": {"s3:prefix": objects_pattern}}]
    object_statements = [s for s in s3 if s["Resource"] != f"arn:aws:s3:::{bucket}"]
    # What the pipeline reads and lists, and what the sink writes, fits; another user's does not.
    for spec in TOPICS:
        for user_id, fits in ((USER_ID, True), ("other", False), (USER_ID + "x", False)):
            topic = spec.topic(user_id)
            key = prefix + sink_layout.object_key(topic, 0, 42)
            assert all(
                fnmatchcase(f"{bucket}/{key}", s["Resource"].removeprefix("arn:aws:s3:::")) == fits
                for s in object_statements
            )
            for listing in (sink_layout.topic_prefix(topic), sink_layout.partition_prefix(topic, 0)):
                assert fnmatchcase(prefix + listing, objects_pattern) == fits


def test_the_reader_only_reads_and_the_connector_only_writes(settings):
    reader = {a for s in statements(policy("s3-reader-policy.json", settings)) for a in listed(s["Action"])}
    assert reader == {"s3:ListBucket", "s3:GetObject"}
    connector = {a for s in statements(policy("s3-sink-connector-policy.json", settings)) for a in listed(s["Action"])}
    assert "s3:PutObject" in connector and "s3:GetObject" not in connector and "s3:DeleteObject" not in connector


@pytest.mark.parametrize("name", ["kinesis-proxy-policy.json", "kinesis-reader-policy.json"])
def test_the_stream_policies_name_exactly_the_three_streams(settings, name):
    named = {r for s in statements(policy(name, settings)) for r in listed(s["Resource"]) if r != "*"}
    assert named == stream_arns(settings)


def test_the_reader_of_the_streams_cannot_write_them(settings):
    actions = {a for s in statements(policy("kinesis-reader-policy.json", settings)) for a in listed(s["Action"])}
    assert actions == {
        "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary",
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "kinesis:ListShards",
    }


@pytest.mark.parametrize("name", ["rest-proxy-policy.json", "s3-sink-connector-policy.json"])
def test_the_kafka_policies_name_the_cluster_and_the_users_topics(settings, name):
    base = f"arn:aws:kafka:{REGION}:{GIVEN['ACCOUNT_ID']}"
    cluster = f"{GIVEN['MSK_CLUSTER_NAME']}/{GIVEN['MSK_CLUSTER_UUID']}"
    kafka = [s for s in statements(policy(name, settings)) if listed(s["Action"])[0].startswith("kafka-cluster:")]
    resources = {r for s in kafka for r in listed(s["Resource"])}
    assert f"{base}:cluster/{cluster}" in resources
    assert all(
        r.startswith((f"{base}:cluster/{cluster}", f"{base}:topic/{cluster}/", f"{base}:group/{cluster}/"))
        for r in resources
    )
    topic_patterns = [r.removeprefix(f"{base}:topic/{cluster}/") for r in resources if ":topic/" in r]
    user_patterns = [p for p in topic_patterns if not p.startswith("__amazon_msk_connect_")]
    assert user_patterns == [f"{USER_ID}.*"]
    for spec in TOPICS:
        assert fnmatchcase(spec.topic(USER_ID), user_patterns[0])
        assert not fnmatchcase(spec.topic("other"), user_patterns[0])
