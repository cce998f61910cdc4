import pytest

from pintrest_assets.settings import ConfigError, Settings, db_url_from_creds_file, redact_url
from pintrest_assets.topics import TOPICS, is_valid_topic_name


def test_embedded_default_needs_no_setting(tmp_path):
    s = Settings.from_env({"PINTREST_HOME": str(tmp_path)})
    assert s.db_url == f"sqlite:///{tmp_path / 'pintrest.db'}"
    assert s.rest_proxy_url == "http://127.0.0.1:8082"
    assert s.bucket == str(tmp_path / "bucket")
    assert not s.bucket_is_s3 and not s.db_url_is_secret
    assert s.spark_master == "local[*]" and s.spark_remote is None
    assert s.warehouse == tmp_path / "warehouse"


def test_the_warehouse_may_be_anywhere_spark_and_dagster_both_reach(tmp_path):
    s = Settings.from_env({"PINTREST_HOME": str(tmp_path / "home"), "PINTREST_WAREHOUSE": str(tmp_path / "shared")})
    assert s.warehouse == tmp_path / "shared"
    assert s.home == tmp_path / "home"


def test_real_infrastructure_by_environment(tmp_path):
    s = Settings.from_env(
        {
            "PINTREST_HOME": str(tmp_path),
            "PINTREST_DB_URL": "mysql+pymysql://u:pw@db:3306/pinterest",
            "PINTREST_REST_PROXY_URL": "https://abc.execute-api.us-east-1.amazonaws.com/dev/",
            "PINTREST_USER_ID": "0e95b18877fd",
            "PINTREST_BUCKET": "s3://user-0e95b18877fd-bucket/landing",
            "PINTREST_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        }
    )
    assert s.db_url_is_secret
    assert s.rest_proxy_url == "https://abc.execute-api.us-east-1.amazonaws.com/dev"
    assert s.bucket_is_s3 and s.s3_endpoint_url == "http://127.0.0.1:9000"
    assert [spec.topic(s.user_id) for spec in TOPICS] == ["0e95b18877fd.pin", "0e95b18877fd.geo", "0e95b18877fd.user"]


@pytest.mark.parametrize(
    "name, value",
    [
        ("PINTREST_REST_PROXY_URL", "127.0.0.1:8082"),
        ("PINTREST_USER_ID", "bad user/id"),
        ("PINTREST_BUCKET", "gs://elsewhere"),
        ("PINTREST_BUCKET", "s3://"),
        ("PINTREST_DB_CREDS", "/nonexistent/db_creds.yaml"),
        ("PINTREST_WAREHOUSE", "s3://bucket/warehouse"),
    ],
)
def test_a_wrong_setting_is_named(tmp_path, name, value):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"PINTREST_HOME": str(tmp_path), name: value})
    assert error.value.setting == name
    assert str(error.value).startswith(f"{name}: ")


def test_original_db_creds_file(tmp_path):
    creds = tmp_path / "db_creds.yaml"
    creds.write_text("HOST: db.example.com\nUSER: admin\nPASSWORD: p@ss:word\nDATABASE: pinterest_data\nPORT: 3307\n")
    url = db_url_from_creds_file(creds)
    assert url == "mysql+pymysql://admin:p%40ss%3Aword@db.example.com:3307/pinterest_data?charset=utf8mb4"
    assert "p%40ss" not in redact_url(url) and "***" in redact_url(url)

    creds.write_text("HOST: db\nUSER: admin\n")
    with pytest.raises(ConfigError, match="lacks PASSWORD, DATABASE"):
        db_url_from_creds_file(creds)


@pytest.mark.parametrize(
    "name, valid",
    [("0e95b18877fd.pin", True), ("a-b_c.user", True), ("..", False), ("", False), ("has space", False), ("x" * 250, False)],
)
def test_kafka_topic_names(name, valid):
    assert is_valid_topic_name(name) is valid


def test_the_kinesis_proxy_defaults_to_the_rest_proxys_url(tmp_path):
    local = Settings.from_env({"PINTREST_HOME": str(tmp_path), "PINTREST_REST_PROXY_URL": "http://127.0.0.1:18090/"})
    assert local.kinesis_proxy_url == "http://127.0.0.1:18090"  # one local gateway serves both
    both = Settings.from_env(
        {"PINTREST_HOME": str(tmp_path), "PINTREST_KINESIS_PROXY_URL": "https://k.execute-api.eu-west-1.amazonaws.com/dev"}
    )
    assert both.kinesis_proxy_url == "https://k.execute-api.eu-west-1.amazonaws.com/dev"
