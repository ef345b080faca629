"""The ``crossfed`` command: one typer app, one sub-app per concern.

Sub-commands are imported when they are run, not when ``crossfed`` starts:
``crossfed client`` at a bank should not pay for the simulation harness (Ray,
plotting, dataset tooling) it never uses. ``crossfed --help`` imports them all.
"""

from __future__ import annotations

import importlib

import click
import typer
from typer.core import TyperGroup

__all__ = ["COMMANDS", "app", "main"]

#: Command name to (module, attribute): a ``typer.Typer`` (a group) or a function.
COMMANDS: dict[str, tuple[str, str]] = {
    "aggregator": ("crossfed.cli.deploy", "aggregator"),
    "audit": ("crossfed.cli.audit", "app"),
    "bench": ("crossfed.cli.bench", "app"),
    "client": ("crossfed.cli.deploy", "client"),
    "kit": ("crossfed.cli.kit", "app"),
    "schema": ("crossfed.cli.schema", "app"),
    "simulate": ("crossfed.cli.simulate", "simulate"),
    "status": ("crossfed.cli.deploy", "status"),
}


class _LazyCommands(TyperGroup):
    """A click group that imports each sub-command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
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
)


@app.callback()
def _crossfed() -> None:
    """Privacy-preserving federated learning across borders (CKKS-encrypted FedAvg on Flower)."""


def main() -> None:
    """Entry point of the ``crossfed`` console script."""
    app()
