"""``crossfed kit``: provisioning kits for the aggregator and each institution.

``kit create`` makes every kit; ``kit agreement-key`` makes one institution's
agreement key at the institution, so that no one else ever holds it.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import crypto
from clients import ClientError, load_schema
from clients.shapes import model_shapes_json
from crossfed.cli.choices import ModelChoice
from crossfed.cli.kit_settings import read_settings_file, resolve_settings
from crossfed.protocol import (
    FederationSettings,
    ProvisioningError,
    agreement_key_hex,
    check_agreement_keys,
)
from federation import create_kits, parse_institution
from federation.pki import SecretBytes, write_private

__all__ = ["app"]

app = typer.Typer(help="Provisioning kits: keys, certificates and settings for a deployment.")
console = Console()
err_console = Console(stderr=True)
_D = FederationSettings(mode="plaintext")
#: CKKS presets a federation averages with: the float codec (the model's weights) and the
#: masked ones (clipped deltas from a start every institution holds); what
#: ``federation.strategy.averaging_preset_problem`` accepts.
PresetChoice = StrEnum(  # type: ignore[misc]  # members from the registry, not literals
    "PresetChoice",
    {n: n for n, p in sorted(crypto.PRESETS.items()) if p.codec in ("float", "masked")},
)


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
            help="HOST:PORT institutions dial (a DNS name or IP, not 0.0.0.0); HOST goes into "
            "the server certificate.",
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
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Take the settings of a study (results.json of `crossfed simulate`) or of a "
            "YAML file of run settings (rounds, epochs, learning-rate, dp-epsilon, ...); "
            "options given here win.",
        ),
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy",
            help="With a study in --from: the DP strategy whose clip and noise to take, "
            "e.g. he-fedavg-dp-eps4.",
        ),
    ] = None,
    preset: Annotated[
        PresetChoice | None,
        typer.Option(
            "--preset",
            help="CKKS preset [default: masked16 for 3 to 16 institutions (masked "
            f"updates), else {crypto.DEFAULT_PRESET}].",
        ),
    ] = None,
    rounds: Annotated[
        int | None, typer.Option("--rounds", min=1, help=f"Training rounds [default: {_D.rounds}].")
    ] = None,
    min_institutions: Annotated[
        int | None,
        typer.Option("--min-institutions", min=1, help="Quorum per round [default: all]."),
    ] = None,
    round_timeout: Annotated[
        float | None,
        typer.Option(
            "--round-timeout",
            min=1.0,
            help=f"Seconds the aggregator waits per round [default: {_D.round_timeout:g}].",
        ),
    ] = None,
    model: Annotated[
        ModelChoice | None, typer.Option("--model", help=f"The model [default: {_D.model}].")
    ] = None,
    hidden: Annotated[
        str | None,
        typer.Option("--hidden", help=f"MLP hidden widths [default: {_D.hidden}]."),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", min=1, help=f"Local epochs per round [default: {_D.epochs}]."),
    ] = None,
    learning_rate: Annotated[
        float | None,
        typer.Option(
            "--learning-rate",
            min=0.0,
            help=f"SGD step size [default: {_D.learning_rate:g}].",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help=f"Mini-batch rows [default: {_D.batch_size}]."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            min=0,
            help=f"Seed of the first model, shuffling, test split [default: {_D.seed}].",
        ),
    ] = None,
    test_fraction: Annotated[
        float | None,
        typer.Option(
            "--test-fraction",
            min=0.0,
            max=1.0,
            help=f"Share of each institution's rows held out [default: {_D.test_fraction:g}].",
        ),
    ] = None,
    max_weight: Annotated[
        int | None,
        typer.Option(
            "--max-weight",
            min=1,
            help=f"Per-institution weight cap, in rows [default: {_D.max_weight}].",
        ),
    ] = None,
    max_update_norm: Annotated[
        float | None,
        typer.Option(
            "--max-update-norm",
            min=0.0,
            help=f"Per-round L2 bound on the model's change [default: {_D.max_update_norm:g}].",
        ),
    ] = None,
    dp_clip: Annotated[
        float | None,
        typer.Option(
            "--dp-clip", min=0.0, help="Distributed DP: L2 clip of each update [default: off]."
        ),
    ] = None,
    dp_epsilon: Annotated[
        float | None,
        typer.Option(
            "--dp-epsilon",
            min=0.0,
            help="Distributed DP: target ε after all rounds (sets the noise multiplier).",
        ),
    ] = None,
    dp_noise_multiplier: Annotated[
        float | None,
        typer.Option("--dp-noise-multiplier", min=0.0, help="Distributed DP: noise multiplier."),
    ] = None,
    dp_delta: Annotated[
        float | None,
        typer.Option(
            "--dp-delta",
            min=0.0,
            max=1.0,
            help=f"Distributed DP: δ [default: {_D.dp_delta:g}].",
        ),
    ] = None,
    dpsgd_epsilon: Annotated[
        float | None,
        typer.Option(
            "--dpsgd-epsilon",
            min=0.0,
            help="Record-level DP-SGD: each institution's target ε for each of its "
            "customers over the whole run (Opacus) [default: off].",
        ),
    ] = None,
    dpsgd_clip: Annotated[
        float | None,
        typer.Option(
            "--dpsgd-clip",
            min=0.0,
            help=f"Record-level DP-SGD: per-example gradient clip [default: {_D.dpsgd_clip:g}].",
        ),
    ] = None,
    valid_days: Annotated[
        int, typer.Option("--valid-days", min=1, help="Lifetime of the server certificate.")
    ] = 365,
    agreement_keys: Annotated[
        Path | None,
        typer.Option(
            "--agreement-keys",
            help="YAML of NAME: public key (hex), each made by its institution with "
            "`crossfed kit agreement-key`; the kits then hold no agreement private key "
            "[default: generate them here].",
        ),
    ] = None,
) -> None:
    """Create OUT/aggregator and OUT/NAME for every institution.

    The aggregator's folder holds the CA and server certificates, the server key,
    the public CKKS context and the institutions' public node keys; each
    institution's folder holds the CA certificate, its node key pair and the
    secret CKKS context (mode 0600). Hand each folder to its owner over a
    channel you trust; the institutions' folders must never reach the aggregator.
    Every federation.yaml pins the app bundle (this crossfed's source tree, as
    `flwr run` ships it), the schema's SHA-256, the model's shapes and every
    training setting. Every value is checked before anything is written.
    """
    options: dict[str, int | float | str | None] = {
        "preset": preset.value if preset else None,
        "rounds": rounds,
        "min-institutions": min_institutions,
        "round-timeout": round_timeout,
        "model": model.value if model else None,
        "hidden": hidden,
        "epochs": epochs,
        "learning-rate": learning_rate,
        "batch-size": batch_size,
        "seed": seed,
        "test-fraction": test_fraction,
        "max-weight": max_weight,
        "max-update-norm": max_update_norm,
        "dp-clip": dp_clip,
        "dp-epsilon": dp_epsilon,
        "dp-noise-multiplier": dp_noise_multiplier,
        "dp-delta": dp_delta,
        "dpsgd-epsilon": dpsgd_epsilon,
        "dpsgd-clip": dpsgd_clip,
    }
    try:
        if out.exists() and not out.is_dir():
            raise ProvisioningError(f"--out {out} is a file, not a folder")
        parsed = [parse_institution(spec) for spec in institution]
        notes: list[str] = []
        from_values: dict[str, int | float | str] = {}
        if from_file is not None:
            from_values, notes = read_settings_file(from_file, strategy)
        elif strategy is not None:
            raise ProvisioningError("--strategy needs a study's results.json in --from")
        chosen = resolve_settings(options, from_values, institutions=len(parsed), notes=notes)
        settings = chosen.settings
        shapes = model_shapes_json(load_schema(schema), settings.model, settings.hidden_sizes())
        manifest = create_kits(
            out,
            federation=federation,
            aggregator_address=aggregator_address,
            institutions=parsed,
            schema=schema,
            preset=chosen.preset,
            rounds=settings.rounds,
            min_institutions=settings.min_institutions,
            round_timeout=settings.round_timeout,
            training={**chosen.training, "model-shapes": shapes},
            valid_days=valid_days,
            agreement_keys=read_agreement_keys(agreement_keys) if agreement_keys else None,
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
    recorded = ", ".join(f"{k} {v}" for k, v in chosen.training.items())
    console.print(f"training: {escape(recorded)}", highlight=False, soft_wrap=True)
    for note in chosen.notes:
        console.print(f"  {escape(note)}", highlight=False, soft_wrap=True)
    console.print(f"institutions accept only the app bundle {manifest.app_pin}", highlight=False)
    if agreement_keys:
        console.print(
            "each institution copies its own agreement.key into its kit folder",
            highlight=False,
        )
    console.print("[bold green]OK[/] institution kits hold the secret key: deliver them privately")


@app.command("agreement-key")
def agreement_key(
    out: Annotated[
        Path,
        typer.Option("--out", help="File to write the agreement private key to (mode 0600)."),
    ],
    institution: Annotated[
        str, typer.Option("--institution", help="This institution's name in the federation.")
    ],
) -> None:
    """Make this institution's agreement key, at the institution.

    The private key is written to OUT (mode 0600) and never leaves; the public
    key is printed as a line of YAML for whoever creates the kits
    (`crossfed kit create --agreement-keys`). Compare the listed keys with the
    other institutions over a channel you trust before the first masked run:
    a key substituted in the list would pair you with its holder.
    """
    try:
        if out.exists():
            raise ProvisioningError(f"{out} exists already: refusing to overwrite a key")
        name, _ = parse_institution(institution)
        key = crypto.AgreementKey.generate()
        write_private(out, SecretBytes(key.private_bytes()))
    except (ProvisioningError, OSError) as exc:
        err_console.print(f"[bold red]ERROR[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(code=2) from exc
    console.print(f"private key written to {escape(str(out))} (0600): keep it", highlight=False)
    console.print("send this line to whoever creates the kits:", highlight=False)
    typer.echo(f"{name}: {agreement_key_hex(key.public_bytes())}")


def read_agreement_keys(path: Path) -> dict[str, bytes]:
    """Institutions' agreement public keys from a YAML mapping ``NAME: hex``.

    Raises
    ------
    ProvisioningError
        The file cannot be read, is not a mapping of names to strings, or a key
        is malformed or listed twice (:func:`crossfed.protocol.check_agreement_keys`).
    """
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ProvisioningError(f"--agreement-keys {path}: cannot read it: {exc}") from exc
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()
    ):
        raise ProvisioningError(
            f"--agreement-keys {path}: expected lines of `NAME: public key (hex)`"
        )
    return check_agreement_keys(loaded, required=True)
