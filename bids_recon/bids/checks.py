"""Checks that tie a participant's input files together, made before any computation.

:func:`bids_recon.bids.layout.collect_inputs` finds the files and checks each events table and
RepetitionTime as it goes. What is checked here needs several files at once: the brain mask on the BOLD
grid, one confounds row per volume (and the chosen confound columns), every trial's stimulus image inside
the dataset, a test and a training set, the ROIs (atlas or user masks, resampled to the brain mask, large
enough); a generator's own inputs (captions, a model) are checked by its card. It reads headers, tables and 3D
masks only, so a bad dataset stops in seconds, before the GLM, with the file and the problem named.
The same conditions are checked again where the files are used (a notebook user calls those functions
without this module).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from bids_recon.bids.layout import RunInputs, SubjectInputs
from bids_recon.design.confounds import ConfoundChoice, load_confounds, skipped_line
from bids_recon.design.events import load_events
from bids_recon.design.repeats import assign_repeats_and_split
from bids_recon.design.split import ColumnRule, SessionRule, mark_imported_split, mark_test_split, parse_test_split
from bids_recon.design.table import decoded_trials
from bids_recon.design.trials import run_trials
from bids_recon.errors import BadDataError, BidsReconError
from bids_recon.features.params import StimulusParams
from bids_recon.features.stimuli import StimulusResolver, resolver_for
from bids_recon.glm.runs import intersect_masks, load_image, same_grid
from bids_recon.rois import RoiParams, build_rois

LOGGER = logging.getLogger("bids_recon.bids.checks")


@dataclass(frozen=True)
class CheckedInputs:
    """What the checks saw (logged, and handy in a notebook)."""

    n_runs: int
    n_trials: int
    stim_ids: tuple[str, ...]

    @property
    def n_stimuli(self) -> int:
        return len(self.stim_ids)


def check_run_files(run: RunInputs, confound_columns: list[str]) -> tuple[int, ConfoundChoice]:
    """Check that a run's BOLD, brain mask and confounds fit together.

    Parameters
    ----------
    run : RunInputs
    confound_columns : list of str
        The ``--confounds`` setting (columns, groups, ``auto``), resolved against the run's table as the GLM will.

    Returns
    -------
    n_volumes : int
    confounds : ConfoundChoice
        The columns the GLM will regress out and the default groups the table lacks.

    Raises
    ------
    BadDataError
        Mask and BOLD on different grids (shape or affine), confounds with another row count than the
        BOLD's volumes, without a column or group named in ``--confounds``, or with a chosen column that is not
        numeric or all ``n/a`` (exit code 65).
    """
    bold = load_image(run.preproc_bold, 4)  # headers only
    mask = load_image(run.brain_mask, 3) if run.brain_mask is not None else bold
    if not same_grid(bold, mask):
        raise BadDataError(
            f"brain mask grid {mask.shape[:3]} differs from the BOLD grid {bold.shape[:3]} of "
            f"{run.preproc_bold.name} (shape or affine): use the mask fMRIPrep wrote for this space",
            run.brain_mask,
        )
    n_volumes = int(bold.shape[3])
    _, confounds = load_confounds(run.confounds, confound_columns, n_volumes)
    return n_volumes, confounds


def check_stimuli(runs: list[RunInputs], resolver: StimulusResolver, test_split: str | None = None,
                  images: bool = True) -> pd.DataFrame:
    """Check that every decoded trial's stimulus resolves to a readable image (headers or bounds only).

    Parameters
    ----------
    runs : list of RunInputs
        One participant's runs, in acquisition order.
    resolver : StimulusResolver
        Decides which events rows are trials (its settings) and where their images are; refuses names that lead
        outside its folders.
    test_split : str, optional
        ``--test-split`` (default: the resolver's settings); its column must be in every events file.
    images : bool
        Check that each stimulus names a readable image (``False``: ``--betas-only``, the trial table only).

    Returns
    -------
    pandas.DataFrame
        The participant's trial table (see :mod:`bids_recon.design`), one row per modelled trial, ``split``
        set by the rule (``none`` for images that are modelled but not decoded).

    Raises
    ------
    BadDataError, MissingInputError
        The message names the stimulus, the events file and its line.
    """
    params = replace(resolver.params, test_split=resolver.params.test_split if test_split is None else test_split)
    seen: set[str] = set()
    tables = []
    for run in runs:
        events = load_events(run.events)
        trials = run_trials(events, run.subject, run.session, run.run, params, run.events, task=run.task)
        trials = mark_test_split(trials, events, params, resolver, run.events)
        tables.append(trials)
        if not images:
            continue
        for stim_id, written in trials.loc[decoded_trials(trials), ["stim_id", "stim_file"]].itertuples(index=False):
            if stim_id in seen:
                continue
            try:
                resolver.check(stim_id)
            except BidsReconError as exc:
                column = resolver.stimulus_column(events, params.column, run.events)
                raise type(exc)(f"{exc} (named in {run.events.name}, line {_line_of(run.events, column, written)}, "
                                f"{column} {written!r})") from exc
            seen.add(stim_id)
    return pd.concat(tables, ignore_index=True)


def _line_of(events: Path, column: str, value: object) -> int | str:
    """1-based line of the first row whose ``column`` is ``value`` (the header is line 1)."""
    from bids_recon.io import read_tsv

    table = read_tsv(events, dtype={column: str})
    hits = (table[column].astype(str).str.strip() == str(value)).to_numpy().nonzero()[0]
    return int(hits[0]) + 2 if len(hits) else "?"


def check_test_rule(trials: pd.DataFrame, runs: list[RunInputs], params: StimulusParams) -> None:
    """A ``--test-split`` rule must select some trials; the message says what the data have instead.

    Raises
    ------
    BadDataError
        The rule selects no decoded trial (exit code 65), naming the rule and the values or sessions present.
    """
    rule = parse_test_split(params.test_split)
    decoded = trials[decoded_trials(trials)]
    if rule is None or (decoded["split"] == "test").any():
        return
    where = runs[0].events
    if isinstance(rule, ColumnRule):
        seen: set[str] = set()
        for run in runs:
            events = load_events(run.events)
            if rule.column in events:
                seen.update(events[rule.column].dropna().astype(str).unique())
        have = ", ".join(sorted(seen)[:10]) + (", ..." if len(seen) > 10 else "")
        what = f"no events row has {rule.column} = {' or '.join(rule.values)} (values there: {have or 'none'})"
    elif isinstance(rule, SessionRule):
        sessions = sorted(set(decoded["session"].astype(str)))
        what = f"no session matches {', '.join('ses-' + p for p in rule.patterns)} (sessions: {', '.join(sessions)})"
        where = where.parent.parent.parent
    else:
        what = f"none of the {decoded['stim_id'].nunique()} stimuli is in NSD's {rule.name}"
    raise BadDataError(f"--test-split {params.test_split} selects no test trial: {what}", where)


def bold_space(subject: SubjectInputs) -> str | None:
    """The space of a participant's preprocessed BOLD, read from its file names (``space-T1w``; legacy names too);
    ``None`` when a name has none."""
    from bids_recon.bids.fmriprep import parse_derivative

    spaces = set()
    for run in subject.runs:
        parsed = parse_derivative(run.preproc_bold)
        spaces.add(None if parsed is None else parsed.entities.get("space"))
    if len(spaces) != 1:
        return None
    found = spaces.pop()
    return None if found is None else str(found)


def check_rois(subject: SubjectInputs, rois: RoiParams) -> dict[str, int]:
    """Build the participant's ROIs in the intersection of its runs' brain masks; return their voxel counts.

    The atlas is used only where the BOLD is in its space (read from the preprocessed BOLD's names).

    Raises
    ------
    MissingInputError
        TemplateFlow atlas or label table, or a ``--roi-mask`` file, missing (exit code 66).
    BadDataError
        The atlas on BOLD of another space (naming the space and the ``--roi-mask`` to give), masks on different
        grids, a user ROI in another space, or an ROI with fewer than ``rois.min_voxels`` voxels (exit code 65).
    """
    masks = [run.brain_mask for run in subject.runs if run.brain_mask is not None]
    if len(masks) < len(subject.runs):  # no fMRIPrep mask: the EPI mask of one run stands for them (one BOLD read)
        masks.append(next(run.preproc_bold for run in subject.runs if run.brain_mask is None))
    brain = intersect_masks(masks)
    masks, _ = build_rois(brain, rois, brain_source=subject.runs[0].preproc_bold, subject=subject.subject,
                          space=bold_space(subject))
    return {name: int(mask.sum()) for name, mask in masks.items()}


def check_inputs(
    inputs: dict[str, SubjectInputs],
    bids_dir: Path,
    stimuli: StimulusParams | None = None,
    confound_columns: list[str] | None = None,
    rois: RoiParams | None = None,
    betas_only: bool = False,
    need_training: bool = True,
) -> CheckedInputs:
    """Run every check above on the collected inputs.

    Parameters
    ----------
    inputs : dict
        Participant label -> :class:`SubjectInputs` (from ``collect_inputs``).
    bids_dir : Path
        Root of the raw dataset (relative stimulus settings are relative to it).
    stimuli : StimulusParams, optional
        The stimulus resolver, its column and folders, and how the test set is chosen (see
        :func:`bids_recon.design.repeats.assign_repeats_and_split`); each participant must have training and test
        trials. The defaults when omitted.
    confound_columns : list of str, optional
        The ``--confounds`` setting the GLM will use (``None``: no confounds); default groups a participant's
        tables lack are logged once per participant.
    rois : RoiParams, optional
        When given, the ROIs are built in each participant's brain mask (the runs' intersection, as the
        workflow does) and their sizes checked: TemplateFlow files and user masks must exist.
    betas_only : bool
        ``--betas-only``: the trial table is formed (and a ``--test-split`` rule checked) but no image, train/test
        set or ROI is needed.
    need_training : bool
        False (``--decoders-from``): the decoders come from an earlier run, the split need leave no training trial.

    Returns
    -------
    CheckedInputs
        Counts and the distinct stimulus ids (generators check their own inputs with them, e.g. captions).
    """
    stimuli = stimuli or StimulusParams()
    resolver = resolver_for(Path(bids_dir), stimuli)
    n_runs, seen, n_trials = 0, set(), 0
    confound_setting = list(confound_columns) if confound_columns else ["none"]
    for subject in inputs.values():
        confounds = [check_run_files(run, confound_setting)[1] for run in subject.runs]
        skipped = skipped_line(subject.subject, confounds, [run.confounds for run in subject.runs], confound_setting)
        if skipped:  # once per participant, not per run
            LOGGER.warning("%s", skipped)
        trials = check_stimuli(subject.runs, resolver, images=not betas_only)
        check_test_rule(trials, subject.runs, stimuli)
        trials = trials[decoded_trials(trials)]
        if betas_only:  # no decoding: no train and test set needed, no ROI
            n_runs, n_trials = n_runs + len(subject.runs), n_trials + len(trials)
            seen.update(trials["stim_id"])
            continue
        try:
            assign_repeats_and_split(trials, stimuli.test_min_repeats, parse_test_split(stimuli.test_split) is not None,
                                     need_training)
        except BadDataError as exc:
            raise BadDataError(f"sub-{subject.subject}: {exc}", subject.runs[0].events.parent) from exc
        if rois is not None:
            check_rois(subject, rois)
        n_runs, n_trials = n_runs + len(subject.runs), n_trials + len(trials)
        seen.update(trials["stim_id"])
    checked = CheckedInputs(n_runs=n_runs, n_trials=n_trials, stim_ids=tuple(sorted(seen)))
    LOGGER.info("Inputs checked: %d runs, %d trials, %d distinct stimuli", checked.n_runs, checked.n_trials,
                checked.n_stimuli)
    return checked


def check_imported_inputs(
    inputs: dict[str, SubjectInputs],
    bids_dir: Path,
    betas: str,
    stimuli: StimulusParams | None = None,
    rois: RoiParams | None = None,
    need_training: bool = True,
) -> CheckedInputs:
    """The checks of an import (``--betas``), before any work: what :func:`check_inputs` checks of a GLM run.

    :func:`bids_recon.bids.layout.collect_imported` already matched the design files to the betas (trial counts per
    session, grids, sessions missing from the series, integer betas where floats are stored). Here, per
    participant: the brain mask on the betas' grid, every decoded trial's stimulus resolved to an image, the test
    split forming a test and a training set, and the ROIs (resampled to the betas' grid; one in another space is
    refused naming both files) large enough.

    Raises
    ------
    BadDataError, MissingInputError
        Naming the files and the mismatch (exit 65, 66).
    """
    from bids_recon.glm.importers import ImportContext, importer_for

    stimuli = stimuli or StimulusParams()
    resolver = resolver_for(Path(bids_dir), stimuli)
    n_sessions, seen, n_trials = 0, set(), 0
    for subject in inputs.values():
        plan = subject.imported
        importer = importer_for(betas, ImportContext(Path(bids_dir), stimuli, subject.task))
        first = plan.sessions[0].files[0].path
        brain = importer.brain_mask(plan)
        tables = [mark_imported_split(s.trials, s.metadata, stimuli, resolver, s.files[0].path) for s in plan.sessions]
        trials = pd.concat(tables, ignore_index=True)
        trials = trials[decoded_trials(trials)]
        where = plan.design_files[0] if plan.design_files else first
        for stim_id in dict.fromkeys(trials["stim_id"].astype(str)):
            try:
                resolver.check(stim_id)
            except BidsReconError as exc:
                raise type(exc)(f"{exc} (a trial of the imported betas, named in {where.name})") from exc
        rule = parse_test_split(stimuli.test_split)
        if rule is not None and not (trials["split"] == "test").any():
            raise BadDataError(f"--test-split {stimuli.test_split} selects none of the {trials['stim_id'].nunique()} "
                               "imported stimuli", where)
        try:
            assign_repeats_and_split(trials, stimuli.test_min_repeats, rule is not None, need_training)
        except BadDataError as exc:
            raise BadDataError(f"sub-{subject.subject}: {exc}", where) from exc
        if rois is not None:  # the atlas only in the betas' space, when the format says which (NSD: func1pt8mm)
            build_rois(brain, rois, brain_source=first, subject=subject.subject, space=plan.space or None)
        n_sessions, n_trials = n_sessions + len(plan.sessions), n_trials + len(trials)
        seen.update(trials["stim_id"])
    checked = CheckedInputs(n_runs=n_sessions, n_trials=n_trials, stim_ids=tuple(sorted(seen)))
    LOGGER.info("Imported betas checked: %d sessions, %d trials, %d distinct stimuli", checked.n_runs,
                checked.n_trials, checked.n_stimuli)
    return checked
