"""Run one federation in Flower's simulation engine (Ray backend) and read its outputs.

The ServerApp and ClientApp are the same objects a deployment runs; only the
settings are handed over in Python instead of through a run config, and each
virtual institution finds its data file by its partition id. The harness knows
the model, so it always sets ``model-shapes`` (:func:`with_model_shapes`), and it
measures the virtual institutions' CPU from outside
(:func:`institutions_cpu_meter`): nothing per institution crosses the wire.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable
from flwr.simulation import run_simulation

import crypto
from clients import ModelSpec, build_client_app, build_model, get_weights, load_schema
from clients.shapes import model_shapes_json
from crossfed.protocol import (
    EVALUATION_FILE,
    EVALUATION_METRICS,
    FRACTION_BITS,
    FederationSettings,
)
from federation import build_server_app
from simulations.cputime import RayWorkerCpu
from simulations.errors import SimulationError

__all__ = [
    "ClientMod",
    "FederatedRun",
    "collect_run",
    "default_backend_config",
    "institutions_cpu_meter",
    "masks_updates",
    "one_actor",
    "ray_backend",
    "replay_masked",
    "run_federated",
    "with_model_shapes",
]

ClientMod = Callable[[Message, Context, ClientAppCallable], Message]


@dataclass(frozen=True)
class FederatedRun:
    """Outputs of one simulated federation."""

    settings: FederationSettings
    weights: list[np.ndarray]
    metrics: dict[str, Any]

    def final_evaluation(self) -> dict[str, float]:
        """Evaluation metrics (weighted over institutions) after the last round."""
        evaluate = self.metrics["evaluate"]
        return dict(evaluate[str(max(int(r) for r in evaluate))])


def default_backend_config(
    num_cpus: int | None = None, address: str | None = None
) -> dict[str, Any]:
    """Ray settings: one CPU per virtual institution, small object store, no dashboard.

    Without ``address`` Ray starts a fresh cluster of its own (``"local"``): it
    never joins one that ``ray start`` left on this machine, and
    :func:`ray_backend` keeps it on the loopback address.
    """
    init: dict[str, Any] = {"include_dashboard": False}
    if address:
        init["address"] = address
    else:
        init.update(
            address="local",
            num_cpus=num_cpus or os.cpu_count() or 1,
            num_gpus=0,
            object_store_memory=512 * 1024 * 1024,
        )
    return {"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": init}


#: Ray reads this when it starts: "0" gives a local cluster the loopback address.
_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def ray_backend(backend_config: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    """Flower's backend settings for one simulation; a local cluster stays on 127.0.0.1.

    On Linux Ray gives a cluster it starts the machine's network address and
    binds its servers (GCS, raylet, workers) there or on every interface,
    reachable from the network (Ray 2.55, measured by the loopback test).
    A local simulation needs none of that: for the duration of the run this
    switches Ray to the loopback address, as it does by default on macOS and
    Windows, so no port is opened beyond the machine. A cluster given by
    address is left as it is.
    """
    config = copy.deepcopy(backend_config or default_backend_config())
    init = config.setdefault("init_args", {})
    init.setdefault("address", "local")  # never join a cluster by accident
    if init["address"] != "local":
        yield config
        return
    from ray._private import ray_constants  # Ray reads the switch from here at start-up

    saved_flag, saved_env = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(_RAY_CLUSTER_ENV)
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[_RAY_CLUSTER_ENV] = "0"  # and its child processes, from their environment
    try:
        yield config
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(_RAY_CLUSTER_ENV, None)
        else:
            os.environ[_RAY_CLUSTER_ENV] = saved_env


def masks_updates(settings: FederationSettings) -> bool:
    """Whether ``settings`` run a masked preset (``masked16``, ``masked8``)."""
    if settings.mode != "encrypted" or not settings.public_context:
        return False
    return crypto.PublicContext.load(settings.public_context).preset.codec == "masked"


def one_actor(backend: dict[str, Any]) -> dict[str, Any]:
    """``backend`` with one Ray actor playing every institution (a local cluster only).

    A masked round keeps each institution's :class:`crypto.MaskedRound` (its
    quantised update, pair keys and self-mask seeds, which are never written
    anywhere) in the process that trained, for the round's re-mask and reveal
    queries: in deployment the institution's long-lived runner. Ray hands each
    message to whichever actor is free, so a masked simulation runs one actor.

    Raises
    ------
    SimulationError
        A cluster given by address: how many actors it starts is its own.
    """
    config = copy.deepcopy(backend)
    init = config.get("init_args", {})
    if init.get("address", "local") != "local":
        raise SimulationError(
            "a masked simulation runs one Ray actor for every institution: run it on a "
            "local cluster, not one given by address"
        )
    cpus = int(init.get("num_cpus") or os.cpu_count() or 1)
    config.setdefault("client_resources", {})["num_cpus"] = cpus
    return config


def with_model_shapes(settings: FederationSettings) -> FederationSettings:
    """``settings`` with ``model-shapes`` computed from its schema and model, if not given.

    The aggregator needs the shapes before it parses any reply; the harness
    knows the model every virtual institution builds, so it always sets them.
    """
    if settings.model_shapes or not settings.schema:
        return settings
    shapes = model_shapes_json(
        load_schema(settings.schema), settings.model, settings.hidden_sizes()
    )
    return dataclasses.replace(settings, model_shapes=shapes)


def institutions_cpu_meter(backend: dict[str, Any]) -> RayWorkerCpu | None:
    """A meter of the virtual institutions' CPU, or None when Ray runs elsewhere.

    With a local cluster the actors that play the institutions are this
    process's descendants; on a cluster given by address they are not, and no
    figure is better than a wrong one.
    """
    address = backend.get("init_args", {}).get("address", "local")
    return RayWorkerCpu() if address == "local" else None


def run_federated(
    settings: FederationSettings,
    num_institutions: int,
    *,
    backend_config: dict[str, Any] | None = None,
    client_mods: Sequence[ClientMod] = (),
) -> FederatedRun:
    """Run ``settings`` with ``num_institutions`` virtual institutions; return the model.

    ``client_mods`` wrap every institution's ClientApp from outside (they see
    the encrypted wire format); tests use them to play hostile institutions.

    In encrypted mode the global model is decrypted here with the secret
    context named in the settings: the harness plays every institution.
    ``model-shapes`` is filled in from the schema and model when not given.
    """
    if not settings.out_dir:
        raise ValueError("settings.out_dir is needed to collect the run's outputs")
    settings = with_model_shapes(settings)
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    if masks_updates(settings):
        backend_config = one_actor(backend_config or default_backend_config())
    with ray_backend(backend_config) as backend:
        meter = institutions_cpu_meter(backend)
        run_simulation(
            server_app=build_server_app(settings, institutions_cpu=meter),
            client_app=build_client_app(settings, extra_mods=client_mods),
            num_supernodes=num_institutions,
            backend_config=backend,
        )
    return collect_run(settings)


def _decrypt_evaluations(
    secret: crypto.SecretContext, out: Path, evaluate: dict[str, dict[str, Any]]
) -> None:
    """Add each round's decrypted evaluation (the aggregator kept only its ciphertext)."""
    masked = secret.preset.codec == "masked"
    for server_round, record in evaluate.items():
        if not record.get("institutions"):
            continue  # no institution's evaluation was valid that round
        if masked:
            sums = _masked_exact(secret, out / "masked", f"evaluation-{server_round}", "evaluate")
            means = (float(v) / float(sums[-1]) for v in sums[:-1])
            record.update(zip(EVALUATION_METRICS, means, strict=True))
            continue
        path = out / EVALUATION_FILE.format(round=server_round)
        update = crypto.EncryptedUpdate.from_bytes(secret, path.read_bytes())
        (values,), _ = crypto.decrypt_average(secret, update)
        record.update(zip(EVALUATION_METRICS, (float(v) for v in values), strict=True))


def _open_masked(
    secret: crypto.SecretContext, folder: Path, stem: str, purpose: str
) -> crypto.MaskedSum:
    """Decrypt ``folder/STEM.bin`` with the seeds in ``STEM.seeds.json`` (a masked run's sums)."""
    seeds = json.loads((folder / f"{stem}.seeds.json").read_text())
    update = crypto.EncryptedUpdate.from_bytes(secret, (folder / f"{stem}.bin").read_bytes())
    return crypto.decrypt_masked(
        secret,
        update,
        self_seeds={name: bytes.fromhex(seed) for name, seed in seeds.items()},
        purpose=purpose,
    )


def _masked_exact(
    secret: crypto.SecretContext, folder: Path, stem: str, purpose: str
) -> np.ndarray:
    """The exact fixed-point sums of a masked statistics or evaluation sum, as floats."""
    summed = _open_masked(secret, folder, stem, purpose)
    exact = crypto.integer_sum(summed, summed.shapes[0][0])
    return crypto.from_fixed_point(exact, FRACTION_BITS)


def replay_masked(settings: FederationSettings) -> list[np.ndarray]:
    """The final model of a masked run: the seeded model plus every round's average delta.

    The aggregator of a masked run holds only masked sums of deltas
    (``out_dir/masked``); each institution applies them to the model it started
    each round from. The harness, which plays every institution, does the same
    in one go: open each round's sum with its revealed seeds, scale by the
    federation's row count (the statistics sum), add to the running model.
    """
    folder = Path(settings.out_dir) / "masked"
    secret = crypto.SecretContext.load(settings.secret_context)
    rows = round(float(_masked_exact(secret, folder, "statistics", "stats")[0]))
    shapes = settings.shapes() or ()
    spec = ModelSpec(kind=settings.model, hidden=settings.hidden_sizes())  # type: ignore[arg-type]
    weights = get_weights(build_model(spec, int(shapes[0][-1]), settings.seed))
    for server_round in range(1, settings.rounds + 1):
        summed = _open_masked(secret, folder, f"round-{server_round}", "train")
        weights = [
            (np.asarray(w, dtype=np.float64) + d).astype(np.float32)
            for w, d in zip(weights, summed.average(rows), strict=True)
        ]
    return weights


def collect_run(settings: FederationSettings) -> FederatedRun:
    """Read a finished federation's outputs from ``settings.out_dir``; decrypt its model.

    In encrypted mode the global model and each round's evaluation are
    decrypted with the secret context named in the settings: the harness plays
    every institution.

    Raises
    ------
    RuntimeError
        The aggregator wrote no ``metrics.json`` (the run failed; see its log).
    """
    out = Path(settings.out_dir)
    metrics_path = out / "metrics.json"
    if not metrics_path.exists():
        raise RuntimeError(f"the federation wrote no {metrics_path}: see the log above")
    metrics = json.loads(metrics_path.read_text())
    if masks_updates(settings):
        weights = replay_masked(settings)
        secret = crypto.SecretContext.load(settings.secret_context)
        _decrypt_evaluations(secret, out, metrics["evaluate"])
    elif settings.mode == "encrypted":
        secret = crypto.SecretContext.load(settings.secret_context)
        update = crypto.EncryptedUpdate.from_bytes(secret, (out / "global_model.bin").read_bytes())
        weights, _ = crypto.decrypt_average(secret, update)
        _decrypt_evaluations(secret, out, metrics["evaluate"])
    else:
        with np.load(out / "global_model.npz") as archive:
            weights = [archive[f"arr_{i}"] for i in range(len(archive.files))]
    return FederatedRun(settings, [np.asarray(w) for w in weights], metrics)
