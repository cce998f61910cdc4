"""The resources: the seam between the pipeline and the outside world.

``resources_for`` is the one place where the embedded default and real infrastructure part
ways, and only by the values in ``Settings``: the same classes talk to SQLite or MySQL, the local
gateway or a real REST proxy, a local directory or S3, local Spark or a cluster.
"""

from __future__ import annotations

import os

import dagster as dg

from pintrest_assets.database.resource import PostsDatabase
from pintrest_assets.kafka.client import RestProxyResource
from pintrest_assets.settings import Settings

def _secret(name: str, resolve: bool):
    """A secret setting: a ``dg.EnvVar``, resolved at launch and never shown in the UI (its value
    when ``resolve``); None when unset."""
    if not os.environ.get(name):
        return None
    return os.environ[name] if resolve else dg.EnvVar(name)


def database_for(settings: Settings, *, resolve_secrets: bool = False) -> PostsDatabase:
    if resolve_secrets or not settings.db_url_is_secret:
        return PostsDatabase(url=settings.db_url)
    if os.environ.get("PINTREST_DB_URL"):
        return PostsDatabase(url=dg.EnvVar("PINTREST_DB_URL"))
    return PostsDatabase(creds_file=os.environ["PINTREST_DB_CREDS"])


def rest_proxy_for(settings: Settings, *, resolve_secrets: bool = False) -> RestProxyResource:
    return RestProxyResource(
        url=settings.rest_proxy_url,
        user_id=settings.user_id,
        api_key=_secret("PINTREST_REST_PROXY_API_KEY", resolve_secrets),
        username=_secret("PINTREST_REST_PROXY_USERNAME", resolve_secrets),
        password=_secret("PINTREST_REST_PROXY_PASSWORD", resolve_secrets),
    )


def kinesis_for(settings: Settings):
    """The Kinesis endpoint the stream tables read: the embedded kinesalite's, the configured one,
    or AWS's (``PINTREST_KINESIS_ENDPOINT_URL=aws``; boto3 finds the region and credentials)."""
    from pintrest_assets.stream.resource import KinesisResource

    return KinesisResource(endpoint_url=settings.kinesis_client_endpoint, user_id=settings.user_id)


def resources_for(settings: Settings, *, resolve_secrets: bool = False) -> dict:
    """The resources for ``settings``.

    Definitions get secrets as ``dg.EnvVar`` (hidden in the UI, read at launch); commands that
    call resources directly, outside a Dagster run, pass ``resolve_secrets=True``.
    """
    # Imported here: a command that needs only the database and the REST proxy (`pintrest
    # emulate`) takes them from database_for and rest_proxy_for, without loading Spark and boto3.
    from dagster_aws.s3 import S3Resource

    from pintrest_assets.kinesis.proxy_client import kinesis_proxy_for
    from pintrest_assets.lake.mount.resource import S3MountResource
    from pintrest_assets.lake.spark import build_spark_resource
    from pintrest_assets.lake.warehouse import WarehouseIOManager

    spark = build_spark_resource(settings)
    return {
        "database": database_for(settings, resolve_secrets=resolve_secrets),
        "rest_proxy": rest_proxy_for(settings, resolve_secrets=resolve_secrets),
        "s3_mount": S3MountResource(
            bucket_url=settings.bucket,
            mount_dir=str(settings.home / "mnt"),
            user_id=settings.user_id,
            # boto3 reads the AWS credentials from the environment or ~/.aws itself.
            s3=S3Resource(endpoint_url=settings.s3_endpoint_url) if settings.bucket_is_s3 else None,
        ),
        "spark": spark,
        # The streaming half: producers go through the Kinesis proxy, the stream tables read Kinesis.
        "kinesis_proxy": kinesis_proxy_for(settings, resolve_secrets=resolve_secrets),
        "kinesis": kinesis_for(settings),
        "warehouse_io_manager": WarehouseIOManager(base_dir=str(settings.warehouse), spark=spark),
    }
