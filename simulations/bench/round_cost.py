"""Cost of one federated round, encrypted against plaintext, in the simulation engine.

The same federation runs once per mode from the same seeds — Flower's plaintext
FedAvg (``plaintext``), CKKS-encrypted FedAvg with the float encoding
(``ckks-lean``), and masked CKKS FedAvg with 16-bit deltas (``ckks-masked``:
roll call, masked statistics, masked training with its seed reveal, masked
evaluation; ``ckks-masked8`` for 8 bits) — on the synthetic ``sme-credit``
data split across ``clients`` institutions, with an MLP sized to about
``params`` parameters (two equal hidden layers). Per mode it reports the
median round wall time (sending to aggregation, local training included),
payload bytes up and down per institution, and the aggregator's CPU seconds
per round (median), from the aggregator's own per-round measurements, plus
the final model's ROC AUC on the institutions' test splits. The first round
includes starting Ray's workers, hence the median.

Every mode runs on one Ray actor playing all institutions in turn: a masked
round keeps each institution's masks in the process that trained
(:func:`simulations.engine.one_actor`), and the modes are compared under the
same conditions. In deployment every institution trains in its own process.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

import crypto
from clients import infer_schema, save_schema
from crossfed.protocol import FederationSettings
from simulations.engine import default_backend_config, one_actor, run_federated
from simulations.generators import generate
from simulations.scenario import write_agreement_keys

__all__ = ["ROUND_MODES", "RoundBenchRow", "hidden_size_for", "run_round_bench"]

#: Modes of ``crossfed bench round`` and the CKKS preset of each encrypted one.
ROUND_MODES = {
    "plaintext": None,
    "ckks-lean": "lean",
    "ckks-masked": "masked16",
    "ckks-masked8": "masked8",
}
_DEFAULT_MODES = ("plaintext", "ckks-lean", "ckks-masked")


@dataclass(frozen=True)
class RoundBenchRow:
    """One mode's round cost; field names match the JSON schema."""

    mode: str
    params: int
    clients: int
    round_s: float
    bytes_up_per_client: float
    bytes_down_per_client: float
    aggregator_cpu_s: float
    auc: float

    def to_dict(self) -> dict[str, object]:
        """The row as plain data (for ``--json``)."""
        return asdict(self)


def hidden_size_for(params: int, n_features: int) -> int:
    """Width ``h`` of two hidden layers so the MLP has about ``params`` parameters.

    Parameters: ``n*h + h + h*h + h + h + 1``; solved for ``h``.
    """
    b = n_features + 3
    return max(1, round((-b + math.sqrt(b * b + 4 * max(params - 1, 1))) / 2))


def run_round_bench(
    params: int = 100_000,
    clients: int = 10,
    rounds: int = 3,
    *,
    modes: tuple[str, ...] = _DEFAULT_MODES,
    seed: int = 0,
    rows: int = 6_000,
    work_dir: Path | None = None,
) -> tuple[list[RoundBenchRow], dict[str, float]]:
    """Run each mode; return the rows and each encrypted mode's round time over plaintext's.

    Raises
    ------
    ValueError
        Too small a model, no client or round, an unknown mode, no ``plaintext``
        to compare with, or a masked mode with fewer than 3 or more than 16 clients.
    """
    if params < 10 or clients < 1 or rounds < 1:
        raise ValueError("need params >= 10, clients >= 1 and rounds >= 1")
    unknown = sorted(set(modes) - set(ROUND_MODES))
    if unknown or "plaintext" not in modes:
        raise ValueError(
            f"modes are plaintext and any of {', '.join(ROUND_MODES)}; got {', '.join(modes)}"
        )
    if any("masked" in mode for mode in modes) and not 3 <= clients <= 16:
        raise ValueError(f"the masked modes sum 3 to 16 institutions, got {clients}")
    with tempfile.TemporaryDirectory(prefix="crossfed-bench-round-") as scratch:
        root = Path(work_dir or scratch)
        root.mkdir(parents=True, exist_ok=True)
        federation = generate("sme-credit", clients, seed=seed, total_rows=rows)
        files = []
        for index, institution in enumerate(federation.institutions):
            path = root / f"institution-{index}.csv"
            institution.frame.to_csv(path, index=False)
            files.append(str(path))
        pooled = pd.concat([i.frame for i in federation.institutions], ignore_index=True)
        schema = infer_schema(
            pooled,
            federation.target,
            federation.positive,
            categorical=list(federation.categorical_columns),
        )
        save_schema(schema, root / "schema.yaml")
        n_features = len(schema.numeric) + sum(len(c.levels) for c in schema.categorical)
        hidden = hidden_size_for(params, n_features)
        agreement = write_agreement_keys(root / "agreement", clients)
        backend = one_actor(default_backend_config())
        rows_out: list[RoundBenchRow] = []
        for mode in modes:
            preset = ROUND_MODES[mode] or "lean"
            secret = crypto.generate_secret_context(preset)
            secret.save(root / f"{preset}.secret.ctx")
            secret.public().save(root / f"{preset}.public.ctx")
            settings = FederationSettings(
                mode="plaintext" if mode == "plaintext" else "encrypted",
                rounds=rounds,
                min_institutions=clients,
                round_timeout=600,
                public_context=str(root / f"{preset}.public.ctx"),
                secret_context=str(root / f"{preset}.secret.ctx"),
                schema=str(root / "schema.yaml"),
                data_files=",".join(files),
                agreement_keys=str(agreement),
                model="mlp",
                hidden=f"{hidden},{hidden}",
                epochs=1,
                batch_size=128,
                learning_rate=0.05,
                seed=seed,
                out_dir=str(root / f"out-{mode}"),
            )
            run = run_federated(settings, clients, backend_config=backend)
            measured = run.metrics["rounds_measured"]
            rows_out.append(
                RoundBenchRow(
                    mode=mode,
                    params=sum(int(w.size) for w in run.weights),
                    clients=clients,
                    round_s=statistics.median(m["round_s"] for m in measured),
                    bytes_up_per_client=statistics.median(
                        m["bytes_up"] / max(m["institutions_replied"], 1) for m in measured
                    ),
                    bytes_down_per_client=statistics.median(
                        m["bytes_down"] / max(m["institutions_sampled"], 1) for m in measured
                    ),
                    aggregator_cpu_s=statistics.median(m["aggregator_cpu_s"] for m in measured),
                    auc=float(run.final_evaluation()["auc"]),
                )
            )
    plain = next(row for row in rows_out if row.mode == "plaintext")
    ratios = {row.mode: row.round_s / plain.round_s for row in rows_out if row is not plain}
    return rows_out, ratios
