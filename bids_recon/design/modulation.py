"""An events file's ``modulation`` column, read for a single-trial model.

BIDS (task events) allows any additional column, described in the events sidecar; it defines no ``modulation``.
The column is nilearn's convention (``make_first_level_design_matrix``): each event's regressor is scaled by its
modulation. In a single-trial model every trial has its own regressor, so a trial's modulation only divides its
beta; what it can usefully mean, and what bids_recon does with it:

- **trial rows** (rows the stimulus settings make trials): the trial's regressor is scaled by its modulation, as
  nilearn scales it, so that its beta is the peak response *per unit of modulation* (a stimulus at half contrast
  with modulation 0.5 gets a beta comparable with one at full contrast and modulation 1). Every trial row must then
  carry a positive number, or none may (all ``n/a``: no scaling). A zero or negative modulation on a trial (a
  mean-centred parametric modulator) has no single-trial meaning and is refused, as is a column filled on some trial
  rows and ``n/a`` on others.
- **rows that are not trials** (responses, cues, feedback: today not modelled at all) with a number in
  ``modulation`` are modelled as *nuisance events*: one regressor per ``trial_type`` (one for all such rows when the
  events have no ``trial_type``), the sum of each event's response scaled by its modulation, regressed out of the
  data and the trial regressors like a confound. This is nilearn's parametric regressor: write the events twice,
  with modulation 1 under one ``trial_type`` and the mean-centred parameter under another, to model the events and
  their parametric effect. Rows whose modulation is ``n/a`` stay unmodelled, as without the column; a ``trial_type``
  with numbers on some rows and ``n/a`` on others is refused. A nuisance event needs its duration (``n/a`` is
  refused; 0 is an impulse).

Every event, trial or not, is modelled as the response to a boxcar of its duration that peaks at its modulation
(:func:`bids_recon.glm.hrf.trial_regressors`). Errors are :class:`~bids_recon.errors.BadDataError` (exit 65) naming
the events file, the column and the line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.design.events import LINES_ATTR
from bids_recon.errors import BadDataError

#: The events column whose numbers scale the events' regressors (nilearn's name).
MODULATION_COLUMN = "modulation"
#: The events column that groups nuisance events into regressors.
GROUP_COLUMN = "trial_type"
#: Name of the nuisance regressor of events without a ``trial_type``.
UNNAMED_GROUP = "events"
#: Cells that mean "no modulation" (BIDS writes ``n/a``).
MISSING = ("", "n/a", "nan", "NaN", "None")
#: Prefix of the nuisance regressors' names (in the design written for the report).
NUISANCE_PREFIX = "events_"


@dataclass(frozen=True)
class NuisanceEvents:
    """Events that are not trials, modelled together as one nuisance regressor.

    Attributes
    ----------
    name : str
        The regressor's name: :data:`NUISANCE_PREFIX` + the ``trial_type`` (or :data:`UNNAMED_GROUP`).
    onsets, durations, modulations : ndarray, shape (n_events,)
        Seconds, seconds, scale of each event's response.
    """

    name: str
    onsets: np.ndarray
    durations: np.ndarray
    modulations: np.ndarray


@dataclass(frozen=True)
class RunModulations:
    """What a run's ``modulation`` column asks of the model.

    Attributes
    ----------
    trials : ndarray, shape (n_trials,), optional
        Scale of each trial's regressor, in the trial table's order; ``None``: no column, or ``n/a`` on every trial.
    nuisance : list of NuisanceEvents
        The nuisance regressors of the rows that are not trials (empty without the column).
    """

    trials: np.ndarray | None = None
    nuisance: list[NuisanceEvents] = field(default_factory=list)


def _line(events: pd.DataFrame, position: int) -> int:
    """The file line of the events row at ``position`` (header on line 1; events as
    :func:`~bids_recon.design.events.load_events` sorted them)."""
    lines = events.attrs.get(LINES_ATTR)
    return int(lines[position]) if lines is not None and len(lines) == len(events) else position + 2


def _numbers(events: pd.DataFrame, source: Path | None) -> np.ndarray:
    """The column as floats, NaN for ``n/a``; a cell that is neither a number nor ``n/a`` is refused."""
    raw = events[MODULATION_COLUMN]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(float)
    text = raw.astype(str).str.strip()
    bad = (np.isnan(values) & raw.notna().to_numpy() & ~text.isin(MISSING).to_numpy()) | np.isinf(values)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise BadDataError(f"column '{MODULATION_COLUMN}', line {_line(events, first)}: {raw.iloc[first]!r} is not a "
                           "finite number or n/a", source)
    return values


def run_modulations(events: pd.DataFrame, trial_rows: np.ndarray, source: Path | None = None) -> RunModulations:
    """Read a run's ``modulation`` column (the rules are in the module docstring).

    Parameters
    ----------
    events : pandas.DataFrame
        Checked events (:func:`bids_recon.design.events.load_events`).
    trial_rows : ndarray of int, shape (n_trials,)
        Positions in ``events`` of the trials, in the trial table's order
        (:meth:`~bids_recon.design.table.TrialRows.trial_rows`' ``row``).
    source : Path, optional
        The events file, named in errors.

    Returns
    -------
    RunModulations

    Raises
    ------
    BadDataError
        A cell that is not a number; a trial's modulation zero, negative or missing where other trials have one; a
        ``trial_type`` of non-trial rows with numbers and ``n/a`` mixed; a modelled non-trial row without duration.
    """
    if MODULATION_COLUMN not in events:
        return RunModulations()
    values = _numbers(events, source)
    trial_rows = np.asarray(trial_rows, dtype=int)
    is_trial = np.zeros(len(events), dtype=bool)
    is_trial[trial_rows] = True
    trials = values[trial_rows]
    given = np.isfinite(trials)
    trial_scale = None
    if given.any():
        if not given.all():
            first = int(trial_rows[np.flatnonzero(~given)[0]])
            raise BadDataError(
                f"column '{MODULATION_COLUMN}', line {_line(events, first)}: a trial without a modulation (n/a) while "
                f"{int(given.sum())} other trial(s) have one; give every trial a positive modulation (it divides the "
                "trial's beta) or none", source)
        if (trials <= 0).any():
            first = int(trial_rows[np.flatnonzero(trials <= 0)[0]])
            raise BadDataError(
                f"column '{MODULATION_COLUMN}', line {_line(events, first)}: a trial's modulation must be positive (it "
                f"divides the trial's beta), got {values[first]:g}; a zero or mean-centred modulation has no "
                "single-trial meaning: put parametric effects on rows that are not trials (their own trial_type) or "
                "drop the column", source)
        trial_scale = None if np.all(trials == 1.0) else trials
    groups = (events[GROUP_COLUMN].astype(object).where(events[GROUP_COLUMN].notna(), UNNAMED_GROUP).astype(str)
              if GROUP_COLUMN in events else pd.Series(UNNAMED_GROUP, index=events.index))
    nuisance = []
    others = np.flatnonzero(~is_trial)
    for name in dict.fromkeys(groups.to_numpy()[others]):
        rows = others[groups.to_numpy()[others] == name]
        numbered = np.isfinite(values[rows])
        if not numbered.any():
            continue
        if not numbered.all():
            first = int(rows[np.flatnonzero(~numbered)[0]])
            raise BadDataError(
                f"column '{MODULATION_COLUMN}', line {_line(events, first)}: {GROUP_COLUMN} {name!r} has a modulation "
                "on some rows and n/a on others; a number models the row as a nuisance event, n/a leaves it out: "
                "give all its rows a number or none", source)
        durations = events["duration"].to_numpy(float)[rows]
        if not np.isfinite(durations).all():
            first = int(rows[np.flatnonzero(~np.isfinite(durations))[0]])
            raise BadDataError(
                f"column 'duration', line {_line(events, first)}: n/a on a row with a '{MODULATION_COLUMN}' (modelled "
                "as a nuisance event, which needs its duration; 0 is an impulse)", source)
        nuisance.append(NuisanceEvents(f"{NUISANCE_PREFIX}{name}", events["onset"].to_numpy(float)[rows], durations,
                                       values[rows]))
    return RunModulations(trials=trial_scale, nuisance=nuisance)


__all__ = ["GROUP_COLUMN", "MODULATION_COLUMN", "NUISANCE_PREFIX", "UNNAMED_GROUP", "NuisanceEvents",
           "RunModulations", "run_modulations"]
