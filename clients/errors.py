"""Exceptions raised by the institution side of a federation.

Every error the ``clients`` package raises on purpose derives from
:class:`ClientError`, so a caller (the Flower ClientApp, the command line) can
catch one type and report it, while each subclass is named for what went wrong
and carries the facts a bank's engineer needs to fix the input. Third-party
errors (pandas, pyarrow, pydantic, scikit-learn, torch) are translated here at
the package boundary with ``raise ... from exc``; input validation never relies
on ``assert``.
"""

from __future__ import annotations

__all__ = [
    "ClientError",
    "ConfigError",
    "DataLoadError",
    "DataValidationError",
    "InboundMessageError",
    "InvalidWeightsError",
    "KeyMaterialError",
    "MaskReuseRefusedError",
    "MetricsError",
    "ModelFileError",
    "SchemaError",
    "SuperNodeError",
    "TrainingDivergedError",
    "UndefinedMetricError",
]


class ClientError(Exception):
    """Base class of every error raised on purpose by :mod:`clients`."""


class SchemaError(ClientError):
    """A federation schema file or definition is unusable.

    Parameters
    ----------
    message
        Human-readable explanation.
    field
        Dotted path of the offending schema field (``"target.column"``,
        ``"numeric[2].impute"``), or ``None`` when the problem is the file
        itself (missing, not YAML).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DataLoadError(ClientError):
    """A table could not be read: missing file, empty file, unknown format.

    Parameters
    ----------
    message
        Human-readable explanation.
    path
        The path that was asked for, as given.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class DataValidationError(ClientError):
    """An institution's table does not match the federation schema.

    Raised before any training, so that a bank never trains (and never sends
    an update derived from) data the federation did not agree on.

    Parameters
    ----------
    message
        Human-readable explanation; it names the column and the count.
    column
        The offending column, or ``None`` for a problem of the whole table
        (zero rows, arrays whose lengths disagree).
    count
        Number of offending rows (for a missing or extra column: every row).
    """

    def __init__(self, message: str, *, column: str | None, count: int) -> None:
        super().__init__(message)
        self.column = column
        self.count = count


class ConfigError(ClientError):
    """A model specification or training configuration is out of range."""


class InvalidWeightsError(ClientError):
    """Weights do not fit a model: wrong count, wrong shape, or not finite.

    Typically the aggregator sent weights for another architecture, or a
    decryption with the wrong context produced garbage.
    """


class TrainingDivergedError(ClientError):
    """The training loss became NaN or infinite.

    Parameters
    ----------
    message
        Human-readable explanation.
    epoch
        Zero-based epoch in which the loss diverged.
    batch
        Zero-based batch index within that epoch.
    """

    def __init__(self, message: str, *, epoch: int, batch: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch


class MetricsError(ClientError):
    """Labels or predicted probabilities given to a metric are malformed."""


class UndefinedMetricError(MetricsError):
    """A metric is undefined for these labels (for instance, only one class)."""


class ModelFileError(ClientError):
    """A model folder a run wrote is missing a file, unreadable, or not for this schema."""


class SuperNodeError(ClientError):
    """The institution's SuperNode could not take part in the run.

    Parameters
    ----------
    message
        What went wrong and what to check (the aggregator refused the node key,
        the TLS certificate did not verify, the run never finished…).
    exit_code
        Flower's exit code from the SuperNode's log, if it wrote one.
    log_path
        The SuperNode's log file.
    """

    def __init__(self, message: str, *, exit_code: int | None, log_path: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.log_path = log_path


class InboundMessageError(ClientError):
    """A message from the aggregator failed an inbound check; nothing of it was used.

    Raised before anything is decrypted or trained: a plaintext model or
    statistics where the run is encrypted, another run's session, a training
    round that does not advance or lies beyond the kit's rounds, a ciphertext
    made for another round or run, a query of an unknown kind. The message
    names the check for the bank's local log; the aggregator is told only a
    fixed code.
    """


class KeyMaterialError(ClientError):
    """The institution's secret context cannot be loaded or used (path, format, kind)."""


class TamperedAggregateError(ClientError):
    """A decrypted aggregate is impossible for honest institutions; it is not applied.

    Raised when a global model, the federation's statistics or its evaluation
    fails a check that every sum of honest replies passes: the summed weight
    outside what the contributors may carry (at least one, at most the kit's
    ``max-weight`` each), or a global model that moved further from the model
    this institution started the round from than the kit's
    ``max-update-norm`` allows. Only a malicious institution's update can
    cause it once the aggregate's check value verified. Its message states
    which check failed, never a decrypted value.

    Raise it only for a policy that reads a *verified* sum, or before anything
    is decrypted: the refusal budget (:mod:`clients.refusals`) closes the run on
    it but does not count it, since its outcome does not depend on the key.
    """


class MaskReuseRefusedError(ClientError):
    """The institution's mask ledger refuses to quantise or reveal (:mod:`clients.mask_ledger`).

    A second quantisation from one start model and purpose, or a self-mask
    seed for a second contributor set of one start and purpose, across rounds
    and runs: either would let an aggregator that withholds or replays sums
    subtract two of them and read this institution's values. Also raised when
    the ledger cannot be read or written: it fails closed.
    """


class OutputDirError(ClientError):
    """The institution's output folder cannot be created or written.

    Checked before connecting (``crossfed client --check``) and when the
    outputs of a finished run are moved into place; earlier outputs are kept.
    """
