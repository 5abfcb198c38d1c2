"""A run's events -> its trial table (one row per trial, kept aligned with the beta rows by every stage).

Which events rows are trials is the stimulus resolver's decision, asked through the stimulus settings
(:class:`~bids_recon.design.table.TrialRows`): every presented image gets a GLM regressor, including images that
are never decoded (THINGS catch images, GOD/Deeprecon one-back repetitions), whose ``split`` is
:data:`~bids_recon.design.table.NOT_DECODED`; :func:`bids_recon.glm.runs.combine_runs` drops them after the GLM. The
test split (``--test-split``) is applied after the GLM too, so changing it never re-estimates betas.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.design.modulation import RunModulations, run_modulations
from bids_recon.design.split import ColumnRule, SessionRule, parse_test_split, split_by_rule
from bids_recon.design.table import TrialRows, trial_table
from bids_recon.errors import BadDataError

#: Events column whose values name each trial's condition when the events name no stimulus (``--betas-only``).
CONDITION_COLUMN = "trial_type"


def run_trials(
    events: pd.DataFrame, subject: str, session: str | None, run: str | None, stimuli: TrialRows,
    source: Path | None = None, test_split: str = "", task: str | None = None,
) -> pd.DataFrame:
    """Trial rows of one run (``repeat`` and the train/test ``split`` are filled by
    :func:`bids_recon.design.repeats.assign_repeats_and_split`).

    Parameters
    ----------
    events : pandas.DataFrame
        Checked events (see :func:`bids_recon.design.events.load_events`).
    stimuli : TrialRows
        How rows name stimuli: the stimulus settings (:class:`bids_recon.features.params.StimulusParams`), whose
        resolver decides which rows are trials.
    source : Path, optional
        The events file, named in errors.
    test_split : str
        A ``COLUMN=VALUE`` or ``ses-LABEL`` rule (see :func:`bids_recon.design.split.parse_test_split`) applied now;
        rules that need the stimuli (``shared1000``) are applied by :func:`bids_recon.design.split.mark_test_split`.
        Empty: every decoded trial is "train" until :func:`bids_recon.design.repeats.assign_repeats_and_split`
        decides by repeats.
    task : str, optional
        The run's task label (several tasks analysed together may share run labels); ``n/a`` when not given.

    Returns
    -------
    pandas.DataFrame
        :data:`~bids_recon.design.table.TRIAL_COLUMNS`; ``stim_id`` is the resolver's id, ``stim_file`` the events
        cell as written; images that are modelled but not decoded have ``split``
        :data:`~bids_recon.design.table.NOT_DECODED`.
    """
    rows = stimuli.trial_rows(events, source)
    run_modulations(events, rows["row"].to_numpy(int), source)  # refuse an ambiguous modulation column early
    chosen = events.iloc[rows["row"].to_numpy()].reset_index(drop=True)
    unknown = ~np.isfinite(chosen["duration"].to_numpy(float))
    if unknown.any():
        first = int(np.flatnonzero(unknown)[0])
        raise BadDataError(f"{int(unknown.sum())} trial(s) have duration n/a (first: onset {chosen['onset'][first]:g} "
                           f"s, stimulus {rows['stim_file'].iloc[first]!r}): a trial's regressor needs its duration; "
                           "n/a is accepted only on rows that are not trials", source)
    table = trial_table(subject, session, task, run, rows["stim_id"].astype(str).to_numpy(),
                        rows["stim_file"].astype(str).to_numpy(), rows["decode"].to_numpy(bool),
                        chosen["onset"].to_numpy(float), chosen["duration"].to_numpy(float))
    rule = parse_test_split(test_split)
    if isinstance(rule, ColumnRule | SessionRule):
        table = split_by_rule(table, rule, chosen, source)
    return table


def event_modulations(events: pd.DataFrame, stimuli: TrialRows, source: Path | None = None) -> RunModulations:
    """What the run's ``modulation`` column asks of the model: each trial's scale, in the order of
    :func:`run_trials`' table, and the nuisance events (see :mod:`bids_recon.design.modulation`).

    Parameters
    ----------
    events : pandas.DataFrame
        Checked events (:func:`bids_recon.design.events.load_events`).
    stimuli : TrialRows
        The stimulus settings (which rows are trials).
    source : Path, optional
        The events file, named in errors.
    """
    return run_modulations(events, stimuli.trial_rows(events, source)["row"].to_numpy(int), source)


def betas_only_column(columns: Iterable[str], stimuli: TrialRows, source: Path | None = None) -> str | None:
    """The events column that names the trials of ``--betas-only``.

    The stimulus column when there is one (``--stimulus-column`` or the resolver's own): returns ``None``, nothing to
    change. Otherwise :data:`CONDITION_COLUMN` (``trial_type``): a block design's categories, each condition's
    presentations numbered as repeats.

    Parameters
    ----------
    columns : iterable of str
        The columns of a run's events.
    stimuli : TrialRows
        The stimulus settings (``column`` typed by the user wins).

    Raises
    ------
    BadDataError
        Neither a stimulus column nor ``trial_type`` (the message lists the columns there are and the flag).
    """
    columns = list(columns)
    if stimuli.column:
        return None
    named = stimuli.stimulus_columns()
    if any(c in columns for c in named):
        return None
    if CONDITION_COLUMN in columns:
        return CONDITION_COLUMN
    raise BadDataError(f"events name no stimulus ({' or '.join(named)}) and have no '{CONDITION_COLUMN}' column to "
                       f"name the trials (have: {', '.join(columns)}); name the column with --stimulus-column", source)


__all__ = ["CONDITION_COLUMN", "betas_only_column", "event_modulations", "run_trials"]
