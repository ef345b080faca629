"""``crossfed schema infer``: propose a federation schema from a table, for review and reuse.

The schema goes into every kit, the aggregator's too, so identifier-like
columns (names, IBANs, customer numbers, free text) are never written into it;
the command names each column it left out and why, and every other choice it
made (labels, per column what a missing or unseen value becomes, how the file
was read). The schema it writes accepts the table it was inferred from.

Exit codes: 0 written; 2 the table or the options were refused, with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from clients import ClientError, propose_schema
from clients.schema import save_schema
from clients.tables import QUOTE_CHARS, quote, read_table
from crossfed.cli.choices import ImputeChoice, MissingChoice, UnseenChoice

__all__ = ["app"]

app = typer.Typer(
    help="Federation schemas: the column types and categories every institution uses."
)
console = Console()
err_console = Console(stderr=True)


def _names(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]ERROR[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code=2)


@app.callback()
def _schema() -> None:
    """Federation schemas: the column types and categories every institution uses."""


@app.command("infer")
def infer_command(
    data: Annotated[
        Path, typer.Option(help="A reference table: CSV (any delimiter), Parquet or Excel.")
    ],
    target: Annotated[str, typer.Option(help="The label column.")],
    positive: Annotated[str, typer.Option(help="The bad (positive) label.")],
    out: Annotated[Path, typer.Option(help="Where to write the schema (YAML).")],
    negative: Annotated[
        str | None,
        typer.Option(
            help="The good labels, comma-separated; needed when the target holds more than "
            "two labels (none is counted as good unless named)."
        ),
    ] = None,
    categorical: Annotated[
        str | None, typer.Option(help="Numeric columns to treat as categorical, comma-separated.")
    ] = None,
    exclude: Annotated[
        str | None, typer.Option(help="Columns to leave out (identifiers, dates), comma-separated.")
    ] = None,
    impute: Annotated[
        ImputeChoice,
        typer.Option(help="Missing numbers: the median fixed from this table, 0, or refused."),
    ] = ImputeChoice.median,
    unseen: Annotated[
        UnseenChoice,
        typer.Option(help="Categories outside the list: refused, or one catch-all column."),
    ] = UnseenChoice.error,
    missing: Annotated[
        MissingChoice,
        typer.Option(
            help="Missing categories (columns with some here): a category of their own, refused, "
            "or as --unseen says."
        ),
    ] = MissingChoice.category,
    encoding: Annotated[
        str | None, typer.Option(help="Text encoding of a CSV file (detected: UTF-8, else cp1252).")
    ] = None,
    delimiter: Annotated[
        str | None, typer.Option(help="Field delimiter of a CSV file (detected: , ; tab |).")
    ] = None,
) -> None:
    """Infer the schema of a table and write it to a YAML file to review."""
    if out.exists() and not out.is_file():
        raise _fail(f"--out {quote(str(out))} is a folder; give a file name such as schema.yaml")
    try:
        read = read_table(data, encoding=encoding, delimiter=delimiter)
        proposal = propose_schema(
            read.frame,
            target,
            positive,
            negatives=_names(negative) if negative is not None else None,
            categorical=_names(categorical),
            exclude=_names(exclude),
            impute=impute.value,
            unseen=unseen.value,
            missing=missing.value,
        )
    except ClientError as exc:
        raise _fail(str(exc)) from exc
    schema = proposal.schema
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_schema(schema, out)
    except OSError as exc:
        raise _fail(f"cannot write --out {quote(str(out))}: {exc.strerror or exc}") from exc
    console.print(
        f"wrote {escape(str(out))}: target {escape(quote(schema.target.column))}, "
        f"{len(schema.numeric)} numeric and {len(schema.categorical)} categorical columns",
        soft_wrap=True,
    )
    if read.notes:
        console.print(f"read {escape(quote(str(data)))}:")
        for note in read.notes:
            console.print(f"  {escape(note)}", soft_wrap=True)
    console.print("choices made (review them before the schema goes into the kits):")
    for choice in proposal.choices:
        console.print(f"  {escape(choice)}", soft_wrap=True, highlight=False)
    if proposal.excluded:
        console.print(
            f"left out {len(proposal.excluded)} column(s), none of their values is in the schema:"
        )
        for column in proposal.excluded:
            name = column.name if len(column.name) <= QUOTE_CHARS else quote(column.name)
            console.print(f"  {escape(name)}: {escape(column.reason)}", soft_wrap=True)
