"""Repeats and the train/test split of a participant's trials, and each run's share of them.

After the GLM, the runs' decoded trials (:func:`bids_recon.design.table.decoded_trials`) are stacked in acquisition
order; each stimulus's presentations are numbered (``repeat``) and the test set is marked, by repeats or by the
``--test-split`` rule the runs' tables carry (:mod:`bids_recon.design.split`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bids_recon.design.table import NOT_SPLIT, decoded_trials
from bids_recon.errors import BadDataError, InvariantError

#: Stimuli shown at least this many times form the test set (the default of ``--test-min-repeats``).
TEST_MIN_REPEATS = 2


def repeat_numbers(stimuli: pd.Series) -> pd.Series:
    """Each presentation's ``repeat``: 0 for a stimulus's first presentation, 1 for its second, ..., in the order
    of the rows (acquisition order).

    Parameters
    ----------
    stimuli : pandas.Series, shape (n_trials,)
        What each trial showed (``stim_id``).

    Returns
    -------
    pandas.Series of int, shape (n_trials,), with the index of ``stimuli``.
    """
    return stimuli.groupby(stimuli, sort=False).cumcount().astype(int)


def number_repeats(trials: pd.DataFrame) -> pd.DataFrame:
    """``repeat`` numbered per stimulus in acquisition order and ``split`` ``n/a``: the trial table of
    ``--betas-only`` without a test split (no train and test set needed)."""
    out = trials.copy()
    out["repeat"] = repeat_numbers(out["stim_id"])
    out["split"] = NOT_SPLIT
    return out


def assign_repeats_and_split(trials: pd.DataFrame, test_min_repeats: int = TEST_MIN_REPEATS,
                             split_from_events: bool = False, need_training: bool = True) -> pd.DataFrame:
    """Number each stimulus's presentations in time order and mark the test set.

    Parameters
    ----------
    trials : pandas.DataFrame
        All decoded trials of a participant, in acquisition order (session, run, onset); rows that are not
        decoded (:data:`~bids_recon.design.table.NOT_DECODED`) must have been removed
        (:func:`~bids_recon.design.table.decoded_trials`).
    test_min_repeats : int
        Without ``split_from_events``: stimuli shown at least this many times form the test set (BOLD5000's
        repeated images, NOD's COCO set); the others are training stimuli.
    split_from_events : bool
        Keep the ``split`` that a ``--test-split`` rule set (:func:`bids_recon.design.trials.run_trials`,
        :func:`bids_recon.design.split.mark_test_split`); a stimulus must then be "test" in every presentation or
        in none (else test images would leak into training).
    need_training : bool
        False: the decoders come from an earlier run (``--decoders-from``), so no training trial is needed
        (``--test-split all`` marks every trial test); the test set must still hold 2 stimuli.

    Returns
    -------
    pandas.DataFrame
        A copy with ``repeat`` (0 for the first presentation) and ``split`` filled.
    """
    out = trials.copy()
    out["repeat"] = repeat_numbers(out["stim_id"])
    if split_from_events:
        mixed = out.groupby("stim_id", sort=False)["split"].nunique()
        mixed = mixed[mixed > 1]
        if len(mixed):
            first = out[out["stim_id"] == mixed.index[0]]
            where = ", ".join(f"ses-{s} run-{r}: {p}" for s, r, p in
                              first[["session", "run", "split"]].drop_duplicates().itertuples(index=False))
            raise BadDataError(
                f"--test-split marks {len(mixed)} stimuli test in some presentations and train in others (first: "
                f"{mixed.index[0]}, {where}): a stimulus must be in one set only")
        rule = "are marked test by --test-split"
    else:
        counts = out.groupby("stim_id", sort=False)["stim_id"].transform("size")
        out["split"] = np.where(counts >= test_min_repeats, "test", "train")
        rule = f"are shown >= {test_min_repeats} times"
    n_test = out.loc[out["split"] == "test", "stim_id"].nunique()
    n_train = int((out["split"] == "train").sum())
    if n_test < 2 or (need_training and n_train < 10):
        advice = "check the rule and values of --test-split" if split_from_events else \
            "lower --test-min-repeats, name a test set with --test-split, or add runs"
        raise BadDataError(
            f"cannot form train and test sets: {n_test} stimuli {rule} (need >= 2) and {n_train} trials are "
            f"training trials (need >= 10); {advice}"
        )
    return out


def run_tables(run_trials: list[pd.DataFrame], table: pd.DataFrame) -> list[pd.DataFrame]:
    """Each run's trial table with the participant table's ``split`` and ``repeat`` (the rows of its statmap).

    Parameters
    ----------
    run_trials : list of pandas.DataFrame
        Every run's table, one row per volume of its betas statmap (modelled trials included), in the order given
        to :func:`bids_recon.glm.runs.combine_runs`.
    table : pandas.DataFrame
        The participant's table (:func:`bids_recon.glm.runs.combine_runs`): the runs' decoded rows, in that order,
        with ``split`` and ``repeat``.

    Returns
    -------
    list of pandas.DataFrame
        Copies of ``run_trials`` whose decoded rows carry their ``split`` and ``repeat``; rows that are modelled but
        never decoded keep ``split`` ``none`` and get no repeat number (``n/a``).

    Raises
    ------
    InvariantError
        The participant table is not the runs' decoded rows in order (counts or stimuli differ).
    """
    decoded = [decoded_trials(run) for run in run_trials]
    if sum(int(d.sum()) for d in decoded) != len(table):
        raise InvariantError(f"participant trial table: invariant 'rows' broken: {len(table)} rows but the runs have "
                             f"{sum(int(d.sum()) for d in decoded)} decoded trials")
    out, offset = [], 0
    for run, rows in zip(run_trials, decoded, strict=True):
        part = table.iloc[offset:offset + int(rows.sum())]
        offset += int(rows.sum())
        if (part["stim_id"].astype(str).to_numpy() != run.loc[rows, "stim_id"].astype(str).to_numpy()).any():
            raise InvariantError("participant trial table: invariant 'rows' broken: its rows are not the runs' "
                                 "decoded trials in order")
        copy = run.copy()
        copy["repeat"] = pd.array([pd.NA] * len(copy), dtype="Int64")
        copy.loc[rows, "repeat"] = part["repeat"].to_numpy()
        copy.loc[rows, "split"] = part["split"].to_numpy()
        out.append(copy)
    return out


__all__ = ["TEST_MIN_REPEATS", "assign_repeats_and_split", "number_repeats", "repeat_numbers", "run_tables"]
