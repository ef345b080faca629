"""The institutions' Flower ClientApp: plaintext FedAvg handlers wrapped by mods.

The handlers below know nothing about encryption: they receive plaintext
model weights and statistics and reply with plaintext weights and an example
count, exactly as Flower's FedAvg expects. Mods, outermost first, add the rest:

1. :func:`~clients.error_mod.error_mod`: any failure below becomes a fixed
   error code on the wire, its details go to the local log;
2. an admission mod (:func:`~clients.run_state.admit`): the message's kind,
   session and round against the run's memory;
3. :func:`~clients.encryption_mod.make_encryption_mod` (encrypted mode, the
   kit's): refuses what arrives in clear, verifies and decrypts aggregates,
   encrypts replies;
4. :func:`~clients.dp_mod.make_dp_mod`: distributed DP's clip and noise share;
5. :func:`~clients.bounds.make_bounds_mod`: this institution's own update
   clipped and weight capped, and every arriving model held to the kit's
   movement bound.

So plaintext FedAvg and encrypted FedAvg run the same handlers, and nothing a
message says about the mode, the DP share count or the settings is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable
from torch import nn

from clients.bounds import make_bounds_mod
from clients.dp_mod import make_dp_mod
from clients.dpsgd import DpSgdTraining
from clients.encryption_mod import make_encryption_mod
from clients.error_mod import GuardedClientApp, error_mod
from clients.institution import LocalDataset, load_local_dataset
from clients.masked_round import federation_rows
from clients.metrics import BadRateTarget
from clients.metrics import evaluate as risk_metrics
from clients.models import ModelSpec, build_model, get_weights, predict_proba, set_weights
from clients.outputs import write_final_outputs
from clients.run_state import admit
from clients.standardize import Moments, Standardizer, local_moments
from clients.step_normalise import normalise_update, step_scale
from clients.training import TrainConfig, TrainResult, train_local
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    EVALUATION_KEY,
    EVALUATION_METRICS,
    FINAL_QUERY,
    METRICS_KEY,
    NUM_EXAMPLES_KEY,
    ROUND_KEY,
    STATS_KEY,
    FederationSettings,
)

__all__ = ["app", "build_client_app", "local_training", "node_data_path"]

Mod = Callable[[Message, Context, ClientAppCallable], Message]


def node_data_path(context: Context, settings: FederationSettings) -> str:
    """This institution's data file: ``data-path`` in node config, else its partition's."""
    configured = context.node_config.get("data-path")
    if configured:
        return str(configured)
    return settings.data_file(int(context.node_config["partition-id"]))


def build_client_app(
    settings: FederationSettings | None = None,
    *,
    extra_mods: Sequence[Mod] = (),
    trainer: Callable[..., TrainResult] | None = None,
) -> ClientApp:
    """A ClientApp using ``settings`` (None: read from each message's run config).

    A deployment's runner passes the kit's settings; the simulation harness
    passes its own. With None (Flower loading the app from a bundle) the run
    configuration is used, which a deployment never does. Mods, outermost
    first: any ``extra_mods`` (they see exactly what goes on the wire, e.g.
    tests that tamper with encrypted replies), then those the module docstring
    lists. ``trainer`` replaces the local training the settings choose
    (:func:`local_training`: DP-SGD when ``dpsgd-epsilon`` is set, else
    :func:`~clients.training.train_local`, looked up at each round) with a
    drop-in of the same signature.
    """

    def current(context: Context) -> FederationSettings:
        return settings or FederationSettings.from_run_config(context.run_config)

    def dataset(context: Context) -> LocalDataset:
        chosen = current(context)
        return load_local_dataset(
            node_data_path(context, chosen),
            str(context.node_config.get("schema") or chosen.schema),
            seed=chosen.seed,
            test_fraction=chosen.test_fraction,
        )

    def start_weights(msg: Message, context: Context) -> list[np.ndarray]:
        return get_weights(_global_model(msg, current(context), dataset(context).n_features))

    def admission_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        admit(msg, context, current(context))
        return call_next(msg, context)

    client_app = GuardedClientApp(
        mods=[
            *extra_mods,
            error_mod,
            admission_mod,
            make_encryption_mod(current, start_weights),
            make_dp_mod(current, start_weights),
            make_bounds_mod(current, start_weights),
        ]
    )

    @client_app.query()
    def statistics(msg: Message, context: Context) -> Message:
        moments = local_moments(dataset(context).x_train)
        content = RecordDict(
            {
                ARRAYS_KEY: ArrayRecord([moments.to_vector()]),
                METRICS_KEY: MetricRecord({NUM_EXAMPLES_KEY: int(moments.n_rows[0])}),
            }
        )
        return Message(content=content, reply_to=msg)

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        chosen, data = current(context), dataset(context)
        config = msg.content.config_records[CONFIG_KEY]
        scaler = _standardizer(config)
        model = _global_model(msg, chosen, data.n_features)
        start = get_weights(model)
        result = (trainer or local_training(chosen))(
            model,
            scaler.transform(data.x_train),
            data.y_train,
            TrainConfig(
                epochs=chosen.epochs,
                batch_size=chosen.batch_size,
                learning_rate=chosen.learning_rate,
                proximal_mu=chosen.proximal_mu,
                seed=chosen.seed + _round(config),
            ),
            global_weights=start if chosen.proximal_mu > 0 else None,
        )
        content = RecordDict(
            {
                ARRAYS_KEY: ArrayRecord(_normalised(chosen, config, start, result)),
                METRICS_KEY: MetricRecord(
                    {
                        NUM_EXAMPLES_KEY: result.num_examples,
                        "train-loss": float(result.epoch_losses[-1]),
                    }
                ),
            }
        )
        return Message(content=content, reply_to=msg)

    @client_app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        chosen, data = current(context), dataset(context)
        scaler = _standardizer(msg.content.config_records[CONFIG_KEY])
        model = _global_model(msg, chosen, data.n_features)
        scores = predict_proba(model, scaler.transform(data.x_test))
        # The approval rate's target: half this institution's training bad rate (stated
        # in metrics.json), so the federation's mean compares like with like.
        target = BadRateTarget.relative(data.y_train)
        metrics: dict[str, int | float] = dict(risk_metrics(data.y_test, scores, target).as_dict())
        metrics[NUM_EXAMPLES_KEY] = len(data.y_test)
        content = RecordDict({METRICS_KEY: MetricRecord(dict(metrics))})
        return Message(content=content, reply_to=msg)

    @client_app.query(FINAL_QUERY.partition(".")[2])
    def final(msg: Message, context: Context) -> Message:
        # Deployment: keep the decrypted final model where node config's out-dir says.
        out_dir = context.node_config.get("out-dir")
        written = 0
        if out_dir:
            chosen, data = current(context), dataset(context)
            config = msg.content.config_records[CONFIG_KEY]
            run = {
                **_run_facts(chosen),
                **_dpsgd_spent(chosen, len(data.y_train)),
                "institution": str(context.node_config.get("institution", "")),
                "data_file": Path(node_data_path(context, chosen)).name,
                "federation_train_rows": federation_rows(config),
            }
            write_final_outputs(
                Path(str(out_dir)),
                _global_model(msg, chosen, data.n_features),
                data,
                _standardizer(config),
                run,
                federation=_federation_evaluation(config),
            )
            written = 1
        # Plaintext mode only: the encryption mod replaces the reply by an empty one.
        content = RecordDict({METRICS_KEY: MetricRecord({"outputs-written": written})})
        return Message(content=content, reply_to=msg)

    return client_app


def _normalised(
    settings: FederationSettings,
    config: ConfigRecord,
    start: list[np.ndarray],
    result: TrainResult,
) -> list[np.ndarray]:
    """The trained weights with the update scaled by reference over own local steps.

    :mod:`clients.step_normalise`; the federation's rows come from the decrypted
    statistics, the institution count from the kit (its quorum when the kit names
    none). Left as trained without ``normalise-steps``, under distributed DP, and
    under DP-SGD (scaling would carry the small institutions' larger noise up).
    Any path that sends this handler's weights (clipped, encrypted or masked
    after) sends the normalised update.
    """
    if not settings.normalise_steps or settings.dp_enabled or settings.dpsgd_enabled:
        return result.weights
    scale = step_scale(
        result.num_examples,
        federation_rows(config),
        settings.institutions or settings.min_institutions,
        settings.epochs,
        settings.batch_size,
    )
    return normalise_update(start, result.weights, scale)


def _federation_evaluation(config: ConfigRecord) -> dict[str, float] | None:
    """The last round's federation-wide mean metrics, when the aggregator sent them."""
    values = config.get(EVALUATION_KEY)
    numbers = [v for v in values if isinstance(v, int | float)] if isinstance(values, list) else []
    if len(numbers) != len(EVALUATION_METRICS):
        return None
    return {name: float(v) for name, v in zip(EVALUATION_METRICS, numbers, strict=True)}


def local_training(settings: FederationSettings) -> Callable[..., TrainResult]:
    """The local training ``settings`` ask for: DP-SGD (Opacus) or plain SGD.

    In deployment ``settings`` are the institution's own kit's, so whether its
    customers' records are protected by DP-SGD, and at which ε, is never the
    aggregator's choice.
    """
    if settings.dpsgd_enabled:
        return DpSgdTraining.from_settings(settings)
    return train_local


def _dpsgd_spent(settings: FederationSettings, rows: int) -> dict[str, object]:
    """This institution's DP-SGD ε and δ after the whole run (its accountant), if on."""
    if not settings.dpsgd_enabled:
        return {}
    config = TrainConfig(
        epochs=settings.epochs, batch_size=settings.batch_size, learning_rate=settings.learning_rate
    )
    training = DpSgdTraining.from_settings(settings)
    epsilon, delta = training.epsilon(rows, config)
    return {
        "dpsgd_epsilon_spent": epsilon,
        "dpsgd_delta": delta,
        "dpsgd_noise_multiplier": training.noise_multiplier(rows, config),
    }


def _run_facts(settings: FederationSettings) -> dict[str, object]:
    """The settings a model card reports (all from this institution's own kit)."""
    names = (
        "mode", "model", "hidden", "rounds", "epochs", "batch_size", "learning_rate",
        "proximal_mu", "normalise_steps", "seed", "test_fraction", "institutions", "dp_clip",
        "dp_noise_multiplier", "dp_delta",
    )  # fmt: skip
    facts: dict[str, object] = {name: getattr(settings, name) for name in names}
    if settings.dpsgd_enabled:
        for name in ("dpsgd_epsilon", "dpsgd_clip", "dpsgd_batch_size", "dpsgd_learning_rate"):
            facts[name] = getattr(settings, name)
    if settings.model != "mlp":
        facts.pop("hidden")
    return facts


def _round(config: ConfigRecord) -> int:
    value = config.get(ROUND_KEY, 0)
    return int(value) if isinstance(value, int | float) else 0


def _standardizer(config: ConfigRecord) -> Standardizer:
    moments = Moments.from_vector(np.asarray(config[STATS_KEY], dtype=np.float64))
    return Standardizer.from_moments(moments.n_rows, moments.sums, moments.sums_sq)


def _global_model(msg: Message, settings: FederationSettings, n_features: int) -> nn.Module:
    spec = ModelSpec(kind=settings.model, hidden=settings.hidden_sizes())  # type: ignore[arg-type]
    model = build_model(spec, n_features, settings.seed)
    record = msg.content.array_records.get(ARRAYS_KEY)
    if record is not None and len(record):
        set_weights(model, record.to_numpy_ndarrays())
    return model


app = build_client_app()
