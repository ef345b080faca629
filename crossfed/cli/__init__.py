"""The ``crossfed`` command: one typer app, one sub-app per concern."""

from __future__ import annotations

import typer

from crossfed.cli.audit import app as audit_app
from crossfed.cli.bench import app as bench_app
from crossfed.cli.deploy import aggregator, client, status
from crossfed.cli.kit import app as kit_app
from crossfed.cli.schema import app as schema_app
from crossfed.cli.simulate import simulate

__all__ = ["app", "main"]

app = typer.Typer(
    name="crossfed",
    help="Privacy-preserving federated learning across borders (CKKS-encrypted FedAvg on Flower).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(audit_app, name="audit")
app.add_typer(bench_app, name="bench")
app.add_typer(kit_app, name="kit")
app.add_typer(schema_app, name="schema")
app.command()(aggregator)
app.command()(client)
app.command()(status)
app.command()(simulate)


def main() -> None:
    """Entry point of the ``crossfed`` console script."""
    app()
