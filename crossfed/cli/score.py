"""``crossfed score``: score applicants with the model a ``crossfed client`` run kept.

Exit codes: 0 scored; 2 the input is wrong (kit, model folder, data file,
options, output path) and nothing was written. Nothing is sent anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clients import ClientError, DataValidationError, load_table
from clients.monitoring import psi_reading
from clients.scaling import RiskBands, ScoreScaling
from clients.scoring import ModelFolder, ScoringResult, load_kit_schema, score_table
from crossfed.protocol import ProtocolError
from crypto import write_atomically

__all__ = ["score"]

console = Console()
err_console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]ERROR[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code=2)


def _write(result: ScoringResult, out: Path) -> None:
    write_atomically(out, result.table.to_csv(index=False).encode())


def _summary(result: ScoringResult, out: Path) -> None:
    rows = len(result.table)
    console.print(f"scale: {escape(result.scaling.describe())}", highlight=False)
    bands = Table(title=f"{rows:,} applicants by band (probability of default)")
    bands.add_column("band")
    bands.add_column("PD range")
    bands.add_column("applicants", justify="right")
    bands.add_column("share", justify="right")
    counts = result.table["band"].value_counts()
    for row in result.bands.table(result.scaling):
        name = str(row["band"])
        n = int(counts.get(name, 0))
        pd_range = f"{row['pd_from']:.0%} to {row['pd_to']:.0%}"
        bands.add_row(name, pd_range, f"{n:,}", f"{n / max(rows, 1):.1%}")
    console.print(bands)
    federation = (
        f"; the federation's training rows {result.federation_mean_score:.1f}"
        if result.federation_mean_score is not None
        else ""
    )
    console.print(f"mean score {result.mean_score:.1f}{federation}", highlight=False)
    console.print(
        f"PSI against this institution's {result.baseline.source} "
        f"({result.baseline.rows:,} rows): {result.psi:.4f}, {escape(psi_reading(result.psi))}",
        highlight=False,
    )
    console.print(f"reason codes: {escape(result.reason_method)}", highlight=False)
    if result.ignored_columns:
        console.print(
            "ignored columns (not in the schema): " + escape(", ".join(result.ignored_columns)),
            highlight=False,
        )
    console.print(escape(result.labels_note), highlight=False)
    if result.metrics is not None:
        for name, value in result.metrics.as_dict().items():
            console.print(f"  {name}: {value:.4f}", highlight=False)
        if result.metrics.target is not None:
            console.print(
                f"  approval_rate target: {escape(result.metrics.target.describe())}",
                highlight=False,
            )
    console.print(f"[bold green]OK[/] {rows:,} rows scored into {escape(str(out))}")


def score(
    kit: Annotated[Path, typer.Option("--kit", help="This institution's kit folder.")],
    model: Annotated[
        Path, typer.Option("--model", help="The folder `crossfed client --out` wrote.")
    ],
    data: Annotated[Path, typer.Option("--data", help="Applicants: a CSV or Parquet file.")],
    out: Annotated[Path, typer.Option("--out", help="The scores (CSV) to write.")],
    reasons: Annotated[
        int, typer.Option("--reasons", min=1, max=20, help="Reason codes per applicant.")
    ] = 4,
    id_column: Annotated[
        list[str] | None,
        typer.Option("--id-column", help="A column copied to the output (repeatable)."),
    ] = None,
    pdo: Annotated[
        float | None,
        typer.Option("--pdo", help="Points to double the odds (default: the model's, 20)."),
    ] = None,
    base_score: Annotated[
        float | None,
        typer.Option("--base-score", help="Score at the base odds (default: the model's, 600)."),
    ] = None,
    base_odds: Annotated[
        float | None,
        typer.Option("--base-odds", help="Odds of good at the base score (default: 50)."),
    ] = None,
    bands: Annotated[
        str | None,
        typer.Option(
            "--bands",
            help="Upper PDs of the bands, comma-separated (default: the model's, "
            "0.02,0.05,0.1,0.2 for A-E).",
        ),
    ] = None,
    target_bad_rate: Annotated[
        float | None,
        typer.Option(
            "--target-bad-rate",
            min=0.0,
            max=1.0,
            help="Approval-rate target when the file has labels (default: the model's, "
            "half its training bad rate).",
        ),
    ] = None,
) -> None:
    """Score, band and explain each applicant; report the population's stability (PSI)."""
    if not out.parent.is_dir():
        raise _fail(f"--out {out}: folder {out.parent} does not exist")
    if out.is_dir():
        raise _fail(f"--out {out} is a folder; give a file name")
    try:
        schema = load_kit_schema(kit)
        folder = ModelFolder.load(model)
        recorded = folder.scaling
        scaling = ScoreScaling(
            recorded.pdo if pdo is None else pdo,
            recorded.base_score if base_score is None else base_score,
            recorded.base_odds if base_odds is None else base_odds,
        )
        result = score_table(
            load_table(data),
            schema,
            folder,
            scaling=scaling,
            bands=RiskBands.parse(bands) if bands else None,
            reasons=reasons,
            id_columns=tuple(id_column or ()),
            target_bad_rate=target_bad_rate,
        )
    except DataValidationError as exc:
        where = f" (column {exc.column!r})" if exc.column else ""
        raise _fail(f"{data}{where}: {exc}") from exc
    except (ClientError, ProtocolError) as exc:
        raise _fail(str(exc)) from exc
    try:
        _write(result, out)
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc.strerror or exc}") from exc
    _summary(result, out)
