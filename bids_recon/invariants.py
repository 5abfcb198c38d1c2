"""Invariants of what crosses a stage: the one module that says what a stage may hand to the next.

Every array and table written by one workflow node and read by another is checked here, where it is written and
where it is read: values finite; shapes equal to the trial table (rows) and to the brain mask or ROI (columns);
z-scored betas standardised within each group of trials (a session; a dataset without sessions is one group);
group labels (subject, session, run) never missing; splits and repeat numbers of the kinds the stages know.

A broken invariant is a bug, or data the stage before should have refused: it raises
:class:`~bids_recon.errors.InvariantError` (exit code 70) naming the file, the array and the invariant. Inside a
workflow node, :class:`bids_recon.interfaces.base.RecordingInterface` adds the node's name. Never a silent wrong
number: these checks exist because a dataset without sessions once gave uninitialised memory as z-scored betas,
with exit 0 and a full report.

Plain functions on arrays and tables (no nipype), usable from a notebook. Arrays may be memory maps: they are read
a block at a time (:data:`BLOCK_BYTES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.errors import InvariantError

#: Bytes of an array checked at once (memory maps are read a block of columns at a time).
BLOCK_BYTES = 64 * 2**20
#: Trial-table columns that label groups of trials: never missing (``n/a`` is the label of "none", e.g. no session).
LABEL_COLUMNS = ("subject", "session", "task", "run")
#: Columns every trial table has (the contract in DESIGN.md; :data:`bids_recon.design.table.TRIAL_COLUMNS`).
TABLE_COLUMNS = ("subject", "session", "task", "run", "trial_index", "onset", "duration", "stim_id", "stim_file",
                 "repeat", "split")
#: ``split`` values: decoded trials are train or test; ``none`` = modelled, never decoded (catch images, one-back
#: repeats); ``n/a`` = no split was made (``--betas-only`` without ``--test-split``).
SPLITS = ("train", "test", "none", "n/a")
#: Largest |mean| and |sd - 1| accepted in a z-scored column (float32 arithmetic over up to ~10^4 rows).
ZSCORE_TOLERANCE = 1e-3


def _fail(what: str, invariant: str, problem: str, path: str | Path | None) -> InvariantError:
    return InvariantError(f"{what}: invariant '{invariant}' broken: {problem}", path)


def _column_blocks(n_rows: int, n_columns: int, itemsize: int = 4):
    step = max(1, BLOCK_BYTES // max(1, itemsize * max(n_rows, 1)))
    for start in range(0, n_columns, step):
        yield start, min(start + step, n_columns)


def check_finite(array: np.ndarray, what: str, path: str | Path | None = None) -> None:
    """Every value of ``array`` (any shape; a memory map is read a block of columns at a time) is finite.

    Raises
    ------
    InvariantError
        Naming how many values are NaN or infinite and where the first one is.
    """
    if not hasattr(array, "dtype"):
        array = np.asarray(array)
    if array.dtype.kind not in "fc":
        return
    if array.ndim < 2:
        bad = ~np.isfinite(np.asarray(array))
        if bad.any():
            raise _fail(what, "finite", f"{int(bad.sum())} of {bad.size} values are NaN or infinite (first at "
                                        f"index {int(np.flatnonzero(bad)[0])})", path)
        return
    flat = array.reshape(array.shape[0], -1)
    total, first = 0, None
    for start, stop in _column_blocks(flat.shape[0], flat.shape[1], flat.dtype.itemsize):
        bad = ~np.isfinite(np.asarray(flat[:, start:stop]))
        count = int(bad.sum())
        if count and first is None:
            row, col = np.argwhere(bad)[0]
            first = (int(row), int(col) + start)
        total += count
    if total:
        raise _fail(what, "finite", f"{total} of {flat.size} values are NaN or infinite (first at row {first[0]}, "
                                    f"column {first[1]})", path)


def check_shape(array: np.ndarray, expected: Sequence[int | None], what: str, path: str | Path | None = None,
                meaning: Sequence[str] = ("rows", "columns")) -> None:
    """``array.shape`` equals ``expected`` (``None`` entries are not checked).

    Parameters
    ----------
    meaning : sequence of str
        What each axis counts (named in the message: "rows = trials of the trial table").
    """
    shape = tuple(np.shape(array))
    if len(shape) != len(expected) or any(e is not None and s != e for s, e in zip(shape, expected, strict=False)):
        wanted = " x ".join("any" if e is None else str(e) for e in expected)
        axes = ", ".join(meaning[: len(expected)])
        raise _fail(what, "shape", f"shape {' x '.join(map(str, shape))} but {wanted} expected ({axes})", path)


def check_labels(values: pd.Series | np.ndarray, column: str, what: str, path: str | Path | None = None) -> None:
    """Group labels are never missing (NaN, None, empty, the text 'nan'); ``n/a`` is a label ("no session")."""
    series = pd.Series(values, dtype=object)
    missing = series.isna().to_numpy() | series.astype(str).str.strip().isin(["", "nan", "None", "<NA>"]).to_numpy()
    if missing.any():
        raise _fail(what, "labels", f"column '{column}' is missing in {int(missing.sum())} of {len(series)} rows "
                                    f"(first: row {int(np.flatnonzero(missing)[0])}); a run without a session "
                                    "is labelled 'n/a'", path)


def check_trial_table(table: pd.DataFrame, what: str = "trial table", path: str | Path | None = None,
                      n_rows: int | None = None) -> None:
    """The trial table's contract: its columns, labels never missing, known splits, repeats and times valid.

    Parameters
    ----------
    table : pandas.DataFrame
        A trial table (:data:`TABLE_COLUMNS`).
    n_rows : int, optional
        The number of rows it must have (the betas' rows).
    """
    absent = [c for c in TABLE_COLUMNS if c not in table]
    if absent:
        raise _fail(what, "columns", f"columns {', '.join(absent)} are missing (has: {', '.join(table.columns)})",
                    path)
    if n_rows is not None and len(table) != n_rows:
        raise _fail(what, "rows", f"{len(table)} rows but the betas beside it have {n_rows}", path)
    for column in (*LABEL_COLUMNS, "stim_id"):
        check_labels(table[column], column, what, path)
    unknown = sorted(set(table["split"].astype(str)) - set(SPLITS))
    if unknown:
        raise _fail(what, "split", f"split values {unknown} (known: {', '.join(SPLITS)})", path)
    for column in ("onset", "duration"):  # n/a where the source has no times (imported betas), else numbers
        given = table[column].notna().to_numpy()
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(float)
        bad = given & ~np.isfinite(values)
        if bad.any():
            raise _fail(what, "times", f"'{column}' is not a finite number in {int(bad.sum())} rows", path)
    decoded = (table["split"].astype(str) != "none").to_numpy()
    repeat = pd.to_numeric(table.loc[decoded, "repeat"], errors="coerce").to_numpy(float)
    if len(repeat) and (not np.isfinite(repeat).all() or (repeat < 0).any() or (repeat % 1 != 0).any()):
        raise _fail(what, "repeat", "'repeat' must be a whole number >= 0 on every decoded row", path)


def check_standardised(block: np.ndarray, groups: np.ndarray, what: str, path: str | Path | None = None,
                       column_offset: int = 0, tolerance: float = ZSCORE_TOLERANCE) -> None:
    """Each column of ``block`` has mean 0 and sd 1 within each group of rows (or is 0 throughout the group:
    a constant voxel).

    Parameters
    ----------
    block : ndarray, shape (n_rows, n_columns)
        Z-scored values (a block of columns of the betas).
    groups : ndarray, shape (n_rows,)
        Group label of each row (checked with :func:`check_labels`).
    column_offset : int
        Index of the block's first column in the whole array (for the message).
    """
    check_labels(groups, "group", what, path)
    labels = np.asarray(groups).astype(str)
    for group in np.unique(labels):
        rows = labels == group
        values = np.asarray(block[rows], dtype=np.float64)
        mean = values.mean(axis=0)
        sd = values.std(axis=0)
        constant = (sd == 0) & (mean == 0)
        bad = ~constant & ((np.abs(mean) > tolerance) | (np.abs(sd - 1.0) > tolerance))
        if bad.any():
            column = int(np.flatnonzero(bad)[0])
            raise _fail(what, "standardised", f"{int(bad.sum())} columns are not z-scored within group '{group}' "
                                              f"({int(rows.sum())} rows; first: column {column + column_offset}, "
                                              f"mean {mean[column]:.3g}, sd {sd[column]:.3g})", path)


def check_betas(betas: np.ndarray, what: str, path: str | Path | None = None, n_trials: int | None = None,
                n_voxels: int | None = None, groups: np.ndarray | None = None) -> None:
    """Betas ``(n_trials, n_voxels)``: 2D, rows = the trial table's, columns = the mask's voxels, finite, and
    (``groups`` given) z-scored within each group. A memory map is read a block of columns at a time.
    """
    check_shape(betas, (n_trials, n_voxels), what, path, ("rows = trials of the trial table",
                                                         "columns = voxels of the mask"))
    check_finite(betas, what, path)
    if groups is not None:
        if len(groups) != betas.shape[0]:
            raise _fail(what, "groups", f"{len(groups)} group labels for {betas.shape[0]} rows", path)
        for start, stop in _column_blocks(*betas.shape, itemsize=8):
            check_standardised(np.asarray(betas[:, start:stop]), groups, what, path, start)


def check_features(stim_ids: np.ndarray, features: np.ndarray, what: str, path: str | Path | None = None,
                   n_targets: int | None = None) -> None:
    """Features ``(n_stimuli, ...)``: one row per distinct, non-missing stimulus id, finite."""
    ids = np.asarray(stim_ids).astype(str)
    check_labels(pd.Series(ids), "stim_id", what, path)
    if len(set(ids)) != len(ids):
        raise _fail(what, "stimuli", f"{len(ids) - len(set(ids))} stimulus ids appear twice", path)
    if np.shape(features)[0] != len(ids):
        raise _fail(what, "rows", f"{np.shape(features)[0]} feature rows for {len(ids)} stimulus ids", path)
    if n_targets is not None and int(np.prod(np.shape(features)[1:])) != n_targets:
        raise _fail(what, "shape", f"{int(np.prod(np.shape(features)[1:]))} values per stimulus, {n_targets} "
                                   "expected", path)
    check_finite(features, what, path)


def check_metric_table(table: pd.DataFrame, what: str = "metrics table", path: str | Path | None = None) -> None:
    """Metrics: a row per metric; every value reported as computed (``status`` ok, or no status) is finite."""
    if "metric" not in table or "value" not in table:
        raise _fail(what, "columns", f"needs 'metric' and 'value' columns (has: {', '.join(table.columns)})", path)
    computed = (table["status"].astype(str) == "ok").to_numpy() if "status" in table else np.ones(len(table), bool)
    values = pd.to_numeric(table["value"], errors="coerce").to_numpy(float)
    bad = computed & ~np.isfinite(values)
    if bad.any():
        first = table.iloc[int(np.flatnonzero(bad)[0])]
        raise _fail(what, "finite", f"{int(bad.sum())} computed metrics are not finite (first: {first['metric']}"
                                    + (f", {first['method']}" if "method" in table else "") + ")", path)


__all__ = ["BLOCK_BYTES", "LABEL_COLUMNS", "SPLITS", "TABLE_COLUMNS", "check_betas", "check_features",
           "check_finite", "check_labels", "check_metric_table", "check_shape", "check_standardised",
           "check_trial_table"]
