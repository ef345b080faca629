"""``crossfed audit …``: check the aggregator's hash-chained audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from federation import (
    AuditLogError,
    AuditTamperedError,
    verify_audit_log,
)

__all__ = ["app"]

app = typer.Typer(help="Audit log of the aggregator's rounds: verify its hash chain.")
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _audit() -> None:
    """Audit log of the aggregator's rounds: verify its hash chain."""


@app.command()
def verify(
    path: Annotated[Path, typer.Argument(help="The audit log (JSON lines) to check.")],
    expected_head: Annotated[
        str | None,
        typer.Option(
            "--expected-head",
            help="Head hash kept outside the log; also detects lines cut from the end.",
        ),
    ] = None,
) -> None:
    """Verify every line and the chain; exit 1 if the log was altered, 2 if unreadable."""
    try:
        report = verify_audit_log(path, expected_head=expected_head)
    except AuditTamperedError as exc:
        err_console.print(
            f"[bold red]TAMPERED[/] {escape(str(path))}: line {exc.line}: {escape(exc.reason)}",
            soft_wrap=True,
        )
        raise typer.Exit(code=1) from exc
    except AuditLogError as exc:
        err_console.print(f"[bold red]ERROR[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(code=2) from exc

    table = Table(title=f"Audit log {escape(str(path))}")
    table.add_column("run")
    table.add_column("rounds", justify="right")
    table.add_column("first", justify="right")
    table.add_column("last", justify="right")
    counts: dict[str, int] = {}
    for record in report.records:
        counts[record.run_id] = counts.get(record.run_id, 0) + 1
    for run_id, (first, last) in report.round_ranges.items():
        table.add_row(escape(run_id), str(counts[run_id]), str(first), str(last))
    console.print(table)
    console.print(f"lines: {report.lines}")
    console.print(f"rounds: {len(report.records)} in {len(report.runs)} run(s)")
    console.print(f"head: {report.head or '(empty log)'}", soft_wrap=True)
    checked = "chain and head" if expected_head is not None else "chain (no head given)"
    console.print(f"[bold green]OK[/] {checked}")
