"""pintrest dev's Spark Connect server: what its stop leaves behind."""

import threading
import time

from pintrest_assets.lake.spark_server import SparkConnectServer


def test_stop_ends_a_warm_up_still_running(tmp_path):
    # A server that never answers (none started on its port): the warm-up's client retries it
    # for minutes, as it would after pintrest dev stopped during a slow start.
    server = SparkConnectServer(tmp_path)
    errors = []

    def warm_up():
        try:
            server.warm_up()
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    thread = threading.Thread(target=warm_up, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while server._warming is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the client is up and retrying
    assert server._warming.poll() is None

    started = time.monotonic()
    server.stop()
    thread.join(timeout=10)

    assert not thread.is_alive()
    assert server._warming.poll() is not None
    assert time.monotonic() - started < 10
    assert errors == []  # a warm-up ended by stop is not a failure to report
