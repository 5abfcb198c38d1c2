"""The trial table: one row per trial, kept aligned with the beta rows by every stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError

#: Columns of the trial table, in order.
TRIAL_COLUMNS = [
    "subject", "session", "run", "trial_index", "onset", "duration", "stim_id", "stim_file", "repeat", "split",
]


def run_trials(
    events: pd.DataFrame, subject: str, session: str | None, run: str | None, stimulus_column: str = "stim_file",
    source: Path | None = None,
) -> pd.DataFrame:
    """Trial rows of one run (``repeat`` and ``split`` are filled by :func:`assign_repeats_and_split`).

    Parameters
    ----------
    events : pandas.DataFrame
        Checked events (see :func:`bids_recon.glm.singletrial.load_events`); rows without a stimulus
        (``n/a``) are not trials.
    stimulus_column : str
        Column naming each trial's stimulus (``stim_file`` in BIDS; ``73k_id`` in NSD...).
    source : Path, optional
        The events file, named in errors.
    """
    if stimulus_column not in events:
        raise BadDataError(f"events have no '{stimulus_column}' column (have: {', '.join(events.columns)}); "
                           "name the stimulus column with --stimulus-column", source)
    stim = events[stimulus_column]
    keep = stim.notna() & (stim.astype(str) != "")
    chosen = events[keep].reset_index(drop=True)
    stim_values = chosen[stimulus_column].astype(str)
    return pd.DataFrame({
        "subject": subject,
        "session": session if session is not None else "n/a",
        "run": run if run is not None else "n/a",
        "trial_index": np.arange(len(chosen)),
        "onset": chosen["onset"].to_numpy(float),
        "duration": chosen["duration"].to_numpy(float),
        "stim_id": stim_values.to_numpy(),
        "stim_file": stim_values.to_numpy(),
        "repeat": 0,
        "split": "train",
    })[TRIAL_COLUMNS]


def assign_repeats_and_split(trials: pd.DataFrame, test_min_repeats: int = 2) -> pd.DataFrame:
    """Number each stimulus's presentations in time order and mark repeated stimuli as the test set.

    Parameters
    ----------
    trials : pandas.DataFrame
        All trials of a participant, in acquisition order (session, run, onset).
    test_min_repeats : int
        Stimuli shown at least this many times form the test set (NSD's shared images, THINGS' test
        images); the others are training stimuli.

    Returns
    -------
    pandas.DataFrame
        A copy with ``repeat`` (0 for the first presentation) and ``split`` filled.
    """
    out = trials.copy()
    out["repeat"] = out.groupby("stim_id", sort=False).cumcount().astype(int)
    counts = out.groupby("stim_id", sort=False)["stim_id"].transform("size")
    out["split"] = np.where(counts >= test_min_repeats, "test", "train")
    n_test = out.loc[out["split"] == "test", "stim_id"].nunique()
    n_train = int((out["split"] == "train").sum())
    if n_test < 2 or n_train < 10:
        raise BadDataError(
            f"cannot form train and test sets: {n_test} stimuli are shown >= {test_min_repeats} times (need >= 2) "
            f"and {n_train} trials show a stimulus fewer times (need >= 10); lower --test-min-repeats or add runs"
        )
    return out


def read_trials(path) -> pd.DataFrame:
    """Read a trial table written by bids_recon, keeping labels (``01``) as strings."""
    from bids_recon.io import read_tsv

    text_columns = {c: str for c in ("subject", "session", "run", "stim_id", "stim_file", "split")}
    return read_tsv(path, dtype=text_columns)
