"""Column names shared by the protocols' long-format frames, and the checks every analysis runs.

Every protocol reads one frame with one row per participant × item × phase. The columns every
protocol shares are named here; each protocol module names its own (answers, boxes, ratings)
next to its analysis. Values:

- ``PARTICIPANT``: any hashable id, one per person.
- ``ARM``: the between-subject condition (an explanation method, or the control arm).
- ``ITEM``: the stimulus id (an image, or a counterfactual input made from one).
- ``PHASE``: the protocol's phase, one of the module's ``PHASES``.
- ``MODEL_CORRECT``: whether the classifier's answer on the item equals the ground truth (bool).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from stats.schema import AnalysisInputError, require_columns

PARTICIPANT = "participant"
ARM = "arm"
ITEM = "item"
PHASE = "phase"
MODEL_CORRECT = "model_correct"

#: Subsets by model correctness, the split every protocol reports.
ALL_ITEMS = "all"
MODEL_RIGHT = "model correct"
MODEL_WRONG = "model wrong"
SUBSETS: tuple[str, ...] = (ALL_ITEMS, MODEL_RIGHT, MODEL_WRONG)


def require_frame(frame: pd.DataFrame, columns: Iterable[str], *, name: str) -> None:
    """Raise `AnalysisInputError` unless `frame` is a non-empty DataFrame with `columns`."""
    if not isinstance(frame, pd.DataFrame):
        raise AnalysisInputError(f"{name} must be a pandas DataFrame, not {type(frame).__name__}")
    require_columns(frame, columns, name=name)
    if frame.empty:
        raise AnalysisInputError(f"{name} has no rows")


def require_values(values: pd.Series, allowed: Iterable[object], *, name: str) -> None:
    """Raise unless every non-missing value of `values` is one of `allowed`."""
    allowed_set = set(allowed)
    bad = sorted({str(v) for v in values.dropna().unique() if v not in allowed_set})
    if bad:
        raise AnalysisInputError(f"{name} has value(s) {bad[:10]}; expected one of {sorted(map(str, allowed_set))}")


def as_bool(values: pd.Series, *, name: str) -> pd.Series:
    """`values` as a bool Series: accepts bools, 0/1 and the strings "true"/"false" (any case)."""
    if values.isna().any():
        raise AnalysisInputError(f"{name} has missing values")
    if values.dtype == bool:
        return values
    lookup = {True: True, False: False, "true": True, "false": False, "1": True, "0": False}  # 1 == True
    out = values.map(lambda v: lookup.get(v.casefold().strip() if isinstance(v, str) else v))
    if out.isna().any():
        bad = sorted({str(v) for v, o in zip(values, out, strict=True) if o is None or pd.isna(o)})
        raise AnalysisInputError(f"{name} has non-boolean value(s) {bad[:10]}")
    return out.astype(bool)


def model_subsets(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """`frame` whole and split by ``MODEL_CORRECT``: {"all": ..., "model correct": ..., "model wrong": ...}."""
    correct = as_bool(frame[MODEL_CORRECT], name=MODEL_CORRECT)
    return {ALL_ITEMS: frame, MODEL_RIGHT: frame[correct], MODEL_WRONG: frame[~correct]}


def answers_equal(a: pd.Series, b: pd.Series) -> pd.Series:
    """Element-wise a == b for answers stored as numbers or text (1, 1.0 and "1" agree; so do "a" and "a ")."""
    if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
        return (a == b) & a.notna() & b.notna()
    na, nb = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
    numeric = na.notna() & nb.notna()
    text = a.astype(str).str.strip() == b.astype(str).str.strip()
    present = a.notna() & b.notna()  # a missing answer equals nothing, not even another missing one
    return present & ((numeric & (na == nb)) | (~numeric & text))


def sort_levels(frame: pd.DataFrame, orders: dict[str, list[str]]) -> pd.DataFrame:
    """`frame` sorted stably by the given columns, each in its listed order (others after)."""
    keys = list(orders)

    def key(col: pd.Series) -> pd.Series:
        order = {v: i for i, v in enumerate(orders[str(col.name)])}
        return col.map(lambda v: order.get(v, len(order)))

    return frame.sort_values(keys, key=key, kind="stable").reset_index(drop=True)
