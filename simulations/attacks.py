"""Privacy attacks on what each party can see under each strategy, measured not asserted.

Three attacks, each played on the real outputs of the study's runs:

- ``membership-loss``: membership inference by loss threshold (Yeom et al. 2018,
  "Privacy Risk in Machine Learning", CSF): a row is guessed a training member
  when the model's loss on it is low.
- ``membership-calibrated``: the same, calibrated per row by reference models
  trained without the target institution's rows (difficulty calibration, Watson
  et al. 2022, "On the Importance of Difficulty Calibration in Membership
  Inference Attacks", ICLR): the score is the reference models' mean loss minus
  the target's, so rows that are easy for any model no longer look like members.
- ``bad-rate-inference``: attribute inference of an institution's bad rate from
  its first-round plaintext update (the change of the output bias), the attacker
  calibrating the map from update to bad rate on shadow updates trained from the
  same start model on its own data resampled to known bad rates.

Membership is tested per institution on equal numbers of members (its training
rows, sampled) and non-members (its held-out test rows, never trained on), and
pooled over institutions (target ``all``). **Advantage** of a membership attack
is its ROC AUC minus 0.5 (scikit-learn's ``roc_auc_score``; 0: the attacker
learns nothing, 0.5: it tells members perfectly); each row also carries the best
TPR - FPR over thresholds (``roc_curve``), which with a few dozen rows has an
upward bias of its own. Advantage of the bad-rate inference is its skill: 1 minus
its mean absolute error over the prior guess's (the attacker's own data's bad
rate), with scikit-learn's ``mean_absolute_error``; 0: no better than the prior.

Who sees what: the final model is decrypted by every institution under every
federated strategy (one shared key), so it is attacked everywhere; each
institution's plaintext update is seen by the aggregator under plaintext FedAvg
only, so the update attacks apply there and are marked not applicable under
encrypted strategies. The attacker's reference and shadow data are the other
institutions' training rows (a colluding coalition, the strongest attacker here).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import mean_absolute_error, roc_auc_score, roc_curve
from torch import nn

from clients import TrainConfig, build_model, predict_proba, set_weights, train_local
from clients.personalise import Scored
from simulations.evaluation import InstitutionSplit, federation_standardizer
from simulations.scenario import ScenarioSpec
from simulations.strategies import StrategyRun, model_spec, train_alone

__all__ = [
    "ATTACKS",
    "AttackResult",
    "advantage",
    "bad_rate_inference",
    "membership_attacks",
    "per_row_loss",
    "run_attacks",
]

#: The attacks, in report order.
ATTACKS = ("membership-loss", "membership-calibrated", "bad-rate-inference")

#: Rows each reference model trains on (a subsample keeps the attacks cheap).
_REFERENCE_ROWS = 1500
_REFERENCES = 2
_SHADOW_RATES = (0.02, 0.05, 0.1, 0.15, 0.25)


@dataclass(frozen=True)
class AttackResult:
    """One attack on one target under one strategy (a row of ``privacy_attacks``)."""

    strategy: str
    attack: str
    target: str
    advantage: float | None
    surface: str
    best_tpr_minus_fpr: float | None = None
    rows: int = 0
    note: str = ""


def per_row_loss(model: Scored, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Binary cross-entropy of each row under ``model`` (raw rows, its own standardiser)."""
    p = np.clip(predict_proba(model[0], model[1].transform(x)), 1e-7, 1 - 1e-7)
    return np.asarray(-(y * np.log(p) + (1 - y) * np.log(1 - p)))


def advantage(members: np.ndarray, non_members: np.ndarray) -> tuple[float, float]:
    """(ROC AUC - 0.5, best TPR - FPR) of scores where higher means "member"."""
    labels = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    scores = np.r_[members, non_members]
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(roc_auc_score(labels, scores) - 0.5), float(np.max(tpr - fpr))


@dataclass(frozen=True)
class _Challenge:
    """Equal numbers of one institution's members and non-members."""

    x: np.ndarray
    y: np.ndarray
    member: np.ndarray


def _challenge(split: InstitutionSplit, rng: np.random.Generator) -> _Challenge:
    data = split.data
    count = min(len(data.y_train), len(data.y_test))
    pick = rng.choice(len(data.y_train), size=count, replace=False)
    test = rng.choice(len(data.y_test), size=count, replace=False)
    return _Challenge(
        np.concatenate([data.x_train[pick], data.x_test[test]]),
        np.concatenate([data.y_train[pick], data.y_test[test]]),
        np.r_[np.ones(count, dtype=bool), np.zeros(count, dtype=bool)],
    )


def _others(splits: Sequence[InstitutionSplit], index: int) -> tuple[np.ndarray, np.ndarray]:
    rest = [s for i, s in enumerate(splits) if i != index]
    return (
        np.concatenate([s.data.x_train for s in rest]),
        np.concatenate([s.data.y_train for s in rest]),
    )


def _references(
    spec: ScenarioSpec, splits: Sequence[InstitutionSplit], rng: np.random.Generator
) -> list[list[Scored]]:
    """Per institution, reference models trained on other institutions' rows only."""
    found = []
    for index in range(len(splits)):
        x, y = _others(splits, index)
        order = rng.permutation(len(y))
        size = min(_REFERENCE_ROWS, len(y) // _REFERENCES)
        found.append(
            [
                train_alone(spec, x[part], y[part])
                for part in (order[k * size : (k + 1) * size] for k in range(_REFERENCES))
            ]
        )
    return found


def membership_attacks(
    strategy: str,
    surface: str,
    targets: Sequence[Scored | None],
    challenges: Sequence[_Challenge],
    references: Sequence[Sequence[Scored]],
    names: Sequence[str],
) -> list[AttackResult]:
    """Loss-threshold and calibrated membership inference against each institution's target.

    ``targets[i]`` is the model the attacker holds for institution ``i``
    (``None``: it holds none); the row ``all`` pools the institutions' scores.
    """
    rows: list[AttackResult] = []
    pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"loss": [], "calibrated": []}
    for target, challenge, refs, name in zip(targets, challenges, references, names, strict=True):
        if target is None:
            continue
        loss = per_row_loss(target, challenge.x, challenge.y)
        reference = np.mean([per_row_loss(r, challenge.x, challenge.y) for r in refs], axis=0)
        for kind, score in (("loss", -loss), ("calibrated", reference - loss)):
            members, outsiders = score[challenge.member], score[~challenge.member]
            pooled[kind].append((members, outsiders))
            auc, best = advantage(members, outsiders)
            rows.append(
                AttackResult(strategy, f"membership-{kind}", name, auc, surface, best, len(score))
            )
    for kind, parts in pooled.items():
        if parts:
            members = np.concatenate([m for m, _ in parts])
            outsiders = np.concatenate([o for _, o in parts])
            auc, best = advantage(members, outsiders)
            rows.append(
                AttackResult(
                    strategy,
                    f"membership-{kind}",
                    "all",
                    auc,
                    surface,
                    best,
                    len(members) + len(outsiders),
                )
            )
    return rows


def _bias_change(start: nn.Module, sent: nn.Module) -> float:
    """Change of the output layer's bias: what a bad rate moves most."""
    before = [p for n, p in start.named_parameters() if n.endswith("bias")][-1]
    after = [p for n, p in sent.named_parameters() if n.endswith("bias")][-1]
    return float((after - before).detach().sum())


def bad_rate_inference(
    spec: ScenarioSpec,
    splits: Sequence[InstitutionSplit],
    run: StrategyRun,
) -> list[AttackResult]:
    """The aggregator infers each institution's bad rate from its round-1 plaintext update.

    The start model of round 1 is the seeded initial model every party can
    build; the standardiser is the federation's (sent in clear under plaintext
    FedAvg); each institution's example count travels in clear beside its
    update. For each institution the attacker trains five shadow updates from
    the same start on its own data (the other institutions' rows) resampled to
    that count at known bad rates, fits bad rate against the bias change, and
    reads off the institution's.
    """
    first = {u.partition: u for u in run.observed if u.round == 1}
    scaler = federation_standardizer(splits)
    start = build_model(model_spec(spec), splits[0].data.n_features, spec.seed)
    rng = np.random.default_rng(spec.seed + 7)
    estimates, actual, prior = [], [], []
    rows: list[AttackResult] = []
    config = TrainConfig(
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        seed=spec.seed + 1,
    )
    for index, split in enumerate(splits):
        seen = first.get(index)
        if seen is None:
            continue
        sent = copy.deepcopy(start)
        set_weights(sent, seen.weights)
        x, y = _others(splits, index)
        bad, good = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        changes = []
        for rate in _SHADOW_RATES:
            n_bad = max(1, round(rate * seen.num_examples))
            rows_ = np.r_[
                rng.choice(bad, n_bad, replace=n_bad > len(bad)),
                rng.choice(good, n_good := seen.num_examples - n_bad, replace=n_good > len(good)),
            ]
            shadow = copy.deepcopy(start)
            train_local(shadow, scaler.transform(x[rows_]), y[rows_], config)
            changes.append(_bias_change(start, shadow))
        # The output bias tracks the log-odds of the bad rate: fit that line.
        rates = np.asarray(_SHADOW_RATES)
        slope, intercept = np.polyfit(changes, np.log(rates / (1 - rates)), 1)
        guess = float(1 / (1 + np.exp(-(slope * _bias_change(start, sent) + intercept))))
        truth = float(np.mean(split.data.y_train))
        base = float(np.mean(y))
        estimates.append(guess)
        actual.append(truth)
        prior.append(base)
        skill = 1.0 - abs(guess - truth) / max(abs(base - truth), 1e-9)
        rows.append(
            AttackResult(
                run.plan.name,
                "bad-rate-inference",
                split.institution.name,
                skill,
                "plaintext update (aggregator)",
                rows=seen.num_examples,
                note=f"estimated {guess:.4f}, actual {truth:.4f}, prior {base:.4f}",
            )
        )
    if estimates:
        mae = mean_absolute_error(actual, estimates)
        mae_prior = mean_absolute_error(actual, prior)
        rows.append(
            AttackResult(
                run.plan.name,
                "bad-rate-inference",
                "all",
                1.0 - mae / max(mae_prior, 1e-9),
                "plaintext update (aggregator)",
                rows=len(estimates),
                note=f"mean absolute error {mae:.4f} against the prior's {mae_prior:.4f}",
            )
        )
    return rows


def _not_applicable(strategy: str, surface: str, note: str) -> list[AttackResult]:
    return [AttackResult(strategy, attack, "all", None, surface, note=note) for attack in ATTACKS]


def _update_targets(
    spec: ScenarioSpec, splits: Sequence[InstitutionSplit], run: StrategyRun
) -> list[Scored | None]:
    """Each institution's last-round plaintext model as the aggregator received it."""
    last = max((u.round for u in run.observed), default=0)
    sent = {u.partition: u for u in run.observed if u.round == last}
    scaler = federation_standardizer(splits)
    targets: list[Scored | None] = []
    for index in range(len(splits)):
        if index not in sent:
            targets.append(None)
            continue
        model = build_model(model_spec(spec), splits[0].data.n_features, spec.seed)
        set_weights(model, sent[index].weights)
        targets.append((model, scaler))
    return targets


def run_attacks(
    spec: ScenarioSpec, splits: Sequence[InstitutionSplit], runs: Sequence[StrategyRun]
) -> list[AttackResult]:
    """Every attack each party can mount under each strategy; see the module docstring."""
    rng = np.random.default_rng(spec.seed + 5)
    challenges = [_challenge(s, rng) for s in splits]
    references = _references(spec, splits, rng)
    names = [s.institution.name for s in splits]
    rows: list[AttackResult] = []
    for run in runs:
        name, kind = run.plan.name, run.plan.kind
        if kind == "centralized":
            rows += _not_applicable(
                name, "raw records (hub)", "the hub holds the records themselves"
            )
            continue
        surface = (
            "own model (institution only)"
            if kind == "local-only"
            else "final model (every institution)"
        )
        rows += membership_attacks(name, surface, run.models, challenges, references, names)
        if kind == "fedavg" and run.observed:
            updates = _update_targets(spec, splits, run)
            rows += membership_attacks(
                name, "plaintext update (aggregator)", updates, challenges, references, names
            )
            rows += bad_rate_inference(spec, splits, run)
        elif kind != "local-only":
            rows += [
                AttackResult(
                    name,
                    attack,
                    "all",
                    None,
                    "update (aggregator)",
                    note="the aggregator sees only ciphertexts: no plaintext update to attack",
                )
                for attack in ATTACKS
            ]
    return rows
