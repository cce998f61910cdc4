"""The raw JSON objects of each topic, as the S3 sink landed them, mounted for Spark."""

import dagster as dg

from pintrest_assets.lake.mount.resource import S3MountResource
from pintrest_assets.topics import TOPICS, TopicSpec


def build_raw_json_asset(spec: TopicSpec) -> dg.AssetsDefinition:
    @dg.asset(
        name=spec.raw_asset,
        group_name="lake",
        deps=[spec.topic_asset],
        kinds={"s3", "json"},
        description=f"The `<user_id>.{spec.name}` topic's objects in the bucket (one JSON record per line), "
        f"mounted where Spark reads them: their lines gathered into a few batch files. {spec.description}",
    )
    def raw_json(context: dg.AssetExecutionContext, s3_mount: S3MountResource) -> dg.MaterializeResult:
        mount = s3_mount.mount_topic(s3_mount.topic_for(spec))
        context.log.info(
            f"{mount.topic}: {len(mount.new)} new objects ({mount.new_records} records) into "
            f"{mount.new_batch_files} batch files, {mount.objects} objects ({mount.records} records) in all"
        )
        return dg.MaterializeResult(
            metadata={
                "topic": mount.topic,
                "dagster/row_count": mount.records,
                "objects": mount.objects,
                "records": mount.records,
                "bytes": mount.bytes,
                "new_objects": len(mount.new),
                "new_records": mount.new_records,
                "new_bytes": mount.new_bytes,
                "new_batch_files": mount.new_batch_files,
                "fetch_threads": mount.fetch_threads,
                "newest_key": mount.newest_key or "",
                "mount_path": dg.MetadataValue.path(mount.root),
                # A directory or s3://bucket[/prefix]; the S3 credentials stay in the s3 resource.
                "bucket": s3_mount.bucket_url,
            }
        )

    return raw_json


raw_json_assets: list[dg.AssetsDefinition] = [build_raw_json_asset(spec) for spec in TOPICS]
