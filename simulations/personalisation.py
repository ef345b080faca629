"""No institution worse off: each institution's personalised model, scored like the rest.

After the federation, every institution chooses its own model among the
federated one fine-tuned on its rows, the mixture of the federated and its
local-only model, and its local-only model
(:func:`clients.personalise.personalise`), by cross-validation on its own
training rows (the federated model as received is scored there in-sample, so
it is reported beside, not chosen). The harness plays each institution in turn and
scores the chosen models on the same test splits as every strategy, so
``personalised_auc`` sits beside ``local_auc`` and ``federated_auc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clients import TrainConfig
from clients.personalise import PersonaliseConfig, Personalised, Scored, personalise
from simulations.evaluation import InstitutionSplit, StrategyEvaluation, evaluate_strategy
from simulations.scenario import ScenarioSpec
from simulations.strategies import StrategyRun, train_alone

__all__ = ["FINE_TUNE_EPOCHS", "PersonalisedRun", "personalise_institutions"]

#: Fine-tuning epochs on the institution's rows: one round's worth of local training.
FINE_TUNE_EPOCHS = 2


@dataclass(frozen=True)
class PersonalisedRun:
    """Every institution's personalised model and its quality.

    Attributes
    ----------
    federated
        The federated strategy personalised (its report name).
    choices
        Per institution, in scenario order: the candidate chosen and the
        validation AUC of each candidate.
    evaluation
        The chosen models on the scenario's test splits.
    """

    federated: str
    choices: tuple[Personalised, ...]
    evaluation: StrategyEvaluation


def personalise_institutions(
    spec: ScenarioSpec,
    splits: Sequence[InstitutionSplit],
    federated: StrategyRun,
    local: StrategyRun,
) -> PersonalisedRun:
    """Each institution's choice among fine-tuned, mixture and local, then its test scores.

    ``federated`` and ``local`` carry their trained models (:attr:`StrategyRun.models`);
    the local-only model is reused when it wins, so an institution that keeps its
    own model scores exactly its ``local_auc``.
    """
    config = PersonaliseConfig(
        fine_tune=TrainConfig(
            epochs=FINE_TUNE_EPOCHS,
            batch_size=spec.batch_size,
            learning_rate=spec.learning_rate,
            seed=spec.seed + spec.rounds + 1,
        ),
        seed=spec.seed,
    )

    def fit_local(x: np.ndarray, y: np.ndarray) -> Scored:
        return train_alone(spec, x, y)

    choices = tuple(
        personalise(fed, fit_local, split.data.x_train, split.data.y_train, config, local=own)
        for split, fed, own in zip(splits, federated.models, local.models, strict=True)
    )
    evaluation = evaluate_strategy(
        splits,
        [c.model for c in choices],
        [c.scaler for c in choices],
        target_bad_rate=spec.target_bad_rate,
    )
    return PersonalisedRun(federated.plan.name, choices, evaluation)
