import json
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pintrest_assets.bucket import LocalBucket
from pintrest_assets.lake.mount.batch_files import BatchSlice, BatchWriter, load_objects, record_lines
from pintrest_assets.lake.mount.ledger import TopicLedger, _lines_backwards
from pintrest_assets.lake.mount.listing import list_new_objects
from pintrest_assets.lake.mount.resource import S3_FETCH_THREADS, S3MountResource
from pintrest_assets.settings import ConfigError
from pintrest_assets.kafka.sink_layout import count_records, object_key, partition_prefix
from pintrest_assets_tests.helpers import land_in_key_order, poll_until_landed

TOPIC = "u.pin"


@pytest.fixture
def s3_mount(tmp_path, s3_bucket, s3_resource) -> S3MountResource:
    return S3MountResource(bucket_url=s3_bucket.url, mount_dir=str(tmp_path / "mnt"), user_id="u", s3=s3_resource)


def _batches(mount) -> list[str]:
    """The topic's batches, as paths without a suffix, in the order they were written."""
    return sorted(str(p)[: -len(".objects.json")] for p in Path(mount.root).glob("batch-*.objects.json"))


def _batch_records(mount) -> list[tuple[str, dict]]:
    """(key, record) of every record in the topic's batches, batch by batch: the records the
    mount parsed (their columns that are set), then the lines it left to Spark (parsed here)."""
    records = []
    for batch in _batches(mount):
        if Path(batch + ".parquet").exists():
            for row in pq.read_table(batch + ".parquet").to_pylist():
                key = row.pop("_key")
                records.append((key, {k: v for k, v in row.items() if v is not None}))
        if Path(batch + ".tsv").exists():
            for line in Path(batch + ".tsv").read_text().splitlines():
                key, text = line.split("\t", 1)
                records.append((key, json.loads(text)))
    return records


def test_sync_fetches_only_new_objects_into_batch_files(s3_mount, s3_bucket, s3_requests, bucket_land, tmp_path):
    first = [bucket_land(s3_bucket, TOPIC, offset, records=2) for offset in range(0, 10, 2)]
    bucket_land(s3_bucket, "u.geo", 0)  # another topic: never listed nor fetched

    mount = s3_mount.mount_topic(TOPIC)
    assert [o.key for o in mount.new] == first
    assert s3_requests["GetObject"] == 5
    assert mount.fetch_threads == S3_FETCH_THREADS
    assert (mount.objects, mount.records, mount.newest_key, mount.new_batch_files) == (5, 10, first[-1], 1)
    assert mount.bytes == sum(len(s3_bucket.get(k)) for k in first)
    assert mount.root == str(tmp_path / "mnt" / "topics" / TOPIC)
    # Each record, parsed on mount, behind its object's key.
    expected = [(key, json.loads(line)) for key in first for line in s3_bucket.get(key).decode().splitlines()]
    assert _batch_records(mount) == expected
    [batch] = _batches(mount)
    assert not Path(batch + ".tsv").exists()  # nothing left for Spark to parse
    assert load_objects(batch) == list(mount.new)  # the batch's object list, beside it

    later = [bucket_land(s3_bucket, TOPIC, offset) for offset in (10, 11, 12)]
    s3_requests.clear()
    again = s3_mount.mount_topic(TOPIC)
    assert [o.key for o in again.new] == later
    assert s3_requests["GetObject"] == 3
    assert s3_requests["keys listed"] == 3  # listed after the last mounted key, not from the start
    assert (again.objects, again.records, again.new_records, again.new_batch_files) == (8, 13, 3, 1)
    assert again.newest_key == later[-1]
    assert len(_batches(mount)) == 2

    s3_requests.clear()
    idle = s3_mount.mount_topic(TOPIC)
    assert (idle.new, idle.objects, idle.records, idle.newest_key, idle.new_batch_files) == ((), 8, 13, later[-1], 0)
    assert s3_requests["GetObject"] == 0


def test_partitions_are_synced_each_after_its_own_last_key(s3_mount, s3_bucket, s3_requests, bucket_land):
    p0 = [bucket_land(s3_bucket, TOPIC, offset, partition=0) for offset in range(3)]
    p1 = [bucket_land(s3_bucket, TOPIC, offset, partition=1) for offset in range(2)]
    s3_bucket.put(f"topics/{TOPIC}/notes/README.txt", b"not a partition\n")

    mount = s3_mount.mount_topic(TOPIC)
    assert [o.key for o in mount.new] == p0 + p1

    newer = bucket_land(s3_bucket, TOPIC, 2, partition=1)
    s3_requests.clear()
    assert [o.key for o in s3_mount.mount_topic(TOPIC).new] == [newer]
    assert s3_requests["keys listed"] == 1
    after = {f"topics/{TOPIC}/partition=0/": p0[1], f"topics/{TOPIC}/partition=1/": p1[1]}
    assert s3_mount.select(TOPIC, after=after).keys() == [p0[2], newer]


def test_a_selection_after_a_cursor_reads_only_the_ledger_tail(tmp_path, bucket_land):
    bucket = LocalBucket(tmp_path / "bucket")
    resource = S3MountResource(bucket_url=str(bucket.root), mount_dir=str(tmp_path / "mnt"), user_id="u")
    p0 = [bucket_land(bucket, TOPIC, offset, partition=0, records=2) for offset in range(0, 60, 2)]
    p1 = [bucket_land(bucket, TOPIC, offset, partition=1) for offset in range(5)]
    first = resource.mount_topic(TOPIC)
    p0 += [bucket_land(bucket, TOPIC, offset, partition=0) for offset in (60, 61, 62)]
    resource.mount_topic(TOPIC)
    first_batch, second_batch = _batches(first)
    cursor = {f"topics/{TOPIC}/partition=0/": p0[29], f"topics/{TOPIC}/partition=1/": p1[-1]}

    ledger = tmp_path / "mnt" / ".mount" / f"{TOPIC}.batches.jsonl"
    ledger.write_text("not JSON: proves the head is never read\n" + ledger.read_text())
    manifest_path = tmp_path / "mnt" / ".mount" / f"{TOPIC}.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "ledger_bytes": ledger.stat().st_size}))
    new = resource.select(TOPIC, after=cursor)
    # The whole batch file, from its ledger line alone.
    whole = BatchSlice(second_batch, None, parsed=True, residue=False)
    assert (new.slices, new.objects, new.records) == ((whole,), 3, 3)
    assert new.last_keys == {f"topics/{TOPIC}/partition=0/": p0[-1]}
    assert new.keys() == p0[30:]
    with pytest.raises(json.JSONDecodeError):
        resource.select(TOPIC)  # everything: the whole ledger
    ledger.write_text(ledger.read_text().split("\n", 1)[1])
    manifest_path.write_text(json.dumps(manifest))
    everything = resource.select(TOPIC)
    assert everything.keys() == sorted(p0 + p1)
    assert (everything.objects, everything.records) == (len(p0) + len(p1), 2 * 30 + 3 + 5)
    # A partition without a cursor is new as a whole; a cursor inside a batch file reads part of it.
    only_p0 = {f"topics/{TOPIC}/partition=0/": p0[29]}
    assert resource.select(TOPIC, after=only_p0).keys() == sorted(p0[30:] + p1)
    inside = {f"topics/{TOPIC}/partition=0/": p0[27], f"topics/{TOPIC}/partition=1/": p1[2]}
    straddling = resource.select(TOPIC, after=inside)
    assert straddling.slices == (
        BatchSlice(first_batch, (p0[28], p0[29], p1[3], p1[4]), parsed=True, residue=False),
        BatchSlice(second_batch, None, parsed=True, residue=False),
    )
    assert (straddling.objects, straddling.records) == (7, 2 + 2 + 1 + 1 + 3)


def test_a_sync_that_died_before_its_manifest_is_mounted_again_once(tmp_path, bucket_land, monkeypatch):
    bucket = LocalBucket(tmp_path / "bucket")
    resource = S3MountResource(bucket_url=str(bucket.root), mount_dir=str(tmp_path / "mnt"), user_id="u")
    keys = [bucket_land(bucket, TOPIC, offset) for offset in range(2)]
    first = resource.mount_topic(TOPIC)
    keys += [bucket_land(bucket, TOPIC, offset) for offset in (2, 3)]

    def die(self, manifest):
        raise OSError("killed after the ledger, before the manifest")

    with monkeypatch.context() as patch:
        patch.setattr(TopicLedger, "save_manifest", die)
        with pytest.raises(OSError):
            resource.mount_topic(TOPIC)
    # Readers see the last committed sync only.
    assert resource.select(TOPIC).keys() == keys[:2]
    keys.append(bucket_land(bucket, TOPIC, 4))
    again = resource.mount_topic(TOPIC)
    assert [o.key for o in again.new] == keys[2:]
    assert (again.objects, again.records) == (5, 5)
    mounted = resource.select(TOPIC)
    assert mounted.keys() == keys and mounted.objects == 5
    # The dead sync's batch file is in no ledger line: never read.
    assert len(_batches(first)) == 3 and len(mounted.slices) == 2
    assert all(s.keys is None for s in mounted.slices)


@pytest.mark.parametrize("block_size", [1, 7, 64, 1 << 16])
def test_ledger_lines_read_backwards_across_blocks(tmp_path, block_size):
    path = tmp_path / "ledger"
    lines = [b"a", b"bbbbbbbbbbbbbbb", b"cc", b"d" * 40, b"e"]
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert list(_lines_backwards(path, block_size=block_size)) == lines[::-1]
    assert list(_lines_backwards(path, end=len(b"a\nbbbbbbbbbbbbbbb\n"), block_size=block_size)) == lines[1::-1]
    assert list(_lines_backwards(tmp_path / "missing", block_size=block_size)) == []


def test_concurrent_syncs_mount_each_object_once(s3_mount, s3_bucket, s3_requests, bucket_land):
    keys = [bucket_land(s3_bucket, TOPIC, offset) for offset in range(20)]
    mounts, errors = [], []

    def mount() -> None:
        try:
            mounts.append(s3_mount.mount_topic(TOPIC))
        except BaseException as exc:  # noqa: BLE001 - raised again below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=mount) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]
    assert len(mounts) == 2  # both syncs finished: one mounted everything, the other found nothing new
    assert sorted(o.key for m in mounts for o in m.new) == keys
    assert s3_requests["GetObject"] == 20
    assert {(m.objects, m.records) for m in mounts} == {(20, 20)}


def test_a_local_directory_bucket_is_read_in_place(tmp_path, bucket_land):
    bucket = LocalBucket(tmp_path / "bucket")
    mount_dir = tmp_path / "mnt"
    resource = S3MountResource(bucket_url=str(bucket.root), mount_dir=str(mount_dir), user_id="u")
    first = [bucket_land(bucket, TOPIC, offset, records=3) for offset in (0, 3)]

    mount = resource.mount_topic(TOPIC)
    assert [o.key for o in mount.new] == first
    assert mount.root == str(mount_dir / "topics" / TOPIC)
    assert (mount.objects, mount.records, mount.fetch_threads) == (2, 6, 1)
    assert len(_batch_records(mount)) == 6
    assert not (mount_dir / "topics" / TOPIC / "partition=0").exists()  # no copy per object
    manifest = json.loads((mount_dir / ".mount" / f"{TOPIC}.json").read_text())
    assert manifest["last_keys"] == {f"topics/{TOPIC}/partition=0/": first[-1]}

    later = bucket_land(bucket, TOPIC, 6, records=2)
    again = resource.mount_topic(TOPIC)
    assert [o.key for o in again.new] == [later]
    assert (again.objects, again.records, again.new_records) == (3, 8, 2)


@pytest.mark.parametrize("limit", [None, 700])
def test_listing_a_local_directory_during_in_order_renames_misses_no_key(tmp_path, limit):
    # The mount lists a partition after its last key seen while the sink renames objects into the
    # directory in key order: no object may be passed over by a listing that overlapped a rename.
    bucket = LocalBucket(tmp_path / "bucket")
    prefix = partition_prefix(TOPIC, 0)

    def list_after(after: str | None) -> list[str]:
        since = {prefix: after} if after else {}
        return [o.key for o in list_new_objects(bucket, TOPIC, since, limit).objects]

    keys, landing = land_in_key_order(bucket, TOPIC, 5_000)
    assert poll_until_landed(landing, list_after) == keys


def test_a_mount_follows_a_change_of_bucket_and_drops_an_older_format(tmp_path, s3_bucket, s3_resource, bucket_land):
    mount_dir = tmp_path / "mnt"
    local = LocalBucket(tmp_path / "bucket")
    local_key = bucket_land(local, TOPIC, 0, records=5)
    S3MountResource(bucket_url=str(local.root), mount_dir=str(mount_dir), user_id="u").mount_topic(TOPIC)

    def mount(bucket_url):
        return S3MountResource(
            bucket_url=bucket_url, mount_dir=str(mount_dir), user_id="u", s3=s3_resource
        ).mount_topic(TOPIC)

    key = bucket_land(s3_bucket, TOPIC, 0, records=2)
    moved = mount(s3_bucket.url)  # another bucket: mounted from scratch
    assert [o.key for o in moved.new] == [key]
    assert (moved.objects, moved.records) == (1, 2)
    assert [k for k, _ in _batch_records(moved)] == [key, key]
    assert Path(local.root, local_key).exists()  # a bucket is never touched

    # A mount of the format that kept one file per object (manifest version 1) is mounted again.
    manifest_path = mount_dir / ".mount" / f"{TOPIC}.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "version": 1}))
    old_ledger = mount_dir / ".mount" / f"{TOPIC}.objects.jsonl"
    old_ledger.write_text('{"key": "k", "size": 1, "etag": "e", "records": 1}\n')
    assert [o.key for o in mount(s3_bucket.url).new] == [key]
    assert not old_ledger.exists()


def test_a_prefixed_bucket_keeps_keys_relative_to_its_prefix(tmp_path, s3_bucket, s3_resource):
    key = object_key(TOPIC, 0, 0)
    s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key=f"landing/{key}", Body=b'{"index": 0}\n')
    resource = S3MountResource(
        bucket_url=f"s3://{s3_bucket.bucket}/landing", mount_dir=str(tmp_path / "mnt"), user_id="u", s3=s3_resource
    )
    mount = resource.mount_topic(TOPIC)
    assert [o.key for o in mount.new] == [key]
    assert _batch_records(mount) == [(key, {"index": 0})]


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
    [
        (b"", 0),
        (b"{}\n", 1),
        (b'{"a": 1}\n{"a": 2}\n', 2),
        (b'{"a": 1}\n{"a": 2}', 2),
        (b"{}\n\n{}\n", 2),
        (b"{}\r\n \t\r\n{}\r{}", 3),
    ],
)
def test_records_are_the_non_blank_lines_and_batch_lines_agree(data, records):
    assert count_records(data) == records
    lines, counted = record_lines("k", data)
    assert counted == records == len(lines)
    assert all(line.startswith(b"k\t") and line.endswith(b"\n") and b"\r" not in line for line in lines)


def test_batch_files_close_at_their_size_and_never_split_an_object(tmp_path):
    writer = BatchWriter(tmp_path, sequence=7, max_bytes=40)
    for i in range(5):
        writer.add(f"k{i}", "e", b'{"i": 1}\n{"i": 2}\n')  # 2 lines of 12 bytes each
    files = writer.close()
    assert [[o.key for o in batch.objects] for batch in files] == [["k0"], ["k1"], ["k2"], ["k3"], ["k4"]]
    assert [batch.name.split("-")[1] for batch in files] == [f"{n:08d}" for n in range(7, 12)]
    with pytest.raises(ValueError, match="tab or a line break"):
        writer.add("bad\tkey", "e", b"{}\n")


def test_the_writer_parses_what_pyarrow_reads_as_spark_does_and_leaves_the_rest_to_spark(tmp_path):
    from pintrest_assets.lake.schemas import arrow_schema

    good = [json.dumps({"index": i, "title": f"t{i}"}) for i in range(100)]
    bad = ['{"index": 1000, "title": 5}', "not json", '{"index": 1001}{"index": 1002}', '{"title": "no index"}']
    lines = good[:10] + bad[:2] + good[10:60] + bad[2:] + good[60:]
    writer = BatchWriter(tmp_path, sequence=0, schema=arrow_schema("pin"), key_column="index")
    writer.add("k0", "e", "".join(line + "\n" for line in lines[:70]).encode())
    writer.add("k1", "e", "".join(line + "\n" for line in lines[70:]).encode())
    [batch] = writer.close()
    assert batch.parsed + batch.residue == len(lines)
    residue = (tmp_path / f"{batch.name}.tsv").read_text().splitlines()
    assert all(f"\t{line}" in "\n".join(residue) for line in bad)
    assert batch.residue <= 8 * len(bad)  # a refused line costs Spark at most its group of lines
    parsed = pq.read_table(tmp_path / f"{batch.name}.parquet")
    assert parsed.num_rows == batch.parsed
    assert set(parsed.column("index").to_pylist()) <= set(range(100))
    keys = dict(zip(parsed.column("index").to_pylist(), parsed.column("_key").to_pylist()))
    assert all(keys[i] == ("k0" if good[i] in lines[:70] else "k1") for i in keys)
    assert batch.stats["index"]["count"] == batch.parsed
    assert batch.stats["index"]["min"] == min(keys) and batch.stats["index"]["max"] == max(keys)
    assert batch.stats["title"]["min"] == min(f"t{i}" for i in keys)


def test_a_release_drops_the_batches_read_and_a_reader_behind_it_finds_them_mounted_again(tmp_path, bucket_land):
    bucket = LocalBucket(tmp_path / "bucket")
    resource = S3MountResource(bucket_url=str(bucket.root), mount_dir=str(tmp_path / "mnt"), user_id="u")
    keys = [bucket_land(bucket, TOPIC, offset) for offset in range(3)]
    first = resource.mount_topic(TOPIC)
    keys += [bucket_land(bucket, TOPIC, offset) for offset in (3, 4)]
    resource.mount_topic(TOPIC)
    first_batch, second_batch = _batches(first)
    prefix = f"topics/{TOPIC}/partition=0/"

    # Released up to a cursor inside the second batch: only the first batch goes.
    assert resource.release(TOPIC, {prefix: keys[3]}) == 1
    assert _batches(first) == [second_batch]
    assert resource.select(TOPIC, after={prefix: keys[2]}).keys() == keys[3:]
    assert resource.release(TOPIC, {prefix: keys[4]}) == 1
    assert _batches(first) == [] and resource.select(TOPIC, after={prefix: keys[4]}).objects == 0
    assert not list(Path(first.root).iterdir())

    # A reader from the start (its table deleted): mounted again from the bucket, as far as mounted.
    bucket_land(bucket, TOPIC, 5)  # landed since the last sync: for the next sync, not this reader
    again = resource.select(TOPIC, after={})
    assert again.keys() == keys and again.records == 5
    sync = resource.mount_topic(TOPIC)
    assert [o.key for o in sync.new] == [object_key(TOPIC, 0, 5)]
    assert (sync.objects, sync.records) == (6, 6)

    # Files of a batch no ledger line names (a release that died before deleting them) go next time.
    stray = Path(sync.root) / "batch-00000099-deadbeef.parquet"
    stray.write_bytes(b"left over")
    resource.release(TOPIC, {prefix: keys[0]})
    assert not stray.exists()
