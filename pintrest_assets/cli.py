"""``pintrest``: the project's command line. Each stage owns its command, in ``pintrest_assets.commands``."""

from __future__ import annotations

import importlib
import sys

import click

# name -> module. Only the module of the command given is imported, so `pintrest seed` need not
# load Dagster and Spark; `pintrest --help` imports the command modules (light: they load anything
# heavy inside their functions) to list each command with its own short help.
COMMANDS = {
    "seed": "pintrest_assets.commands.seed",
    "gateway": "pintrest_assets.commands.gateway",
    "emulate": "pintrest_assets.commands.emulate",
    "run": "pintrest_assets.commands.run",
    "stream": "pintrest_assets.commands.stream",
    "dev": "pintrest_assets.commands.dev",
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command runs or help is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(COMMANDS[name]).command


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
