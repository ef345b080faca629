"""Ciphertext bytes in Flower messages: the adaptor both sides use.

A serialised :class:`crypto.EncryptedUpdate` travels as one one-dimensional
``uint8`` array named :data:`~crossfed.protocol.records.CIPHERTEXT_KEY` inside
an ``ArrayRecord``.
"""

from __future__ import annotations

import io

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
from flwr.common.constant import SType

import crypto
from crossfed.protocol.records import ARRAYS_KEY, CIPHERTEXT_KEY, METRICS_KEY

__all__ = ["ciphertext_record", "read_ciphertext", "sealed_reply"]


def ciphertext_record(data: bytes) -> ArrayRecord:
    """Wrap serialised ciphertext bytes as an ArrayRecord (one uint8 array)."""
    return ArrayRecord({CIPHERTEXT_KEY: Array(np.frombuffer(data, dtype=np.uint8))})


def sealed_reply(data: bytes) -> RecordDict:
    """An institution's whole reply content: the ciphertext and an empty metric record.

    Nothing else leaves an institution in encrypted mode: no count, loss,
    metric or timing in the clear.
    """
    return RecordDict({ARRAYS_KEY: ciphertext_record(data), METRICS_KEY: MetricRecord({})})


def read_ciphertext(record: ArrayRecord) -> bytes:
    """The ciphertext bytes of an ArrayRecord made by :func:`ciphertext_record`.

    The array arrives from the other party as the bytes of a ``.npy`` file.
    ``numpy.load`` would allocate whatever shape its header declares before
    reading any data (a 128-byte reply declaring 2^45 elements asks for 32 TiB),
    so the header is parsed here and held to the bytes actually present before
    anything is allocated; the payload is then a view of those bytes.

    Raises
    ------
    crypto.MalformedDataError
        The record does not hold exactly one one-dimensional uint8 ciphertext
        array whose header matches its data.
    """
    if list(record.keys()) != [CIPHERTEXT_KEY]:
        raise crypto.MalformedDataError(
            f"expected one {CIPHERTEXT_KEY!r} array, found {sorted(record.keys())}"
        )
    array = record[CIPHERTEXT_KEY]
    if not isinstance(array, Array) or array.stype != SType.NUMPY:
        raise crypto.MalformedDataError("the ciphertext is not a NumPy array")
    data = array.data
    if not isinstance(data, bytes):
        raise crypto.MalformedDataError("the ciphertext array carries no bytes")
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"npy format version {version}")
    except (ValueError, TypeError, EOFError, SyntaxError, OverflowError) as exc:
        raise crypto.MalformedDataError("ciphertext array bytes are not an array") from exc
    if dtype != np.uint8 or len(shape) != 1:
        raise crypto.MalformedDataError("ciphertext array must be one-dimensional uint8")
    payload = memoryview(data)[stream.tell() :]
    if shape[0] != len(payload):
        raise crypto.MalformedDataError(
            f"the ciphertext array declares {shape[0]} bytes and carries {len(payload)}"
        )
    return bytes(payload)
