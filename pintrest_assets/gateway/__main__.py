"""``python -m pintrest_assets.gateway [--port N] ...``: the gateway as a process of its own."""

import argparse
import sys

from pintrest_assets.commands.gateway import configure_parser, run
from pintrest_assets.settings import ConfigError, Settings


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m pintrest_assets.gateway", description=run.__doc__)
    configure_parser(parser)
    args = parser.parse_args()
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    return run(args, settings)


if __name__ == "__main__":
    sys.exit(main())
