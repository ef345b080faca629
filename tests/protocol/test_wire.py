"""The ciphertext adaptor reads hostile array bytes without trusting their header."""

from __future__ import annotations

import contextlib
import io
import os
import tracemalloc

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from hypothesis import given, settings
from hypothesis import strategies as st

import crypto
from crossfed.protocol import CIPHERTEXT_KEY, ciphertext_record, read_ciphertext


def _npy_header(shape: tuple[int, ...], dtype: str = "|u1") -> bytes:
    stream = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(stream, header)
    return stream.getvalue()


def _record(data: bytes) -> ArrayRecord:
    array = Array(dtype="uint8", shape=(1,), stype="numpy.ndarray", data=data)
    return ArrayRecord({CIPHERTEXT_KEY: array})


def test_genuine_bytes_round_trip() -> None:
    data = os.urandom(4099)
    assert read_ciphertext(ciphertext_record(data)) == data


def test_a_header_declaring_terabytes_allocates_nothing() -> None:
    # 128 bytes whose .npy header declares 2^45 one-byte elements: numpy.load would
    # try to allocate 32 TiB before reading; the adaptor refuses by the data present.
    hostile = _npy_header((1 << 45,))
    assert len(hostile) == 128
    tracemalloc.start()
    with pytest.raises(crypto.MalformedDataError, match="declares"):
        read_ciphertext(_record(hostile))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize(
    "data",
    [
        _npy_header((4,), "<f8") + bytes(32),  # wrong dtype
        _npy_header((2, 2)) + bytes(4),  # two dimensions
        _npy_header((4,), "|O") + bytes(4),  # objects (pickles)
        _npy_header((5,)) + bytes(4),  # shorter than declared
        _npy_header((3,)) + bytes(4),  # longer than declared
        b"PK\x03\x04" + bytes(60),  # an .npz
        b"",
    ],
)
def test_bytes_that_are_not_one_uint8_array_are_refused(data: bytes) -> None:
    with pytest.raises(crypto.MalformedDataError):
        read_ciphertext(_record(data))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_give_bytes_or_a_typed_error(data: bytes) -> None:
    with contextlib.suppress(crypto.MalformedDataError):
        assert isinstance(read_ciphertext(_record(data)), bytes)
