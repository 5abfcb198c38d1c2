"""The trial table: one row per trial, kept aligned with the beta rows by every stage.

Which events rows are trials is the stimulus resolver's decision (:func:`bids_recon.features.resolvers.trial_rows`):
every presented image gets a GLM regressor, including images that are never decoded (THINGS catch images,
GOD/Deeprecon one-back repetitions), whose ``split`` is :data:`NOT_DECODED`; :func:`bids_recon.glm.runs.combine_runs`
drops them after the GLM. The test split (``--test-split``) is applied after the GLM too, so changing it never
re-estimates betas.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError, UsageError
from bids_recon.features.params import StimulusParams

#: Columns of the trial table, in order.
TRIAL_COLUMNS = [
    "subject", "session", "task", "run", "trial_index", "onset", "duration", "stim_id", "stim_file", "repeat", "split",
]
#: ``split`` of presented images that are modelled in the GLM but neither trained on nor tested.
NOT_DECODED = "none"
#: ``split`` when no split was made (``--betas-only`` without ``--test-split``).
NOT_SPLIT = "n/a"
#: Label of a missing session or run (BIDS ``n/a``): a dataset without sessions is one group labelled so.
NO_LABEL = "n/a"
#: Test sets a resolver knows by name (``--test-split shared1000``).
NAMED_SPLITS = ("shared1000",)
#: ``--test-split`` words meaning "by repeats" (the default).
REPEAT_WORDS = ("", "repeats", "repeated")


class ColumnRule(NamedTuple):
    """Trials whose events ``column`` has one of ``values`` are test trials."""

    column: str
    values: list[str]


class SessionRule(NamedTuple):
    """Trials of sessions whose label matches one of ``patterns`` (``fnmatch``, ``*`` allowed) are test trials."""

    patterns: list[str]


class NamedRule(NamedTuple):
    """Trials of the stimuli in a test set the resolver knows by ``name`` (NSD: ``shared1000``)."""

    name: str


SplitRule = ColumnRule | SessionRule | NamedRule


def parse_test_split(spec: str) -> SplitRule | None:
    """Parse ``--test-split``; ``None`` (``""``, ``repeats``) means "split by repeats".

    ``COLUMN=VALUE[,VALUE...]`` -> :class:`ColumnRule` (equal to the tuple ``(column, values)``);
    ``ses-LABEL[,ses-LABEL...]`` -> :class:`SessionRule`; ``shared1000`` -> :class:`NamedRule`.

    Raises
    ------
    UsageError
        A rule of none of these forms (exit 64).
    """
    text = str(spec).strip()
    if text.lower() in REPEAT_WORDS:
        return None
    if text in NAMED_SPLITS:
        return NamedRule(text)
    if text.startswith("ses-") and "=" not in text:
        patterns = [p.strip().removeprefix("ses-") for p in text.split(",") if p.strip()]
        if not patterns or any(not p for p in patterns):
            raise UsageError(f"--test-split '{spec}' must be ses-LABEL[,ses-LABEL...], e.g. ses-perceptionTest*")
        return SessionRule(patterns)
    column, sep, values = text.partition("=")
    chosen = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not column.strip() or not chosen:
        raise UsageError(f"--test-split '{spec}' must be COLUMN=VALUE[,VALUE...] (e.g. trial_type=test), "
                         f"ses-LABEL[,ses-LABEL...] (e.g. ses-perceptionTest*), {' or '.join(NAMED_SPLITS)}, or "
                         "repeats")
    return ColumnRule(column.strip(), chosen)


def matches(values: pd.Series, wanted: Iterable[str]) -> np.ndarray:
    """Cells equal to one of ``wanted``, as text or as numbers (``1`` matches ``1.0``; ``True`` matches ``true``)."""
    wanted = list(wanted)
    text = values.astype(str).str.strip().str.lower()
    hit = np.array(text.isin([w.lower() for w in wanted]), dtype=bool)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(float)
    for number in pd.to_numeric(pd.Series(wanted), errors="coerce").dropna():
        hit |= np.isclose(numbers, float(number))
    return hit


_matches = matches


def _as_params(stimuli: StimulusParams | str | None) -> StimulusParams:
    """Settings from a StimulusParams, or from a bare column name (the ``files`` resolver), or the defaults."""
    if stimuli is None:
        return StimulusParams()
    if isinstance(stimuli, str):
        return StimulusParams(column=stimuli)
    return stimuli


def run_trials(
    events: pd.DataFrame, subject: str, session: str | None, run: str | None,
    stimuli: StimulusParams | str | None = None,
    source: Path | None = None, test_split: str = "", task: str | None = None,
) -> pd.DataFrame:
    """Trial rows of one run (``repeat`` and the train/test ``split`` are filled by
    :func:`assign_repeats_and_split`).

    Parameters
    ----------
    events : pandas.DataFrame
        Checked events (see :func:`bids_recon.glm.singletrial.load_events`).
    stimuli : StimulusParams or str
        How rows name stimuli (the resolver decides which rows are trials); a string is the ``files`` resolver's
        column (``stim_file`` in BIDS).
    source : Path, optional
        The events file, named in errors.
    test_split : str
        A ``COLUMN=VALUE`` or ``ses-LABEL`` rule (see :func:`parse_test_split`) applied now; rules that need the
        stimuli (``shared1000``) are applied by :func:`mark_test_split`. Empty: every decoded trial is "train"
        until :func:`assign_repeats_and_split` decides by repeats.
    task : str, optional
        The run's task label (several tasks analysed together may share run labels); ``n/a`` when not given.

    Returns
    -------
    pandas.DataFrame
        :data:`TRIAL_COLUMNS`; ``stim_id`` is the resolver's id, ``stim_file`` the events cell as written; images
        that are modelled but not decoded have ``split`` :data:`NOT_DECODED`.
    """
    from bids_recon.features.resolvers import trial_rows

    rows = trial_rows(events, _as_params(stimuli), source)
    chosen = events.iloc[rows["row"].to_numpy()].reset_index(drop=True)
    unknown = ~np.isfinite(chosen["duration"].to_numpy(float))
    if unknown.any():
        first = int(np.flatnonzero(unknown)[0])
        raise BadDataError(f"{int(unknown.sum())} trial(s) have duration n/a (first: onset {chosen['onset'][first]:g} "
                           f"s, stimulus {rows['stim_file'].iloc[first]!r}): a trial's regressor needs its duration; "
                           "n/a is accepted only on rows that are not trials", source)
    table = pd.DataFrame({
        "subject": subject,
        "session": session if session is not None else NO_LABEL,
        "task": task if task is not None else NO_LABEL,
        "run": run if run is not None else NO_LABEL,
        "trial_index": np.arange(len(chosen)),
        "onset": chosen["onset"].to_numpy(float),
        "duration": chosen["duration"].to_numpy(float),
        "stim_id": rows["stim_id"].astype(str).to_numpy(),
        "stim_file": rows["stim_file"].astype(str).to_numpy(),
        "repeat": 0,
        "split": np.where(rows["decode"].to_numpy(bool), "train", NOT_DECODED).astype(object),
    })[TRIAL_COLUMNS]
    rule = parse_test_split(test_split)
    if isinstance(rule, ColumnRule | SessionRule):
        table = _apply_rule(table, rule, chosen, source)
    return table


def _apply_rule(table: pd.DataFrame, rule: SplitRule, chosen_events: pd.DataFrame | None, source: Path | None,
                resolver=None) -> pd.DataFrame:
    out = table.copy()
    decoded = (out["split"] != NOT_DECODED).to_numpy()
    if isinstance(rule, ColumnRule):
        if rule.column not in chosen_events:
            raise BadDataError(f"events have no '{rule.column}' column for --test-split (have: "
                               f"{', '.join(map(str, chosen_events.columns))})", source)
        test = matches(chosen_events[rule.column], rule.values)
    elif isinstance(rule, SessionRule):
        sessions = out["session"].astype(str)
        test = np.array([any(fnmatch.fnmatchcase(s, p) for p in rule.patterns) for s in sessions], dtype=bool)
    else:
        if resolver is None:
            raise UsageError(f"--test-split {rule.name} needs the stimulus resolver")
        named = resolver.named_test_set(rule.name)
        if named is None:
            raise UsageError(f"--test-split {rule.name}: the '{resolver.kind}' stimulus resolver does not know this "
                             "test set (NSD's shared1000 needs --stimuli nsd)")
        test = out["stim_id"].astype(str).isin(named).to_numpy()
    out.loc[decoded, "split"] = np.where(test[decoded], "test", "train")
    return out


def mark_test_split(trials: pd.DataFrame, events: pd.DataFrame, stimuli: StimulusParams, resolver=None,
                    source: Path | None = None) -> pd.DataFrame:
    """Set the ``split`` of one run's trial table by the settings' ``--test-split`` rule.

    Parameters
    ----------
    trials : pandas.DataFrame
        The run's trial table (from :func:`run_trials` on the same events and resolver settings).
    events : pandas.DataFrame
        The run's checked events (:func:`bids_recon.glm.singletrial.load_events`).
    stimuli : StimulusParams
    resolver : StimulusResolver, optional
        Needed by rules the stimuli define (``shared1000``).

    Raises
    ------
    BadDataError
        The events no longer give the trials the betas were estimated from.
    """
    from bids_recon.features.resolvers import trial_rows

    rule = parse_test_split(stimuli.test_split)
    if rule is None:
        return trials.copy()
    rows = trial_rows(events, stimuli, source)
    if len(rows) != len(trials) or (rows["stim_id"].astype(str).to_numpy()
                                    != trials["stim_id"].astype(str).to_numpy()).any():
        raise BadDataError("the events differ from those the betas were estimated from: rerun with a new work "
                           "directory (-w)", source)
    chosen = events.iloc[rows["row"].to_numpy()].reset_index(drop=True)
    return _apply_rule(trials, rule, chosen, source, resolver)


def mark_imported_split(trials: pd.DataFrame, metadata: pd.DataFrame, stimuli: StimulusParams, resolver=None,
                        source: Path | None = None) -> pd.DataFrame:
    """Set the ``split`` of an imported session's trial table by the ``--test-split`` rule (see
    :mod:`bids_recon.glm.importers`): a ``COLUMN=VALUE`` rule reads the format's per-trial ``metadata`` (rows
    aligned with ``trials``) instead of events.

    Raises
    ------
    BadDataError
        The rule's column is not among the imported trials' columns (the message lists those there are).
    """
    rule = parse_test_split(stimuli.test_split)
    if rule is None:
        return trials.copy()
    if isinstance(rule, ColumnRule) and rule.column not in metadata:
        raise BadDataError(f"--test-split {stimuli.test_split}: the imported trials have no '{rule.column}' column "
                           f"(have: {', '.join(map(str, metadata.columns)) or 'none'}); name the test set otherwise "
                           "(repeats, ses-LABEL, shared1000)", source)
    return _apply_rule(trials, rule, metadata.reset_index(drop=True), source, resolver)


def apply_test_split(trials: pd.DataFrame, events: pd.DataFrame, stimuli: StimulusParams | str,
                     test_split: str, source: Path | None = None, resolver=None) -> pd.DataFrame:
    """Set the ``split`` of one run's trial table from its events (``--test-split``); see :func:`mark_test_split`.

    The split is a decoding choice, applied after the GLM so that changing it never reruns the betas.
    """
    from dataclasses import replace

    params = replace(_as_params(stimuli), test_split=test_split)
    return mark_test_split(trials, events, params, resolver, source)


#: Events column whose values name each trial's condition when the events name no stimulus (``--betas-only``).
CONDITION_COLUMN = "trial_type"


def betas_only_column(columns: Iterable[str], stimuli: StimulusParams, source: Path | None = None) -> str | None:
    """The events column that names the trials of ``--betas-only``.

    The stimulus column when there is one (``--stimulus-column`` or the resolver's own): returns ``None``, nothing to
    change. Otherwise :data:`CONDITION_COLUMN` (``trial_type``): a block design's categories, each condition's
    presentations numbered as repeats.

    Parameters
    ----------
    columns : iterable of str
        The columns of a run's events.
    stimuli : StimulusParams
        The resolver settings (``column`` typed by the user wins).

    Raises
    ------
    BadDataError
        Neither a stimulus column nor ``trial_type`` (the message lists the columns there are and the flag).
    """
    from bids_recon.features.resolvers import resolver_class

    columns = list(columns)
    if stimuli.column:
        return None
    named = resolver_class(stimuli).columns
    if any(c in columns for c in named):
        return None
    if CONDITION_COLUMN in columns:
        return CONDITION_COLUMN
    raise BadDataError(f"events name no stimulus ({' or '.join(named)}) and have no '{CONDITION_COLUMN}' column to "
                       f"name the trials (have: {', '.join(columns)}); name the column with --stimulus-column", source)


def decoded_trials(trials: pd.DataFrame) -> np.ndarray:
    """Rows that are decoded (trained on or tested): every row whose ``split`` is not :data:`NOT_DECODED`."""
    return (trials["split"].astype(str) != NOT_DECODED).to_numpy()


def assign_repeats_and_split(trials: pd.DataFrame, test_min_repeats: int = StimulusParams.test_min_repeats,
                             split_from_events: bool = False) -> pd.DataFrame:
    """Number each stimulus's presentations in time order and mark the test set.

    Parameters
    ----------
    trials : pandas.DataFrame
        All decoded trials of a participant, in acquisition order (session, run, onset); rows that are not
        decoded (:data:`NOT_DECODED`) must have been removed (:func:`decoded_trials`).
    test_min_repeats : int
        Without ``split_from_events``: stimuli shown at least this many times form the test set (BOLD5000's
        repeated images, NOD's COCO set); the others are training stimuli.
    split_from_events : bool
        Keep the ``split`` that a ``--test-split`` rule set (:func:`run_trials`, :func:`mark_test_split`); a
        stimulus must then be "test" in every presentation or in none (else test images would leak into
        training).

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
    if n_test < 2 or n_train < 10:
        advice = "check the rule and values of --test-split" if split_from_events else \
            "lower --test-min-repeats, name a test set with --test-split, or add runs"
        raise BadDataError(
            f"cannot form train and test sets: {n_test} stimuli {rule} (need >= 2) and {n_train} trials are "
            f"training trials (need >= 10); {advice}"
        )
    return out


def describe_split(test_min_repeats: int, test_split: str) -> str:
    """One sentence for the methods text and the trial table's sidecar."""
    rule = parse_test_split(test_split)
    if rule is None:
        return (f"Stimuli shown at least {test_min_repeats} times formed the test set; the others the training "
                "set.")
    if isinstance(rule, SessionRule):
        return (f"Trials of the sessions {' or '.join('ses-' + p for p in rule.patterns)} formed the test set; the "
                "others the training set.")
    if isinstance(rule, NamedRule):
        return ("Trials of NSD's shared images (the 1,000 images every participant saw: shared1000) formed the test "
                "set; the others the training set.")
    return (f"Trials whose events column '{rule.column}' was {' or '.join(repr(v) for v in rule.values)} formed "
            "the test set; the others the training set.")


def read_trials(path) -> pd.DataFrame:
    """Read a trial table written by bids_recon, keeping labels (``01``) as strings.

    ``n/a`` in a text column (no session, no run, no split) stays the text ``n/a``: pandas reads it as NaN, and NaN
    labels never equal each other, so trials grouped by them would silently fall out of every group.
    """
    from bids_recon.io import read_tsv

    text_columns = ("subject", "session", "task", "run", "stim_id", "stim_file", "split")
    table = read_tsv(path, dtype={c: str for c in text_columns})
    if "task" not in table and "session" in table:  # written before tables had a task column
        table.insert(int(table.columns.get_loc("session")) + 1, "task", NO_LABEL)
    for column in text_columns:
        if column in table:
            table[column] = table[column].astype(object).where(table[column].notna(), NO_LABEL)
    return table
