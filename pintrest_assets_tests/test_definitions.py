import importlib

import dagster as dg

from pintrest_assets.resources import resources_for
from pintrest_assets.settings import Settings
from pintrest_assets.topics import TOPICS


def _load_defs(monkeypatch, **env) -> dg.Definitions:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    import pintrest_assets.definitions as module

    return importlib.reload(module).defs


def test_definitions_load_with_the_whole_lineage(monkeypatch, tmp_path):
    defs = _load_defs(monkeypatch, PINTREST_HOME=str(tmp_path))
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for spec in TOPICS:
        chain = [spec.table, spec.topic_asset, spec.raw_asset, spec.dataframe]
        for upstream, downstream in zip(chain, chain[1:]):
            assert dg.AssetKey(upstream) in graph.get(dg.AssetKey(downstream)).parent_keys, (upstream, downstream)
    assert defs.resolve_sensor_def("new_objects_sensor") is not None
    assert defs.resolve_schedule_def("emulation_schedule").default_status == dg.DefaultScheduleStatus.STOPPED


def test_secrets_reach_definitions_as_env_vars_never_as_values(monkeypatch, tmp_path):
    monkeypatch.setenv("PINTREST_DB_URL", "mysql+pymysql://admin:s3cret@db:3306/pinterest")
    monkeypatch.setenv("PINTREST_REST_PROXY_API_KEY", "key-123")
    settings = Settings.from_env({"PINTREST_HOME": str(tmp_path), "PINTREST_DB_URL": "mysql+pymysql://admin:s3cret@db:3306/pinterest"})
    resources = resources_for(settings)
    assert isinstance(resources["database"].url, dg.EnvVar) and resources["database"].url.env_var_name == "PINTREST_DB_URL"
    assert isinstance(resources["rest_proxy"].api_key, dg.EnvVar)
    # Commands that call resources directly get the values.
    resolved = resources_for(settings, resolve_secrets=True)
    assert resolved["database"].url.endswith("@db:3306/pinterest") and resolved["rest_proxy"].api_key == "key-123"


def test_a_db_creds_file_is_read_at_run_time_not_copied_into_config(monkeypatch, tmp_path):
    creds = tmp_path / "db_creds.yaml"
    creds.write_text("HOST: db\nUSER: admin\nPASSWORD: s3cret\nDATABASE: pinterest\nPORT: 3306\n")
    monkeypatch.delenv("PINTREST_DB_URL", raising=False)
    monkeypatch.setenv("PINTREST_DB_CREDS", str(creds))
    database = resources_for(Settings.from_env())["database"]
    assert database.creds_file == str(creds) and "s3cret" not in database.url
    assert database.database_url == "mysql+pymysql://admin:s3cret@db:3306/pinterest?charset=utf8mb4"


def test_an_s3_bucket_is_mounted_through_dagster_aws(tmp_path):
    from dagster_aws.s3 import S3Resource

    settings = Settings.from_env(
        {"PINTREST_HOME": str(tmp_path), "PINTREST_BUCKET": "s3://user-bucket/landing", "PINTREST_S3_ENDPOINT_URL": "http://127.0.0.1:9000"}
    )
    mount = resources_for(settings)["s3_mount"]
    assert isinstance(mount.s3, S3Resource) and mount.s3.endpoint_url == "http://127.0.0.1:9000"
    assert mount.bucket_url == "s3://user-bucket/landing"
    local = resources_for(Settings.from_env({"PINTREST_HOME": str(tmp_path)}))["s3_mount"]
    assert local.s3 is None and local.bucket_url == str(tmp_path / "bucket")
