"""Inputs of the single-trial GLMs (events, confounds, percent signal change) and session z-scoring.

Plain functions on arrays: ``data`` is a run's time series restricted to the brain mask, shaped
``(n_volumes, n_voxels)``; events are a BIDS events table. The estimators are in
:mod:`bids_recon.glm.estimators`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError, MissingInputError
from bids_recon.glm.confounds import LEGACY_CONFOUNDS, current_confound_names
from bids_recon.io import read_tsv

__all__ = ["LEGACY_CONFOUNDS", "TRIAL_PREFIX", "current_confound_names", "load_confounds", "load_events",
           "percent_signal_change", "zscore_by_group"]

#: Prefix of the per-trial regressors in the design matrix (zero-padded index follows).
TRIAL_PREFIX = "trial_"


def load_events(path: Path, n_volumes: int | None = None, repetition_time: float | None = None) -> pd.DataFrame:
    """Read and check a BIDS events file.

    Parameters
    ----------
    path : Path
        ``*_events.tsv`` with at least ``onset`` and ``duration`` (seconds).
    n_volumes, repetition_time : optional
        When both are given, trials must start inside the run.

    Returns
    -------
    pandas.DataFrame
        The events sorted by onset, index reset.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError("events file does not exist", path)
    try:
        events = read_tsv(path)
    except Exception as exc:  # pandas raises several parser errors
        raise BadDataError(f"cannot read events table ({exc})", path) from exc
    for column in ("onset", "duration"):
        if column not in events:
            raise BadDataError(f"events table lacks the '{column}' column (has: {', '.join(events.columns)})", path)
        values = pd.to_numeric(events[column], errors="coerce")
        # BIDS: onset is a number on every row; duration may be n/a ("unavailable"), refused only on a trial's row
        # (bids_recon.glm.trials.run_trials)
        bad = values.isna() & (events[column].notna() if column == "duration" else True)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise BadDataError(f"non-numeric or missing '{column}' on line {row}", path)
        events[column] = values.astype(float)
    if (events["duration"] < 0).any():
        raise BadDataError("negative duration", path)
    if n_volumes is not None and repetition_time is not None:
        run_end = n_volumes * repetition_time
        late = events["onset"] + events["duration"] > run_end + 1e-6
        if late.any():
            onset = float(events.loc[late, "onset"].iloc[0])
            raise BadDataError(f"a trial at onset {onset} s ends after the run ends ({run_end:g} s)", path)
    return events.sort_values("onset", kind="stable").reset_index(drop=True)


def load_confounds(path: Path, columns: list[str], n_volumes: int) -> pd.DataFrame:
    """Read the fMRIPrep confounds that the setting ``columns`` selects, ``n/a`` (first row of derivatives) set to 0.

    ``columns`` is a ``--confounds`` setting: column names, groups (``motion24``, ``acompcor:5``...), ``auto`` or
    ``none``; :func:`bids_recon.glm.confounds.load_confounds` also returns which columns each item gave. Tables of
    fMRIPrep before 1.2 (``CSF``, ``WhiteMatter``, ``X`` ... ``RotZ``, ``aCompCor00``) are read with their columns
    renamed to the current names (:data:`~bids_recon.glm.confounds.LEGACY_CONFOUNDS`).

    Parameters
    ----------
    path : Path
        ``*_desc-confounds_timeseries.tsv``.
    columns : list of str
        The setting; a column or group it names that the table lacks is an error naming it.
    n_volumes : int
        Number of BOLD volumes; the table must have as many rows.

    Returns
    -------
    pandas.DataFrame
        ``(n_volumes, n_columns)`` float confounds.
    """
    from bids_recon.glm.confounds import load_confounds as load

    return load(path, columns, n_volumes)[0]


def percent_signal_change(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale each voxel's time series to percent signal change around its mean.

    Parameters
    ----------
    data : ndarray, shape (n_volumes, n_voxels)

    Returns
    -------
    psc : ndarray, shape (n_volumes, n_voxels), float32
    usable : ndarray of bool, shape (n_voxels,)
        False for voxels whose mean is not positive or that contain NaN/inf (their PSC is 0).
    """
    data = np.asarray(data, dtype=np.float32)
    finite = np.isfinite(data).all(axis=0)
    mean = np.where(finite, np.nanmean(np.where(np.isfinite(data), data, np.nan), axis=0), 0.0)
    usable = finite & (mean > 0) & (data.std(axis=0) > 0)
    safe_mean = np.where(usable, mean, 1.0).astype(np.float32)
    psc = (data / safe_mean - 1.0) * 100.0
    psc[:, ~usable] = 0.0
    return psc.astype(np.float32), usable


def zscore_by_group(betas: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Z-score each voxel's betas within each group of trials (e.g. a session).

    Parameters
    ----------
    betas : ndarray, shape (n_trials, n_voxels)
    groups : ndarray, shape (n_trials,)
        Group label of each trial; never missing (a dataset without sessions is one group, labelled ``n/a``).

    Returns
    -------
    ndarray, shape (n_trials, n_voxels), float32; constant voxels become 0.

    Raises
    ------
    bids_recon.errors.InvariantError
        A group label is missing (NaN, None, empty), or the shapes disagree.
    """
    from bids_recon.invariants import check_labels, check_shape

    groups = np.asarray(groups, dtype=object)
    check_shape(groups, (betas.shape[0],), "z-scoring group labels", meaning=("rows = trials",))
    check_labels(groups, "group", "z-scoring group labels")
    _, inverse = np.unique(groups.astype(str), return_inverse=True)
    out = np.zeros(betas.shape, dtype=np.float32)
    for group in range(int(inverse.max()) + 1 if len(inverse) else 0):  # every row is in exactly one group
        rows = inverse == group
        block = np.asarray(betas[rows], dtype=np.float64)
        mean = block.mean(axis=0)
        sd = block.std(axis=0)
        out[rows] = np.where(sd > 0, (block - mean) / np.where(sd > 0, sd, 1.0), 0.0)
    return out
