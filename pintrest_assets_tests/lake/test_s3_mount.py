import json
import threading
from pathlib import Path

import pytest

from pintrest_assets.bucket import LocalBucket, S3Bucket
from pintrest_assets.resources.s3_mount import S3MountResource, _lines_backwards
from pintrest_assets.settings import ConfigError
from pintrest_assets.sink_layout import count_records, object_key

TOPIC = "u.pin"


@pytest.fixture
def s3_mount(tmp_path, s3_bucket, s3_resource) -> S3MountResource:
    return S3MountResource(bucket_url=s3_bucket.url, mount_dir=str(tmp_path / "mnt"), user_id="u", s3=s3_resource)


def test_sync_downloads_only_objects_not_yet_mounted(s3_mount, s3_bucket, s3_requests, bucket_land, tmp_path):
    first = [bucket_land(s3_bucket, TOPIC, offset, records=2) for offset in range(0, 10, 2)]
    bucket_land(s3_bucket, "u.geo", 0)  # another topic: never listed nor fetched

    mount = s3_mount.mount_topic(TOPIC)
    assert [o.key for o in mount.new] == first
    assert s3_requests["GetObject"] == 5
    assert (mount.objects, mount.records, mount.newest_key) == (5, 10, first[-1])
    assert mount.bytes == sum(len(s3_bucket.get(k)) for k in first)
    assert mount.root == str(tmp_path / "mnt" / "topics" / TOPIC)
    assert mount.partition_dirs == (f"{mount.root}/partition=0",)
    for key in first:  # keys kept as paths, content byte for byte
        assert Path(mount.local_path(key)).read_bytes() == s3_bucket.get(key)
        assert mount.local_path(key) == str(tmp_path / "mnt" / key)

    later = [bucket_land(s3_bucket, TOPIC, offset) for offset in (10, 11, 12)]
    s3_requests.clear()
    again = s3_mount.mount_topic(TOPIC)
    assert [o.key for o in again.new] == later
    assert s3_requests["GetObject"] == 3
    assert s3_requests["keys listed"] == 3  # listed after the last mounted key, not from the start
    assert (again.objects, again.records, again.new_records) == (8, 13, 3)
    assert again.newest_key == later[-1]

    s3_requests.clear()
    idle = s3_mount.mount_topic(TOPIC)
    assert (idle.new, idle.objects, idle.records, idle.newest_key) == ((), 8, 13, later[-1])
    assert s3_requests["GetObject"] == 0


def test_full_check_refetches_changed_etags_and_forgets_vanished_objects(s3_mount, s3_bucket, s3_requests, bucket_land):
    keys = [bucket_land(s3_bucket, TOPIC, offset) for offset in range(4)]
    s3_mount.mount_topic(TOPIC)

    s3_bucket.put(keys[1], b'{"index": 1}\n{"index": 2}\n{"index": 3}\n')  # rewritten: new ETag
    s3_bucket.client.delete_object(Bucket=s3_bucket.bucket, Key=keys[3])
    assert s3_mount.mount_topic(TOPIC).new == ()  # incremental: behind the cursor, unseen

    s3_requests.clear()
    checked = s3_mount.mount_topic(TOPIC, full_check=True)
    assert [o.key for o in checked.new] == [keys[1]]
    assert s3_requests["GetObject"] == 1
    assert Path(checked.local_path(keys[1])).read_bytes() == s3_bucket.get(keys[1])
    assert not Path(checked.local_path(keys[3])).exists()
    assert (checked.objects, checked.records) == (3, 1 + 3 + 1)
    assert [o.key for o in s3_mount.mounted_objects(TOPIC)] == keys[:3]

    assert s3_mount.mount_topic(TOPIC, full_check=True).new == ()


def test_partitions_are_synced_each_after_its_own_last_key(s3_mount, s3_bucket, s3_requests, bucket_land):
    p0 = [bucket_land(s3_bucket, TOPIC, offset, partition=0) for offset in range(3)]
    p1 = [bucket_land(s3_bucket, TOPIC, offset, partition=1) for offset in range(2)]
    s3_bucket.put(f"topics/{TOPIC}/notes/README.txt", b"not a partition\n")

    mount = s3_mount.mount_topic(TOPIC)
    assert [o.key for o in mount.new] == p0 + p1
    assert mount.partition_dirs == (f"{mount.root}/partition=0", f"{mount.root}/partition=1")

    newer = bucket_land(s3_bucket, TOPIC, 2, partition=1)
    s3_requests.clear()
    assert [o.key for o in s3_mount.mount_topic(TOPIC).new] == [newer]
    assert s3_requests["keys listed"] == 1
    after = {f"topics/{TOPIC}/partition=0/": p0[1], f"topics/{TOPIC}/partition=1/": p1[1]}
    assert [o.key for o in s3_mount.mounted_objects(TOPIC, after=after)] == [p0[2], newer]


def test_mounted_objects_after_a_cursor_read_only_the_ledger_tail(tmp_path, bucket_land):
    bucket = LocalBucket(tmp_path / "bucket")
    resource = S3MountResource(bucket_url=str(bucket.root), mount_dir=str(tmp_path / "mnt"), user_id="u")
    p0 = [bucket_land(bucket, TOPIC, offset, partition=0) for offset in range(30)]
    p1 = [bucket_land(bucket, TOPIC, offset, partition=1) for offset in range(5)]
    resource.mount_topic(TOPIC)
    p0 += [bucket_land(bucket, TOPIC, offset, partition=0) for offset in (30, 31, 32)]
    resource.mount_topic(TOPIC)
    cursor = {f"topics/{TOPIC}/partition=0/": p0[29], f"topics/{TOPIC}/partition=1/": p1[-1]}

    ledger = tmp_path / "mnt" / ".mount" / f"{TOPIC}.objects.jsonl"
    ledger.write_text("not JSON: proves the head is never read\n" + ledger.read_text())
    new = resource.mounted_objects(TOPIC, after=cursor)
    assert [o.key for o in new] == p0[30:]
    assert [o.path for o in new] == [str(bucket.root / k) for k in p0[30:]]
    with pytest.raises(json.JSONDecodeError):
        resource.mounted_objects(TOPIC)  # everything: the whole ledger
    ledger.write_text(ledger.read_text().split("\n", 1)[1])
    assert [o.key for o in resource.mounted_objects(TOPIC)] == p0 + p1
    # A partition without a cursor is new as a whole.
    only_p0 = {f"topics/{TOPIC}/partition=0/": p0[29]}
    assert [o.key for o in resource.mounted_objects(TOPIC, after=only_p0)] == p0[30:] + p1


@pytest.mark.parametrize("block_size", [1, 7, 64, 1 << 16])
def test_ledger_lines_read_backwards_across_blocks(tmp_path, block_size):
    path = tmp_path / "ledger"
    lines = [b"a", b"bbbbbbbbbbbbbbb", b"cc", b"d" * 40, b"e"]
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert list(_lines_backwards(path, block_size)) == lines[::-1]
    assert list(_lines_backwards(tmp_path / "missing", block_size)) == []


def test_concurrent_syncs_mount_each_object_once(s3_mount, s3_bucket, s3_requests, bucket_land):
    keys = [bucket_land(s3_bucket, TOPIC, offset) for offset in range(20)]
    mounts = []
    threads = [threading.Thread(target=lambda: mounts.append(s3_mount.mount_topic(TOPIC))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.key for m in mounts for o in m.new) == keys
    assert s3_requests["GetObject"] == 20
    assert {(m.objects, m.records) for m in mounts} == {(20, 20)}


def test_a_local_directory_bucket_is_used_in_place(tmp_path, bucket_land):
    bucket = LocalBucket(tmp_path / "bucket")
    mount_dir = tmp_path / "mnt"
    resource = S3MountResource(bucket_url=str(bucket.root), mount_dir=str(mount_dir), user_id="u")
    first = [bucket_land(bucket, TOPIC, offset, records=3) for offset in (0, 3)]

    mount = resource.mount_topic(TOPIC)
    assert [o.key for o in mount.new] == first
    assert mount.root == str(tmp_path / "bucket" / "topics" / TOPIC)
    assert mount.local_path(first[0]) == str(tmp_path / "bucket" / first[0])
    assert (mount.objects, mount.records) == (2, 6)
    assert not (mount_dir / "topics").exists()  # nothing copied; only the manifest lives in the mount
    manifest = json.loads((mount_dir / ".mount" / f"{TOPIC}.json").read_text())
    assert manifest["last_keys"] == {f"topics/{TOPIC}/partition=0/": first[-1]}

    later = bucket_land(bucket, TOPIC, 6, records=2)
    again = resource.mount_topic(TOPIC)
    assert [o.key for o in again.new] == [later]
    assert (again.objects, again.records, again.new_records) == (3, 8, 2)


def test_a_mount_follows_a_change_of_bucket_or_mode(tmp_path, s3_bucket, s3_resource, bucket_land):
    mount_dir = str(tmp_path / "mnt")
    local = LocalBucket(tmp_path / "bucket")
    local_key = bucket_land(local, TOPIC, 0, records=5)
    S3MountResource(bucket_url=str(local.root), mount_dir=mount_dir, user_id="u").mount_topic(TOPIC)

    def mount(bucket_url, mode="sync"):
        resource = S3MountResource(bucket_url=bucket_url, mount_dir=mount_dir, user_id="u", s3=s3_resource, mode=mode)
        return resource.mount_topic(TOPIC)

    key = bucket_land(s3_bucket, TOPIC, 0, records=2)
    assert [o.key for o in mount(s3_bucket.url, mode="direct").new] == [key]
    synced = mount(s3_bucket.url)  # the direct mount copied nothing: the sync starts over
    assert [o.key for o in synced.new] == [key]
    assert (synced.objects, synced.records) == (1, 2)
    assert Path(synced.local_path(key)).exists()
    assert Path(local.root, local_key).exists()  # a bucket read in place is never touched

    other = S3Bucket(s3_bucket.client, f"{s3_bucket.bucket}-b")
    other.client.create_bucket(Bucket=other.bucket)
    other_key = bucket_land(other, TOPIC, 7, records=3)
    moved = mount(other.url)
    assert [o.key for o in moved.new] == [other_key]
    assert (moved.objects, moved.records) == (1, 3)
    assert not Path(moved.local_path(key)).exists()  # the first bucket's copy is gone


def test_direct_mode_hands_spark_bucket_urls_and_copies_nothing(tmp_path, s3_bucket, s3_resource, bucket_land):
    key = bucket_land(s3_bucket, TOPIC, 0, records=4)
    resource = S3MountResource(
        bucket_url=s3_bucket.url, mount_dir=str(tmp_path / "mnt"), user_id="u", s3=s3_resource, mode="direct"
    )
    mount = resource.mount_topic(TOPIC)
    assert mount.root == f"s3a://{s3_bucket.bucket}/topics/{TOPIC}"
    assert mount.local_path(key) == f"s3a://{s3_bucket.bucket}/{key}"
    assert mount.partition_dirs == (f"s3a://{s3_bucket.bucket}/topics/{TOPIC}/partition=0",)
    assert mount.records == 4
    assert not (tmp_path / "mnt" / "topics").exists()


def test_a_prefixed_bucket_keeps_keys_relative_to_its_prefix(tmp_path, s3_bucket, s3_resource, bucket_land):
    key = object_key(TOPIC, 0, 0)
    s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key=f"landing/{key}", Body=b'{"index": 0}\n')
    resource = S3MountResource(
        bucket_url=f"s3://{s3_bucket.bucket}/landing", mount_dir=str(tmp_path / "mnt"), user_id="u", s3=s3_resource
    )
    mount = resource.mount_topic(TOPIC)
    assert [o.key for o in mount.new] == [key]
    assert Path(mount.local_path(key)).read_bytes() == b'{"index": 0}\n'


def test_an_unreachable_endpoint_names_its_setting(tmp_path, unreachable_s3_resource):
    resource = S3MountResource(
        bucket_url="s3://lake-bucket", mount_dir=str(tmp_path), user_id="u", s3=unreachable_s3_resource
    )
    with pytest.raises(ConfigError, match="cannot reach") as err:
        resource.mount_topic(TOPIC)
    assert err.value.setting == "PINTREST_S3_ENDPOINT_URL"


def test_a_missing_bucket_names_its_setting(tmp_path, s3_resource):
    resource = S3MountResource(bucket_url="s3://no-such-lake", mount_dir=str(tmp_path), user_id="u", s3=s3_resource)
    with pytest.raises(ConfigError, match="no such bucket") as err:
        resource.mount_topic(TOPIC)
    assert err.value.setting == "PINTREST_BUCKET"


@pytest.mark.parametrize(
    "data, records",
    [(b"", 0), (b"{}\n", 1), (b'{"a": 1}\n{"a": 2}\n', 2), (b'{"a": 1}\n{"a": 2}', 2), (b"{}\n\n{}\n", 2)],
)
def test_records_are_the_non_blank_lines(data, records):
    assert count_records(data) == records
