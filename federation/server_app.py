"""The aggregator's Flower ServerApp: statistics round, then (encrypted) FedAvg.

The same code runs in Flower's simulation engine and behind a SuperLink:

1. **Statistics round.** Every institution sends its example count and the
   sums and sums of squares of its encoded features (encrypted in encrypted
   mode); the aggregator sums them and passes the (still encrypted) total out
   with every later message, so all institutions standardise with the same
   federation-wide mean and deviation.
2. **Training rounds** with Flower's FedAvg, wrapped by
   :class:`~federation.strategy.EncryptedAggregation` in encrypted mode. Round 1
   sends no model: each institution builds the same seeded initial model.
3. After every round, evaluation on each institution's held-out split.

In encrypted mode the model's shapes must be in the settings (``model-shapes``)
before anything starts: the aggregator never learns them from a reply. Nothing
the institutions rely on for privacy comes from the aggregator: each takes its
DP share count from its own kit (``institutions``), which the aggregator's
accountant uses too (:mod:`federation.dp`).

The aggregator writes to ``out_dir``: ``audit.jsonl``, ``evaluation-audit.jsonl``,
``checkpoint.bin``, ``metrics.json`` and the final global model
(``global_model.bin``, encrypted, or ``global_model.npz`` in plaintext mode).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, Result

import crypto
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    EVALUATION_CIPHERTEXT_KEY,
    EVALUATION_KEY,
    EVALUATION_METRICS,
    EVALUATION_SEEDS_KEY,
    MODE_KEY,
    PHASE_KEY,
    PHASE_STATS,
    SELF_SEEDS_KEY,
    SESSION_KEY,
    STATS_CIPHERTEXT_KEY,
    STATS_KEY,
    STATS_SEEDS_KEY,
    ConfigurationError,
    FederationSettings,
    read_ciphertext,
)
from federation.audit import AuditLog
from federation.dp import epsilon_against_collusion, epsilon_scope
from federation.errors import QuorumNotReachedError
from federation.final import deliver_final_model
from federation.masked_strategy import MaskedAggregation, check_masked_run, open_masked_run
from federation.measured import CpuMeter, MeasuredStrategy, RoundMeasurement
from federation.replies import bounded, error_reason
from federation.resume import OffsetRounds, prior_noise_multipliers, released_rounds, resume_point
from federation.strategy import (
    AUDIT_LOG,
    EVALUATION_AUDIT,
    SUM_ENCODING,
    EncryptedAggregation,
)
from federation.summing import sum_compatible

__all__ = ["RunOutcome", "app", "build_server_app", "run_federation"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run leaves with the aggregator."""

    result: Result
    statistics_dropped: dict[int, str]
    rounds: list[RoundMeasurement]
    resumed_after: int
    wall_s: float
    noise_multipliers: tuple[float, ...] = ()
    institutions_cpu_source: str = ""


def build_server_app(
    settings: FederationSettings | None = None, *, institutions_cpu: CpuMeter | None = None
) -> ServerApp:
    """A ServerApp running :func:`run_federation` with ``settings``.

    With ``settings=None`` (``flwr run``, deployment) they are read from the
    run config; the simulation harness passes them directly, with a meter of
    its institutions' CPU.
    """
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        chosen = settings or FederationSettings.from_run_config(context.run_config)
        run_federation(grid, chosen, institutions_cpu=institutions_cpu)

    return server_app


def check_settings(settings: FederationSettings) -> None:
    """Refuse settings the aggregator cannot run honestly, naming the key.

    Raises
    ------
    ConfigurationError
        Encrypted mode without ``model-shapes`` (the aggregator would have to take
        the shapes from a reply) or without ``public-context``; distributed DP
        without ``institutions`` (the share count every institution reads from its
        own kit, and the accountant's too).
    """
    if settings.mode == "encrypted" and not settings.public_context:
        raise ConfigurationError("encrypted mode needs the aggregator's public-context path")
    if settings.mode == "encrypted" and not settings.shapes():
        raise ConfigurationError(
            "encrypted mode needs model-shapes (a JSON list of the model's array shapes): "
            "the aggregator fixes them before any reply is parsed"
        )
    if settings.dp_enabled and settings.institutions < 1:
        raise ConfigurationError(
            "distributed DP (dp-clip > 0) needs institutions: the number of institutions "
            "whose noise shares make up the sum, as every institution's kit records it"
        )


def run_federation(
    grid: Grid, settings: FederationSettings, *, institutions_cpu: CpuMeter | None = None
) -> RunOutcome:
    """Run the statistics round and all training rounds; write outputs.

    Parameters
    ----------
    grid
        The run's grid.
    settings
        The run's settings (checked first, :func:`check_settings`).
    institutions_cpu
        Measures the institutions' CPU per round from outside (the simulation
        harness); None in deployment, where it is not measured.
    """
    started = time.perf_counter()
    check_settings(settings)
    out_dir = Path(settings.out_dir) if settings.out_dir else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    public = _public_context(settings)
    masked = public is not None and public.preset.codec == "masked"
    if masked:
        check_masked_run(settings, out_dir)
    start = resume_point(
        out_dir if public is not None and not masked else None,
        public.fingerprint if public is not None else "",
        uuid.uuid4().hex,
    )
    run_id = start.run_id
    remaining = settings.rounds - start.completed
    if remaining < 1:
        raise ConfigurationError(
            f"the checkpoint in {out_dir} already holds round {start.completed} of "
            f"{settings.rounds}: nothing left to run (raise rounds, or use a new out-dir)"
        )
    nodes = _wait_for_nodes(
        grid, settings.min_institutions, settings.institutions, settings.round_timeout
    )
    names: dict[int, str] = {}
    stats_seeds: dict[str, bytes] = {}
    if masked and public is not None:
        names, blob, stats_seeds, dropped = open_masked_run(
            grid, public, nodes, settings, run_id, out_dir
        )
        stats_entries: dict[str, Any] = {STATS_CIPHERTEXT_KEY: blob}
    else:
        stats_entries, dropped = _statistics_round(grid, nodes, settings, public, run_id)
    fedavg = FedAvg(
        min_train_nodes=settings.min_institutions,
        min_evaluate_nodes=settings.min_institutions,
        min_available_nodes=settings.min_institutions,
    )
    inner: FedAvg | EncryptedAggregation = fedavg
    if public is not None and masked:
        inner = MaskedAggregation(
            fedavg,
            public,
            names=names,
            stats_seeds=stats_seeds,
            timeout=settings.round_timeout,
            min_institutions=settings.min_institutions,
            shapes=settings.shapes() or (),
            max_update_bytes=settings.max_update_bytes,
            audit=AuditLog(out_dir / AUDIT_LOG) if out_dir else None,
            out_dir=out_dir,
            run_id=run_id,
        )
    elif public is not None:
        inner = EncryptedAggregation(
            fedavg,
            public,
            min_institutions=settings.min_institutions,
            shapes=settings.shapes() or (),
            max_update_bytes=settings.max_update_bytes,
            audit=AuditLog(out_dir / AUDIT_LOG) if out_dir else None,
            out_dir=out_dir,
            run_id=run_id,
            evaluation_audit=AuditLog(out_dir / EVALUATION_AUDIT) if out_dir else None,
        )
    prior = prior_noise_multipliers(
        released_rounds(out_dir / AUDIT_LOG, run_id) if out_dir else [],
        start.completed,
        noise_multiplier=settings.dp_noise_multiplier,
        institutions=settings.institutions,
        quorum=settings.min_institutions,
    )
    measured = MeasuredStrategy(
        inner,
        dp_noise_multiplier=settings.dp_noise_multiplier,
        dp_delta=settings.dp_delta,
        dp_institutions=settings.institutions,
        prior_noise_multipliers=prior,
        institutions_cpu=institutions_cpu,
    )
    strategy = OffsetRounds(measured, start.completed)
    config = ConfigRecord({MODE_KEY: settings.mode, SESSION_KEY: run_id, **stats_entries})
    result = strategy.start(
        grid,
        initial_arrays=start.arrays,
        num_rounds=remaining,
        timeout=settings.round_timeout,
        train_config=config,
        evaluate_config=ConfigRecord(dict(config)),
    )
    outcome = RunOutcome(
        result,
        dropped,
        measured.rounds,
        start.completed,
        time.perf_counter() - started,
        tuple(measured.noise_multipliers),
        measured.institutions_cpu_source,
    )
    if out_dir is not None:
        _write_outputs(out_dir, outcome, settings, run_id, masked=masked)
    head = inner.audit_head() if isinstance(inner, EncryptedAggregation) else None
    evaluation = _last_evaluation(result, inner)
    seeds: dict[str, dict[str, bytes]] = {}
    if isinstance(inner, MaskedAggregation):
        seeds = {SELF_SEEDS_KEY: inner.seeds, STATS_SEEDS_KEY: inner.stats_seeds}
        if inner.last_evaluation is not None:
            seeds[EVALUATION_SEEDS_KEY] = inner.evaluation_seeds
    deliver_final_model(
        grid, result.arrays, config, settings, evaluation, audit_head=head, seed_records=seeds
    )
    return outcome


def _last_evaluation(
    result: Result, inner: FedAvg | EncryptedAggregation
) -> dict[str, bytes | list[float]]:
    """The last round's federation-wide evaluation, for the final message.

    Encrypted: the ciphertext sum only institutions can open. Plaintext: the
    weighted means the aggregator computed.
    """
    if isinstance(inner, EncryptedAggregation):
        blob = inner.last_evaluation
        return {} if blob is None else {EVALUATION_CIPHERTEXT_KEY: blob}
    rounds = result.evaluate_metrics_clientapp
    last = rounds[max(rounds)] if rounds else {}
    if not all(name in last for name in EVALUATION_METRICS):
        return {}
    return {EVALUATION_KEY: [float(last[name]) for name in EVALUATION_METRICS]}  # type: ignore[arg-type]


def _public_context(settings: FederationSettings) -> crypto.PublicContext | None:
    if settings.mode != "encrypted":
        return None
    return crypto.PublicContext.load(settings.public_context)


def _wait_for_nodes(grid: Grid, minimum: int, expected: int, timeout: float) -> list[int]:
    """Wait for all ``expected`` institutions, or at the deadline for the quorum.

    Every institution must take part in the statistics round: the total row
    count it yields bounds the summed weight institutions accept later, so one
    that joined after it would make honest sums look tampered.
    """
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= max(minimum, expected):
            return nodes
        if len(nodes) >= minimum and time.monotonic() > deadline:
            logger.warning(
                "%d of %d institutions connected within %.0f s; going on with the quorum",
                len(nodes),
                expected,
                timeout,
            )
            return nodes
        if time.monotonic() > deadline:
            raise QuorumNotReachedError(
                f"only {len(nodes)} institutions connected within {timeout:.0f} s; "
                f"the quorum is {minimum}"
            )
        time.sleep(1.0)


def _statistics_round(
    grid: Grid,
    nodes: list[int],
    settings: FederationSettings,
    public: crypto.PublicContext | None,
    session: str,
) -> tuple[dict[str, Any], dict[int, str]]:
    """Collect and sum the institutions' feature moments (round 0).

    Outside the DP accountant (:mod:`federation.dp`): the sum is exact, and in
    encrypted mode only key holders can read it. A reply that cannot be summed
    with the others (other shapes, another encoding, a ciphertext SEAL refuses
    to add) is dropped with its reason, never raised.
    """
    messages = [
        Message(
            content=RecordDict(
                {
                    CONFIG_KEY: ConfigRecord(
                        {PHASE_KEY: PHASE_STATS, MODE_KEY: settings.mode, SESSION_KEY: session}
                    )
                }
            ),
            message_type=MessageType.QUERY,
            dst_node_id=node,
        )
        for node in nodes
    ]
    replies = list(grid.send_and_receive(messages, timeout=settings.round_timeout))
    asked = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}
    dropped: dict[int, str] = {}
    plain: dict[int, np.ndarray] = {}
    encrypted: dict[int, crypto.EncryptedUpdate] = {}
    for reply in replies:
        node = asked.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
        if node not in nodes or node in plain or node in encrypted:
            continue  # not asked, or a duplicate: counted once
        if reply.has_error():
            dropped[node] = error_reason(reply)
            continue
        try:
            record = reply.content.array_records[ARRAYS_KEY]
            if public is None:
                plain[node] = np.concatenate([a.ravel() for a in record.to_numpy_ndarrays()])
                continue
            update = crypto.EncryptedUpdate.from_bytes(
                public,
                read_ciphertext(record),
                max_bytes=settings.max_update_bytes,
                expected_round=0,
                expected_session=session,
            )
        except (KeyError, crypto.CryptoError) as exc:
            dropped[node] = bounded(f"{type(exc).__name__}: {exc}")
            continue
        if update.encoding != SUM_ENCODING or update.count != 1:
            dropped[node] = "statistics reply is not one institution's encrypted sums"
            continue
        encrypted[node] = update
    total: bytes | None = None
    if public is None:
        plain = _largest_same_length(plain, dropped)
        valid = len(plain)
    else:
        outcome = sum_compatible(public, encrypted)
        dropped.update(outcome.dropped)
        valid = len(outcome.summed)
        total = outcome.total.to_bytes() if outcome.total is not None else None
    for node, reason in dropped.items():
        logger.warning("statistics round: dropped node %d: %s", node, reason)
    if valid < settings.min_institutions:
        raise QuorumNotReachedError(
            f"statistics round: {valid} valid replies, quorum is {settings.min_institutions}"
        )
    if total is not None:
        return {STATS_CIPHERTEXT_KEY: total}, dropped
    return {STATS_KEY: [float(v) for v in np.sum(list(plain.values()), axis=0)]}, dropped


def _largest_same_length(
    vectors: dict[int, np.ndarray], dropped: dict[int, str]
) -> dict[int, np.ndarray]:
    """The plaintext statistics of the most common length; the others are dropped."""
    lengths = [v.size for v in vectors.values()]
    if not lengths:
        return {}
    common = max(dict.fromkeys(lengths), key=lengths.count)
    for node, vector in vectors.items():
        if vector.size != common:
            dropped[node] = f"statistics of length {vector.size}, the others' is {common}"
    return {node: v for node, v in vectors.items() if v.size == common}


def _write_outputs(
    out_dir: Path, outcome: RunOutcome, settings: FederationSettings, run_id: str, *, masked: bool
) -> None:
    result = outcome.result
    arrays = result.arrays
    if masked:
        pass  # no model here: every round's masked delta sum is in out_dir/masked
    elif settings.mode == "encrypted" and arrays is not None and len(arrays):
        (out_dir / "global_model.bin").write_bytes(read_ciphertext(arrays))
    elif arrays is not None and len(arrays):
        np.savez(out_dir / "global_model.npz", *arrays.to_numpy_ndarrays())
    metrics = {
        "run_id": run_id,
        "mode": settings.mode,
        "rounds": settings.rounds,
        "wall_s": outcome.wall_s,
        "rounds_measured": [m.to_dict() for m in outcome.rounds],
        "epsilon": outcome.rounds[-1].epsilon if outcome.rounds else None,
        "epsilon_scope": epsilon_scope(settings.mode) if settings.dp_enabled else None,
        "epsilon_against_collusion": (
            epsilon_against_collusion(
                settings.dp_noise_multiplier,
                max(settings.institutions, 1),
                len(outcome.noise_multipliers),
                settings.dp_delta,
            )
            if settings.dp_enabled and settings.mode == "encrypted"
            else None
        ),
        "epsilon_noise_multipliers": list(outcome.noise_multipliers),
        "institutions_cpu_source": outcome.institutions_cpu_source,
        "statistics_dropped": {str(k): v for k, v in outcome.statistics_dropped.items()},
        "resumed_after": outcome.resumed_after,
        "train": {
            str(r + outcome.resumed_after): dict(m)
            for r, m in result.train_metrics_clientapp.items()
        },
        "evaluate": {
            str(r + outcome.resumed_after): dict(m)
            for r, m in result.evaluate_metrics_clientapp.items()
        },
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))


app = build_server_app()
