"""The BIDS-writing side of the bids_recon derivatives dataset: ``dataset_description.json``, ``.bidsignore``, the
participants' "incomplete" markers, BIDS URIs, the logs and citation files.

What every output file is called is decided in :mod:`bids_recon.naming` (the output kinds, ``SubjectOutputs``,
``find_outputs``, the BIDS URIs...), a floor-level module that every layer may use. Files the specification has no
place for are listed in ``.bidsignore`` (see :data:`BIDSIGNORE`, each pattern with the reason, checked against the
schema of bids-validator-deno 3.0.2: BIDS 1.11.1, schema 1.2.7).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from bids_recon import __version__
from bids_recon.io import atomic_write_text, write_json, write_tsv
from bids_recon.naming import DESC_LABELS, OWN_DATASET, bids_uri, output_kind_of, parse_name, sidecar_path

PIPELINE_NAME = "bids_recon"
CODE_URL = "https://github.com/bids-recon/bids_recon"

#: The BIDS version the outputs follow: the one bids-validator-deno 3.0.2's schema (1.2.7) implements.
BIDS_VERSION = "1.11.1"

#: What ``.bidsignore`` hides from the BIDS validator, and why: only kinds the BIDS 1.11 schema has no place for
#: (checked with bids-validator-deno 3.0.2 and bidsschematools 2.0.1). What the validator sees: the brain and ROI
#: masks (``func/*_mask.nii.gz`` + JSON) and ``dataset_description.json``.
BIDSIGNORE: dict[str, str] = {
    "*_statmap.*": "single-trial betas and statistical maps (+ their .tsv/.json): no statmap suffix nor stat- entity "
                   "in BIDS 1.11 (statistical derivatives, BEP041, are not merged); BOLD-like suffixes would misname "
                   "them",
    "*_design.*": "GLM design matrices: no design suffix in BIDS 1.11 (BEP041)",
    "*_trials.*": "the trial table: beh.tsv is the only per-subject table a derivative may hold, and the validator "
                  "then checks stim_file against this dataset's /stimuli (STIMULUS_FILE_MISSING) and wants onset/"
                  "duration in events.tsv, which in func/ takes no desc-",
    "decoding": "fitted decoders, decoded features (.npz) and encoding tables: no datatype, suffix or .npz "
                "extension for models in BIDS 1.11",
    "recon": "reconstructed images (.png), their index and metrics: no datatype for generated images in BIDS 1.11",
    "*.html": "reports: BIDS 1.11 has no place for HTML reports (as fMRIPrep's sub-<label>.html)",
    "figures": "the reports' figures",
    "*_INCOMPLETE.txt": "markers of participants being written (bids_recon.bids.derivatives.INCOMPLETE_MARKER)",
    "logs": "run configuration, logs, crash files and citation text",
    "group": "group-level tables and maps: BIDS 1.11 names files of participants (sub-) and templates (tpl-) only",
}


def logs_dir(output_dir: Path, run_id: str) -> Path:
    """Folder of one run's configuration and log."""
    return Path(output_dir) / "logs" / run_id


#: Methods boilerplate written into each participant run's logs folder (text with references, BibTeX).
CITATION_FILES = ("CITATION.md", "CITATION.bib")


def source_datasets(bids_dir: Path, derivatives: dict[str, str], imported: Path | None = None,
                    templateflow: Path | str | None = None) -> dict[str, Path]:
    """The datasets the outputs' BIDS URIs point into: ``raw``, every derivatives dataset given (``-d NAME=PATH``),
    the imported betas (``betas``) and the TemplateFlow folder an atlas is read from (``templateflow``), where they
    exist.

    Parameters
    ----------
    bids_dir : Path
        The raw BIDS dataset.
    derivatives : dict
        ``-d NAME=PATH`` (``fmriprep``...).
    imported : Path, optional
        The folder of betas imported with ``--betas``.
    templateflow : Path, optional
        ``TEMPLATEFLOW_HOME`` of the run.
    """
    found = {"raw": Path(bids_dir), **{name: Path(path) for name, path in (derivatives or {}).items() if path}}
    if imported is not None:
        found["betas"] = Path(imported)
    if templateflow and Path(templateflow).is_dir():
        found["templateflow"] = Path(templateflow)
    return {name: path for name, path in found.items() if path.exists()}


def write_dataset_description(output_dir: Path, source_datasets: dict[str, Path]) -> Path:
    """Write ``dataset_description.json`` of the derivatives dataset (idempotent).

    Parameters
    ----------
    output_dir : Path
        Root of the derivatives dataset.
    source_datasets : dict
        Dataset name (``raw``, every ``-d NAME=PATH``, ``templateflow``...) to its folder; they become
        ``DatasetLinks`` (``file://`` URIs) and ``SourceDatasets``, so that sidecars name their sources as BIDS URIs
        (``bids:raw:sub-01/...``; ``bids::`` for this dataset's own files, never a link).
    """
    if OWN_DATASET in source_datasets:
        raise ValueError("DatasetLinks must not have the key '' (BIDS URIs bids::... name this dataset)")
    container = "docker" if Path("/.dockerenv").exists() else None
    generated_by = {"Name": PIPELINE_NAME, "Version": __version__, "CodeURL": CODE_URL}
    if container:
        generated_by["Container"] = {"Type": container}
    description = {
        "Name": "bids_recon: image reconstruction from fMRI",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
        "SourceDatasets": [{"URL": Path(p).resolve().as_uri()} for p in source_datasets.values()],
        "DatasetLinks": {name: Path(p).resolve().as_uri() for name, p in source_datasets.items()},
    }
    return write_json(Path(output_dir) / "dataset_description.json", description)


def dataset_links(output_dir: Path) -> dict[str, str]:
    """``DatasetLinks`` of the derivatives dataset's ``dataset_description.json`` (empty when there is none yet)."""
    path = Path(output_dir) / "dataset_description.json"
    try:
        links = json.loads(path.read_text()).get("DatasetLinks") or {}
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in links.items()}


def linked_folders(output_dir: Path) -> dict[str, Path]:
    """The local folders of :func:`dataset_links` (``file://`` links, and paths relative to ``output_dir``), by
    dataset name."""
    from bids_recon.naming import link_folder

    folders = {name: link_folder(uri, output_dir) for name, uri in dataset_links(output_dir).items()}
    return {name: folder for name, folder in folders.items() if folder is not None}


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


def describe_label(label: str, sidecars: list[dict]) -> str:
    """What a ``desc-`` label means, for ``descriptions.tsv``: :data:`~bids_recon.naming.DESC_LABELS` for the fixed
    ones, else what the sidecars of the files that carry it say (the atlas of an ROI mask, a decoder's target, an
    encoding model, a generator), else their ``Description``."""
    if label in DESC_LABELS:
        return DESC_LABELS[label]
    for sidecar in sidecars:
        if sidecar.get("Atlas"):
            return (f"ROI masks from the {sidecar['Atlas']} atlas (desc-{sidecar.get('AtlasDesc', '')}) of "
                    f"TemplateFlow's tpl-{sidecar.get('Template', '')}; in desc-, as BIDS 1.11 takes no atlas- on "
                    "masks")
        if sidecar.get("TargetDescription"):
            return f"decoding target: {sidecar['TargetDescription']}"
        if sidecar.get("Model") and sidecar.get("FeatureSpaces"):
            spaces = ", ".join(sidecar["FeatureSpaces"])
            return f"voxelwise encoding model '{sidecar['Model']}' (feature spaces {spaces})"
    for sidecar in sidecars:
        if sidecar.get("Generator"):
            return f"reconstructions by the '{sidecar['Generator']}' generator"
    for sidecar in sidecars:
        if sidecar.get("Description"):
            return str(sidecar["Description"])
    return f"files named desc-{label}"


def write_descriptions(output_dir: Path) -> Path | None:
    """Write ``descriptions.tsv`` (BIDS 1.9+) and its ``descriptions.json``: one row per ``desc-`` label the dataset's
    files use (participants and group level), with what it means (:func:`describe_label`); None when no file has one.

    Idempotent: the table is rebuilt from the files present, so participants run in parallel and the group level
    each leave a complete one.
    """
    output_dir = Path(output_dir)
    sidecars: dict[str, list[dict]] = {}
    images: dict[str, list[str]] = {}  # labels of files without a sidecar (reconstructed images) -> their kinds
    for path in sorted(output_dir.glob("sub-*/**/*")) + sorted(output_dir.glob("group/*")):
        rel = path.relative_to(output_dir)
        if not path.is_file() or "figures" in rel.parts or path.suffix == ".json":
            continue
        label = parse_name(rel)[0].get("desc")
        if not label:
            continue
        found = sidecars.setdefault(label, [])
        side = output_dir / sidecar_path(rel)
        if side.is_file() and len(found) < 3:
            try:
                found.append(json.loads(side.read_text()))
            except ValueError:
                pass
        elif not side.is_file():
            kind = output_kind_of(rel)
            images.setdefault(label, []).append(kind[0] if kind else "")
    if not sidecars:
        return None
    generators = sorted({s["Generator"] for found in sidecars.values() for s in found if s.get("Generator")},
                        key=len, reverse=True)
    rows = []
    for label, found in sorted(sidecars.items()):
        made_by = next((g for g in generators if label.startswith(g)), None)
        if not found and made_by and "recon_image" in images.get(label, []):
            description = f"images reconstructed by the '{made_by}' generator (variant and sample in the label)"
        else:
            description = describe_label(label, found)
        rows.append({"desc_id": f"desc-{label}", "description": description})
    import pandas as pd

    write_json(output_dir / "descriptions.json", {
        "Description": "What each desc- label of this dataset's file names means",
        "desc_id": {"Description": "a desc-<label> entity used in the dataset"},
        "description": {"Description": "what the files with that label are"}})
    return write_tsv(output_dir / "descriptions.tsv", pd.DataFrame(rows, columns=["desc_id", "description"]))


def bidsignore_text() -> str:
    """The text of ``.bidsignore``: each pattern of :data:`BIDSIGNORE` after a comment line saying why."""
    return "".join(f"# {reason}\n{pattern}\n" for pattern, reason in BIDSIGNORE.items())


def write_bidsignore(output_dir: Path) -> Path:
    """Write ``.bidsignore``: the outputs the BIDS 1.11 schema has no place for, each with its reason."""
    return atomic_write_text(Path(output_dir) / ".bidsignore", bidsignore_text())


__all__ = ["BIDSIGNORE", "BIDS_VERSION", "CITATION_FILES", "CODE_URL", "INCOMPLETE_MARKER", "INCOMPLETE_TEXT",
           "PIPELINE_NAME", "bids_uri", "bidsignore_text", "dataset_links", "describe_label", "incomplete_marker",
           "incomplete_participants", "linked_folders", "logs_dir", "refuse_incomplete", "source_datasets",
           "write_bidsignore", "write_dataset_description", "write_descriptions", "write_incomplete_marker"]
