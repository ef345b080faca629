"""``crossfed bench …``: encryption overhead against plaintext, side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from simulations.bench import (
    MODES,
    ROUND_MODES,
    CryptoBenchRow,
    run_crypto_bench,
    run_round_bench,
    run_scale_bench,
)

__all__ = ["app"]

app = typer.Typer(help="Benchmarks: encryption overhead and round cost, plaintext alongside.")
console = Console()
if not console.is_terminal:  # piped or captured: keep the table readable
    console.width = max(console.width, 150)

_QUICK_SIZES = (1_000, 10_000)
_DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000)


def _parse_sizes(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1:], 1)
        digits = part[:-1] if scale > 1 else part
        if not digits.isdigit() or int(digits) * scale < 1:
            raise typer.BadParameter(f"{part!r} is not a size like 1000, 10k or 1m")
        sizes.append(int(digits) * scale)
    return sizes


def _table(rows: list[CryptoBenchRow]) -> Table:
    table = Table(title="Encryption overhead per institution (one process, one core)")
    for name in (
        "mode",
        "params",
        "encrypt",
        "µs/param",
        "bytes/update",
        "expansion",
        "aggregate",
        "per ciphertext",
        "decrypt",
        "max abs error",
    ):
        table.add_column(name, justify="left" if name == "mode" else "right")
    for row in rows:
        mode = row.mode + (f" (from {row.extrapolated_from})" if row.extrapolated_from else "")
        per_ciphertext = row.aggregate_s_per_ciphertext
        per_ct = "—" if per_ciphertext is None else f"{per_ciphertext * 1e3:.2f} ms"
        table.add_row(
            mode,
            f"{row.params:,}",
            f"{row.encrypt_s * 1e3:.1f} ms",
            f"{row.encrypt_s / row.params * 1e6:.3f}",
            f"{row.bytes_per_update:,}",
            f"{row.expansion:.2f}x",
            f"{row.aggregate_s * 1e3:.1f} ms",
            per_ct,
            f"{row.decrypt_s * 1e3:.1f} ms",
            f"{row.max_abs_error:.2e}",
        )
    return table


@app.command("crypto")
def crypto_command(
    sizes: Annotated[
        str | None,
        typer.Option(help="Comma-separated model sizes, e.g. 1k,10k,100k,1m."),
    ] = None,
    modes: Annotated[
        str, typer.Option(help=f"Comma-separated modes from: {', '.join(MODES)}.")
    ] = ",".join(MODES),
    clients: Annotated[
        int,
        typer.Option(
            "--institutions", "--clients", min=1, help="Institutions whose updates are summed."
        ),
    ] = 10,
    paillier_values: Annotated[
        int, typer.Option(min=1, max=1000, help="Values Paillier really encrypts; rest scaled.")
    ] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the random updates.")] = 0,
    quick: Annotated[
        bool, typer.Option("--quick", help="Small subset (1k, 10k; 3 clients): under a minute.")
    ] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the rows to this JSON file.")
    ] = None,
) -> None:
    """Measure encrypt, bytes, aggregate and decrypt costs of one update, per mode and size."""
    chosen_sizes = _parse_sizes(sizes) if sizes else list(_QUICK_SIZES if quick else _DEFAULT_SIZES)
    chosen_modes = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = sorted(set(chosen_modes) - set(MODES))
    if unknown:
        raise typer.BadParameter(f"unknown mode(s): {', '.join(unknown)}", param_hint="--modes")
    if quick:
        clients = min(clients, 3)
        paillier_values = min(paillier_values, 50)
    masked = [m for m in chosen_modes if "masked" in m]
    if masked and not 3 <= clients <= 16:
        raise typer.BadParameter(
            f"{', '.join(masked)} sum 3 to 16 institutions, got {clients}: choose other modes "
            "or another count",
            param_hint="--institutions",
        )
    rows: list[CryptoBenchRow] = []
    with Progress(
        TextColumn("[bold]bench crypto"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=len(chosen_sizes) * len(chosen_modes))

        def on_row(row: CryptoBenchRow) -> None:
            rows.append(row)
            progress.update(task, advance=1, description=f"{row.mode} {row.params:,}")

        run_crypto_bench(
            chosen_sizes,
            chosen_modes,
            clients=clients,
            seed=seed,
            paillier_values=paillier_values,
            on_row=on_row,
        )
    console.print(_table(rows))
    console.print(
        f"{clients} institutions; aggregate = deserialise and sum all their updates; "
        "error = decrypted weighted average against the float64 average of the same inputs."
    )
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"rows": [r.to_dict() for r in rows]}, indent=2))
        console.print(f"wrote {json_path}")


@app.command("round")
def round_command(
    params: Annotated[int, typer.Option(min=10, help="Model size (an MLP sized to it).")] = 100_000,
    clients: Annotated[
        int,
        typer.Option("--institutions", "--clients", min=1, help="Institutions in the federation."),
    ] = 10,
    rounds: Annotated[int, typer.Option(min=1, help="Training rounds per mode.")] = 3,
    modes: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated modes from: {', '.join(ROUND_MODES)} (plaintext is the "
            "baseline; the masked ones need 3 to 16 institutions)."
        ),
    ] = "plaintext,ckks-lean,ckks-masked",
    seed: Annotated[int, typer.Option(help="Seed of data, model and training.")] = 0,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the rows to this JSON file.")
    ] = None,
) -> None:
    """One federation per mode, plaintext first: round time, bytes and aggregator CPU."""
    chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
    if set(chosen) - set(ROUND_MODES) or "plaintext" not in chosen:
        raise typer.BadParameter(
            f"choose plaintext and any of {', '.join(ROUND_MODES)}", param_hint="--modes"
        )
    if any("masked" in m for m in chosen) and not 3 <= clients <= 16:
        raise typer.BadParameter(
            f"the masked modes sum 3 to 16 institutions, got {clients}", param_hint="--modes"
        )
    with console.status(f"running {clients} institutions x {rounds} rounds: {', '.join(chosen)}"):
        rows, ratios = run_round_bench(params, clients, rounds, modes=chosen, seed=seed)
    table = Table(title="One federated round, median over rounds (simulation engine, this machine)")
    for name in (
        "mode",
        "params",
        "clients",
        "round",
        "up / institution",
        "down / institution",
        "aggregator CPU",
        "AUC",
    ):
        table.add_column(name, justify="left" if name == "mode" else "right")
    for row in rows:
        table.add_row(
            row.mode,
            f"{row.params:,}",
            str(row.clients),
            f"{row.round_s:.3f} s",
            f"{row.bytes_up_per_client:,.0f} B",
            f"{row.bytes_down_per_client:,.0f} B",
            f"{row.aggregator_cpu_s * 1e3:.1f} ms",
            f"{row.auc:.4f}",
        )
    console.print(table)
    for mode, ratio in ratios.items():
        console.print(f"{mode} / plaintext round time: {ratio:.2f}x")
    console.print("one Ray actor plays every institution in every mode (a masked round keeps")
    console.print("its masks in the process that trained); in deployment each trains apart")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"rows": [r.to_dict() for r in rows], "ratio_round_s": ratios}
        json_path.write_text(json.dumps(payload, indent=2))
        console.print(f"wrote {json_path}")


@app.command("scale")
def scale_command(
    institutions: Annotated[int, typer.Option(min=1, help="Virtual institutions.")] = 100,
    rounds: Annotated[int, typer.Option(min=1, help="Encrypted training rounds.")] = 10,
    rows: Annotated[
        int, typer.Option(min=50, help="Rows of each institution's synthetic table.")
    ] = 100,
    seed: Annotated[int, typer.Option(help="Seed of data, model and training.")] = 0,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the result to this JSON file.")
    ] = None,
) -> None:
    """Many virtual institutions, encrypted rounds: wall time and peak memory on this machine."""
    with console.status(f"running {institutions} institutions x {rounds} encrypted rounds"):
        result = run_scale_bench(institutions, rounds, rows_per_institution=rows, seed=seed)
    table = Table(title="Encrypted federation at scale (simulation engine, this machine)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("institutions x rounds", f"{result.institutions} x {result.rounds}")
    table.add_row("rows per institution", f"{result.rows_per_institution}")
    table.add_row("wall time, whole run", f"{result.wall_s:.1f} s")
    table.add_row("round time (median)", f"{result.round_s_median:.2f} s")
    table.add_row("aggregator CPU per round (median)", f"{result.aggregator_cpu_s_median:.3f} s")
    table.add_row("peak RSS, this process", f"{result.peak_rss_self_mib:,.0f} MiB")
    table.add_row("peak RSS, largest ended child", f"{result.peak_rss_children_mib:,.0f} MiB")
    table.add_row("peak RSS, process tree (Ray included)", f"{result.peak_tree_rss_mib:,.0f} MiB")
    table.add_row("final AUC", f"{result.auc:.4f}")
    console.print(table)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result.to_dict(), indent=2))
        console.print(f"wrote {json_path}")
