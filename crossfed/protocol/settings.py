"""One run's settings, shared by the ServerApp and the institutions' ClientApp.

Flower passes a run's configuration as a flat mapping of strings, numbers and
booleans (``[tool.flwr.app.config]`` in ``pyproject.toml``, overridden by
``flwr run --run-config``). :class:`FederationSettings` is that mapping, typed
and checked: an unknown key or a bad value fails with the key named. In the
simulation engine the harness builds the settings in Python and hands them to
the app factories directly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from crossfed.protocol.errors import ConfigurationError

__all__ = ["MODELS", "MODES", "FederationSettings"]

#: Aggregation modes: CKKS-encrypted FedAvg, or Flower's plaintext FedAvg to compare.
MODES = ("encrypted", "plaintext")
#: Models every institution can train (``clients.models``).
MODELS = ("logistic", "mlp")
#: Largest seed torch and numpy take.
_MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class FederationSettings:
    """Settings of one federated run (keys use dashes in Flower's run config).

    Attributes
    ----------
    mode:
        ``"encrypted"`` (CKKS, keyless aggregator) or ``"plaintext"`` (comparison).
    rounds:
        Training rounds after the statistics round.
    min_institutions:
        Quorum: fewer valid replies and the round is not applied.
    institutions:
        How many institutions the federation has (a kit's count); the aggregator
        waits up to ``round_timeout`` for all of them before the statistics round,
        then goes on with those connected if they reach the quorum. 0: start as
        soon as the quorum is connected.
    round_timeout:
        Seconds the aggregator waits for replies in a round.
    public_context, secret_context:
        Paths of the aggregator's public and the institutions' secret CKKS context.
        The secret path is read only by institutions (a deployment gives each its
        own through its kit; in simulation all virtual institutions share one file).
    schema:
        Path of the federation schema (YAML).
    data_files:
        Simulation only: comma-separated data files, one per partition id.
    agreement_keys:
        Simulation only: a folder holding every virtual institution's agreement
        private key (``<name>.key``) and the list of public keys
        (``public.json``), for masked presets; a deployment reads its own key
        from its kit.
    model, hidden:
        ``"logistic"`` or ``"mlp"``; hidden sizes for the MLP, e.g. ``"32,16"``.
    epochs, batch_size, learning_rate, proximal_mu:
        Local training; ``proximal_mu > 0`` adds FedProx's proximal term.
        These defaults (with ``rounds``) are the only ones: ``crossfed kit
        create`` and ``crossfed simulate`` take theirs from here. 10 rounds of
        2 epochs at step 0.3, with ``normalise_steps``, bring FedAvg within
        0.005 ROC AUC of centralized training on ``crossfed simulate``'s default
        scenario (seeds 0-2: 0.0043, 0.0026, 0.0030; without it 0.015, 0.004,
        0.012); the former deployment defaults, 3 rounds of 5 epochs at 0.1,
        gave plain FedAvg 0.026 less there (0.746 against 0.772, seed 0).
    normalise_steps:
        Each institution scales its update by the local SGD steps of an
        institution of the federation's mean size over its own
        (:mod:`clients.step_normalise`, FedNova's correction), so that a large
        bank's update does not count once for its rows and again for its
        longer local training. Not applied under distributed DP (equal weights,
        clipped updates) nor under DP-SGD, where it would scale the small
        institutions' larger noise up too (ε = 1: mean AUC 0.752 to 0.714 over
        six runs): the same rule in the harness and in every kit.
    seed:
        Seed of the round-1 model, shuffling and the local test split.
    test_fraction:
        Share of each institution's rows held out for evaluation.
    out_dir:
        Where the aggregator writes its audit log, checkpoints and metrics.
    model_shapes:
        JSON list of the model's array shapes; replies with other shapes are dropped.
    max_update_bytes:
        Replies larger than this are refused before parsing.
    max_weight:
        Per-institution weight cap: an institution weights its update by
        ``min(rows, max_weight)``, and refuses a global model whose summed
        weight exceeds ``max_weight`` per contributor (only a malicious
        institution's update can carry more). The default, a million rows, is
        far above every simulated institution and keeps ``weight x value``
        inside the ``lean`` preset's range for weights up to 67.
    max_update_norm:
        Per-round L2 bound on the model's change: an institution clips its own
        update (trained minus start) to it, and refuses a global model further
        than this from the model it started the round from (plus room for
        distributed DP's noise and CKKS's, ``clients.bounds``). The default is
        about three times the largest update measured on ``crossfed simulate``'s
        scenarios (3.45, round 1, the largest institution; later rounds below
        1.6), so honest runs never reach it.
    dp_clip, dp_noise_multiplier, dp_delta:
        Distributed differential privacy: each institution clips its update to
        L2 norm ``dp_clip`` and adds its share of Gaussian noise so that the sum
        carries noise ``dp_noise_multiplier * dp_clip``; updates are then
        averaged with equal weights. Off while ``dp_clip`` is 0. Protects an
        institution's participation; with a handful of institutions the noise
        swamps the model.
    dpsgd_epsilon, dpsgd_clip, dpsgd_batch_size, dpsgd_learning_rate:
        Record-level DP-SGD (Opacus, ``clients.dpsgd``): each institution clips
        every example's gradient to ``dpsgd_clip``, adds Gaussian noise per
        Poisson-sampled batch of expected size ``dpsgd_batch_size`` at step
        ``dpsgd_learning_rate``, with the noise calibrated from its own row count
        so that its RDP accountant over every local step of every round gives
        ``dpsgd_epsilon`` at its own δ (below 1/rows). Protects each customer.
        Off while ``dpsgd_epsilon`` is 0; one DP mechanism per run, and no
        proximal term (not a per-example loss).
    """

    mode: str = "encrypted"
    rounds: int = 10
    min_institutions: int = 2
    institutions: int = 0
    round_timeout: float = 600.0
    public_context: str = ""
    secret_context: str = ""
    schema: str = ""
    data_files: str = ""
    agreement_keys: str = ""
    model: str = "logistic"
    hidden: str = "32,16"
    epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 0.3
    proximal_mu: float = 0.0
    normalise_steps: bool = True
    seed: int = 0
    test_fraction: float = 0.25
    out_dir: str = ""
    model_shapes: str = ""
    max_update_bytes: int = 256 << 20
    max_weight: int = 1_000_000
    max_update_norm: float = 10.0
    dp_clip: float = 0.0
    dp_noise_multiplier: float = 0.0
    dp_delta: float = 1e-5
    dpsgd_epsilon: float = 0.0
    dpsgd_clip: float = 1.0
    dpsgd_batch_size: int = 128
    dpsgd_learning_rate: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigurationError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.rounds < 1:
            raise ConfigurationError(f"rounds must be at least 1, got {self.rounds}")
        if self.min_institutions < 1:
            raise ConfigurationError(
                f"min-institutions must be at least 1, got {self.min_institutions}"
            )
        if self.institutions < 0:
            raise ConfigurationError(f"institutions must not be negative, got {self.institutions}")
        if self.round_timeout <= 0:
            raise ConfigurationError(f"round-timeout must be positive, got {self.round_timeout}")
        self._check_training()
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigurationError(f"test-fraction must be in (0, 1), got {self.test_fraction}")
        if self.mode == "encrypted" and not self.public_context and not self.secret_context:
            raise ConfigurationError("encrypted mode needs public-context (or secret-context)")
        if self.model_shapes:
            self.shapes()  # validates the JSON
        if self.max_weight < 1:
            raise ConfigurationError(f"max-weight must be at least 1, got {self.max_weight}")
        if not self.max_update_norm > 0:
            raise ConfigurationError(
                f"max-update-norm must be positive, got {self.max_update_norm}"
            )
        if self.dp_clip < 0 or self.dp_noise_multiplier < 0:
            raise ConfigurationError("dp-clip and dp-noise-multiplier must not be negative")
        if self.dp_noise_multiplier > 0 and self.dp_clip == 0:
            raise ConfigurationError("dp-noise-multiplier needs a positive dp-clip")
        if not 0 < self.dp_delta < 1:
            raise ConfigurationError(f"dp-delta must be in (0, 1), got {self.dp_delta}")
        self._check_dpsgd()

    def _check_dpsgd(self) -> None:
        """Refuse DP-SGD values no institution could train with, naming the key."""
        if not 0 <= self.dpsgd_epsilon < float("inf"):
            raise ConfigurationError(
                f"dpsgd-epsilon must be 0 (off) or a positive finite ε, got {self.dpsgd_epsilon}"
            )
        if not 0 < self.dpsgd_clip < float("inf"):
            raise ConfigurationError(f"dpsgd-clip must be positive, got {self.dpsgd_clip}")
        if self.dpsgd_batch_size < 1:
            raise ConfigurationError(
                f"dpsgd-batch-size must be at least 1, got {self.dpsgd_batch_size}"
            )
        if not 0 < self.dpsgd_learning_rate < float("inf"):
            raise ConfigurationError(
                f"dpsgd-learning-rate must be positive, got {self.dpsgd_learning_rate}"
            )
        if self.dpsgd_enabled and self.dp_enabled:
            raise ConfigurationError(
                "dpsgd-epsilon (record-level DP) and dp-clip (institution-level DP) are both "
                "set: choose one mechanism per run"
            )
        if self.dpsgd_enabled and self.proximal_mu > 0:
            raise ConfigurationError(
                "dpsgd-epsilon with proximal-mu: DP-SGD clips per-example gradients and "
                "FedProx's proximal term is not a per-example loss; set one of them to 0"
            )

    def _check_training(self) -> None:
        """Refuse local-training values every institution would fail on after joining."""
        if self.model not in MODELS:
            raise ConfigurationError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.model == "mlp" and (not self.hidden_sizes() or min(self.hidden_sizes()) < 1):
            raise ConfigurationError(
                f"hidden must be positive widths like '32,16', got {self.hidden!r}"
            )
        if self.epochs < 1:
            raise ConfigurationError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigurationError(f"batch-size must be at least 1, got {self.batch_size}")
        if not 0 < self.learning_rate < float("inf"):
            raise ConfigurationError(
                f"learning-rate must be positive and finite, got {self.learning_rate}"
            )
        if not 0 <= self.proximal_mu < float("inf"):
            raise ConfigurationError(f"proximal-mu must not be negative, got {self.proximal_mu}")
        if not 0 <= self.seed <= _MAX_SEED:
            raise ConfigurationError(f"seed must be in [0, 2**63 - 1], got {self.seed}")
        if self.max_update_bytes < 1:
            raise ConfigurationError(
                f"max-update-bytes must be positive, got {self.max_update_bytes}"
            )

    @property
    def dp_enabled(self) -> bool:
        """Whether institutions clip and noise their updates."""
        return self.dp_clip > 0

    @property
    def dpsgd_enabled(self) -> bool:
        """Whether institutions train with record-level DP-SGD."""
        return self.dpsgd_epsilon > 0

    def shapes(self) -> tuple[tuple[int, ...], ...] | None:
        """The declared model shapes, or None if not declared."""
        if not self.model_shapes:
            return None
        try:
            parsed = json.loads(self.model_shapes)
            return tuple(tuple(int(d) for d in shape) for shape in parsed)
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"model-shapes must be a JSON list of shapes, got {self.model_shapes!r}"
            ) from exc

    def hidden_sizes(self) -> tuple[int, ...]:
        """Hidden layer sizes of the MLP."""
        try:
            return tuple(int(part) for part in self.hidden.split(",") if part.strip())
        except ValueError as exc:
            raise ConfigurationError(f"hidden must look like '32,16', got {self.hidden!r}") from exc

    def data_file(self, partition_id: int) -> str:
        """The data file of a simulation partition."""
        files = [part for part in self.data_files.split(",") if part]
        if not 0 <= partition_id < len(files):
            raise ConfigurationError(
                f"no data file for partition {partition_id}: data-files lists {len(files)}"
            )
        return files[partition_id]

    def to_run_config(self) -> dict[str, Any]:
        """Flower run config (dashed keys)."""
        return {name.replace("_", "-"): value for name, value in asdict(self).items()}

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any]) -> FederationSettings:
        """Parse a Flower run config; unknown keys and wrong types are refused by name."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in config.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ConfigurationError(f"unknown run-config key {key!r}")
            default = getattr(cls, name)
            try:
                if isinstance(default, bool):
                    values[name] = _boolean(value)
                elif isinstance(default, int):
                    values[name] = int(value)
                elif isinstance(default, float):
                    values[name] = float(value)
                else:
                    values[name] = str(value)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"run-config key {key!r}: bad value {value!r}") from exc
        return cls(**values)


def _boolean(value: Any) -> bool:
    """A run-config boolean: ``true``/``false`` (TOML), or their spellings as text.

    ``bool("false")`` is true; a setting that switches what leaves an
    institution must never flip on a spelling.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"not a boolean: {value!r}")
