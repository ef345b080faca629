"""Property tests: validation and encoding fail only with typed errors, never crash."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from clients import (
    ClientError,
    DataValidationError,
    encode,
    feature_names,
    local_moments,
    schema_from_dict,
)

SCHEMA = schema_from_dict(
    {
        "target": {"column": "y", "positive": "bad", "negatives": ["good"]},
        "numeric": [
            {"name": "amount"},
            {"name": "rate", "impute": "median", "value": 2.0},
        ],
        "categorical": [
            {"name": "region", "categories": ["a", "b", "c"]},
            {"name": "channel", "categories": ["branch", "web"], "unseen": "other"},
        ],
    }
)

ANY_VALUE = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.text(max_size=5),
    st.sampled_from(["a", "b", "c", "web", "branch", "good", "bad", "1", "nan", ""]),
)


PLAUSIBLE = {
    "amount": st.one_of(st.floats(-1e6, 1e6), st.integers(0, 10**5)),
    "rate": st.one_of(st.floats(0, 10), st.none()),
    "region": st.sampled_from(["a", "b", "c"]),
    "channel": st.sampled_from(["web", "branch", "phone"]),
    "y": st.sampled_from(["good", "bad"]),
}


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    """Mostly well-formed tables, some with noisy cells, a missing or an extra column."""
    rows = draw(st.integers(0, 12))
    names = list(SCHEMA.columns)
    if draw(st.integers(0, 5)) == 0:
        names.remove(draw(st.sampled_from(names)))
    if draw(st.integers(0, 5)) == 0:
        names.append("extra")
    noisy = draw(st.booleans())
    data = {
        name: [
            draw(ANY_VALUE)
            if name not in PLAUSIBLE or (noisy and draw(st.integers(0, 15)) == 0)
            else draw(PLAUSIBLE[name])
            for _ in range(rows)
        ]
        for name in names
    }
    frame = pd.DataFrame(data, columns=names)
    if "amount" in frame and draw(st.booleans()):  # a numeric dtype, as read from a CSV
        frame["amount"] = pd.to_numeric(frame["amount"], errors="coerce")
    return frame


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames())
def test_encode_returns_clean_arrays_or_a_typed_error(frame: pd.DataFrame) -> None:
    try:
        x, y = encode(frame, SCHEMA)
    except DataValidationError as error:
        event("refused")
        assert error.column is None or error.column in (*SCHEMA.columns, *frame.columns)
        assert error.count >= 0
        assert str(error)
        return
    event("encoded")
    assert x.shape == (len(frame), len(feature_names(SCHEMA)))
    assert x.dtype == np.float32 and np.isfinite(x).all()
    assert set(np.unique(y)) == {0.0, 1.0}
    local_moments(x)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(2, 30), seed=st.integers(0, 2**32 - 1))
def test_plausible_frames_always_encode(rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.normal(size=rows) * 1000,
            "rate": np.where(rng.random(rows) < 0.2, np.nan, rng.random(rows)),
            "region": rng.choice(["a", "b", "c"], size=rows),
            "channel": rng.choice(["web", "branch", "phone"], size=rows),
            "y": ["bad", "good", *rng.choice(["bad", "good"], size=rows - 2)],
        }
    )
    try:
        x, _ = encode(frame, SCHEMA)
    except ClientError as error:  # pragma: no cover - a failure here is the finding
        raise AssertionError(f"plausible frame refused: {error}") from error
    names = feature_names(SCHEMA)
    assert x[:, names.index("rate")][frame["rate"].isna().to_numpy()].tolist() == [2.0] * int(
        frame["rate"].isna().sum()
    )
    phone = (frame["channel"] == "phone").to_numpy()
    assert np.all(x[phone, names.index("channel=__other__")] == 1.0)
