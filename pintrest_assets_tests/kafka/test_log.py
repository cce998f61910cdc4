"""The write-ahead log and the sink mark: offsets survive restarts, crashes leave nothing twice."""

import json

from pintrest_assets.bucket import LocalBucket
from pintrest_assets.kafka.log import PartitionLog
from pintrest_assets.kafka.sink import PartitionSink, SinkMark
from pintrest_assets_tests.gateway.helpers import landed_objects, produce


def lines(*values) -> list[bytes]:
    return [json.dumps(v).encode() + b"\n" for v in values]


def test_offsets_survive_a_restart(start_gateway, bucket, tmp_path):
    gateway = start_gateway(flush_size=2)
    assert [o["offset"] for o in produce(gateway.url, "u.pin", ["a", "b", "c"]).json()["offsets"]] == [0, 1, 2]
    gateway.shutdown()

    gateway = start_gateway(flush_size=2)
    assert [o["offset"] for o in produce(gateway.url, "u.pin", ["d"]).json()["offsets"]] == [3]
    gateway.shutdown()
    assert landed_objects(bucket, "u.pin") == [(0, ["a", "b"]), (2, ["c"]), (3, ["d"])]


def test_a_torn_last_line_is_cut_off_on_recovery(tmp_path):
    plog = PartitionLog(tmp_path, fsync=True)
    assert plog.append(lines(1, 2)) == 0
    plog.close()
    segment = tmp_path / f"{0:020d}.log"
    with open(segment, "ab") as f:
        f.write(b'{"half": ')  # a crash in the middle of an append that was never acknowledged

    plog = PartitionLog(tmp_path, fsync=True)
    assert plog.next_offset == 2
    assert segment.read_bytes() == b"1\n2\n"
    assert plog.append(lines(3)) == 2
    assert plog.read(0, 3) == b"1\n2\n3\n"


def test_segments_roll_are_read_across_and_deleted_once_landed(tmp_path):
    plog = PartitionLog(tmp_path, fsync=False, segment_bytes=10)
    for i in range(0, 30, 3):
        plog.append(lines(i, i + 1, i + 2))
    segments = sorted(int(p.stem) for p in tmp_path.glob("*.log"))
    assert len(segments) > 3 and segments[0] == 0 and (tmp_path / f"{0:020d}.log").exists()
    assert plog.read(0, 4) == b"0\n1\n2\n3\n"
    assert plog.read(4, 25) == b"".join(lines(*range(4, 25)))  # continues across segment files
    assert plog.read(1, 2) == b"1\n"  # and seeks back

    plog.discard_below(25)
    holding_25 = max(base for base in segments if base <= 25)
    assert sorted(int(p.stem) for p in tmp_path.glob("*.log")) == [b for b in segments if b >= holding_25]
    assert plog.read(25, 30) == b"".join(lines(*range(25, 30)))
    plog.close()

    plog = PartitionLog(tmp_path, fsync=False, segment_bytes=10, start_offset=25)
    assert plog.next_offset == 30
    assert plog.read(26, 30) == b"".join(lines(*range(26, 30)))


def test_a_log_that_lost_landed_records_continues_after_them(tmp_path):
    # Unsynced writes lost in a power cut, while the bucket already has records up to 7.
    plog = PartitionLog(tmp_path / "p", fsync=False, start_offset=7)
    assert plog.next_offset == 7
    assert plog.append(lines("x")) == 7
    assert plog.read(7, 8) == b'"x"\n'


def test_a_partial_file_in_flight_at_a_crash_is_landed_again_with_the_same_boundaries(tmp_path):
    # The state a crash leaves when it hits between uploading the partial file [0, 3) and
    # recording that it landed: 5 records in the log, the mark still at 0 with the file's end.
    directory = tmp_path / "u.pin-0"
    plog = PartitionLog(directory)
    plog.append(lines(0, 1, 2, 3, 4))
    mark = SinkMark(directory / "sink.json", landed=0, landing_end=3)
    mark.save(fsync=True)
    bucket = LocalBucket(tmp_path / "bucket")
    bucket.put("topics/u.pin/partition=0/u.pin+0+0000000000.json", b"0\n1\n2\n")  # the upload that happened

    sink = PartitionSink("u.pin", 0, plog, SinkMark.load(directory / "sink.json"), bucket, 100, 60_000)
    sink.start()
    sink.stop(timeout=5)
    sink.join()

    assert landed_objects(bucket, "u.pin") == [(0, [0, 1, 2]), (3, [3, 4])]
    assert json.loads((directory / "sink.json").read_text()) == {"landed": 5, "landing_end": None}


def test_a_new_state_directory_continues_after_what_the_bucket_holds(start_gateway, bucket, tmp_path):
    gateway = start_gateway(state_dir=tmp_path / "first")
    produce(gateway.url, "u.pin", ["a", "b", "c"])
    gateway.shutdown()

    # The state directory is gone (or another machine landed these): offsets must not restart
    # at 0, which would overwrite u.pin+0+0000000000.json.
    gateway = start_gateway(state_dir=tmp_path / "second")
    assert [o["offset"] for o in produce(gateway.url, "u.pin", ["d", "e"]).json()["offsets"]] == [3, 4]
    gateway.shutdown()
    assert landed_objects(bucket, "u.pin") == [(0, ["a", "b", "c"]), (3, ["d", "e"])]
