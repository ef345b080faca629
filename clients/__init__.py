"""The institution side of a crossfed federation, free of any federated framework.

A bank loads its table (:func:`load_table`), checks it against the federation
schema (:func:`validate`), encodes it identically to every other institution
(:func:`encode`), standardises it with federation-wide moments
(:func:`local_moments`, :class:`Standardizer`), trains a seeded torch model
locally (:func:`build_model`, :func:`train_local`) and measures it the way
credit-risk teams do (:func:`evaluate`). The Flower ClientApp and the
encryption of updates are built on top of this API; nothing here imports
Flower or TenSEAL.

Names are imported when first used (PEP 562), so that importing one module,
``clients.schema`` say, loads that module alone: a bank's reviewer can check
that the framework-free core loads no Flower, TenSEAL or aggregator code, and
the command line starts quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clients.client_app import build_client_app, node_data_path
    from clients.data import (
        TrainTestSplit,
        encode,
        feature_names,
        load_table,
        train_test_split,
        validate,
    )
    from clients.deploy import InstitutionResult, check_data, promote_outputs, run_institution
    from clients.dpsgd import DpSgdTraining
    from clients.encryption_mod import make_encryption_mod
    from clients.errors import (
        ClientError,
        ConfigError,
        DataLoadError,
        DataValidationError,
        InboundMessageError,
        InvalidWeightsError,
        KeyMaterialError,
        MetricsError,
        ModelFileError,
        OutputDirError,
        SchemaError,
        SuperNodeError,
        TamperedAggregateError,
        TrainingDivergedError,
        UndefinedMetricError,
    )
    from clients.institution import LocalDataset, load_local_dataset
    from clients.kit import InstitutionKit
    from clients.metrics import (
        BadRateTarget,
        RiskMetrics,
        approval_rate_at_bad_rate,
        evaluate,
        ks_statistic,
    )
    from clients.model_file import SavedModel, load_model
    from clients.models import (
        MLP,
        LogisticRegression,
        ModelSpec,
        build_model,
        coefficient_table,
        get_weights,
        predict_proba,
        set_weights,
    )
    from clients.monitoring import ScoreBaseline
    from clients.outputs import write_final_outputs
    from clients.personalise import PersonaliseConfig, personalise
    from clients.preflight import CheckReport, check_institution
    from clients.scaling import RiskBands, ScoreScaling
    from clients.schema import (
        MISSING_CATEGORY,
        OTHER_CATEGORY,
        CategoricalColumn,
        FederationSchema,
        NumericColumn,
        TargetSpec,
        load_schema,
        save_schema,
        schema_from_dict,
    )
    from clients.schema_infer import (
        ExcludedColumn,
        SchemaProposal,
        infer_schema,
        propose_schema,
    )
    from clients.scorecard import Scorecard, build_scorecard
    from clients.scoring import ModelFolder, ScoringResult, score_file
    from clients.standardize import Moments, Standardizer, local_moments, sum_moments
    from clients.tables import TableRead, read_table
    from clients.training import TrainConfig, TrainResult, binary_cross_entropy, train_local

#: Where each exported name is defined.
_EXPORTS = {
    "DpSgdTraining": "clients.dpsgd",
    "PersonaliseConfig": "clients.personalise",
    "personalise": "clients.personalise",
    "BadRateTarget": "clients.metrics",
    "ModelFileError": "clients.errors",
    "ModelFolder": "clients.scoring",
    "RiskBands": "clients.scaling",
    "SavedModel": "clients.model_file",
    "ScoreBaseline": "clients.monitoring",
    "ScoreScaling": "clients.scaling",
    "Scorecard": "clients.scorecard",
    "ScoringResult": "clients.scoring",
    "build_scorecard": "clients.scorecard",
    "load_model": "clients.model_file",
    "score_file": "clients.scoring",
    "CategoricalColumn": "clients.schema",
    "CheckReport": "clients.preflight",
    "MISSING_CATEGORY": "clients.schema",
    "OutputDirError": "clients.errors",
    "TableRead": "clients.tables",
    "check_institution": "clients.preflight",
    "promote_outputs": "clients.deploy",
    "read_table": "clients.tables",
    "ClientError": "clients.errors",
    "ConfigError": "clients.errors",
    "DataLoadError": "clients.errors",
    "DataValidationError": "clients.errors",
    "FederationSchema": "clients.schema",
    "InstitutionKit": "clients.kit",
    "InboundMessageError": "clients.errors",
    "InstitutionResult": "clients.deploy",
    "InvalidWeightsError": "clients.errors",
    "KeyMaterialError": "clients.errors",
    "LocalDataset": "clients.institution",
    "LogisticRegression": "clients.models",
    "MLP": "clients.models",
    "MetricsError": "clients.errors",
    "ModelSpec": "clients.models",
    "Moments": "clients.standardize",
    "NumericColumn": "clients.schema",
    "OTHER_CATEGORY": "clients.schema",
    "RiskMetrics": "clients.metrics",
    "SchemaError": "clients.errors",
    "Standardizer": "clients.standardize",
    "SuperNodeError": "clients.errors",
    "TamperedAggregateError": "clients.errors",
    "TargetSpec": "clients.schema",
    "TrainConfig": "clients.training",
    "TrainResult": "clients.training",
    "TrainTestSplit": "clients.data",
    "TrainingDivergedError": "clients.errors",
    "UndefinedMetricError": "clients.errors",
    "approval_rate_at_bad_rate": "clients.metrics",
    "binary_cross_entropy": "clients.training",
    "build_client_app": "clients.client_app",
    "build_model": "clients.models",
    "check_data": "clients.deploy",
    "encode": "clients.data",
    "evaluate": "clients.metrics",
    "feature_names": "clients.data",
    "get_weights": "clients.models",
    "infer_schema": "clients.schema_infer",
    "propose_schema": "clients.schema_infer",
    "ExcludedColumn": "clients.schema_infer",
    "SchemaProposal": "clients.schema_infer",
    "ks_statistic": "clients.metrics",
    "load_local_dataset": "clients.institution",
    "load_schema": "clients.schema",
    "load_table": "clients.data",
    "local_moments": "clients.standardize",
    "make_encryption_mod": "clients.encryption_mod",
    "node_data_path": "clients.client_app",
    "predict_proba": "clients.models",
    "run_institution": "clients.deploy",
    "save_schema": "clients.schema",
    "schema_from_dict": "clients.schema",
    "coefficient_table": "clients.models",
    "set_weights": "clients.models",
    "sum_moments": "clients.standardize",
    "train_local": "clients.training",
    "train_test_split": "clients.data",
    "validate": "clients.data",
    "write_final_outputs": "clients.outputs",
}

__all__ = [
    "MISSING_CATEGORY",
    "MLP",
    "OTHER_CATEGORY",
    "BadRateTarget",
    "CategoricalColumn",
    "CheckReport",
    "ClientError",
    "ConfigError",
    "DataLoadError",
    "DataValidationError",
    "DpSgdTraining",
    "ExcludedColumn",
    "FederationSchema",
    "InboundMessageError",
    "InstitutionKit",
    "InstitutionResult",
    "InvalidWeightsError",
    "KeyMaterialError",
    "LocalDataset",
    "LogisticRegression",
    "MetricsError",
    "ModelFileError",
    "ModelFolder",
    "ModelSpec",
    "Moments",
    "NumericColumn",
    "OutputDirError",
    "PersonaliseConfig",
    "RiskBands",
    "RiskMetrics",
    "SavedModel",
    "SchemaError",
    "SchemaProposal",
    "ScoreBaseline",
    "ScoreScaling",
    "Scorecard",
    "ScoringResult",
    "Standardizer",
    "SuperNodeError",
    "TableRead",
    "TamperedAggregateError",
    "TargetSpec",
    "TrainConfig",
    "TrainResult",
    "TrainTestSplit",
    "TrainingDivergedError",
    "UndefinedMetricError",
    "approval_rate_at_bad_rate",
    "binary_cross_entropy",
    "build_client_app",
    "build_model",
    "build_scorecard",
    "check_data",
    "check_institution",
    "coefficient_table",
    "encode",
    "evaluate",
    "feature_names",
    "get_weights",
    "infer_schema",
    "ks_statistic",
    "load_local_dataset",
    "load_model",
    "load_schema",
    "load_table",
    "local_moments",
    "make_encryption_mod",
    "node_data_path",
    "personalise",
    "predict_proba",
    "promote_outputs",
    "propose_schema",
    "read_table",
    "run_institution",
    "save_schema",
    "schema_from_dict",
    "score_file",
    "set_weights",
    "sum_moments",
    "train_local",
    "train_test_split",
    "validate",
    "write_final_outputs",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clients' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
