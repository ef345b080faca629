"""The harness's own measurements: the institutions' CPU from outside, and the model's shapes.

:class:`~simulations.cputime.RayWorkerCpu` counts the CPU of this process's
descendants that carry the actor name, and nothing else: here two child
processes do the same fixed amount of work, one named like Flower's actor, and
only its CPU is counted. The processes report their own CPU on a pipe and wait
there, so the reading happens while both are alive (no sleeps). The harness
computes ``model-shapes`` from the schema and the model, as a kit would.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from clients import (
    ModelSpec,
    build_model,
    encode,
    get_weights,
    infer_schema,
    load_schema,
    save_schema,
)
from crossfed.protocol import FederationSettings
from simulations.cputime import ACTOR_NAME, RayWorkerCpu
from simulations.engine import institutions_cpu_meter, with_model_shapes

GERMAN_CREDIT = Path(__file__).parents[1] / "data" / "german_credit.csv"

# Busy for a fixed amount of work, report own CPU seconds, then wait for stdin to close.
_WORK = (
    "import sys, time\n"
    "total = sum(i * i for i in range(3_000_000))\n"
    "print(time.process_time(), flush=True)\n"
    "sys.stdin.read()\n"
)


def _worker(marker: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WORK, marker],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_only_the_actor_processes_cpu_is_counted() -> None:
    meter = RayWorkerCpu()
    read = meter.start()
    actor, other = _worker(f"ray::{ACTOR_NAME}"), _worker("ray::raylet-like")
    try:
        assert actor.stdout is not None and other.stdout is not None
        actor_cpu = float(actor.stdout.readline())  # both done working, both still alive
        other_cpu = float(other.stdout.readline())
        measured = read()
    finally:
        for process in (actor, other):
            process.communicate("")
    assert actor_cpu > 0.05 and other_cpu > 0.05
    # The actor's whole CPU (it started after the meter), and not the other's; the
    # kernel counts user and system time in 10 ms ticks each, hence the 30 ms allowance.
    assert actor_cpu - 0.03 <= measured < actor_cpu + other_cpu / 2


def test_a_cluster_given_by_address_is_not_measured() -> None:
    assert institutions_cpu_meter({"init_args": {"address": "10.0.0.5:6379"}}) is None
    assert isinstance(institutions_cpu_meter({"init_args": {"address": "local"}}), RayWorkerCpu)


@pytest.mark.parametrize(("model", "hidden"), [("logistic", "32,16"), ("mlp", "8,4")])
def test_the_harness_fixes_model_shapes_from_schema_and_model(
    tmp_path: Path, model: str, hidden: str
) -> None:
    frame = pd.read_csv(GERMAN_CREDIT)
    save_schema(infer_schema(frame, "creditability", "bad"), tmp_path / "schema.yaml")
    settings = FederationSettings(
        mode="plaintext", schema=str(tmp_path / "schema.yaml"), model=model, hidden=hidden
    )

    filled = with_model_shapes(settings)

    x, _ = encode(frame, load_schema(tmp_path / "schema.yaml"))  # what institutions train on
    built = build_model(
        ModelSpec(kind=model, hidden=settings.hidden_sizes()),  # type: ignore[arg-type]
        x.shape[1],
        settings.seed,
    )
    assert filled.shapes() == tuple(tuple(w.shape) for w in get_weights(built))
    given = dataclasses.replace(settings, model_shapes="[[1,2]]")
    assert with_model_shapes(given) is given  # shapes already given are kept
