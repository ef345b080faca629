"""Scale: many virtual institutions, encrypted rounds, on this machine's cores.

``crossfed bench scale`` runs one encrypted federation (``lean`` preset,
logistic regression) of ``institutions`` virtual institutions for ``rounds``
rounds in Flower's simulation engine, each institution holding a small
synthetic ``sme-credit`` table of equal size. Flower runs the virtual
institutions as tasks on a pool of Ray actors (one per CPU), so a hundred
institutions on two cores means fifty ClientApp calls per actor per round,
not a hundred processes.

It reports what an operator sizing a machine asks: the wall time of the whole
run and of a round (median), and peak memory three ways:

* ``peak_rss_self_mib`` — this process (the ServerApp and the driver), from
  ``getrusage(RUSAGE_SELF)``;
* ``peak_rss_children_mib`` — the largest child process that has ended
  (``getrusage(RUSAGE_CHILDREN)``; Ray's processes once it has shut down);
* ``peak_tree_rss_mib`` — the largest sum of resident memory over this process
  and all its descendants (Ray's raylet, GCS and actors included), sampled
  every half second while the run lasts.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

import crypto
from clients import infer_schema, save_schema
from crossfed.protocol import FederationSettings, descendants
from simulations.engine import default_backend_config, run_federated
from simulations.generators import generate
from simulations.generators.common import InstitutionSpec, default_institutions

__all__ = ["ScaleBenchResult", "run_scale_bench"]

_KIB_PER_MIB = 1024.0


@dataclass(frozen=True)
class ScaleBenchResult:
    """What one scale run cost; field names match the JSON output."""

    institutions: int
    rounds: int
    rows_per_institution: int
    wall_s: float
    round_s_median: float
    aggregator_cpu_s_median: float
    peak_rss_self_mib: float
    peak_rss_children_mib: float
    peak_tree_rss_mib: float
    auc: float

    def to_dict(self) -> dict[str, object]:
        """The result as plain data (for ``--json``)."""
        return asdict(self)


class _TreeMemory:
    """Samples the resident memory of this process and its descendants in a thread."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-rss", daemon=True)

    def _sample(self) -> int:
        total = 0
        for pid in [os.getpid(), *descendants(os.getpid())]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:  # ended meanwhile
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._sample())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> _TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _maxrss_mib(who: int) -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes; crossfed deploys on Linux).
    scale = 1.0 if sys.platform.startswith("linux") else 1.0 / 1024.0
    return resource.getrusage(who).ru_maxrss * scale / _KIB_PER_MIB


def run_scale_bench(
    institutions: int = 100,
    rounds: int = 10,
    *,
    rows_per_institution: int = 100,
    seed: int = 0,
    work_dir: Path | None = None,
) -> ScaleBenchResult:
    """Run the encrypted federation once and measure it.

    Parameters
    ----------
    institutions
        Virtual institutions, all sampled in every round (quorum: all of them).
    rounds
        Encrypted training rounds after the statistics round.
    rows_per_institution
        Rows of each institution's synthetic table (equal sizes).
    seed
        Seed of the data, the model and training.
    work_dir
        Where data, keys and outputs go; a temporary folder by default.
    """
    if institutions < 1 or rounds < 1 or rows_per_institution < 50:
        raise ValueError("need institutions >= 1, rounds >= 1 and rows_per_institution >= 50")
    # Small tables at a low default rate: a few draw fewer than two defaults, which
    # their own stratified test split refuses. Draw spares and keep the first usable.
    spares = max(10, institutions // 5)
    specs = [
        InstitutionSpec(s.name, s.jurisdiction) for s in default_institutions(institutions + spares)
    ]
    with tempfile.TemporaryDirectory(prefix="crossfed-bench-scale-") as scratch:
        root = Path(work_dir or scratch)
        root.mkdir(parents=True, exist_ok=True)
        federation = generate(
            "sme-credit", specs, seed=seed, total_rows=len(specs) * rows_per_institution
        )
        usable = [
            i
            for i in federation.institutions
            if 2
            <= int((i.frame[federation.target] == federation.positive).sum())
            <= len(i.frame) - 2
        ][:institutions]
        if len(usable) < institutions:
            raise ValueError(f"only {len(usable)} usable tables; raise rows_per_institution")
        files = []
        for index, institution in enumerate(usable):
            path = root / f"institution-{index}.csv"
            institution.frame.to_csv(path, index=False)
            files.append(str(path))
        schema = infer_schema(
            pd.concat([i.frame for i in usable], ignore_index=True),
            federation.target,
            federation.positive,
            categorical=list(federation.categorical_columns),
        )
        save_schema(schema, root / "schema.yaml")
        secret = crypto.generate_secret_context("lean")
        secret.save(root / "secret.ctx")
        secret.public().save(root / "public.ctx")
        settings = FederationSettings(
            mode="encrypted",
            rounds=rounds,
            min_institutions=institutions,
            institutions=institutions,
            round_timeout=1800,
            public_context=str(root / "public.ctx"),
            secret_context=str(root / "secret.ctx"),
            schema=str(root / "schema.yaml"),
            data_files=",".join(files),
            model="logistic",
            epochs=1,
            seed=seed,
            out_dir=str(root / "out"),
        )
        backend = default_backend_config()  # a fresh Ray of its own, never a leftover cluster
        started = time.perf_counter()
        with _TreeMemory() as tree:
            run = run_federated(settings, institutions, backend_config=backend)
        wall = time.perf_counter() - started
    measured = run.metrics["rounds_measured"]
    return ScaleBenchResult(
        institutions=institutions,
        rounds=rounds,
        rows_per_institution=rows_per_institution,
        wall_s=wall,
        round_s_median=statistics.median(m["round_s"] for m in measured),
        aggregator_cpu_s_median=statistics.median(m["aggregator_cpu_s"] for m in measured),
        peak_rss_self_mib=_maxrss_mib(resource.RUSAGE_SELF),
        peak_rss_children_mib=_maxrss_mib(resource.RUSAGE_CHILDREN),
        peak_tree_rss_mib=tree.peak_bytes / (1024.0 * 1024.0),
        auc=float(run.final_evaluation()["auc"]),
    )
