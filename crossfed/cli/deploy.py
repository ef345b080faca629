"""``crossfed aggregator``, ``crossfed client`` and ``crossfed status``: a deployed federation.

Exit codes: 0 done; 1 the run failed (refused, TLS, quorum, timeout); 2 the
input is wrong (kit, data file, options) and nothing was started or sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clients import (
    ClientError,
    DataValidationError,
    SuperNodeError,
    check_institution,
    run_institution,
)
from clients.kit import InstitutionKit
from clients.refusal_count import RefusalCountBusyError
from clients.refusals import kit_refusal_budget
from crossfed.protocol import ProtocolError, ProvisioningError
from federation import (
    AggregatorKit,
    FederationError,
    SuperLink,
    read_status,
    run_aggregator,
)

__all__ = ["aggregator", "client", "status"]

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int) -> typer.Exit:
    err_console.print(f"[bold red]ERROR[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code=code)


def aggregator(
    kit: Annotated[Path, typer.Option("--kit", help="The aggregator's kit folder.")],
    out: Annotated[
        Path, typer.Option("--out", help="Where the encrypted model, metrics and audit log go.")
    ] = Path("aggregator-out"),
    listen: Annotated[
        str | None,
        typer.Option("--listen", help="Address the Fleet API binds (default: the kit's address)."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds before the run is abandoned.")
    ] = None,
) -> None:
    """Start the SuperLink (TLS, node authentication) and run the federation to completion."""

    def show(state: dict[str, Any]) -> None:
        console.print(
            f"[cyan]{state['phase']}[/] round {state['rounds_done']}/{state['rounds']}",
            highlight=False,
        )

    try:
        result = run_aggregator(kit, out, listen=listen, timeout=timeout, progress=show)
    except ProvisioningError as exc:
        raise _fail(str(exc), 2) from exc
    except (FederationError, ProtocolError) as exc:
        raise _fail(f"{exc} (logs: {kit / 'run' / 'logs'})", 1) from exc
    if not result.ok:
        why = f": {result.reason}" if result.reason else ""
        raise _fail(
            f"the run failed{why} (flwr run exit {result.returncode}); logs in {result.log_dir}",
            1,
        )
    console.print(
        f"[bold green]OK[/] run finished in {result.wall_s:.0f} s; encrypted model, "
        f"metrics and audit log in {escape(str(result.out_dir))}"
    )


def client(
    kit: Annotated[Path, typer.Option("--kit", help="This institution's kit folder.")],
    data: Annotated[Path, typer.Option("--data", help="The institution's CSV or Parquet file.")],
    out: Annotated[
        Path, typer.Option("--out", help="Where the decrypted model and local metrics go.")
    ] = Path("crossfed-out"),
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds to wait for the run to finish.")
    ] = None,
    connect_timeout: Annotated[
        float,
        typer.Option("--connect-timeout", help="Seconds to keep retrying the aggregator."),
    ] = 120.0,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Only check the kit, the data file and this machine; send nothing, start "
            "nothing (exit 0: ready, 2: problems named).",
        ),
    ] = False,
    reset_refusals: Annotated[
        bool,
        typer.Option(
            "--reset-refusals",
            help="After reviewing OUT/.supernode/institution.log: set the count of refused "
            "aggregates (kept in the kit, one per key, shared by every --out) to 0 so that "
            "this institution decrypts again; joins nothing.",
        ),
    ] = False,
) -> None:
    """Check the data against the schema, join the federation, keep the final model.

    Earlier outputs in --out are replaced only when this run succeeds.
    """
    if check:
        _check(kit, data, out)
        return
    if reset_refusals:
        try:
            budget = kit_refusal_budget(InstitutionKit.load(kit))
        except ProvisioningError as exc:
            raise _fail(f"{exc}; nothing was reset", 2) from exc
        try:
            before = budget.refused()
            budget.reset()
        except RefusalCountBusyError as exc:
            raise _fail(f"{exc}; stop it first, nothing was reset", 2) from exc
        except OSError as exc:
            raise _fail(f"cannot reset {budget.path}: {exc.strerror}", 2) from exc
        console.print(
            f"[bold yellow]RESET[/] {escape(str(budget.path))}: {before} refused aggregate(s) "
            "cleared; this institution decrypts again",
            highlight=False,
        )
        return
    try:
        result = run_institution(
            kit,
            data,
            out,
            timeout=timeout,
            connect_timeout=connect_timeout,
            progress=lambda line: console.print(escape(line), highlight=False),
        )
    except DataValidationError as exc:
        where = f" (column {exc.column!r})" if exc.column else ""
        raise _fail(f"{data}{where}: {exc}; nothing was sent", 2) from exc
    except SuperNodeError as exc:
        code = f", Flower exit code {exc.exit_code}" if exc.exit_code is not None else ""
        raise _fail(f"{exc}{code} (log: {exc.log_path})", 1) from exc
    except (ClientError, ProtocolError) as exc:
        raise _fail(f"{exc}; nothing was sent", 2) from exc
    metrics = json.loads(result.metrics.read_text())
    federation = metrics.get("federation_test") or {}
    table = Table(title=f"{escape(result.name)}: the final global model")
    table.add_column("metric")
    table.add_column("local test split", justify="right")
    if federation:
        table.add_column("federation (all test splits)", justify="right")
    for name, value in metrics["test"].items():
        shared = [f"{federation[name]:.4f}" if name in federation else "-"] if federation else []
        table.add_row(name, f"{value:.4f}", *shared)
    console.print(table)
    # Every approval rate says at which target bad rate it was measured.
    target = (metrics.get("approval_target") or {}).get("description")
    if target:
        console.print(f"approval_rate, local: {escape(target)}", highlight=False)
    if federation and metrics.get("federation_approval_target"):
        fed_target = escape(metrics["federation_approval_target"])
        console.print(f"approval_rate, federation: {fed_target}", highlight=False)
    if result.scorecard.is_file():
        console.print(f"scorecard: {escape(str(result.scorecard))}")
    if metrics.get("model_card"):
        console.print(f"model card: {escape(str(result.out_dir / metrics['model_card']))}")
    console.print(f"[bold green]OK[/] model and metrics in {escape(str(result.out_dir))}")


def _check(kit: Path, data: Path, out: Path) -> None:
    """``crossfed client --check``: every problem named, exit 0 (ready) or 2."""
    report = check_institution(kit, data, out)
    who = report.institution or str(kit)
    for note in report.notes:
        console.print(f"  {escape(note)}", highlight=False, soft_wrap=True)
    if report.ok:
        console.print(f"[bold green]OK[/] {who}: ready to join; nothing was sent", highlight=False)
        return
    for problem in report.problems:
        err_console.print(f"[bold red]PROBLEM[/] {escape(problem)}", soft_wrap=True)
    raise _fail(f"{who}: {len(report.problems)} problem(s); nothing was sent", 2)


def status(
    kit: Annotated[Path, typer.Option("--kit", help="The aggregator's kit folder.")],
) -> None:
    """Show the run's progress: phase, rounds done, institutions connected."""
    try:
        loaded = AggregatorKit.load(kit)
        state = read_status(loaded.path)
    except ProvisioningError as exc:
        raise _fail(str(exc), 2) from exc
    node_states: dict[int, str] = {}
    if state.get("phase") == "running":
        try:
            node_states = SuperLink(loaded, loaded.path / "run").node_states()
        except (FederationError, ProtocolError) as exc:
            err_console.print(f"[yellow]cannot ask the SuperLink:[/] {escape(str(exc))}")
    console.print(
        f"federation {escape(str(state['federation']))}: [cyan]{state['phase']}[/], "
        f"round {state.get('rounds_done', 0)}/{state['rounds']} (updated {state.get('updated')})",
        highlight=False,
    )
    table = Table(title="Institutions")
    table.add_column("institution")
    table.add_column("jurisdiction")
    table.add_column("node id", justify="right")
    table.add_column("state")
    nodes: dict[str, int] = state.get("institutions", {})
    for inst in loaded.manifest.institutions:
        node = nodes.get(inst.name)
        shown = node_states.get(node, "-") if node is not None else "not registered"
        table.add_row(escape(inst.name), escape(inst.jurisdiction or "-"), str(node or "-"), shown)
    console.print(table)
    online = sum(1 for s in node_states.values() if s == "online")
    if node_states:
        console.print(f"{online} of {len(loaded.manifest.institutions)} institutions connected")
