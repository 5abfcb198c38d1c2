"""The trial table: its columns and labels, how design asks which events rows are trials, reading a written table,
and the rows that are decoded.

One row per trial, kept aligned with the beta rows by every stage (the contract in DESIGN.md, checked by
:func:`bids_recon.invariants.check_trial_table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from bids_recon.invariants import TABLE_COLUMNS
from bids_recon.io import read_tsv

#: Columns of the trial table, in order (the contract :mod:`bids_recon.invariants` checks).
TRIAL_COLUMNS = list(TABLE_COLUMNS)
#: ``split`` of presented images that are modelled in the GLM but neither trained on nor tested.
NOT_DECODED = "none"
#: ``split`` when no split was made (``--betas-only`` without ``--test-split``).
NOT_SPLIT = "n/a"
#: Label of a missing session or run (BIDS ``n/a``): a dataset without sessions is one group labelled so.
NO_LABEL = "n/a"
#: Columns of the table :meth:`TrialRows.trial_rows` returns: ``row`` (index into the events), ``stim_file`` (the
#: cell as written), ``stim_id`` (the resolver's id), ``decode`` (False for images modelled but never decoded).
ROW_COLUMNS = ("row", "stim_file", "stim_id", "decode")
#: Text columns of the trial table (labels, ids, split): read as text, ``n/a`` kept as the text ``n/a``.
TEXT_COLUMNS = ("subject", "session", "task", "run", "stim_id", "stim_file", "split")


class TrialRows(Protocol):
    """How a dataset's events name their trials, as the design reads it.

    Which events rows are trials and their stimulus ids is the stimulus resolver's decision; the stimulus settings
    (:class:`bids_recon.features.params.StimulusParams`) satisfy this protocol by asking their resolver, so that this
    package imports no resolver.
    """

    #: The events column that names the stimulus as the user typed it (``--stimulus-column``; empty: the resolver's).
    column: str
    #: The ``--test-split`` rule (see :func:`bids_recon.design.split.parse_test_split`).
    test_split: str

    def trial_rows(self, events: pd.DataFrame, source: Path | None = None) -> pd.DataFrame:
        """The rows of a run's checked events (:func:`bids_recon.design.events.load_events`) that are trials: a
        table of :data:`ROW_COLUMNS`, one row per trial in the events' order (no file is read)."""
        ...

    def stimulus_columns(self) -> tuple[str, ...]:
        """The events columns the resolver names stimuli by, tried in order when :attr:`column` is empty."""
        ...


def trial_table(subject: str, session: str | None, task: str | None, runs: str | None | Sequence[str],
                stim_ids: Sequence[str], stim_files: Sequence[str] | None = None, decode: np.ndarray | None = None,
                onsets: np.ndarray | None = None, durations: np.ndarray | None = None) -> pd.DataFrame:
    """A trial table (:data:`TRIAL_COLUMNS`) from its parts, before repeats and the split are assigned
    (:mod:`bids_recon.design.repeats`): ``repeat`` 0, ``split`` ``train`` (:data:`NOT_DECODED` where ``decode`` is
    False).

    Parameters
    ----------
    subject, session, task : str
        Labels; ``None`` is :data:`NO_LABEL`.
    runs : str or sequence of str
        The run's label (``None``: :data:`NO_LABEL`), or one label per trial; ``trial_index`` counts within each run.
    stim_ids : sequence of str, shape (n_trials,)
    stim_files : sequence of str, optional
        How the source names each trial's stimulus (default: its id).
    decode : ndarray of bool, optional
        False for trials modelled but never decoded (all decoded by default).
    onsets, durations : ndarray of float, optional
        Seconds; NaN when the source does not keep them (imported betas: nothing after the GLM reads them).
    """
    n = len(stim_ids)
    runs = NO_LABEL if runs is None else runs
    labels = np.full(n, runs, dtype=object) if isinstance(runs, str) else np.array([str(r) for r in runs], dtype=object)
    table = pd.DataFrame({
        "subject": subject,
        "session": session if session is not None else NO_LABEL,
        "task": task if task is not None else NO_LABEL,
        "run": labels,
        "onset": np.full(n, np.nan) if onsets is None else np.asarray(onsets, float),
        "duration": np.full(n, np.nan) if durations is None else np.asarray(durations, float),
        "stim_id": [str(s) for s in stim_ids],
        "stim_file": [str(s) for s in (stim_ids if stim_files is None else stim_files)],
        "repeat": 0,
        "split": np.where(np.ones(n, bool) if decode is None else np.asarray(decode, bool), "train",
                          NOT_DECODED).astype(object),
    })
    table["trial_index"] = table.groupby("run", sort=False).cumcount().astype(int)
    return table[TRIAL_COLUMNS]


def decoded_trials(trials: pd.DataFrame) -> np.ndarray:
    """Rows that are decoded (trained on or tested): every row whose ``split`` is not :data:`NOT_DECODED`."""
    return (trials["split"].astype(str) != NOT_DECODED).to_numpy()


def read_trials(path) -> pd.DataFrame:
    """Read a trial table written by bids_recon, keeping labels (``01``) as strings.

    ``n/a`` in a text column (no session, no run, no split) stays the text ``n/a``: pandas reads it as NaN, and NaN
    labels never equal each other, so trials grouped by them would silently fall out of every group.
    """
    table = read_tsv(path, dtype={c: str for c in TEXT_COLUMNS})
    if "task" not in table and "session" in table:  # written before tables had a task column
        table.insert(int(table.columns.get_loc("session")) + 1, "task", NO_LABEL)
    for column in TEXT_COLUMNS:
        if column in table:
            table[column] = table[column].astype(object).where(table[column].notna(), NO_LABEL)
    return table


__all__ = ["NOT_DECODED", "NOT_SPLIT", "NO_LABEL", "ROW_COLUMNS", "TEXT_COLUMNS", "TRIAL_COLUMNS", "TrialRows",
           "decoded_trials", "read_trials", "trial_table"]
