"""Find each participant's inputs: raw events and fMRIPrep derivatives, runs grouped by session.

All pybids queries live here. The result is plain dataclasses of paths, so that everything
downstream (the workflow, a notebook) works without pybids.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib

from bids_recon.bids.fmriprep import (
    ANATOMICAL_SPACES,
    KEYS,
    RUN_ENTITIES,
    DerivativeFile,
    anatomical_references,
    describe_spaces,
    find_output,
    index_subject,
    missing_bold_advice,
    raw_sources,
    sources_name_run,
    spaces_of,
)
from bids_recon.design.events import load_events
from bids_recon.errors import (
    BadDataError,
    EmptySelectionError,
    InvalidBidsError,
    MissingInputError,
    UsageError,
)
from bids_recon.naming import sidecar_path

LOGGER = logging.getLogger("bids_recon.bids")

#: Relative tolerance between the sidecar's RepetitionTime and the NIfTI header's.
TR_TOLERANCE = 1e-3


@dataclass(frozen=True)
class RunInputs:
    """Every file one run contributes."""

    subject: str
    session: str | None
    task: str
    run: str | None
    raw_bold: Path
    events: Path
    preproc_bold: Path
    brain_mask: Path | None
    boldref: Path | None
    confounds: Path
    repetition_time: float
    #: seconds after each volume's start that its data stand for: fMRIPrep's ``StartTime`` after slice-timing
    #: correction (:func:`slice_timing_reference`), 0 without it
    start_time: float = 0.0

    @property
    def key(self) -> str:
        """A short readable identifier, unique among a participant's runs, e.g. ``ses-01_task-images_run-02``."""
        parts = [f"ses-{self.session}" if self.session else "", f"task-{self.task}",
                 f"run-{self.run}" if self.run else ""]
        return "_".join(p for p in parts if p)

    @property
    def order(self) -> tuple:
        """Sort key: session, task, then run by number (``run-2`` before ``run-10``; labels as written)."""
        run = self.run or ""
        return (self.session or "", self.task, (0, int(run), run) if run.isdigit() else (1, 0, run))


@dataclass
class SubjectInputs:
    """A participant's runs for one task, in session/run order; or, with ``--betas``, the betas to import
    (``imported``: a :class:`bids_recon.glm.importers.ImportPlan`, and no runs)."""

    subject: str
    task: str
    runs: list[RunInputs] = field(default_factory=list)
    imported: Any = None

    @property
    def sessions(self) -> list[str | None]:
        if self.imported is not None and not self.runs:
            return list(self.imported.session_labels)
        return sorted({r.session for r in self.runs}, key=lambda s: s or "")


def _labels(values: Iterable[str] | None, prefix: str) -> list[str]:
    return [v[len(prefix):] if v.startswith(prefix) else v for v in (values or [])]


def check_dataset_description(path: Path, kind: str) -> dict[str, Any]:
    """Read a dataset's ``dataset_description.json`` or fail naming it."""
    desc_file = Path(path) / "dataset_description.json"
    if not Path(path).is_dir():
        raise MissingInputError(f"{kind} dataset folder does not exist", path)
    if not desc_file.is_file():
        raise InvalidBidsError(f"not a BIDS dataset: {desc_file.name} is missing", path)
    try:
        return json.loads(desc_file.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidBidsError(f"not valid JSON ({exc})", desc_file) from exc


def load_bids_filters(path: Path | None) -> dict[str, Any]:
    """Read a ``--bids-filter-file`` (fMRIPrep's format: ``{"bold": {"session": "01", ...}}``)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise MissingInputError("BIDS filter file does not exist", path)
    try:
        filters = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"BIDS filter file is not valid JSON ({exc})", path) from exc
    if not isinstance(filters, dict) or any(not isinstance(v, dict) for v in filters.values()):
        raise UsageError('BIDS filter file must map a query name to entity filters, e.g. {"bold": {"run": 1}}', path)
    return filters


def collect_inputs(
    bids_dir: Path,
    fmriprep_dir: Path,
    participant_label: list[str] | None = None,
    session_label: list[str] | None = None,
    task: str | list[str] | None = None,
    bids_filters: dict[str, Any] | None = None,
    space: str = "MNI152NLin2009cAsym",
    resolution: str | None = "2",
) -> dict[str, SubjectInputs]:
    """Query the raw dataset and the fMRIPrep derivatives for every selected participant.

    Parameters
    ----------
    bids_dir, fmriprep_dir : Path
        Raw BIDS dataset and its fMRIPrep derivatives.
    participant_label, session_label : list of str, optional
        Labels with or without the ``sub-``/``ses-`` prefix; all when empty.
    task : str or list of str, optional
        Task label; required when the dataset has several tasks. Several tasks are analysed together (NOD: train
        on ``imagenet``, test on ``coco``); their outputs are named with the labels joined (``imagenetcoco``).
    bids_filters : dict, optional
        Extra entity filters for the ``bold`` query (``--bids-filter-file``).
    space, resolution : str
        Output space and ``res-`` label of the preprocessed BOLD to use.

    Returns
    -------
    dict
        Participant label -> :class:`SubjectInputs`.

    Raises
    ------
    EmptySelectionError
        The labels or filters select no BOLD run (exit code 18).
    MissingInputError
        A run lacks its events or one of its fMRIPrep files (exit code 66).
    BadDataError
        An events table without numeric onset/duration or with a trial ending after the run, or a sidecar
        RepetitionTime that differs from the NIfTI header (exit code 65).
    """
    from bids import BIDSLayout

    bids_dir, fmriprep_dir = Path(bids_dir), Path(fmriprep_dir)
    check_dataset_description(bids_dir, "raw BIDS")
    if not fmriprep_dir.is_dir():
        raise MissingInputError("fMRIPrep derivatives folder does not exist", fmriprep_dir)
    if not (fmriprep_dir / "dataset_description.json").is_file():  # fMRIPrep < 1.2, and trimmed public copies
        LOGGER.warning("%s has no dataset_description.json (fMRIPrep before 1.2, or a trimmed copy): its files are "
                       "matched by name", fmriprep_dir)
    raw = BIDSLayout(bids_dir, validate=False)

    subjects = raw.get_subjects()
    wanted = _labels(participant_label, "sub-")
    missing = sorted(set(wanted) - set(subjects))
    if missing:
        raise EmptySelectionError(
            f"participant(s) {', '.join(missing)} not in the dataset (it has: {', '.join(subjects) or 'none'})",
            bids_dir,
        )
    selected = wanted or subjects
    tasks = raw.get_tasks()
    if task is None or task == []:
        if len(tasks) != 1:
            raise UsageError(f"the dataset has tasks {tasks}: choose one with --task-id")
        chosen = [tasks[0]]
    else:
        chosen = [task] if isinstance(task, str) else list(task)
        absent = [t for t in chosen if t not in tasks]
        if absent:
            raise EmptySelectionError(f"task '{absent[0]}' not in the dataset (it has: {', '.join(tasks)})", bids_dir)
    task = "".join(chosen)

    query: dict[str, Any] = {"task": chosen if len(chosen) > 1 else chosen[0], "suffix": "bold", "datatype": "func",
                             "extension": [".nii.gz", ".nii"]}
    sessions = _labels(session_label, "ses-")
    if sessions:
        query["session"] = sessions
    query.update((bids_filters or {}).get("bold", {}))

    result: dict[str, SubjectInputs] = {}
    for subject in selected:
        bolds = _one_bold_per_run(raw.get(subject=subject, **query))
        if not bolds:
            continue
        files = index_subject(fmriprep_dir, subject)
        runs = [_collect_run(raw, files, fmriprep_dir, b, space, resolution) for b in bolds]
        runs.sort(key=lambda r: r.order)
        _check_distinct(runs)
        _check_one_anatomical_reference(runs, fmriprep_dir, space)
        _log_start_time(runs)
        result[subject] = SubjectInputs(subject=subject, task=task, runs=runs)
    if not result:
        raise EmptySelectionError(
            f"no BOLD run matches participant(s) {selected}, task '{task}'"
            + (f", session(s) {sessions}" if sessions else "")
            + (f", filters {bids_filters}" if bids_filters else ""),
            bids_dir,
        )
    return result


def _check_distinct(runs: list[RunInputs]) -> None:
    """Outputs are named by session, task and run: two runs (acquisitions, echoes of other kinds) must not share
    all three."""
    seen: dict[str, RunInputs] = {}
    for run in runs:
        if run.key in seen:
            raise UsageError(f"{seen[run.key].raw_bold.name} and {run.raw_bold.name} have the same session, task and "
                             "run labels, so their outputs would collide: select one with --session-label or "
                             "--bids-filter-file")
        seen[run.key] = run


def _check_one_anatomical_reference(runs: list[RunInputs], fmriprep_dir: Path, space: str) -> None:
    """BOLD in the subject's anatomical space (``space-T1w``) is one grid across sessions only when fMRIPrep made one
    anatomical reference for them: with one per session (``--subject-anatomical-reference sessionwise``, or one
    fMRIPrep run per session), voxels of different sessions are different places and their betas cannot be stacked.

    Raises
    ------
    BadDataError
        The selected runs' sessions have different references (exit code 65), naming two of them and what to do.
    """
    if space not in ANATOMICAL_SPACES or not runs:
        return
    references = anatomical_references(fmriprep_dir, runs[0].subject)
    used: dict[Path, str] = {}
    for run in runs:
        own = references.get(run.session) if run.session is not None else None
        found = own or references.get(None)
        if found:
            used.setdefault(found[0], run.session or "")
    if len(used) > 1:
        (first, ses1), (second, ses2) = list(used.items())[:2]
        raise BadDataError(
            f"fMRIPrep made an anatomical reference per session ({first.name} for ses-{ses1}, {second.name} for "
            f"ses-{ses2}: --subject-anatomical-reference sessionwise, or one fMRIPrep run per session), so the "
            f"space-{space} BOLD of different sessions are not aligned and their voxels cannot be pooled: use a "
            "template space (--space MNI152NLin2009cAsym --res 2, from fMRIPrep --output-spaces "
            "MNI152NLin2009cAsym:res-2), or select one session with --session-label", first.parent)


def slice_timing_reference(preproc: Path, repetition_time: float) -> float:
    """Seconds after each volume's start that the preprocessed BOLD's data stand for.

    fMRIPrep (20.2.4+) writes ``"SliceTimingCorrected": true`` and ``"StartTime"`` (the slice-timing reference, e.g.
    TR / 2) in the preprocessed BOLD's sidecar when it corrected slice timing: volume ``k`` then samples the signal
    at ``k * TR + StartTime`` (nilearn's ``slice_time_ref`` = StartTime / TR). 0 without a sidecar, without
    ``StartTime``, or with ``"SliceTimingCorrected": false``.

    Raises
    ------
    BadDataError
        ``StartTime`` that is not a number in [0, TR).
    """
    sidecar = sidecar_path(preproc)
    if not sidecar.is_file():
        return 0.0
    try:
        metadata = json.loads(sidecar.read_text())
    except (OSError, ValueError) as exc:
        raise BadDataError(f"unreadable JSON sidecar ({exc})", sidecar) from exc
    if not isinstance(metadata, dict) or metadata.get("SliceTimingCorrected") is False or "StartTime" not in metadata:
        return 0.0
    start = metadata["StartTime"]
    if isinstance(start, bool) or not isinstance(start, (int, float)) or not 0 <= start < repetition_time:
        raise BadDataError(f"StartTime {start!r} is not a time in seconds within the repetition time "
                           f"[0, {repetition_time:g})", sidecar)
    return float(start)


def _log_start_time(runs: list[RunInputs]) -> None:
    """Say once per participant when fMRIPrep corrected slice timing: volumes are modelled at their reference time."""
    shifted = [run for run in runs if run.start_time > 0]
    if shifted:
        first = max(shifted, key=lambda run: run.start_time)
        LOGGER.info("sub-%s: fMRIPrep corrected slice timing in %d of %d runs: each volume is modelled at its "
                    "reference time, volume start + StartTime (up to %g s, e.g. %s)", runs[0].subject, len(shifted),
                    len(runs), first.start_time, first.preproc_bold.name)


def _raw_run_entities(bold: Any) -> dict[str, Any]:
    ents = bold.get_entities()
    return {k: ents[k] for k in RUN_ENTITIES if k in ents}


def _one_bold_per_run(bolds: list[Any]) -> list[Any]:
    """One raw BOLD per run: of multi-echo or magnitude/phase runs, the first echo's magnitude (fMRIPrep combines
    the echoes and uses the magnitude; every echo has the same events and timing)."""
    chosen: dict[tuple, Any] = {}
    for bold in bolds:
        ents = _raw_run_entities(bold)
        key = tuple(sorted((k, str(v)) for k, v in ents.items() if k not in ("echo", "part")))
        rank = (str(ents.get("part", "mag")) != "mag", int(ents.get("echo", 0) or 0))
        if key not in chosen or rank < chosen[key][0]:
            chosen[key] = (rank, bold)
    return [bold for _, bold in chosen.values()]


def _events_for(raw: Any, bold: Any) -> Path | None:
    """The run's events: beside the BOLD (with or without its echo-/part- entities), else by inheritance."""
    path = Path(bold.path)
    stem = path.name.split(".")[0].removesuffix("_bold")
    candidates = [stem, re.sub(r"_(echo|part)-[a-zA-Z0-9]+", "", stem)]
    for candidate in candidates:
        events = path.parent / f"{candidate}_events.tsv"
        if events.is_file():
            return events
    ents = _raw_run_entities(bold)
    query = {k: v for k, v in ents.items() if k in ("subject", "session", "task", "run")}
    for found in raw.get(**query, suffix="events", extension=".tsv"):
        other = found.get_entities()
        if all(str(other[k]) == str(v) for k, v in ents.items() if k in other):
            return Path(found.path)
    return None


def _collect_run(raw: Any, files: list[DerivativeFile], fmriprep_dir: Path, bold: Any, space: str,
                 resolution: str | None) -> RunInputs:
    ents = bold.get_entities()
    run_entities = _raw_run_entities(bold)
    events = _events_for(raw, bold)
    if events is None:
        raise MissingInputError("no events.tsv for this run (one row per trial is needed)", bold.path)

    def one(what: str, suffix: str, desc: str | None, extensions: tuple[str, ...], with_space: bool = True,
            required: bool = True) -> Path | None:
        found = find_output(files, run_entities, suffix, desc, extensions, space if with_space else None,
                            resolution)
        if not found:
            if not required:
                return None
            advice = missing_bold_advice(files, run_entities, space, resolution, fmriprep_dir) \
                if (suffix, desc) == ("bold", "preproc") else None
            if advice:
                raise MissingInputError(f"no preprocessed BOLD for {Path(bold.path).name}: {advice}", fmriprep_dir)
            wanted = (f"space-{space}" + (f"_res-{resolution}" if resolution else "") + "_" if with_space else "") \
                + (f"desc-{desc}_" if desc else "") + suffix
            own = spaces_of(files, suffix, desc, run_entities, extensions) if with_space else []
            other = spaces_of(files, suffix, desc, None, extensions) if with_space and not own else []
            found = (f"; this run's {what} is there in {describe_spaces(own)}" if own else
                     f"; was fMRIPrep run with --output-spaces {space}" + (f":res-{resolution}" if resolution else "")
                     + "?" + (" (this participant's other runs have it in " + ", ".join(
                         f"space-{s}" + (f" res-{r}" if r else " (no res-)") for s, r in other) + ")" if other else ""))
            raise MissingInputError(
                f"fMRIPrep {what} not found for {Path(bold.path).name} (looked for *{wanted}{extensions[0]} of run "
                f"{_describe(run_entities)} in {fmriprep_dir}, as current or legacy fMRIPrep names it){found}",
                fmriprep_dir,
            )
        return found[0].path

    images = (".nii.gz", ".nii")
    preproc = one("preprocessed BOLD", "bold", "preproc", images)
    _check_sources(preproc, Path(bold.path), Path(raw.root), run_entities)
    mask = one("brain mask", "mask", "brain", images, required=False)
    if mask is None:
        LOGGER.warning("%s: fMRIPrep wrote no brain mask for this run (a trimmed copy?): its EPI mask (nilearn "
                       "compute_epi_mask) is used", Path(preproc).name)
    confounds = one("confounds", "timeseries", "confounds", (".tsv",), with_space=False)
    boldref = one("BOLD reference", "boldref", None, images, required=False)
    tr = repetition_time(Path(bold.path), raw.get_metadata(bold.path), preproc, Path(raw.root))
    # check the events now (columns, numbers, trials inside the run): a bad table stops the run before any work
    shape = nib.load(preproc).shape
    load_events(events, shape[3] if len(shape) == 4 else None, tr)
    run = ents.get("run")
    return RunInputs(
        subject=ents["subject"], session=ents.get("session"), task=ents["task"],
        run=_run_label(Path(bold.path).name, run),
        raw_bold=Path(bold.path), events=events, preproc_bold=preproc, brain_mask=mask,
        boldref=boldref, confounds=confounds, repetition_time=tr, start_time=slice_timing_reference(preproc, tr),
    )


def _check_sources(preproc: Path, raw_bold: Path, bids_root: Path, run_entities: dict[str, Any]) -> None:
    """The preprocessed BOLD's sidecar, where it names its raw input (fMRIPrep 23.2+: ``"Sources":
    ["bids:raw:sub-01/func/..._bold.nii.gz", ...]``), must name this run: a derivative matched by name but made from
    another run (renamed or copied files) would give this run's events another run's BOLD.

    Raises
    ------
    BadDataError
        The sidecar names raw BOLD of another run only (exit code 65), naming both files.
    """
    sidecar = sidecar_path(preproc)
    sources = raw_sources(sidecar)
    if sources is None:
        return
    try:  # not resolved: DataLad's annexed files are links into .git/annex
        relative = raw_bold.absolute().relative_to(bids_root.absolute()).as_posix()
    except ValueError:
        relative = raw_bold.name
    if not sources_name_run(sources, relative, run_entities):
        named = ", ".join("bids:raw:" + s for s in sources)
        raise BadDataError(
            f"its Sources name {named}, not the raw run {relative} it was matched to by name: the fMRIPrep outputs "
            "were renamed or belong to another dataset (point -d fmriprep= at the derivatives of this raw dataset)",
            sidecar)


def _run_label(name: str, run: Any) -> str | None:
    """The run label as the raw file writes it (``run-1`` stays ``1``, ``run-01`` stays ``01``): outputs and the trial
    table name runs as the input does."""
    found = re.search(r"_run-([a-zA-Z0-9]+)", name)
    if found:
        return found.group(1)
    return None if run is None else str(run)


def _describe(entities: dict[str, Any]) -> str:
    short = {v: k for k, v in KEYS.items()}
    return "_".join(f"{short.get(k, k)}-{v}" for k, v in entities.items())


def _raw_sidecar(raw_bold: Path, bids_root: Path, task: str | None) -> Path | None:
    """The JSON that gives the raw BOLD its RepetitionTime: beside it, else the dataset-level task sidecar."""
    beside = sidecar_path(raw_bold)
    if beside.is_file():
        return beside
    for folder in (raw_bold.parent, raw_bold.parent.parent, raw_bold.parent.parent.parent, bids_root):
        for candidate in sorted(folder.glob(f"*task-{task}_bold.json")) if task else []:
            return candidate
    return None


def _header_tr(path: Path) -> float:
    try:
        header = nib.load(path).header
        tr = float(header.get_zooms()[3])
        unit = header.get_xyzt_units()[1]
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise BadDataError(f"cannot read the NIfTI header ({exc})", path) from exc
    return tr / 1000.0 if unit == "msec" else tr / 1e6 if unit == "usec" else tr


def repetition_time(raw_bold: Path, metadata: dict[str, Any], preproc: Path, bids_root: Path | None = None) -> float:
    """RepetitionTime from the raw sidecar, checked against fMRIPrep's sidecar and the preprocessed NIfTI header.

    Raises
    ------
    BadDataError
        No RepetitionTime in the raw sidecar, or two of the three values differ (the message names each file
        and value; exit code 65).
    """
    task = re.search(r"_task-([a-zA-Z0-9]+)", raw_bold.name)
    raw_json = _raw_sidecar(raw_bold, Path(bids_root or raw_bold.parent), task.group(1) if task else None)
    tr = metadata.get("RepetitionTime")
    if tr is None:
        raise BadDataError("RepetitionTime missing from the BOLD sidecar", raw_json or raw_bold)
    values = [(float(tr), f"the raw sidecar {raw_json.name if raw_json else '(inherited)'}")]
    fmriprep_json = sidecar_path(preproc)
    if fmriprep_json.is_file():
        try:
            derived = json.loads(fmriprep_json.read_text()).get("RepetitionTime")
        except json.JSONDecodeError as exc:
            raise BadDataError(f"not valid JSON ({exc})", fmriprep_json) from exc
        if derived is not None:
            values.append((float(derived), f"the fMRIPrep sidecar {fmriprep_json.name}"))
    header_tr = _header_tr(preproc)
    if header_tr > 0:
        values.append((header_tr, f"the NIfTI header of {preproc.name}"))
    first, where = values[0]
    for value, other in values[1:]:
        if abs(value - first) > TR_TOLERANCE * first:
            if abs(value * 1000 - first) <= TR_TOLERANCE * first:  # BIDS: seconds; a sidecar in milliseconds
                raise BadDataError(
                    f"RepetitionTime {first:g} in {where} looks like milliseconds ({value:g} s in {other}): BIDS "
                    f"wants seconds; write \"RepetitionTime\": {value:g} in that sidecar", raw_json or raw_bold)
            raise BadDataError(f"RepetitionTime {first} s in {where} differs from {value} s in {other}", preproc)
    if first > 100:  # no header or fMRIPrep sidecar to compare with: no fMRI TR is this long in seconds
        raise BadDataError(f"RepetitionTime {first:g} in {where} is not in seconds (BIDS wants seconds: "
                           f"{first / 1000:g}?)", raw_json or raw_bold)
    return float(tr)


def tr_unit_problem(raw_bold: Path, bids_root: Path) -> str | None:
    """Why a raw BOLD's sidecar ``RepetitionTime`` disagrees with its NIfTI header when the reason is units (a sidecar
    in milliseconds; BIDS wants seconds), with the value to write; ``None`` otherwise. Reads a header and JSONs."""
    task = re.search(r"_task-([a-zA-Z0-9]+)", raw_bold.name)
    sidecar = _raw_sidecar(raw_bold, bids_root, task.group(1) if task else None)
    try:
        tr = float(json.loads(sidecar.read_text()).get("RepetitionTime")) if sidecar else None
        header = _header_tr(raw_bold)
    except (BadDataError, TypeError, ValueError, json.JSONDecodeError, OSError):
        return None
    if tr is None or header <= 0 or abs(tr - header * 1000) > TR_TOLERANCE * tr:
        return None
    return (f"{sidecar}: RepetitionTime {tr:g} looks like milliseconds ({header:g} s in the NIfTI header of "
            f"{raw_bold.name}): BIDS wants seconds; write \"RepetitionTime\": {header:g}")


def collect_imported(
    betas: str,
    bids_dir: Path | None,
    stimuli: Any = None,
    participant_label: list[str] | None = None,
    session_label: list[str] | None = None,
    task: str | list[str] | None = None,
) -> dict[str, SubjectInputs]:
    """The participants of a ``--betas FORMAT=PATH`` import and what it holds for each (no beta is read).

    Parameters
    ----------
    betas : str
        The ``--betas`` value.
    bids_dir : Path, optional
        The raw dataset (GLMsingle's trials are named by its events).
    stimuli : StimulusParams, optional
        How stimulus ids are written (the resolver's).
    participant_label, session_label : list of str, optional
        Labels with or without ``sub-``/``ses-``; sessions may be numbers or ranges (``1-37``).
    task : str or list of str, optional
        ``task-`` of the outputs (the format's own when not given).

    Raises
    ------
    EmptySelectionError
        A participant asked for is not in the source, or none is (exit 18).
    MissingInputError, BadDataError
        See :meth:`bids_recon.glm.importers.BetaImporter.plan` (exit 66, 65).
    """
    from bids_recon.features.params import StimulusParams
    from bids_recon.glm.importers import ImportContext, importer_for

    importer = importer_for(betas, ImportContext(None if bids_dir is None else Path(bids_dir),
                                                 stimuli or StimulusParams(), task))
    subjects = importer.subjects()
    wanted = _labels(participant_label, "sub-")
    missing = sorted(set(wanted) - set(subjects))
    if missing or not subjects:
        raise EmptySelectionError(f"participant(s) {', '.join(missing) or '(any)'} not in the imported betas (they "
                                  f"have: {', '.join(subjects) or 'none'})", importer.path)
    label = "".join(task) if isinstance(task, list) else task
    result = {}
    for subject in wanted or subjects:
        plan = importer.plan(subject, list(session_label or []) or None)
        result[subject] = SubjectInputs(subject=subject, task=label or plan.task, runs=[], imported=plan)
        LOGGER.info("sub-%s: %d imported trials in %d session(s) from %s (%s)", subject, plan.n_trials,
                    len(plan.sessions), importer.path, importer.format)
    return result
