"""Several federations, one after another, inside one Flower simulation.

Measured on two cores, a federated run in Flower's simulation engine spends
about 20 s before its first round — starting the Ray actors that play the
institutions, importing torch, TenSEAL and the client stack in each, warming
torch up — and well under a second per round after that. A study runs four to
six federations over the same institutions, so :func:`run_federations` pays
that start-up once: one ``run_simulation`` whose ServerApp runs the real
aggregator (:func:`federation.run_federation`) once per federation, in turn,
and whose ClientApp hands each message to the real institution app
(:func:`clients.build_client_app`) built with that federation's settings.

Which federation a message belongs to travels as one extra config record,
added by a wrapper around the aggregator's Grid (:class:`TaggingGrid`) after
the strategy has measured the message, and read by the dispatching ClientApp.
Neither the aggregator nor the institution code knows about it. A first
``warm-up`` query lets every actor import and warm torch up before any
federation starts, so no federation's wall time or CPU carries that cost.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation
from flwr.supercore.run import Run

from clients import (
    ModelSpec,
    TrainConfig,
    build_client_app,
    build_model,
    train_local,
)
from crossfed.protocol import FederationSettings
from federation import CpuMeter, run_federation
from simulations.engine import (
    ClientMod,
    FederatedRun,
    collect_run,
    default_backend_config,
    institutions_cpu_meter,
    masks_updates,
    one_actor,
    ray_backend,
    with_model_shapes,
)
from simulations.errors import SimulationError

__all__ = [
    "STUDY_RECORD",
    "DispatchingClientApp",
    "FederationOutcome",
    "TaggingGrid",
    "run_federations",
]

#: Config record naming the federation a message belongs to.
STUDY_RECORD = "crossfed-study"
_RUN_KEY = "run"
_WARM_UP = "warm-up"
_TIMEOUT_S = 600.0


def _wait_for_nodes(grid: Grid, count: int) -> list[int]:
    """The simulated institutions' node ids, once all ``count`` have registered."""
    deadline = time.monotonic() + _TIMEOUT_S
    while len(nodes := sorted(grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise SimulationError(f"only {len(nodes)} of {count} institutions registered")
        time.sleep(0.2)
    return nodes


@dataclass(frozen=True)
class FederationOutcome:
    """One federation's run and its wall-clock seconds inside the shared simulation."""

    run: FederatedRun
    wall_s: float


class TaggingGrid(Grid):
    """A Grid that adds ``{STUDY_RECORD: {"run": tag}}`` to every message it sends."""

    def __init__(self, grid: Grid, tag: str) -> None:
        self._grid = grid
        self._tag = tag

    def _tagged(self, messages: Iterable[Message]) -> list[Message]:
        tagged = list(messages)
        for message in tagged:
            message.content[STUDY_RECORD] = ConfigRecord({_RUN_KEY: self._tag})
        return tagged

    def set_run(self, run: Run) -> None:
        """Delegate."""
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        """Delegate."""
        return self._grid.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """Delegate."""
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        """Delegate."""
        return self._grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Tag, then delegate."""
        return self._grid.push_messages(self._tagged(messages))

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Delegate."""
        return self._grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Tag, then delegate."""
        return self._grid.send_and_receive(self._tagged(messages), timeout=timeout)


def _warm_up(message: Message) -> Message:
    """Import and exercise torch once: a few SGD steps of a tiny model on noise."""
    rng = np.random.default_rng(0)
    model = build_model(ModelSpec(kind="logistic"), 4, 0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (rng.random(64) < 0.5).astype(np.float32)
    y[:2] = (0.0, 1.0)
    train_local(model, x, y, TrainConfig(epochs=1, batch_size=32, seed=0))
    return Message(content=RecordDict(), reply_to=message)


class DispatchingClientApp(ClientApp):
    """A ClientApp that hands each message to ``apps[tag]``, the tag read from the message.

    It overrides ``__call__`` rather than registering handlers, so every message
    type and action the institution app knows (``train``, ``evaluate``,
    ``query``, ``query.final`` ...) reaches it unchanged. The tag ``warm-up`` is
    answered here, with an empty reply after warming torch up.
    """

    def __init__(self, apps: Mapping[str, ClientApp]) -> None:
        super().__init__()
        self._apps = dict(apps)

    def __call__(self, message: Message, context: Context) -> Message:
        """Dispatch ``message`` to its federation's institution app."""
        record = message.content.config_records.get(STUDY_RECORD)
        tag = str(record.get(_RUN_KEY, "")) if record is not None else ""
        if tag == _WARM_UP:
            return _warm_up(message)
        if tag not in self._apps:
            raise SimulationError(f"message for unknown federation {tag!r}")
        return self._apps[tag](message, context)


def run_federations(
    runs: Sequence[tuple[str, FederationSettings]],
    num_institutions: int,
    *,
    backend_config: dict[str, Any] | None = None,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[str, FederationOutcome], None] | None = None,
    client_mods: Mapping[str, Sequence[ClientMod]] | None = None,
) -> dict[str, FederationOutcome]:
    """Run each ``(tag, settings)`` federation in turn in one simulation.

    Parameters
    ----------
    runs
        Federations with unique tags; every one must use the same data files
        (the same institutions, by partition id) and its own ``out_dir``.
    num_institutions
        Virtual institutions (partition ids ``0 .. n-1``).
    backend_config
        Flower's Ray backend settings (:func:`simulations.engine.default_backend_config`).
    on_start, on_done
        Called (from the aggregator's thread) as each federation starts and ends.
    client_mods
        Extra client mods per tag, outermost (they see the wire format), e.g. the
        observer of what the aggregator sees (:mod:`simulations.observer`).

    Raises
    ------
    SimulationError
        Duplicate tags, a federation that wrote no outputs, or a failed simulation.
    """
    runs = [(tag, with_model_shapes(settings)) for tag, settings in runs]
    tags = [tag for tag, _ in runs]
    if len(set(tags)) != len(tags) or _WARM_UP in tags:
        raise SimulationError(f"federation tags must be unique and not {_WARM_UP!r}: {tags}")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    outcomes: dict[str, FederationOutcome] = {}
    server_app = ServerApp()
    meter: CpuMeter | None = None  # the institutions' CPU, once the backend is known

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        nodes = _wait_for_nodes(grid, num_institutions)
        warm = TaggingGrid(grid, _WARM_UP)
        messages = [
            Message(content=RecordDict(), message_type=MessageType.QUERY, dst_node_id=node)
            for node in nodes
        ]
        for reply in warm.send_and_receive(messages, timeout=_TIMEOUT_S):
            if reply.has_error():
                raise SimulationError(f"an institution failed to start: {reply.error.reason}")
        for tag, settings in runs:
            if on_start is not None:
                on_start(tag)
            started = time.perf_counter()
            run_federation(TaggingGrid(grid, tag), settings, institutions_cpu=meter)
            outcome = FederationOutcome(collect_run(settings), time.perf_counter() - started)
            outcomes[tag] = outcome
            if on_done is not None:
                on_done(tag, outcome)

    mods = client_mods or {}
    client_app = DispatchingClientApp(
        {tag: build_client_app(s, extra_mods=mods.get(tag, ())) for tag, s in runs}
    )
    if any(masks_updates(settings) for _, settings in runs):
        backend_config = one_actor(backend_config or default_backend_config())
    with ray_backend(backend_config) as backend:
        meter = institutions_cpu_meter(backend)
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=num_institutions,
            backend_config=backend,
        )
    missing = [tag for tag in tags if tag not in outcomes]
    if missing:
        raise SimulationError(f"the simulation ended before federation(s) {', '.join(missing)}")
    return outcomes
