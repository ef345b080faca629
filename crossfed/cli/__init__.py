"""The ``crossfed`` command: one typer app, one sub-app per concern.

Sub-commands are imported when they are run, not when ``crossfed`` starts:
``crossfed client`` at a bank should not pay for the simulation harness (Ray,
plotting, dataset tooling) it never uses, and ``crossfed --help`` lists the
commands from :data:`SUMMARIES` without importing any of them (it took 5-6 s
when it imported torch, Flower and Ray to print eight lines).
``-h`` is ``--help`` everywhere; ``crossfed --version`` prints the version.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

import click
import typer
from typer.core import TyperGroup

__all__ = ["COMMANDS", "SUMMARIES", "app", "main"]

#: Command name to (module, attribute): a ``typer.Typer`` (a group) or a function.
COMMANDS: dict[str, tuple[str, str]] = {
    "aggregator": ("crossfed.cli.deploy", "aggregator"),
    "audit": ("crossfed.cli.audit", "app"),
    "bench": ("crossfed.cli.bench", "app"),
    "client": ("crossfed.cli.deploy", "client"),
    "kit": ("crossfed.cli.kit", "app"),
    "schema": ("crossfed.cli.schema", "app"),
    "score": ("crossfed.cli.score", "score"),
    "simulate": ("crossfed.cli.simulate", "simulate"),
    "status": ("crossfed.cli.deploy", "status"),
}

#: The one line ``crossfed --help`` shows per command: the first line of its own help
#: (a test keeps the two equal), so listing the commands imports none of them.
SUMMARIES: dict[str, str] = {
    "aggregator": "Start the SuperLink (TLS, node authentication) and run the federation to "
    "completion.",
    "audit": "Audit log of the aggregator's rounds: verify its hash chain.",
    "bench": "Benchmarks: encryption overhead and round cost, plaintext alongside.",
    "client": "Check the data against the schema, join the federation, keep the final model.",
    "kit": "Provisioning kits: keys, certificates and settings for a deployment.",
    "schema": "Federation schemas: the column types and categories every institution uses.",
    "score": "Score, band and explain each applicant; report the population's stability (PSI).",
    "simulate": "Train centralized, local-only, FedAvg, encrypted FedAvg and DP runs; price and "
    "compare.",
    "status": "Show the run's progress: phase, rounds done, institutions connected.",
}

#: ``-h`` as well as ``--help``, inherited by every sub-command's context.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


class _LazyCommands(TyperGroup):
    """A click group that imports each sub-command's module on first use."""

    _listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The command list needs names and one line each: no sub-command is imported.
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if self._listing:
            return click.Command(cmd_name, help=SUMMARIES[cmd_name])
        module, attribute = COMMANDS[cmd_name]
        target = getattr(importlib.import_module(module), attribute)
        command: click.Command
        if isinstance(target, typer.Typer):
            command = typer.main.get_group(target)
        else:
            single = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
            single.command(name=cmd_name)(target)
            command = typer.main.get_command(single)
        command.name = cmd_name
        return command


app = typer.Typer(
    name="crossfed",
    cls=_LazyCommands,
    help="Privacy-preserving federated learning across borders (CKKS-encrypted FedAvg on Flower).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings=CONTEXT_SETTINGS,
)


def _version() -> str:
    try:
        return version("crossfed")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"crossfed {_version()}")
        raise typer.Exit()


@app.callback()
def _crossfed(
    show_version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Privacy-preserving federated learning across borders (CKKS-encrypted FedAvg on Flower)."""


def main() -> None:
    """Entry point of the ``crossfed`` console script."""
    app()
