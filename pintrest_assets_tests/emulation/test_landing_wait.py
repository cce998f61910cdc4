"""Waiting until what the REST proxy acknowledged has landed in the bucket."""

from pintrest_assets.bucket import LocalBucket
from pintrest_assets.emulation.landing import wait_until_landed
from pintrest_assets.kafka.sink_layout import object_key


def _land(bucket, topic, start, count):
    bucket.put(object_key(topic, 0, start), b"".join(b'{"i": %d}\n' % o for o in range(start, start + count)))


def test_waits_until_every_acknowledged_offset_has_landed_and_reports_progress(tmp_path):
    bucket = LocalBucket(tmp_path)
    _land(bucket, "u.pin", 0, 5)
    # The rest lands between looks: the pin records after the first, the geo records after the second.
    landings = [lambda: _land(bucket, "u.pin", 5, 5), lambda: _land(bucket, "u.geo", 0, 4)]
    seen = []

    def on_progress(n, total):
        seen.append((n, total))
        if landings:
            landings.pop(0)()

    landed = wait_until_landed(
        bucket,
        {"u.pin": {"0": [0, 9]}, "u.geo": {0: (0, 3)}},
        timeout=30,
        poll_interval=0.05,
        on_progress=on_progress,
    )
    assert landed == {"u.pin": 10, "u.geo": 4}
    assert seen == [(5, 14), (10, 14), (14, 14)]


def test_gives_up_after_the_timeout_with_what_landed(tmp_path):
    bucket = LocalBucket(tmp_path)
    _land(bucket, "u.pin", 0, 3)
    assert wait_until_landed(bucket, {"u.pin": {"0": [0, 9]}}, timeout=0.2, poll_interval=0.05) == {"u.pin": 3}
