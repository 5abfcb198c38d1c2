"""The test split (``--test-split``): its rules, and marking a run's or an imported session's trials by one.

The split is a decoding choice, applied after the GLM so that changing it never re-estimates betas. Without a rule,
:func:`bids_recon.design.repeats.assign_repeats_and_split` forms the test set from the repeated stimuli.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import pandas as pd

from bids_recon.design.table import NOT_DECODED, TrialRows
from bids_recon.errors import BadDataError, UsageError

#: Test sets a resolver knows by name (``--test-split shared1000``), and ``all``: every decoded trial is a test trial
#: (NSD-synthetic, NSD-Imagery: experiments that only test decoders trained on another, ``--decoders-from``).
NAMED_SPLITS = ("shared1000", "all")
#: The named split that needs no resolver: every decoded trial is a test trial.
ALL_TEST = "all"
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


class NamedTestSets(Protocol):
    """What a :class:`NamedRule` asks of the stimulus resolver (:class:`bids_recon.features.resolvers.StimulusResolver`
    satisfies it)."""

    #: ``--stimuli`` kind, named in errors.
    kind: str

    def named_test_set(self, name: str) -> set[str] | None:
        """Stimulus ids of the test set called ``name``, or ``None`` when the resolver does not know it."""
        ...


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


def split_by_rule(table: pd.DataFrame, rule: SplitRule, chosen_events: pd.DataFrame | None, source: Path | None,
                  resolver: NamedTestSets | None = None) -> pd.DataFrame:
    """A copy of ``table`` whose decoded rows are ``test`` where ``rule`` says so and ``train`` elsewhere.

    Parameters
    ----------
    table : pandas.DataFrame
        A trial table (:data:`~bids_recon.design.table.TRIAL_COLUMNS`).
    rule : SplitRule
    chosen_events : pandas.DataFrame
        The events rows (or an imported format's per-trial metadata) of the table's rows, in order: a
        :class:`ColumnRule` reads its column there.
    source : Path, optional
        The file named in errors.
    resolver : NamedTestSets, optional
        Needed by a :class:`NamedRule`.
    """
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
    elif rule.name == ALL_TEST:
        test = np.ones(len(out), dtype=bool)
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


def mark_test_split(trials: pd.DataFrame, events: pd.DataFrame, stimuli: TrialRows,
                    resolver: NamedTestSets | None = None, source: Path | None = None) -> pd.DataFrame:
    """Set the ``split`` of one run's trial table by the settings' ``--test-split`` rule.

    Parameters
    ----------
    trials : pandas.DataFrame
        The run's trial table (from :func:`bids_recon.design.trials.run_trials` on the same events and settings).
    events : pandas.DataFrame
        The run's checked events (:func:`bids_recon.design.events.load_events`).
    stimuli : TrialRows
        The stimulus settings (:class:`bids_recon.features.params.StimulusParams`): which rows are trials, the rule.
    resolver : NamedTestSets, optional
        Needed by rules the stimuli define (``shared1000``).

    Raises
    ------
    BadDataError
        The events no longer give the trials the betas were estimated from.
    """
    return _mark_from_events(trials, events, stimuli, stimuli.test_split, resolver, source)


def apply_test_split(trials: pd.DataFrame, events: pd.DataFrame, stimuli: TrialRows, test_split: str,
                     source: Path | None = None, resolver: NamedTestSets | None = None) -> pd.DataFrame:
    """Set the ``split`` of one run's trial table from its events by the rule ``test_split`` (instead of the
    settings' own); see :func:`mark_test_split`.

    The split is a decoding choice, applied after the GLM so that changing it never reruns the betas.
    """
    return _mark_from_events(trials, events, stimuli, test_split, resolver, source)


def _mark_from_events(trials: pd.DataFrame, events: pd.DataFrame, stimuli: TrialRows, test_split: str,
                      resolver: NamedTestSets | None, source: Path | None) -> pd.DataFrame:
    rule = parse_test_split(test_split)
    if rule is None:
        return trials.copy()
    rows = stimuli.trial_rows(events, source)
    if len(rows) != len(trials) or (rows["stim_id"].astype(str).to_numpy()
                                    != trials["stim_id"].astype(str).to_numpy()).any():
        raise BadDataError("the events differ from those the betas were estimated from: rerun with a new work "
                           "directory (-w)", source)
    chosen = events.iloc[rows["row"].to_numpy()].reset_index(drop=True)
    return split_by_rule(trials, rule, chosen, source, resolver)


def mark_imported_split(trials: pd.DataFrame, metadata: pd.DataFrame, stimuli: TrialRows,
                        resolver: NamedTestSets | None = None, source: Path | None = None) -> pd.DataFrame:
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
    return split_by_rule(trials, rule, metadata.reset_index(drop=True), source, resolver)


def describe_split(test_min_repeats: int, test_split: str) -> str:
    """One sentence for the methods text and the trial table's sidecar."""
    rule = parse_test_split(test_split)
    if rule is None:
        return (f"Stimuli shown at least {test_min_repeats} times formed the test set; the others the training "
                "set.")
    if isinstance(rule, SessionRule):
        return (f"Trials of the sessions {' or '.join('ses-' + p for p in rule.patterns)} formed the test set; the "
                "others the training set.")
    if isinstance(rule, NamedRule) and rule.name == ALL_TEST:
        return "Every decoded trial formed the test set (no training set: decoders trained on another experiment)."
    if isinstance(rule, NamedRule):
        return ("Trials of NSD's shared images (the 1,000 images every participant saw: shared1000) formed the test "
                "set; the others the training set.")
    return (f"Trials whose events column '{rule.column}' was {' or '.join(repr(v) for v in rule.values)} formed "
            "the test set; the others the training set.")


__all__ = ["ALL_TEST", "NAMED_SPLITS", "REPEAT_WORDS", "ColumnRule", "NamedRule", "NamedTestSets", "SessionRule",
           "SplitRule", "apply_test_split", "describe_split", "mark_imported_split", "mark_test_split", "matches",
           "parse_test_split", "split_by_rule"]
