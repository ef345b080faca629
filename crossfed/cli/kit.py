"""``crossfed kit create``: provisioning kits for the aggregator and each institution."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import crypto
from clients import ClientError, load_schema
from clients.shapes import model_shapes_json
from crossfed.protocol import FederationSettings, ProvisioningError
from federation import create_kits, parse_institution

__all__ = ["app"]

app = typer.Typer(help="Provisioning kits: keys, certificates and settings for a deployment.")
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _kit() -> None:
    """Provisioning kits: keys, certificates and settings for a deployment."""


@app.command()
def create(
    out: Annotated[Path, typer.Option("--out", help="Folder to create the kits in.")],
    federation: Annotated[str, typer.Option("--federation", help="The federation's name.")],
    aggregator_address: Annotated[
        str,
        typer.Option(
            "--aggregator-address",
            help="HOST:PORT institutions dial; HOST goes into the server certificate.",
        ),
    ],
    institution: Annotated[
        list[str],
        typer.Option(
            "--institution", help="NAME or NAME=JURISDICTION; repeat for each institution."
        ),
    ],
    schema: Annotated[
        Path, typer.Option("--schema", help="Federation schema (YAML) every kit carries.")
    ],
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            help="CKKS preset: "
            + ", ".join(sorted(n for n, p in crypto.PRESETS.items() if p.codec == "float")),
        ),
    ] = crypto.DEFAULT_PRESET,
    rounds: Annotated[int, typer.Option("--rounds", help="Training rounds.")] = 3,
    min_institutions: Annotated[
        int | None,
        typer.Option("--min-institutions", help="Quorum per round (default: all)."),
    ] = None,
    round_timeout: Annotated[
        float, typer.Option("--round-timeout", help="Seconds the aggregator waits per round.")
    ] = 600.0,
    epochs: Annotated[int, typer.Option("--epochs", help="Local epochs per round.")] = 5,
    model: Annotated[str, typer.Option("--model", help="logistic or mlp.")] = "logistic",
    valid_days: Annotated[
        int, typer.Option("--valid-days", help="Lifetime of the server certificate.")
    ] = 365,
) -> None:
    """Create OUT/aggregator and OUT/NAME for every institution.

    The aggregator's folder holds the CA and server certificates, the server key,
    the public CKKS context and the institutions' public node keys; each
    institution's folder holds the CA certificate, its node key pair and the
    secret CKKS context (mode 0600). Hand each folder to its owner over a
    channel you trust; the institutions' folders must never reach the aggregator.
    Every federation.yaml pins the app bundle (this crossfed's source tree, as
    `flwr run` ships it), the schema's SHA-256 and the model's shapes.
    """
    try:
        hidden = FederationSettings(mode="plaintext").hidden_sizes()
        shapes = model_shapes_json(load_schema(schema), model, hidden)
        parsed = [parse_institution(spec) for spec in institution]
        manifest = create_kits(
            out,
            federation=federation,
            aggregator_address=aggregator_address,
            institutions=parsed,
            schema=schema,
            preset=preset,
            rounds=rounds,
            min_institutions=min_institutions,
            round_timeout=round_timeout,
            training={"epochs": epochs, "model": model, "model-shapes": shapes},
            valid_days=valid_days,
        )
    except (ProvisioningError, ClientError, crypto.CryptoError) as exc:
        err_console.print(f"[bold red]ERROR[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(code=2) from exc
    table = Table(title=f"Federation {escape(manifest.name)}")
    table.add_column("kit")
    table.add_column("jurisdiction")
    table.add_column("node key")
    table.add_row(escape(str(out / "aggregator")), "", "")
    for inst in manifest.institutions:
        table.add_row(
            escape(str(out / inst.name)), escape(inst.jurisdiction or "-"), inst.node_key_sha256
        )
    console.print(table)
    console.print(
        f"aggregator {escape(manifest.aggregator_address)}, {manifest.rounds} rounds, "
        f"preset {manifest.preset}, quorum {manifest.min_institutions}"
    )
    console.print(f"institutions accept only the app bundle {manifest.app_pin}", highlight=False)
    console.print("[bold green]OK[/] institution kits hold the secret key: deliver them privately")
