"""The BIDS-writing side of the bids_recon derivatives dataset: ``dataset_description.json``, ``.bidsignore``, the
participants' "incomplete" markers, BIDS URIs, the logs and citation files.

What every output file is called is decided in :mod:`bids_recon.naming` (the output kinds, ``SubjectOutputs``,
``find_outputs``...), a floor-level module that every layer may use. Files the specification does not name yet are
listed in ``.bidsignore`` (see :data:`BIDSIGNORE`).
"""

from __future__ import annotations

import re
from pathlib import Path

from bids_recon import __version__
from bids_recon.io import atomic_write_text, write_json

PIPELINE_NAME = "bids_recon"
CODE_URL = "https://github.com/bids-recon/bids_recon"

#: Patterns for files the BIDS specification does not name yet (checked with bids-validator-deno).
BIDSIGNORE = [
    "*_statmap.*",
    "*_decoder.*",
    "*_features.*",
    "*_reconstructions.*",
    "*_design.*",
    "*_trials.*",
    "*_recon.*",
    "*_metrics.*",
    "*.html",
    "*_INCOMPLETE.txt",
    "figures",
    "logs",
    "group",
    "decoding",
    "recon",
]


def logs_dir(output_dir: Path, run_id: str) -> Path:
    """Folder of one run's configuration and log."""
    return Path(output_dir) / "logs" / run_id


#: Methods boilerplate written into each participant run's logs folder (text with references, BibTeX).
CITATION_FILES = ("CITATION.md", "CITATION.bib")


def bids_uri(dataset: str, relative_path: Path | str) -> str:
    """A BIDS URI (``bids:<dataset>:<path>``) naming a file of a linked dataset."""
    return f"bids:{dataset}:{Path(relative_path).as_posix()}"


def write_dataset_description(output_dir: Path, source_datasets: dict[str, Path]) -> Path:
    """Write ``dataset_description.json`` of the derivatives dataset (idempotent).

    Parameters
    ----------
    output_dir : Path
        Root of the derivatives dataset.
    source_datasets : dict
        Dataset name (``raw``, ``fmriprep``...) to its folder; they become ``DatasetLinks`` and
        ``SourceDatasets`` so that sidecars can name sources as BIDS URIs.
    """
    container = "docker" if Path("/.dockerenv").exists() else None
    generated_by = {"Name": PIPELINE_NAME, "Version": __version__, "CodeURL": CODE_URL}
    if container:
        generated_by["Container"] = {"Type": container}
    description = {
        "Name": "bids_recon: image reconstruction from fMRI",
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
        "SourceDatasets": [{"URL": Path(p).resolve().as_uri()} for p in source_datasets.values()],
        "DatasetLinks": {name: Path(p).resolve().as_uri() for name, p in source_datasets.items()},
    }
    return write_json(Path(output_dir) / "dataset_description.json", description)


#: The marker of a participant whose outputs are being written or were left incomplete: ``sub-<label>_INCOMPLETE.txt``
#: at the top of the output dataset (in :data:`BIDSIGNORE`).
INCOMPLETE_MARKER = "sub-{subject}_INCOMPLETE.txt"

INCOMPLETE_TEXT = """\
sub-{subject}: INCOMPLETE

A bids_recon participant run started writing this participant's outputs and has not finished.

Started:   {started}
Run:       {run_id} (bids_recon {version}, process {pid} on {host})
Log:       {log}
Work dir:  {work_dir}
Command:   {command}

Until this file is gone, the files under sub-{subject}/ and sub-{subject}.html may be partial, or left from an
earlier run: the group level and --reports-only refuse this participant. If the run is still going, wait for it.
If it was interrupted or failed (see the log), run the participant level again with the same work directory
(-w {work_dir}): it resumes where it stopped, and removes this file once the participant is complete.
"""


def incomplete_marker(subject: str) -> Path:
    """The participant's "incomplete" marker, relative to the output dataset's root."""
    return Path(INCOMPLETE_MARKER.format(subject=subject))


def write_incomplete_marker(output_dir: Path, subject: str, **facts: object) -> Path:
    """Mark a participant's outputs incomplete (before a run writes any of them); returns the marker's path.

    Parameters
    ----------
    output_dir : Path
        Root of the derivatives dataset.
    subject : str
        Participant label (without ``sub-``).
    **facts
        ``started``, ``run_id``, ``version``, ``pid``, ``host``, ``log``, ``work_dir``, ``command``: the fields of
        :data:`INCOMPLETE_TEXT`.
    """
    return atomic_write_text(Path(output_dir) / incomplete_marker(subject),
                             INCOMPLETE_TEXT.format(subject=subject, **facts))


def incomplete_participants(output_dir: Path, participants: list[str] | None = None) -> dict[str, Path]:
    """The participants of ``output_dir`` marked incomplete (among ``participants``, with or without ``sub-``).

    Returns
    -------
    dict
        Participant label -> its marker file, sorted by label.
    """
    wanted = {p.removeprefix("sub-") for p in participants or []}
    pattern = re.compile(re.escape(INCOMPLETE_MARKER).replace(re.escape("{subject}"), "(?P<subject>[A-Za-z0-9]+)"))
    found = {}
    for path in sorted(Path(output_dir).glob(INCOMPLETE_MARKER.format(subject="*"))):
        match = pattern.fullmatch(path.name)
        if match and (not wanted or match["subject"] in wanted):
            found[match["subject"]] = path
    return found


def refuse_incomplete(output_dir: Path, participants: list[str] | None, what: str) -> None:
    """Stop when a participant in scope is marked incomplete (a participant run started and did not finish).

    Parameters
    ----------
    output_dir : Path
        Root of the derivatives dataset.
    participants : list of str or None
        The participants in scope (all when empty or None).
    what : str
        What is refused (``"the group level"``, ``"--reports-only"``), for the message.

    Raises
    ------
    BadDataError
        Naming the participants, their markers and the work directories to rerun with (exit 65).
    """
    found = incomplete_participants(output_dir, participants)
    if not found:
        return
    from bids_recon.errors import BadDataError

    work = {}
    for subject, marker in found.items():
        lines = [line for line in marker.read_text(errors="replace").splitlines() if line.startswith("Work dir:")]
        work[subject] = lines[0].split(":", 1)[1].strip() if lines else "the work directory of that run"
    labels = ", ".join(f"sub-{s}" for s in found)
    how = "; ".join(f"sub-{s}: -w {w}" for s, w in work.items())
    raise BadDataError(
        f"{what} refuses {labels}: a participant run started and did not finish (marked by "
        f"{', '.join(m.name for m in found.values())}), so their outputs may be partial. Run the participant level "
        f"again for them with the same work directory ({how}): it resumes and removes the marker when complete",
        output_dir)


def write_bidsignore(output_dir: Path) -> Path:
    """Write ``.bidsignore`` listing the outputs the BIDS specification does not name yet."""
    return atomic_write_text(Path(output_dir) / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")


__all__ = ["BIDSIGNORE", "CITATION_FILES", "CODE_URL", "INCOMPLETE_MARKER", "INCOMPLETE_TEXT", "PIPELINE_NAME",
           "bids_uri", "incomplete_marker", "incomplete_participants", "logs_dir", "refuse_incomplete",
           "write_bidsignore", "write_dataset_description", "write_incomplete_marker"]
