"""``pintrest``: the project's command line. Each stage owns its command."""

from __future__ import annotations

import argparse
import sys

from dotenv import load_dotenv

from pintrest_assets.settings import ConfigError, Settings

COMMANDS = {
    "seed": ("pintrest_assets.sample_data.cli", "create and fill the sample posts database"),
    "gateway": ("pintrest_assets.gateway.cli", "serve the local Kafka REST proxy and S3 sink"),
    "emulate": ("pintrest_assets.ingest.cli", "send random posts to the three topics"),
    "run": ("pintrest_assets.run", "run the whole pipeline end to end"),
    "dev": ("pintrest_assets.dev", "start the local gateway and the Dagster UI"),
}


def main(argv: list[str] | None = None) -> int:
    import importlib

    parser = argparse.ArgumentParser(prog="pintrest", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        modules[name] = importlib.import_module(module_name)
        modules[name].configure_parser(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    load_dotenv(".env")  # the same untracked file `dagster dev` reads; the environment wins
    try:
        return modules[args.command].run(args, Settings.from_env())
    except ConfigError as exc:
        print(f"pintrest {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
