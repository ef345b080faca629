"""Record-level differential privacy at one institution: DP-SGD with Opacus.

Distributed DP (:mod:`clients.dp_mod`) protects an *institution*: the noise
hides whether a whole bank took part, and with a handful of institutions it
swamps the model. DP-SGD (Abadi et al. 2016, "Deep Learning with Differential
Privacy", CCS) protects each *customer*: every example's gradient is clipped to
``max_grad_norm`` and Gaussian noise of ``noise_multiplier * max_grad_norm`` is
added to each batch's summed gradient, with batches drawn by Poisson sampling.
Opacus (Yousefpour et al. 2021) computes the per-example gradients and its RDP
accountant composes every local step of every round: the institution's ``ε``
at ``δ`` covers every model it ever sends.

Each institution calibrates its own noise to the federation's target ``ε`` from
what only it knows (its row count): :func:`noise_for` finds the noise
multiplier for ``rounds * epochs`` epochs of Poisson-sampled steps at sample
rate ``batch_size / rows``, and :func:`epsilon_spent` reports what the
accountant says for the steps taken. ``δ`` is :func:`institution_delta`: below
``1 / rows``, as the guarantee needs.

The noise is drawn from a torch generator seeded from :mod:`secrets`, like the
distributed DP mod's; a deployment would use Opacus' ``secure_mode``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import secrets
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from clients.errors import ConfigError
from clients.models import get_weights, set_weights
from clients.training import TrainConfig, TrainResult
from crossfed.protocol import FederationSettings

__all__ = ["ALPHAS", "DpSgdTraining", "epsilon_spent", "institution_delta", "noise_for"]


def institution_delta(rows: int, federation_delta: float) -> float:
    """``δ`` for an institution of ``rows`` customers: the federation's, or 0.1/rows if smaller."""
    return min(federation_delta, 0.1 / max(rows, 1))


#: RDP orders the accountant tries: few fractional ones (slow to evaluate in Opacus),
#: every integer to 64, and large ones for small epsilons.
ALPHAS = (1.25, 1.5, 1.75, *range(2, 64), 80, 96, 128, 192, 256)


def _steps(rows: int, batch_size: int, epochs: int, rounds: int) -> tuple[float, int]:
    """Sample rate and total Poisson-sampled steps over every round."""
    rate = min(1.0, batch_size / rows)
    return rate, rounds * epochs * math.ceil(1 / rate)


@functools.lru_cache(maxsize=256)
def noise_for(
    target_epsilon: float, rows: int, batch_size: int, epochs: int, rounds: int, delta: float
) -> float:
    """The noise multiplier that spends ``target_epsilon`` at ``delta`` over the whole run.

    Cached: every round of a run asks again with the same arguments.
    """
    from opacus.accountants.utils import get_noise_multiplier

    rate, steps = _steps(rows, batch_size, epochs, rounds)
    return float(
        get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=rate,
            steps=steps,
            accountant="rdp",
            alphas=list(ALPHAS),
        )
    )


def epsilon_spent(
    noise_multiplier: float, rows: int, batch_size: int, epochs: int, rounds: int, delta: float
) -> float:
    """ε at ``delta`` that Opacus' RDP accountant gives for every step of ``rounds`` rounds."""
    from opacus.accountants import RDPAccountant

    rate, steps = _steps(rows, batch_size, epochs, rounds)
    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, rate, steps)]
    return float(accountant.get_epsilon(delta, alphas=list(ALPHAS)))


@dataclass(frozen=True)
class DpSgdTraining:
    """Local training with DP-SGD, a drop-in for :func:`clients.train_local`.

    Attributes
    ----------
    target_epsilon
        The ε each institution spends over the whole run.
    rounds
        The run's rounds (each call is one round's local training).
    federation_delta
        The federation's δ; each institution uses :func:`institution_delta`.
    max_grad_norm
        Per-example gradient clip.
    batch_size, learning_rate
        DP-SGD's own expected (Poisson) batch size and step size, replacing the
        round's: noise is added per batch, so larger batches drown less signal
        (and take fewer steps, each of which the accountant counts).

    Raises
    ------
    ConfigError
        On a non-positive epsilon, clip or round count.
    """

    target_epsilon: float
    rounds: int
    federation_delta: float = 1e-5
    max_grad_norm: float = 1.0
    batch_size: int | None = None
    learning_rate: float | None = None

    def __post_init__(self) -> None:
        if not (self.target_epsilon > 0 and self.max_grad_norm > 0 and self.rounds >= 1):
            raise ConfigError("DP-SGD needs a positive epsilon, clip and round count")

    @classmethod
    def from_settings(cls, settings: FederationSettings) -> DpSgdTraining:
        """The DP-SGD a run's settings ask for (a deployment's: the institution's own kit).

        Raises
        ------
        ConfigError
            The settings do not enable DP-SGD (``dpsgd-epsilon`` is 0).
        """
        if not settings.dpsgd_enabled:
            raise ConfigError("the run's settings do not enable DP-SGD (dpsgd-epsilon is 0)")
        return cls(
            target_epsilon=settings.dpsgd_epsilon,
            rounds=settings.rounds,
            federation_delta=settings.dp_delta,
            max_grad_norm=settings.dpsgd_clip,
            batch_size=settings.dpsgd_batch_size,
            learning_rate=settings.dpsgd_learning_rate,
        )

    def private_config(self, config: TrainConfig) -> TrainConfig:
        """The round's training configuration with DP-SGD's batch and step size."""
        return dataclasses.replace(
            config,
            batch_size=self.batch_size or config.batch_size,
            learning_rate=self.learning_rate or config.learning_rate,
        )

    def noise_multiplier(self, rows: int, config: TrainConfig) -> float:
        """This institution's noise multiplier for the target (depends on its row count)."""
        delta = institution_delta(rows, self.federation_delta)
        chosen = self.private_config(config)
        return noise_for(
            self.target_epsilon, rows, chosen.batch_size, chosen.epochs, self.rounds, delta
        )

    def epsilon(self, rows: int, config: TrainConfig) -> tuple[float, float]:
        """(ε, δ) the accountant gives an institution of ``rows`` after the whole run."""
        delta = institution_delta(rows, self.federation_delta)
        chosen = self.private_config(config)
        sigma = self.noise_multiplier(rows, config)
        spent = epsilon_spent(sigma, rows, chosen.batch_size, chosen.epochs, self.rounds, delta)
        return spent, delta

    def __call__(
        self,
        model: nn.Module,
        x: np.ndarray,
        y: np.ndarray,
        config: TrainConfig,
        *,
        global_weights: Sequence[np.ndarray] | None = None,
    ) -> TrainResult:
        """One round of DP-SGD on this institution's rows; ``model`` is updated in place.

        ``global_weights`` (FedProx's anchor) is not supported: a proximal term
        is not a per-example loss.
        """
        from opacus import PrivacyEngine

        if global_weights is not None or config.proximal_mu > 0:
            raise ConfigError("DP-SGD local training does not take a proximal term")
        features = torch.as_tensor(np.asarray(x, dtype=np.float32))
        labels = torch.as_tensor(np.asarray(y, dtype=np.float32).ravel())
        rows = int(features.shape[0])
        sigma = self.noise_multiplier(rows, config)
        config = self.private_config(config)
        work = copy.deepcopy(model)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(features, labels), batch_size=config.batch_size
        )
        optimiser = torch.optim.SGD(work.parameters(), lr=config.learning_rate)
        seed = secrets.randbits(63)
        engine = PrivacyEngine()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Opacus warns that secure_mode is off
            private, optimiser, loader = engine.make_private(
                module=work,
                optimizer=optimiser,
                data_loader=loader,
                noise_multiplier=sigma,
                max_grad_norm=self.max_grad_norm,
                poisson_sampling=True,
                noise_generator=torch.Generator().manual_seed(seed),
            )
        pos_weight = torch.tensor(config.pos_weight)
        losses: list[float] = []
        private.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the Poisson sampler draws from torch's generator
            for _ in range(config.epochs):
                total, seen = 0.0, 0
                for batch_x, batch_y in loader:
                    if len(batch_y) == 0:
                        continue  # Poisson sampling can draw an empty batch
                    optimiser.zero_grad()
                    loss = nn.functional.binary_cross_entropy_with_logits(
                        private(batch_x), batch_y, pos_weight=pos_weight
                    )
                    loss.backward()
                    optimiser.step()
                    total += float(loss.item()) * len(batch_y)
                    seen += len(batch_y)
                losses.append(total / max(seen, 1))
        private.remove_hooks()
        set_weights(model, get_weights(work))
        return TrainResult(
            weights=get_weights(model), num_examples=rows, epoch_losses=tuple(losses)
        )
