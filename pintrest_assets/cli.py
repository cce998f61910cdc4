"""``pintrest``: the project's command line. Each stage owns its command, in ``pintrest_assets.commands``."""

from __future__ import annotations

import importlib
import sys

import click

# name -> (module, one-line help). Only the module of the command given is imported, so
# `pintrest --help` and `pintrest seed` need not load Dagster and Spark.
COMMANDS = {
    "seed": ("pintrest_assets.commands.seed", "Create and fill the sample posts database."),
    "gateway": ("pintrest_assets.commands.gateway", "Serve the local Kafka REST proxy and S3 sink."),
    "emulate": ("pintrest_assets.commands.emulate", "Send random posts to the three topics."),
    "run": ("pintrest_assets.commands.run", "Run the whole pipeline end to end."),
    "dev": ("pintrest_assets.commands.dev", "Start the local gateway and the Dagster UI."),
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command runs or shows its help."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(COMMANDS[name][0]).command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_text) for name, (_, help_text) in COMMANDS.items()])


cli = LazyGroup(
    "pintrest",
    help="The Pinterest data pipeline: pintrest COMMAND --help tells more.",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def main(argv: list[str] | None = None) -> int:
    """Runs ``pintrest ARGV`` and returns its exit code (2 for a bad option or setting)."""
    from dotenv import load_dotenv

    load_dotenv(".env")  # the same untracked file `dagster dev` reads; the environment wins
    argv = sys.argv[1:] if argv is None else argv
    try:
        return cli.main(args=argv, prog_name="pintrest", standalone_mode=False) or 0
    except click.ClickException as exc:  # a bad option: usage and the problem, on stderr
        exc.show()
        return exc.exit_code
    except click.Abort:  # Ctrl-C where the command does not handle it
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
