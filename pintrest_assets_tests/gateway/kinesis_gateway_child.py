"""A local gateway with its Kinesis stack, wired as ``pintrest gateway`` wires it, as a process of
its own for the crash tests: ``python -m pintrest_assets_tests.gateway.kinesis_gateway_child``.

It reads the settings from the environment (``PINTREST_HOME``, ``PINTREST_USER_ID``,
``PINTREST_KINESIS_LOCAL_PORT``, ...), listens on a free port, prints ``gateway listening on
<url>`` and starts Kinesis in the background; ``TEST_KINESIS_SHARDS`` sets the shards of the
streams it creates.
"""

from __future__ import annotations

import logging
import os

from pintrest_assets.bucket import LocalBucket
from pintrest_assets.gateway.kinesis import KinesisStack
from pintrest_assets.gateway.server import Gateway
from pintrest_assets.settings import Settings


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    stack = KinesisStack.from_settings(settings, shard_count=int(os.environ.get("TEST_KINESIS_SHARDS", "1")))
    gateway = Gateway(LocalBucket(settings.bucket), settings.gateway_state, port=0, fsync=False)

    def announce(gw: Gateway) -> None:
        stack.attach(gw)  # first: from the banner on, the Kinesis routes say "starting" until ready
        print(f"gateway listening on {gw.url}, Kinesis: {stack.describe()}", flush=True)

    try:
        gateway.serve_forever(on_start=announce)
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
