"""``crossfed simulate``: accuracy against compliance cost, every strategy really trained.

Exit codes: 0 done; 2 bad input (a profile, the data, an option) refused with
the reason; 1 a run failed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import warnings
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clients import ClientError
from crossfed.cli.choices import ModelChoice, PartitionMissingChoice
from crossfed.protocol import FederationSettings, ProtocolError
from federation import FederationError
from simulations import (
    DEFAULT_DRAWS,
    DEFAULT_YEARS,
    GENERATORS,
    CompliancePlan,
    Prices,
    ScenarioSpec,
    SimulationError,
    StudyResult,
    run_study,
    write_report,
)

__all__ = ["simulate"]

console = Console()
err_console = Console(stderr=True)
_DEFAULTS = FederationSettings(mode="plaintext")
#: The synthetic generators, as an enumeration (choices in ``--help``).
GeneratorChoice = StrEnum(  # type: ignore[misc]  # members from the registry, not literals
    "GeneratorChoice", {name: name for name in sorted(GENERATORS)}
)
_DEFAULT_GENERATOR = GeneratorChoice(ScenarioSpec.generator)
_DEFAULT_MODEL = ModelChoice(_DEFAULTS.model)
if not console.is_terminal:  # piped or captured: keep the table readable
    console.width = max(console.width, 170)


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a list like 1,4,8", param_hint=option) from None


def _codes(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip().upper() for p in (text or "").split(",") if p.strip())


def _usd(value: float | None) -> str:
    return "[red]infeasible[/]" if value is None else f"{value:,.0f}"


def _dash(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _turnover(items: list[str] | None) -> dict[str, float]:
    """``NAME=USD`` pairs (``--turnover``) as a mapping."""
    amounts: dict[str, float] = {}
    for item in items or []:
        name, sep, amount = item.partition("=")
        try:
            value = float(amount.replace(",", "").replace("_", ""))
        except ValueError:
            value = float("nan")
        if not sep or not name.strip() or not value >= 0:
            raise typer.BadParameter(f"{item!r} is not NAME=USD", param_hint="--turnover")
        amounts[name.strip()] = value
    return amounts


def _table(study: StudyResult) -> Table:
    plan = study.compliance
    table = Table(
        title="Strategies: quality on the same test splits; compliance cost over "
        f"{plan.years} year(s), law as at {plan.date.isoformat()}"
    )
    columns = (
        "AUC", "KS", "approval", "mean inst. AUC", "transfer $", "risk $", "ops $", "total $",
        "lead time", "MB sent", "CPU s", "wall s", "ε", "front",
    )  # fmt: skip
    table.caption = f"approval: share approved at {study.scenario.spec.approval_target}"
    table.add_column("strategy", no_wrap=True)
    for name in columns:
        table.add_column(name, justify="right")
    for result in study.strategies:
        run, cost, overall = result.run, result.cost, result.run.evaluation.overall
        table.add_row(
            result.name,
            f"{overall.auc:.4f}",
            f"{overall.ks:.3f}",
            f"{overall.approval_rate:.1%}",
            f"{run.evaluation.mean_institution_auc:.4f}",
            _dash(cost.transfer_cost_usd),  # "infeasible" once, in the total
            _dash(cost.residual_risk_usd),
            _usd(cost.operational_cost_usd),
            _usd(cost.total_usd),
            "—" if cost.lead_time_days is None else f"{cost.lead_time_days:.0f} d",
            f"{run.bytes_sent / 1e6:.2f}",
            f"{run.cpu_s:.1f}",
            f"{run.wall_s:.1f}",
            "—" if run.epsilon is None else f"{run.epsilon:.2f}",
            "[green]●[/]" if result.on_front else "",
        )
    return table


def _process_age_s() -> float | None:
    """Seconds since this process started (Linux), imports included."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _sensitivity_table(study: StudyResult) -> Table:
    table = Table(title="Total cost $ under each answer to the unsettled legal questions")
    table.add_column("strategy")
    for personal in (False, True):
        for exits in (False, True):
            table.add_column(
                f"updates personal: {'yes' if personal else 'no'}\n"
                f"encryption exits scope: {'yes' if exits else 'no'}",
                justify="right",
            )
    for result in study.strategies:
        table.add_row(result.name, *(_usd(row.cost.total_usd) for row in result.sensitivity))
    return table


def _uncertainty_table(study: StudyResult) -> Table | None:
    mc = study.monte_carlo
    if mc is None:
        return None
    table = Table(
        title=f"Total cost $ over {mc.draws:,} Monte Carlo draws of the assumptions "
        f"(seed {mc.seed})"
    )
    for name in ("strategy", "p5", "p50", "p95", "feasible in"):
        table.add_column(name, justify="left" if name == "strategy" else "right")
    for name, q in mc.strategies.items():
        table.add_row(name, _usd(q.p5), _usd(q.p50), _usd(q.p95), f"{q.defined_share:.0%}")
    return table


def _claim(study: StudyResult) -> str:
    mc = study.monte_carlo
    head = mc.headline if mc is not None else None
    if mc is None or head is None or head.p_saves_claim is None:
        return ""

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.0f} %"

    legal = head.legal_p_saves_claim
    drivers = ", ".join(b.id for b in mc.tornado[:3])
    return (
        f"{head.candidate} against {head.baseline}: saving {pct(head.saving_base)} of total "
        f"cost in the base case, P(saving >= {100 * mc.claim:.0f} %) = "
        f"{head.p_saves_claim:.1%}; transfer + risk only: {pct(head.legal_saving_base)}, "
        f"P = {'—' if legal is None else f'{legal:.1%}'}. Moved most by {drivers or '—'} "
        "(tornado.png)."
    )


def _summary(study: StudyResult) -> str:
    names = {r.name for r in study.strategies}
    if not {"centralized", "local-only", "fedavg", "he-fedavg"} <= names:
        return ""
    auc = {r.name: r.run.evaluation.overall.auc for r in study.strategies}
    local_mean = study.strategy("local-only").run.evaluation.mean_institution_auc
    he_mean = study.strategy("he-fedavg").run.evaluation.mean_institution_auc
    return (
        f"he-fedavg AUC {auc['he-fedavg']:.4f}: {auc['he-fedavg'] - auc['centralized']:+.4f} "
        f"against centralized, {auc['he-fedavg'] - auc['fedavg']:+.4f} against plaintext "
        f"FedAvg; mean institution AUC {he_mean:.4f} against local-only's {local_mean:.4f}."
    )


def simulate(
    generator: Annotated[
        GeneratorChoice, typer.Option(help="Synthetic data, when no --data is given.")
    ] = _DEFAULT_GENERATOR,
    institutions: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="Institutions: generated ones (default a mix of 7 jurisdictions), or with "
            "--data and no --partition-by, a Dirichlet split into this many.",
        ),
    ] = None,
    rows: Annotated[
        int | None, typer.Option(min=100, help="Generated rows in all (default 12,000).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="A table (CSV with any delimiter, Parquet, Excel) instead of a generator."
        ),
    ] = None,
    target: Annotated[str | None, typer.Option(help="The table's label column.")] = None,
    positive: Annotated[str | None, typer.Option(help="The bad (positive) label.")] = None,
    negative: Annotated[
        str | None,
        typer.Option(help="The good labels, comma-separated (needed beyond two labels)."),
    ] = None,
    partition_by: Annotated[
        str | None, typer.Option(help="One institution per value of this column.")
    ] = None,
    partition_missing: Annotated[
        PartitionMissingChoice,
        typer.Option(
            help="Rows without a --partition-by value: dropped (and counted), or their own "
            "institution."
        ),
    ] = PartitionMissingChoice.drop,
    partitions: Annotated[
        int | None,
        typer.Option(
            min=2, help="Or N institutions by a Dirichlet label split (= --institutions)."
        ),
    ] = None,
    alpha: Annotated[float, typer.Option(help="Dirichlet concentration for --partitions.")] = 0.5,
    schema: Annotated[
        Path | None, typer.Option(help="Federation schema (YAML); inferred if absent.")
    ] = None,
    jurisdictions: Annotated[
        str | None, typer.Option(help="Jurisdiction codes given to institutions in turn: EU,US,CN.")
    ] = None,
    hub: Annotated[
        str | None, typer.Option(help="Jurisdiction of the pool and the aggregator.")
    ] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Federated rounds.")] = _DEFAULTS.rounds,
    epochs: Annotated[int, typer.Option(min=1, help="Local epochs per round.")] = _DEFAULTS.epochs,
    learning_rate: Annotated[
        float, typer.Option(min=0.0, help="SGD step size.")
    ] = _DEFAULTS.learning_rate,
    model: Annotated[ModelChoice, typer.Option(help="The model trained.")] = _DEFAULT_MODEL,
    dpsgd_epsilons: Annotated[
        str,
        typer.Option(
            help="Target epsilons of the record-level DP-SGD runs (each customer, each "
            "institution's ε over the run); empty for none."
        ),
    ] = "1,4,8",
    epsilons: Annotated[
        str,
        typer.Option(
            help="Target epsilons of institution-level distributed-DP runs (for large "
            "federations); empty for none."
        ),
    ] = "",
    dp_clip: Annotated[float, typer.Option(help="L2 clip of each update in DP runs.")] = 0.5,
    strategies: Annotated[
        str,
        typer.Option(
            help="Only these federated strategies, comma-separated (default: fedavg, "
            "he-fedavg and the DP runs; centralized and local-only always run); "
            "he-fedavg-masked16 and he-fedavg-masked8 (masked updates) run only when named."
        ),
    ] = "",
    target_bad_rate: Annotated[
        float | None,
        typer.Option(
            help="Bad rate tolerated among approved applicants (default: half the training "
            "split's bad rate, each institution's own)."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of data, splits, model and shuffling.")
    ] = _DEFAULTS.seed,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default reports/<timestamp>).")
    ] = None,
    profiles: Annotated[
        Path | None,
        typer.Option(
            help="Folder of jurisdiction profiles (and consortium.yaml) overriding shipped ones."
        ),
    ] = None,
    cpu_hour_usd: Annotated[float, typer.Option(min=0.0, help="Price of a CPU-hour.")] = 0.05,
    gb_sent_usd: Annotated[float, typer.Option(min=0.0, help="Price of a GB sent.")] = 0.09,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"], help="Price under the law as at this date (default: today)."
        ),
    ] = None,
    years: Annotated[
        int,
        typer.Option(min=1, help="Horizon: recurring costs, renewals and penalties over N years."),
    ] = DEFAULT_YEARS,
    turnover: Annotated[
        list[str] | None,
        typer.Option(
            help="Annual turnover of an institution, NAME=USD (repeat; 'aggregator' for the "
            "hub operator). Others: their profile's reference turnover."
        ),
    ] = None,
    draws: Annotated[
        int, typer.Option(min=1, help="Monte Carlo draws of the uncertain assumptions.")
    ] = DEFAULT_DRAWS,
    ray_address: Annotated[
        str | None, typer.Option(help="Run the federations on this Ray cluster (host:port).")
    ] = None,
    keep_work: Annotated[
        bool, typer.Option("--keep-work", help="Keep partitions, keys and run logs in OUT/work.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show Flower's and Ray's logs.")
    ] = False,
) -> None:
    """Train centralized, local-only, FedAvg, encrypted FedAvg and DP runs; price and compare."""
    started = time.perf_counter()
    out = out or Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        if data is not None and partition_by is None and partitions is None:
            partitions = institutions  # --institutions N: a Dirichlet split into N
        spec = ScenarioSpec(
            generator=generator.value,
            institutions=institutions or ScenarioSpec.institutions,
            total_rows=rows,
            data=str(data) if data else None,
            target=target,
            positive=positive,
            negatives=tuple(p.strip() for p in (negative or "").split(",") if p.strip()),
            partition_by=partition_by,
            partition_missing=partition_missing.value,
            partitions=partitions,
            alpha=alpha,
            schema=str(schema) if schema else None,
            jurisdictions=_codes(jurisdictions),
            hub=hub.upper() if hub else None,
            seed=seed,
            rounds=rounds,
            epochs=epochs,
            learning_rate=learning_rate,
            model=model.value,
            epsilons=_floats(epsilons, "--epsilons"),
            dpsgd_epsilons=_floats(dpsgd_epsilons, "--dpsgd-epsilons"),
            dp_clip=dp_clip,
            target_bad_rate=target_bad_rate,
            strategies=tuple(n.strip() for n in strategies.split(",") if n.strip()),
        )
        prices = (
            Prices()
            if (cpu_hour_usd, gb_sent_usd) == (Prices.cpu_hour_usd, Prices.gb_sent_usd)
            else Prices(
                cpu_hour_usd, gb_sent_usd, rationale="given with --cpu-hour-usd, --gb-sent-usd"
            )
        )
        compliance = CompliancePlan(
            as_of=as_of.date() if as_of else None,
            years=years,
            turnover_usd=_turnover(turnover),
            draws=draws,
        )
    except (SimulationError, FederationError, ProtocolError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    flwr_logger = logging.getLogger("flwr")
    flwr_level = flwr_logger.level
    if not verbose:  # Flower's per-round log, its deprecation notice and Ray's tips
        flwr_logger.setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=FutureWarning, module="ray")
    work = out / "work" if keep_work else Path(tempfile.mkdtemp(prefix="crossfed-study-"))
    try:
        with Progress(
            TextColumn("[bold]simulate"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("", total=None)

            def step(done: int, total: int, what: str) -> None:
                progress.update(task, completed=done, total=total, description=what)

            study = run_study(
                spec,
                work,
                profiles_dir=profiles,
                prices=prices,
                ray_address=ray_address,
                progress=step,
                log_to_driver=verbose,
                compliance=compliance,
            )
            paths = write_report(study, out)
    except (SimulationError, ClientError, FederationError, ProtocolError) as exc:
        err_console.print(f"[bold red]ERROR[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(code=2) from exc
    finally:
        flwr_logger.setLevel(flwr_level)
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
    for note in (*study.scenario.assumed, *study.scenario.excluded):  # dropped rows, left out
        console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    console.print(_table(study))
    console.print(_sensitivity_table(study))
    if (uncertainty := _uncertainty_table(study)) is not None:
        console.print(uncertainty)
    if claim := _claim(study):
        console.print(claim, highlight=False)
    if summary := _summary(study):
        console.print(summary)
    console.print(f"report: {paths['report.html']}  (results.json, CSV tables and plots in {out})")
    age = _process_age_s()
    since_start = f"; {age:.1f} s since the command started" if age is not None else ""
    console.print(f"wall time: {time.perf_counter() - started:.1f} s for the study{since_start}")
