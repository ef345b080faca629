"""Ciphertext bytes in Flower messages: the adaptor both sides use.

A serialised :class:`crypto.EncryptedUpdate` travels as one one-dimensional
``uint8`` array named :data:`~crossfed.protocol.records.CIPHERTEXT_KEY` inside
an ``ArrayRecord``.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord

import crypto
from crossfed.protocol.records import CIPHERTEXT_KEY

__all__ = ["ciphertext_record", "read_ciphertext"]


def ciphertext_record(data: bytes) -> ArrayRecord:
    """Wrap serialised ciphertext bytes as an ArrayRecord (one uint8 array)."""
    return ArrayRecord({CIPHERTEXT_KEY: Array(np.frombuffer(data, dtype=np.uint8))})


def read_ciphertext(record: ArrayRecord) -> bytes:
    """The ciphertext bytes of an ArrayRecord made by :func:`ciphertext_record`.

    Raises
    ------
    crypto.MalformedDataError
        The record does not hold exactly one uint8 ciphertext array, or its
        bytes are not a NumPy array at all (numpy's own errors are translated:
        the bytes come from the other party).
    """
    if list(record.keys()) != [CIPHERTEXT_KEY]:
        raise crypto.MalformedDataError(
            f"expected one {CIPHERTEXT_KEY!r} array, found {sorted(record.keys())}"
        )
    try:
        array = record[CIPHERTEXT_KEY].numpy()
    except (TypeError, ValueError, EOFError, OSError) as exc:
        raise crypto.MalformedDataError("ciphertext array bytes are not an array") from exc
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 1:
        raise crypto.MalformedDataError("ciphertext array must be one-dimensional uint8")
    return array.tobytes()
