"""The institution side of a crossfed federation, free of any federated framework.

A bank loads its table (:func:`load_table`), checks it against the federation
schema (:func:`validate`), encodes it identically to every other institution
(:func:`encode`), standardises it with federation-wide moments
(:func:`local_moments`, :class:`Standardizer`), trains a seeded torch model
locally (:func:`build_model`, :func:`train_local`) and measures it the way
credit-risk teams do (:func:`evaluate`). The Flower ClientApp and the
encryption of updates are built on top of this API; nothing here imports
Flower or TenSEAL.
"""

from clients.client_app import build_client_app, node_data_path
from clients.data import (
    TrainTestSplit,
    encode,
    feature_names,
    load_table,
    train_test_split,
    validate,
)
from clients.deploy import InstitutionResult, check_data, run_institution
from clients.encryption_mod import make_encryption_mod
from clients.errors import (
    ClientError,
    ConfigError,
    DataLoadError,
    DataValidationError,
    InvalidWeightsError,
    MetricsError,
    SchemaError,
    SuperNodeError,
    TamperedAggregateError,
    TrainingDivergedError,
    UndefinedMetricError,
)
from clients.institution import LocalDataset, load_local_dataset
from clients.metrics import RiskMetrics, approval_rate_at_bad_rate, evaluate, ks_statistic
from clients.models import (
    MLP,
    LogisticRegression,
    ModelSpec,
    build_model,
    get_weights,
    predict_proba,
    scorecard,
    set_weights,
)
from clients.outputs import write_final_outputs
from clients.schema import (
    OTHER_CATEGORY,
    CategoricalColumn,
    FederationSchema,
    NumericColumn,
    TargetSpec,
    infer_schema,
    load_schema,
    save_schema,
    schema_from_dict,
)
from clients.standardize import Moments, Standardizer, local_moments, sum_moments
from clients.training import TrainConfig, TrainResult, binary_cross_entropy, train_local

__all__ = [
    "MLP",
    "OTHER_CATEGORY",
    "CategoricalColumn",
    "ClientError",
    "ConfigError",
    "DataLoadError",
    "DataValidationError",
    "FederationSchema",
    "InstitutionResult",
    "InvalidWeightsError",
    "LocalDataset",
    "LogisticRegression",
    "MetricsError",
    "ModelSpec",
    "Moments",
    "NumericColumn",
    "RiskMetrics",
    "SchemaError",
    "Standardizer",
    "SuperNodeError",
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
    "check_data",
    "encode",
    "evaluate",
    "feature_names",
    "get_weights",
    "infer_schema",
    "ks_statistic",
    "load_local_dataset",
    "load_schema",
    "load_table",
    "local_moments",
    "make_encryption_mod",
    "node_data_path",
    "predict_proba",
    "run_institution",
    "save_schema",
    "schema_from_dict",
    "scorecard",
    "set_weights",
    "sum_moments",
    "train_local",
    "train_test_split",
    "validate",
    "write_final_outputs",
]
