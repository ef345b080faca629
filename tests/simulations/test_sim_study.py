"""The study's pieces without a federation: splits, scenarios, Pareto marking, reports."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from flwr.app import ConfigRecord, RecordDict
from typer.testing import CliRunner

from clients import RiskMetrics
from crossfed.cli import app
from simulations import (
    Prices,
    ScenarioSpec,
    SimulationError,
    StrategyPlan,
    StrategyResult,
    StrategyRun,
    load_profiles,
    mark_front,
    partition_by_column,
    partition_dirichlet,
    plan_strategies,
    prepare_scenario,
)
from simulations.evaluation import StrategyEvaluation
from simulations.multirun import STUDY_RECORD, TaggingGrid
from simulations.plots import InstitutionPoint, StrategyPoint, pareto_figure, uplift_figure
from simulations.scenario import Institution, Scenario
from simulations.study import price

GERMAN_CREDIT = Path(__file__).parents[1] / "data" / "german_credit.csv"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def german() -> pd.DataFrame:
    return pd.read_csv(GERMAN_CREDIT)


def test_partition_by_column_one_institution_per_value(german: pd.DataFrame) -> None:
    parts = partition_by_column(german, "housing")
    assert [p.name for p in parts] == ["housing-for-free", "housing-own", "housing-rent"]
    assert sum(len(p.frame) for p in parts) == len(german)
    for part in parts:
        assert part.frame["housing"].nunique() == 1
        assert list(part.frame.columns) == list(german.columns)
    with pytest.raises(SimulationError, match="not in the table"):
        partition_by_column(german, "branch")


def test_dirichlet_split_is_seeded_and_skews_labels(german: pd.DataFrame) -> None:
    first = partition_dirichlet(german, "creditability", 4, 0.3, seed=3)
    again = partition_dirichlet(german, "creditability", 4, 0.3, seed=3)
    assert [len(p.frame) for p in first] == [len(p.frame) for p in again]
    assert sum(len(p.frame) for p in first) == len(german)
    assert min(len(p.frame) for p in first) >= 20
    bad_rates = [float((p.frame["creditability"] == "bad").mean()) for p in first]
    assert max(bad_rates) - min(bad_rates) > 0.2  # alpha 0.3: strong label skew
    assert set(first[0].frame["creditability"]) <= {"good", "bad"}  # labels restored
    with pytest.raises(SimulationError, match="alpha"):
        partition_dirichlet(german, "creditability", 4, 0.0, seed=0)


def test_prepared_generator_scenario_writes_the_federation_files(tmp_path: Path) -> None:
    scenario = prepare_scenario(ScenarioSpec(institutions=3, total_rows=900), tmp_path)
    assert [i.jurisdiction for i in scenario.institutions] == ["EU", "US", "CN"]
    assert sum(i.rows for i in scenario.institutions) == 900
    for inst in scenario.institutions:
        frame = pd.read_parquet(inst.data_file)
        assert len(frame) == inst.rows
        assert int((frame[scenario.schema.target.column] == "default").sum()) == inst.positives
    assert scenario.schema_path.exists()
    assert scenario.secret_context.stat().st_mode & 0o077 == 0  # secret key file is private
    assert scenario.public_context.exists() and scenario.hub == "EU"
    assert json.dumps(scenario.describe())  # plain data


def test_institutions_without_both_classes_are_excluded_and_listed(
    tmp_path: Path, german: pd.DataFrame
) -> None:
    frame = german.copy()
    frame["branch"] = "a"
    frame.loc[frame.index[:300], "branch"] = "b"
    frame.loc[frame.index[:2], "branch"] = "tiny"  # two rows: cannot be trained and tested
    spec = ScenarioSpec(
        data=str(tmp_path / "table.csv"),
        target="creditability",
        positive="bad",
        partition_by="branch",
        jurisdictions=("SG",),
    )
    frame.to_csv(spec.data, index=False)
    scenario = prepare_scenario(spec, tmp_path / "work")
    assert [i.name for i in scenario.institutions] == ["branch-a", "branch-b"]
    assert len(scenario.excluded) == 1 and scenario.excluded[0].startswith("branch-tiny")
    assert "branch" in scenario.schema.feature_columns


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": "x.csv", "partition_by": "a"}, "--target"),
        ({"data": "x.csv", "target": "y", "positive": "1"}, "--partition-by or --partitions"),
        ({"epsilons": (1.0, -2.0)}, "epsilons"),
        ({"jurisdictions": ("XX",)}, "unknown jurisdiction"),
        ({"institutions": 1}, "at least 2"),
    ],
)
def test_bad_specs_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SimulationError, match=message):
        ScenarioSpec(**kwargs)  # type: ignore[arg-type]


def test_plan_names_follow_the_documented_scheme() -> None:
    plans = plan_strategies(ScenarioSpec(epsilons=(1.0, 0.5, 8.0), dpsgd_epsilons=(4.0,)))
    assert [p.name for p in plans] == [
        "centralized", "local-only", "fedavg", "he-fedavg", "he-fedavg-dpsgd-eps4",
        "he-fedavg-dp-eps1", "he-fedavg-dp-eps0.5", "he-fedavg-dp-eps8",
    ]  # fmt: skip
    assert [p.federated for p in plans] == [False, False, True, True, True, True, True, True]
    assert [p.dp for p in plans[4:]] == ["record", "institution", "institution", "institution"]
    # Record-level DP-SGD by default; institution-level distributed DP only when asked.
    assert [p.dp for p in plan_strategies(ScenarioSpec())].count("record") == 3
    assert "institution" not in [p.dp for p in plan_strategies(ScenarioSpec())]


def _scenario(tmp_path: Path) -> Scenario:
    institutions = tuple(
        Institution(name, code, tmp_path / f"{name}.parquet", 100, 10)
        for name, code in (("eu-bank", "EU"), ("cn-lender", "CN"), ("us-bank", "US"))
    )
    return Scenario(
        spec=ScenarioSpec(),
        work_dir=tmp_path,
        source="constructed",
        institutions=institutions,
        schema=None,  # type: ignore[arg-type]  # pricing does not read the schema
        schema_path=tmp_path / "schema.yaml",
        secret_context=tmp_path / "s",
        public_context=tmp_path / "p",
        hub="EU",
    )


def _run(name: str, kind: str, auc: float, epsilon: float | None = None) -> StrategyRun:
    metrics = RiskMetrics(auc=auc, ks=0.3, brier=0.05, log_loss=0.2, approval_rate=0.5)
    return StrategyRun(
        StrategyPlan(name, kind, epsilon),  # type: ignore[arg-type]
        StrategyEvaluation(metrics, (metrics, metrics, metrics)),
        cpu_s=10.0,
        bytes_sent=1_000_000,
        wall_s=1.0,
        epsilon=epsilon,
    )


def test_front_marks_quality_against_priced_cost(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path)
    profiles = load_profiles()
    runs = [
        _run("centralized", "centralized", 0.95),  # best, but CN forbids pooling: infeasible
        _run("local-only", "local-only", 0.70),  # cheapest
        _run("fedavg", "fedavg", 0.80),  # same AUC as he-fedavg, dearer: dominated
        _run("he-fedavg", "he-fedavg", 0.80),
        _run("he-fedavg-dp-eps8", "he-fedavg-dp", 0.60, epsilon=8.0),  # worse and dearer
    ]
    results = []
    for run in runs:
        cost, rows = price(run, scenario, profiles, Prices())
        results.append(StrategyResult(run, cost, tuple(rows)))
    marked = {r.name: r for r in mark_front(results)}
    assert marked["centralized"].cost.total_usd is None
    # One measured run, retrained 12 times a year (consortium assumption), over 3 years.
    per_run = 10.0 / 3600 * 0.05 + 1e-3 * 0.09
    assert marked["local-only"].cost.total_usd == pytest.approx(per_run * 12 * 3)
    # Same AUC: encrypted FedAvg's technology lines make it dearer than plaintext here.
    assert marked["he-fedavg"].cost.total_usd > marked["fedavg"].cost.total_usd  # type: ignore[operator]
    assert {name for name, r in marked.items() if r.on_front} == {"local-only", "fedavg"}
    assert all(len(r.sensitivity) == 4 for r in results)


def test_plots_are_png() -> None:
    points = [
        StrategyPoint("local-only", 0.7, 0.0, True),
        StrategyPoint("he-fedavg", 0.8, 2e5, True),
        StrategyPoint("centralized", 0.85, None, False),
    ]
    assert pareto_figure(points)[:8] == PNG
    institutions = [InstitutionPoint(f"i{k}", 0.7, 0.75, 0.4, None) for k in range(20)]
    assert uplift_figure(institutions, 0.02)[:8] == PNG  # scatter beyond 15 institutions


def test_tagging_grid_adds_the_federation_record() -> None:
    sent: list[SimpleNamespace] = []

    class Recorder:
        def send_and_receive(
            self, messages: list[SimpleNamespace], *, timeout: float | None = None
        ) -> list[SimpleNamespace]:
            sent.extend(messages)
            return []

    grid = TaggingGrid(Recorder(), "he-fedavg")  # type: ignore[arg-type]
    # Only the content is touched: a stand-in message (Flower's needs a live run).
    message = SimpleNamespace(content=RecordDict({"config": ConfigRecord({"a": 1})}))
    grid.send_and_receive([message], timeout=1.0)  # type: ignore[list-item]
    assert sent[0].content.config_records[STUDY_RECORD]["run"] == "he-fedavg"
    assert sent[0].content.config_records["config"]["a"] == 1


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda text: text.replace("penalties:", "penalty_limit:", 1), "penalties"),
        (lambda text: text.replace("value: 14500", "value: -14500", 1), "fixed_cost"),
    ],
)
def test_simulate_refuses_a_bad_profile_naming_the_field(
    tmp_path: Path, edit: object, field: str
) -> None:
    from simulations.compliance import shipped_profiles_dir

    text = (shipped_profiles_dir() / "eu.yaml").read_text()
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "eu.yaml").write_text(edit(text))  # type: ignore[operator]
    result = CliRunner().invoke(
        app, ["simulate", "--profiles", str(profiles), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert field in result.output and "eu.yaml" in result.output
    assert not (tmp_path / "out" / "results.json").exists()


def test_schema_infer_writes_a_reviewable_schema(tmp_path: Path) -> None:
    out = tmp_path / "schema.yaml"
    result = CliRunner().invoke(
        app,
        [
            "schema", "infer", "--data", str(GERMAN_CREDIT), "--target", "creditability",
            "--positive", "bad", "--out", str(out), "--exclude", "telephone",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "creditability" in text and "telephone" not in text
    refused = CliRunner().invoke(
        app,
        [
            "schema", "infer", "--data", str(GERMAN_CREDIT), "--target", "creditability",
            "--positive", "maybe", "--out", str(tmp_path / "x.yaml"),
        ],
    )  # fmt: skip
    assert refused.exit_code == 2 and "maybe" in refused.output
