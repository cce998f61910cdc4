"""``pintrest``: the project's command line. Each stage owns its command."""

from __future__ import annotations

import argparse
import importlib
import sys

from dotenv import load_dotenv

from pintrest_assets.settings import ConfigError, Settings

COMMANDS = {
    "seed": ("pintrest_assets.commands.seed", "create and fill the sample posts database"),
    "gateway": ("pintrest_assets.commands.gateway", "serve the local Kafka REST proxy and S3 sink"),
    "emulate": ("pintrest_assets.commands.emulate", "send random posts to the three topics"),
    "run": ("pintrest_assets.commands.run", "run the whole pipeline end to end"),
    "dev": ("pintrest_assets.commands.dev", "start the local gateway and the Dagster UI"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="pintrest", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Only the command given is imported: `pintrest seed` need not load Dagster and Spark.
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    module = importlib.import_module(COMMANDS[chosen][0]) if chosen in COMMANDS else None
    for name, (_, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module.configure_parser(command_parser)
    args = parser.parse_args(argv)
    load_dotenv(".env")  # the same untracked file `dagster dev` reads; the environment wins
    try:
        return module.run(args, Settings.from_env())
    except ConfigError as exc:
        print(f"pintrest {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
