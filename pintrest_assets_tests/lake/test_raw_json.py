import dagster as dg
import pytest

from pintrest_assets.bucket import LocalBucket
from pintrest_assets.defs.lake.raw_json import raw_json_assets
from pintrest_assets.lake.mount.resource import S3MountResource
from pintrest_assets.topics import TOPICS, TOPICS_BY_NAME


def _materialize(asset_key: str, s3_mount: S3MountResource, instance: dg.DagsterInstance) -> dict:
    asset = next(a for a in raw_json_assets if a.key == dg.AssetKey(asset_key))
    result = dg.materialize([asset], resources={"s3_mount": s3_mount}, instance=instance)
    assert result.success
    [materialization] = result.asset_materializations_for_node(asset.op.name)
    return {k: v.value for k, v in materialization.metadata.items()}


def test_one_raw_json_asset_per_topic_downstream_of_its_stream():
    assert [a.key for a in raw_json_assets] == [dg.AssetKey(spec.raw_asset) for spec in TOPICS]
    for asset, spec in zip(raw_json_assets, TOPICS):
        asset_spec = next(iter(asset.specs))
        assert asset_spec.group_name == "lake"
        assert [dep.asset_key for dep in asset_spec.deps] == [dg.AssetKey(spec.topic_asset)]
        assert set(asset_spec.kinds) == {"s3", "json"}
        assert spec.description in asset_spec.description
        assert "s3_mount" in asset.required_resource_keys


def test_records_and_what_is_new_across_materialisations_on_s3(tmp_path, s3_bucket, s3_resource, bucket_land):
    s3_mount = S3MountResource(bucket_url=s3_bucket.url, mount_dir=str(tmp_path / "mnt"), user_id="u", s3=s3_resource)
    instance = dg.DagsterInstance.ephemeral()
    first = [bucket_land(s3_bucket, "u.geo", offset, records=3) for offset in (0, 3, 6)]
    bucket_land(s3_bucket, "u.pin", 0, records=7)  # another topic's objects are not this asset's

    metadata = _materialize("geo_raw_json", s3_mount, instance)
    assert {k: metadata[k] for k in ("objects", "records", "new_objects", "new_records", "dagster/row_count")} == {
        "objects": 3,
        "records": 9,
        "new_objects": 3,
        "new_records": 9,
        "dagster/row_count": 9,
    }
    assert metadata["bytes"] == metadata["new_bytes"] == sum(len(s3_bucket.get(k)) for k in first)
    assert metadata["newest_key"] == first[-1]
    assert metadata["mount_path"] == str(tmp_path / "mnt" / "topics" / "u.geo")
    assert metadata["bucket"] == s3_bucket.url
    assert metadata["new_batch_files"] == 1 and metadata["fetch_threads"] > 1
    assert "testing" not in repr(metadata)  # the access key never reaches the UI

    later = [bucket_land(s3_bucket, "u.geo", offset, records=1) for offset in (9, 10)]
    metadata = _materialize("geo_raw_json", s3_mount, instance)
    assert (metadata["objects"], metadata["records"], metadata["new_objects"], metadata["new_records"]) == (5, 11, 2, 2)
    assert metadata["new_bytes"] == sum(len(s3_bucket.get(k)) for k in later)
    assert metadata["newest_key"] == later[-1]

    metadata = _materialize("geo_raw_json", s3_mount, instance)
    assert (metadata["objects"], metadata["records"], metadata["new_objects"], metadata["new_records"]) == (5, 11, 0, 0)
    assert metadata["newest_key"] == later[-1]


@pytest.mark.parametrize("name", sorted(TOPICS_BY_NAME))
def test_each_topic_reads_its_own_objects_from_a_local_bucket(tmp_path, bucket_land, name):
    bucket = LocalBucket(tmp_path / "bucket")
    for i, spec in enumerate(TOPICS):
        bucket_land(bucket, spec.topic("someone"), 0, records=i + 1)
    s3_mount = S3MountResource(bucket_url=str(bucket.root), mount_dir=str(tmp_path / "mnt"), user_id="someone")
    spec = TOPICS_BY_NAME[name]

    metadata = _materialize(spec.raw_asset, s3_mount, dg.DagsterInstance.ephemeral())
    assert metadata["records"] == TOPICS.index(spec) + 1
    assert metadata["mount_path"] == str(tmp_path / "mnt" / "topics" / spec.topic("someone"))
    assert (metadata["new_batch_files"], metadata["fetch_threads"]) == (1, 1)


def test_an_empty_bucket_materialises_with_nothing_mounted(tmp_path):
    s3_mount = S3MountResource(bucket_url=str(tmp_path / "bucket"), mount_dir=str(tmp_path / "mnt"), user_id="u")
    metadata = _materialize("user_raw_json", s3_mount, dg.DagsterInstance.ephemeral())
    assert (metadata["objects"], metadata["records"], metadata["newest_key"]) == (0, 0, "")
