"""``crossfed schema infer``: propose a federation schema from a table, for review and reuse.

The schema goes into every kit, the aggregator's too, so identifier-like
columns (names, IBANs, customer numbers, free text) are never written into it;
the command names each column it left out and why.

Exit codes: 0 written; 2 the table or the options were refused, with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape

from clients import ClientError, load_table, propose_schema, save_schema

__all__ = ["app"]

app = typer.Typer(
    help="Federation schemas: the column types and categories every institution uses."
)
console = Console()
err_console = Console(stderr=True)


def _names(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


@app.command("infer")
def infer_command(
    data: Annotated[Path, typer.Option(help="A reference CSV or Parquet table.")],
    target: Annotated[str, typer.Option(help="The label column.")],
    positive: Annotated[str, typer.Option(help="The bad (positive) label.")],
    out: Annotated[Path, typer.Option(help="Where to write the schema (YAML).")],
    categorical: Annotated[
        str | None, typer.Option(help="Numeric columns to treat as categorical, comma-separated.")
    ] = None,
    exclude: Annotated[
        str | None, typer.Option(help="Columns to leave out (identifiers, dates), comma-separated.")
    ] = None,
    impute: Annotated[
        str, typer.Option(help="Missing numbers: refuse, median (fixed from this table) or zero.")
    ] = "median",
    unseen: Annotated[
        str, typer.Option(help="Unknown categories: error, or other (one catch-all column).")
    ] = "error",
) -> None:
    """Infer the schema of a table and write it to a YAML file to review."""
    if impute not in ("refuse", "median", "zero"):
        raise typer.BadParameter("use refuse, median or zero", param_hint="--impute")
    if unseen not in ("error", "other"):
        raise typer.BadParameter("use error or other", param_hint="--unseen")
    impute_policy: Literal["refuse", "median", "zero"] = impute  # type: ignore[assignment]
    unseen_policy: Literal["error", "other"] = unseen  # type: ignore[assignment]
    try:
        proposal = propose_schema(
            load_table(data),
            target,
            positive,
            categorical=_names(categorical),
            exclude=_names(exclude),
            impute=impute_policy,
            unseen=unseen_policy,
        )
        schema = proposal.schema
        out.parent.mkdir(parents=True, exist_ok=True)
        save_schema(schema, out)
    except ClientError as exc:
        err_console.print(f"[bold red]ERROR[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(code=2) from exc
    console.print(
        f"wrote {out}: target {schema.target.column!r} (bad = {schema.target.positive!r}), "
        f"{len(schema.numeric)} numeric and {len(schema.categorical)} categorical columns",
        soft_wrap=True,
    )
    if proposal.excluded:
        console.print(
            f"left out {len(proposal.excluded)} column(s), none of their values is in the schema:"
        )
        for column in proposal.excluded:
            console.print(f"  {escape(column.name)}: {escape(column.reason)}", soft_wrap=True)
