import json
import random
import time

import sqlalchemy as sa

from pintrest_assets.emulation.emulator import emulate
from pintrest_assets.database.resource import PostsDatabase
from pintrest_assets.kafka.client import RestProxyResource
from pintrest_assets.kafka.sink_layout import partition_prefix
from pintrest_assets.topics import TOPICS


def _landed(bucket, topic):
    """Every record value landed for a topic, in offset order."""
    return [json.loads(line) for obj in bucket.list(partition_prefix(topic, 0)) for line in bucket.get(obj.key).splitlines()]


def test_a_batch_lands_every_post_as_three_records_sharing_an_index(database, rest_proxy, gateway):
    report = emulate(database, rest_proxy, 250, rng=random.Random(1), chunk_posts=100)
    assert report.posts == 250 and report.missing == 0 and report.error is None
    for spec in TOPICS:
        tally = report.topics[spec.name]
        assert (tally.topic, tally.sent, tally.failed) == (f"tester.{spec.name}", 250, 0)
        assert sorted(tally.offsets[0]) == list(range(250))
    gateway.shutdown()  # lands the partial last object

    pins, geos, users = (_landed(gateway.bucket, rest_proxy.topic_for(spec)) for spec in TOPICS)
    assert len(pins) == len(geos) == len(users) == 250
    # The same offset in the three topics is one post: one pin, its geo and its user row.
    assert all(p["index"] == g["ind"] == u["ind"] for p, g, u in zip(pins, geos, users))
    assert set(pins[0]) == {
        "index", "unique_id", "title", "description", "poster_name", "follower_count", "tag_list",
        "is_image_or_video", "image_src", "downloaded", "save_location", "category",
    }
    assert isinstance(pins[0]["follower_count"], str)
    time.strptime(geos[0]["timestamp"], "%Y-%m-%dT%H:%M:%S")
    time.strptime(users[0]["date_joined"], "%Y-%m-%dT%H:%M:%S")


def test_the_same_seed_draws_the_same_posts(database, rest_proxy, gateway):
    first = emulate(database, rest_proxy, 20, rng=random.Random(5))
    second = emulate(database, rest_proxy, 20, rng=random.Random(5))
    gateway.shutdown()
    pins = _landed(gateway.bucket, first.topics["pin"].topic)
    assert [p["unique_id"] for p in pins[:20]] == [p["unique_id"] for p in pins[20:]]
    assert second.topics["pin"].first_offset == 20 and second.topics["pin"].last_offset == 39


def test_an_index_missing_from_one_table_is_counted_and_skipped(tmp_path, rest_proxy, gateway):
    url = f"sqlite:///{tmp_path / 'small.db'}"
    from pintrest_assets.database.seed import seed

    seed(url, rows=10)
    with sa.create_engine(url).begin() as conn:
        conn.execute(sa.text("DELETE FROM geolocation_data WHERE ind = :ind"), {"ind": 3})
    report = emulate(PostsDatabase(url=url), rest_proxy, 200, rng=random.Random(2))
    assert report.missing > 0
    sent = {name: t.sent for name, t in report.topics.items()}
    assert sent["pin"] == sent["geo"] == sent["user"] == 200 - report.missing
    gateway.shutdown()
    assert 3 not in {g["ind"] for g in _landed(gateway.bucket, report.topics["geo"].topic)}


def test_rate_spreads_the_posts_over_time(database, rest_proxy):
    report = emulate(database, rest_proxy, 30, rate=100.0, rng=random.Random(3))
    assert report.posts == 30
    assert report.seconds >= 0.25  # 30 posts at 100/s cannot take much less than 0.3 s


def test_records_the_proxy_refuses_are_counted_not_lost(database, tmp_path):
    from pintrest_assets.bucket import LocalBucket
    from pintrest_assets.gateway import Gateway

    # Records over 600 bytes are refused with 50002: long pin rows fail, geo and user rows pass.
    with Gateway(LocalBucket(tmp_path / "b"), tmp_path / "s", port=0, max_record_bytes=600, fsync=False) as gw:
        proxy = RestProxyResource(url=gw.url, user_id="tester")
        report = emulate(database, proxy, 100, rng=random.Random(4))
    pin = report.topics["pin"]
    assert pin.failed > 0 and pin.sent + pin.failed == 100
    assert pin.failures and all(m.startswith("50002: ") and "maximum record size" in m for m in pin.failures)
    assert report.topics["geo"].sent == report.topics["user"].sent == 100


def test_a_proxy_that_goes_away_stops_the_batch_with_counts_kept(database, gateway):
    proxy = RestProxyResource(url=gateway.url, user_id="tester", max_retries=1, backoff_seconds=0.01)
    first = emulate(database, proxy, 50, rng=random.Random(6))
    assert first.records_sent == 150
    gateway.shutdown()
    report = emulate(database, proxy, 50, rng=random.Random(6))
    assert report.error is not None and report.records_sent == 0
    assert "gave up" in str(report.error) and "0 of 50 records acknowledged" in str(report.error)
