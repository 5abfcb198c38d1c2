"""The trial table: one row per trial, kept aligned with the beta rows by every stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError, UsageError
from bids_recon.features.params import StimulusParams

#: Columns of the trial table, in order.
TRIAL_COLUMNS = [
    "subject", "session", "run", "trial_index", "onset", "duration", "stim_id", "stim_file", "repeat", "split",
]


def parse_test_split(spec: str) -> tuple[str, list[str]] | None:
    """Parse ``--test-split COLUMN=VALUE[,VALUE...]``; ``""`` (the default) means "split by repeats".

    Returns
    -------
    tuple or None
        ``(column, values)``: trials whose events ``column`` equals one of ``values`` are test trials.
    """
    if not spec:
        return None
    column, sep, values = spec.partition("=")
    chosen = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not column.strip() or not chosen:
        raise UsageError(f"--test-split '{spec}' must be COLUMN=VALUE[,VALUE...], e.g. trial_type=test")
    return column.strip(), chosen


def _matches(values: pd.Series, wanted: list[str]) -> np.ndarray:
    """Cells equal to one of ``wanted``, as text or as numbers (``1`` matches ``1.0``; ``True`` matches ``true``)."""
    text = values.astype(str).str.strip().str.lower()
    hit = np.array(text.isin([w.lower() for w in wanted]), dtype=bool)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(float)
    for number in pd.to_numeric(pd.Series(wanted), errors="coerce").dropna():
        hit |= np.isclose(numbers, float(number))
    return hit


def run_trials(
    events: pd.DataFrame, subject: str, session: str | None, run: str | None,
    stimulus_column: str = StimulusParams.column,
    source: Path | None = None, test_split: str = "",
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
    test_split : str
        ``COLUMN=VALUE[,VALUE...]`` (see :func:`parse_test_split`): ``split`` is "test" for the trials whose
        events ``COLUMN`` has one of the values, "train" for the others. Empty: every trial is "train" until
        :func:`assign_repeats_and_split` decides by repeats.
    """
    if stimulus_column not in events:
        raise BadDataError(f"events have no '{stimulus_column}' column (have: {', '.join(events.columns)}); "
                           "name the stimulus column with --stimulus-column", source)
    stim = events[stimulus_column]
    keep = stim.notna() & (stim.astype(str) != "")
    chosen = events[keep].reset_index(drop=True)
    stim_values = chosen[stimulus_column].astype(str)
    split = np.full(len(chosen), "train", dtype=object)
    parsed = parse_test_split(test_split)
    if parsed is not None:
        column, values = parsed
        if column not in events:
            raise BadDataError(f"events have no '{column}' column for --test-split (have: "
                               f"{', '.join(events.columns)})", source)
        split[_matches(chosen[column], values)] = "test"
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
        "split": split,
    })[TRIAL_COLUMNS]


def assign_repeats_and_split(trials: pd.DataFrame, test_min_repeats: int = StimulusParams.test_min_repeats,
                             split_from_events: bool = False) -> pd.DataFrame:
    """Number each stimulus's presentations in time order and mark the test set.

    Parameters
    ----------
    trials : pandas.DataFrame
        All trials of a participant, in acquisition order (session, run, onset).
    test_min_repeats : int
        Without ``split_from_events``: stimuli shown at least this many times form the test set (NSD's shared
        images, THINGS' test images); the others are training stimuli.
    split_from_events : bool
        Keep the ``split`` that :func:`run_trials` read from the events (``--test-split``); a stimulus must
        then be "test" in every presentation or in none (else test images would leak into training).

    Returns
    -------
    pandas.DataFrame
        A copy with ``repeat`` (0 for the first presentation) and ``split`` filled.
    """
    out = trials.copy()
    out["repeat"] = out.groupby("stim_id", sort=False).cumcount().astype(int)
    if split_from_events:
        mixed = out.groupby("stim_id", sort=False)["split"].nunique()
        mixed = mixed[mixed > 1]
        if len(mixed):
            raise BadDataError(
                f"--test-split marks {len(mixed)} stimuli test in some presentations and train in others (first: "
                f"{mixed.index[0]}): a stimulus must be in one set only")
        rule = "are marked test by --test-split"
    else:
        counts = out.groupby("stim_id", sort=False)["stim_id"].transform("size")
        out["split"] = np.where(counts >= test_min_repeats, "test", "train")
        rule = f"are shown >= {test_min_repeats} times"
    n_test = out.loc[out["split"] == "test", "stim_id"].nunique()
    n_train = int((out["split"] == "train").sum())
    if n_test < 2 or n_train < 10:
        advice = "check the column and values of --test-split" if split_from_events else \
            "lower --test-min-repeats, name a test set with --test-split, or add runs"
        raise BadDataError(
            f"cannot form train and test sets: {n_test} stimuli {rule} (need >= 2) and {n_train} trials are "
            f"training trials (need >= 10); {advice}"
        )
    return out


def apply_test_split(trials: pd.DataFrame, events: pd.DataFrame, stimulus_column: str, test_split: str,
                     source: Path | None = None) -> pd.DataFrame:
    """Set the ``split`` of one run's trial table from its events (``--test-split``).

    The split is a decoding choice, applied after the GLM so that changing it never reruns the betas.

    Parameters
    ----------
    trials : pandas.DataFrame
        The run's trial table (from :func:`run_trials` on the same events).
    events : pandas.DataFrame
        The run's checked events (:func:`bids_recon.glm.singletrial.load_events`).
    """
    marked = run_trials(events, "", None, None, stimulus_column, source, test_split)
    if len(marked) != len(trials) or (marked["stim_id"].to_numpy() != trials["stim_id"].astype(str).to_numpy()).any():
        raise BadDataError("the events differ from those the betas were estimated from: rerun with a new work "
                           "directory (-w)", source)
    out = trials.copy()
    out["split"] = marked["split"].to_numpy()
    return out


def describe_split(test_min_repeats: int, test_split: str) -> str:
    """One sentence for the methods text and the trial table's sidecar."""
    parsed = parse_test_split(test_split)
    if parsed is None:
        return (f"Stimuli shown at least {test_min_repeats} times formed the test set; the others the training "
                "set.")
    column, values = parsed
    return (f"Trials whose events column '{column}' was {' or '.join(repr(v) for v in values)} formed the test "
            "set; the others the training set.")


def read_trials(path) -> pd.DataFrame:
    """Read a trial table written by bids_recon, keeping labels (``01``) as strings."""
    from bids_recon.io import read_tsv

    text_columns = {c: str for c in ("subject", "session", "run", "stim_id", "stim_file", "split")}
    return read_tsv(path, dtype=text_columns)
