"""Find each participant's inputs: raw events and fMRIPrep derivatives, runs grouped by session.

All pybids queries live here. The result is plain dataclasses of paths, so that everything
downstream (the workflow, a notebook) works without pybids.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib

from bids_recon.errors import (
    BadDataError,
    EmptySelectionError,
    InvalidBidsError,
    MissingInputError,
    UsageError,
)
from bids_recon.glm.singletrial import load_events

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
    brain_mask: Path
    boldref: Path | None
    confounds: Path
    repetition_time: float

    @property
    def key(self) -> str:
        """A short readable identifier, e.g. ``ses-01_run-02``."""
        parts = [f"ses-{self.session}" if self.session else "", f"run-{self.run}" if self.run else ""]
        return "_".join(p for p in parts if p) or "run"


@dataclass
class SubjectInputs:
    """A participant's runs for one task, in session/run order."""

    subject: str
    task: str
    runs: list[RunInputs] = field(default_factory=list)

    @property
    def sessions(self) -> list[str | None]:
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
    task: str | None = None,
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
    task : str, optional
        Task label; required when the dataset has several tasks.
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
    check_dataset_description(fmriprep_dir, "fMRIPrep derivatives")
    raw = BIDSLayout(bids_dir, validate=False)
    deriv = BIDSLayout(fmriprep_dir, validate=False, is_derivative=True)

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
    if task is None:
        if len(tasks) != 1:
            raise UsageError(f"the dataset has tasks {tasks}: choose one with --task-id")
        task = tasks[0]
    elif task not in tasks:
        raise EmptySelectionError(f"task '{task}' not in the dataset (it has: {', '.join(tasks)})", bids_dir)

    query: dict[str, Any] = {"task": task, "suffix": "bold", "datatype": "func", "extension": [".nii.gz", ".nii"]}
    sessions = _labels(session_label, "ses-")
    if sessions:
        query["session"] = sessions
    query.update((bids_filters or {}).get("bold", {}))

    result: dict[str, SubjectInputs] = {}
    for subject in selected:
        bolds = raw.get(subject=subject, **query)
        if not bolds:
            continue
        runs = [_collect_run(raw, deriv, b, space, resolution) for b in bolds]
        runs.sort(key=lambda r: (r.session or "", r.run or ""))
        result[subject] = SubjectInputs(subject=subject, task=task, runs=runs)
    if not result:
        raise EmptySelectionError(
            f"no BOLD run matches participant(s) {selected}, task '{task}'"
            + (f", session(s) {sessions}" if sessions else "")
            + (f", filters {bids_filters}" if bids_filters else ""),
            bids_dir,
        )
    return result


def _collect_run(raw: Any, deriv: Any, bold: Any, space: str, resolution: str | None) -> RunInputs:
    ents = bold.get_entities()
    base = {k: ents[k] for k in ("subject", "session", "task", "run") if k in ents}
    events = raw.get(**base, suffix="events", extension=".tsv")
    if not events:
        raise MissingInputError("no events.tsv for this run (one row per trial is needed)", bold.path)

    def one(what: str, **extra: Any) -> Path:
        query = {**base, "datatype": "func", **extra}
        found = deriv.get(**query)
        if resolution is not None and "space" in extra:
            found = [f for f in found if str(f.get_entities().get("res", resolution)) == str(resolution)]
        if not found:
            raise MissingInputError(
                f"fMRIPrep {what} not found for {Path(bold.path).name} "
                f"(looked for {query} in {deriv.root}); was fMRIPrep run with --output-spaces {space}"
                + (f":res-{resolution}" if resolution else "") + "?",
                deriv.root,
            )
        return Path(found[0].path)

    preproc = one("preprocessed BOLD", space=space, desc="preproc", suffix="bold", extension=[".nii.gz", ".nii"])
    mask = one("brain mask", space=space, desc="brain", suffix="mask", extension=[".nii.gz", ".nii"])
    confounds = one("confounds", desc="confounds", suffix="timeseries", extension=".tsv")
    try:
        boldref: Path | None = one("BOLD reference", space=space, suffix="boldref", extension=[".nii.gz", ".nii"])
    except MissingInputError:
        boldref = None
    tr = _repetition_time(Path(bold.path), raw.get_metadata(bold.path), preproc)
    # check the events now (columns, numbers, trials inside the run): a bad table stops the run before any work
    shape = nib.load(preproc).shape
    load_events(Path(events[0].path), shape[3] if len(shape) == 4 else None, tr)
    run = ents.get("run")
    return RunInputs(
        subject=ents["subject"], session=ents.get("session"), task=ents["task"],
        run=None if run is None else str(run).zfill(2) if isinstance(run, int) else str(run),
        raw_bold=Path(bold.path), events=Path(events[0].path), preproc_bold=preproc, brain_mask=mask,
        boldref=boldref, confounds=confounds, repetition_time=tr,
    )


def _repetition_time(raw_bold: Path, metadata: dict[str, Any], preproc: Path) -> float:
    """RepetitionTime from the sidecar, checked against the preprocessed NIfTI header."""
    tr = metadata.get("RepetitionTime")
    if tr is None:
        raise BadDataError("RepetitionTime missing from the BOLD sidecar", raw_bold)
    try:
        header_tr = float(nib.load(preproc).header.get_zooms()[3])
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise BadDataError(f"cannot read the NIfTI header ({exc})", preproc) from exc
    if header_tr > 0 and abs(header_tr - float(tr)) > TR_TOLERANCE * float(tr):
        raise BadDataError(
            f"RepetitionTime {tr} s in the sidecar differs from {header_tr} s in the NIfTI header", preproc
        )
    return float(tr)
