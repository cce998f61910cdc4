from pintrest_assets.bucket import LocalBucket
from pintrest_assets.emulation.landing import LandingWatcher
from pintrest_assets.kafka.sink_layout import object_key


class CountingBucket(LocalBucket):
    gets = 0

    def get(self, key):
        self.gets += 1
        return super().get(key)


def _land(bucket, start, count, topic="u.pin"):
    bucket.put(object_key(topic, 0, start), b"".join(b'{"i": %d}\n' % o for o in range(start, start + count)))


def test_landed_counts_offsets_in_range_and_reads_each_object_once(tmp_path):
    bucket = CountingBucket(tmp_path)
    _land(bucket, 0, 5)
    _land(bucket, 5, 5)
    _land(bucket, 0, 3, topic="u.geo")  # another topic is not counted
    watcher = LandingWatcher(bucket, "u.pin")
    assert watcher.landed(0, 9) == 10
    assert watcher.landed(3, 6) == 4
    assert watcher.landed(8, 20) == 2  # 10..20 have not landed
    assert bucket.gets == 2
    _land(bucket, 10, 4)
    assert watcher.landed(8, 20) == 6
    assert bucket.gets == 3
