"""Output names and dataset-level files of the bids_recon derivatives dataset.

This module is the one place that decides what every output file is called; workflows, reports and
tests ask it. Names follow the BIDS derivatives specification where it has one; files the
specification does not name yet are listed in ``.bidsignore`` (see :data:`BIDSIGNORE`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bids_recon import __version__
from bids_recon.io import atomic_write_text, write_json

PIPELINE_NAME = "bids_recon"
CODE_URL = "https://github.com/bids-recon/bids_recon"

#: Order of entities in file names (BIDS specification, entity table).
ENTITY_ORDER = ("sub", "ses", "task", "run", "space", "res", "label", "stim", "desc", "stat")

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


def sanitize_label(value: str) -> str:
    """Turn a free string into a BIDS label (alphanumerics only), e.g. ``stim-0001.png`` -> ``stim0001png``."""
    label = re.sub(r"[^A-Za-z0-9]", "", str(value))
    if not label:
        from bids_recon.errors import BadDataError

        raise BadDataError(f"cannot make a BIDS label from {value!r} (it has no letters or digits): rename it")
    return label


def build_name(entities: dict[str, Any], suffix: str, extension: str) -> str:
    """Assemble a BIDS file name from entities in the specification's order.

    Parameters
    ----------
    entities : dict
        Entity key (``sub``, ``ses``...) to label; ``None`` values are left out.
    suffix : str
        BIDS suffix, e.g. ``statmap``.
    extension : str
        File extension with its leading dot, e.g. ``.nii.gz``.
    """
    unknown = set(entities) - set(ENTITY_ORDER)
    if unknown:
        raise ValueError(f"unknown entities {sorted(unknown)}")
    parts = [f"{key}-{entities[key]}" for key in ENTITY_ORDER if entities.get(key) not in (None, "")]
    return "_".join([*parts, suffix]) + extension


#: Extensions of output files (longest first, so ``.nii.gz`` wins over ``.gz``).
EXTENSIONS = (".nii.gz", ".nii", ".npz", ".npy", ".tsv", ".png", ".svg", ".json", ".html")


def split_extension(name: str) -> tuple[str, str]:
    """``("sub-01_..._statmap", ".nii.gz")`` from a file name."""
    for ext in EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)], ext
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if dot else (name, "")


def sidecar_path(path: Path | str) -> Path:
    """The JSON sidecar of an output file: the same name with ``.json`` instead of its extension."""
    path = Path(path)
    return path.with_name(split_extension(path.name)[0] + ".json")


def parse_name(path: Path | str) -> tuple[dict[str, str], str, str]:
    """Entities, suffix and extension of a BIDS file name (the inverse of :func:`build_name`)."""
    stem, extension = split_extension(Path(path).name)
    *pairs, suffix = stem.split("_")
    entities = dict(pair.split("-", 1) for pair in pairs if "-" in pair)
    return entities, suffix, extension


@dataclass(frozen=True)
class OutputKind:
    """One kind of output file: where it goes and how it is named.

    Attributes
    ----------
    datatype : str
        Folder under ``sub-<label>[/ses-<label>]``: ``func`` (BIDS-named images and tables), ``decoding``,
        ``recon``.
    suffix, extension : str
        BIDS suffix and default extension.
    entities : tuple of str
        The entities the kind carries, in the order a caller gives them (``sub``, ``task``, ``space``/``res``
        where it is in the BOLD grid, ...).
    fixed : dict
        Entities with a fixed label for this kind (``desc-singletrial``).
    """

    datatype: str
    suffix: str
    extension: str
    entities: tuple[str, ...]
    fixed: tuple[tuple[str, str], ...] = ()


_GRID = ("sub", "ses", "task", "run", "space", "res")
#: Every per-participant output kind: the one table that names outputs.
OUTPUTS: dict[str, OutputKind] = {
    "betas": OutputKind("func", "statmap", ".nii.gz", _GRID, (("desc", "singletrial"), ("stat", "effect"))),
    "design": OutputKind("func", "design", ".tsv", _GRID, (("desc", "singletrial"),)),
    "stat_map": OutputKind("func", "statmap", ".nii.gz", ("sub", "ses", "task", "space", "res", "stat"),
                           (("desc", "singletrial"),)),
    "trials": OutputKind("func", "trials", ".tsv", ("sub", "task"), (("desc", "singletrial"),)),
    "roi_mask": OutputKind("func", "mask", ".nii.gz", ("sub", "task", "space", "res", "label", "desc")),
    "brain_mask": OutputKind("func", "mask", ".nii.gz", ("sub", "task", "space", "res"), (("desc", "brain"),)),
    "decoder": OutputKind("decoding", "decoder", ".npz", ("sub", "task", "label", "desc")),
    "features": OutputKind("decoding", "features", ".npz", ("sub", "task", "label", "desc")),
    "recon_image": OutputKind("recon", "recon", ".png", ("sub", "task", "stim", "desc")),
    "recon_index": OutputKind("recon", "reconstructions", ".tsv", ("sub", "task", "desc")),
    "metrics": OutputKind("recon", "metrics", ".tsv", ("sub", "task", "desc")),
    "encoding_map": OutputKind("func", "statmap", ".nii.gz", ("sub", "task", "space", "res", "desc", "stat")),
    "encoding_summary": OutputKind("decoding", "encoding", ".tsv", ("sub", "task"), (("desc", "rois"),)),
}
#: Entities whose labels are free text made into BIDS labels (alphanumerics only).
_SANITIZED = ("label", "stim", "desc", "stat")


def output_entities(kind: str, **entities: Any) -> dict[str, str]:
    """The entities of an output of ``kind``: the given ones it carries (sanitised) plus its fixed ones."""
    spec = OUTPUTS[kind]
    fixed = dict(spec.fixed)
    unknown = {k for k in entities if k not in spec.entities and (k not in fixed or entities[k] != fixed[k])}
    if unknown:
        raise ValueError(f"output kind '{kind}' has no entities {sorted(unknown)} (it has {spec.entities})")
    out = {k: (sanitize_label(v) if k in _SANITIZED else str(v)) for k, v in entities.items()
           if v not in (None, "")}
    return {**out, **fixed}


def output_path(kind: str, entities: dict[str, Any], extension: str | None = None) -> Path:
    """Path, relative to the output dataset, of an output of ``kind`` with these entities.

    The folder is ``sub-<sub>[/ses-<ses>]/<datatype>``; the name follows :data:`ENTITY_ORDER`.
    """
    spec = OUTPUTS[kind]
    ents = output_entities(kind, **entities)
    folder = Path(f"sub-{ents['sub']}") / (f"ses-{ents['ses']}" if ents.get("ses") else "") / spec.datatype
    return folder / build_name(ents, spec.suffix, extension or spec.extension)


def find_outputs(output_dir: Path, kind: str, **entities: str) -> list[tuple[Path, dict[str, str]]]:
    """Output files of ``kind`` in a derivatives dataset, with their entities, sorted by path.

    Parameters
    ----------
    output_dir : Path
        Root of the derivatives dataset.
    **entities
        Only files with these labels (e.g. ``sub="01"``).
    """
    spec = OUTPUTS[kind]
    found = []
    for path in sorted(Path(output_dir).glob(f"sub-*/**/{spec.datatype}/*_{spec.suffix}{spec.extension}")):
        ents, suffix, extension = parse_name(path)
        if suffix != spec.suffix or extension != spec.extension:
            continue
        if any(ents.get(k) != v for k, v in spec.fixed) or any(ents.get(k) != str(v) for k, v in entities.items()):
            continue
        found.append((path, ents))
    return found


@dataclass(frozen=True)
class SubjectOutputs:
    """Names of one participant's outputs, relative to the output dataset's root (see :data:`OUTPUTS`)."""

    subject: str
    task: str
    space: str
    resolution: str | None = None

    @property
    def root(self) -> Path:
        return Path(f"sub-{self.subject}")

    def entities(self, kind: str, **entities: Any) -> dict[str, str]:
        """All entities of an output of ``kind``: the participant's (sub, task, space, res where the kind has
        them) and the given ones."""
        own = {"sub": self.subject, "task": self.task, "space": self.space, "res": self.resolution}
        carried = {k: v for k, v in own.items() if k in OUTPUTS[kind].entities}
        return output_entities(kind, **{**carried, **entities})

    def path(self, kind: str, extension: str | None = None, **entities: Any) -> Path:
        """Relative path of an output of ``kind`` (:func:`output_path` with the participant's entities)."""
        return output_path(kind, self.entities(kind, **entities), extension)

    def sink(self, kind: str, **entities: Any) -> dict[str, Any]:
        """The naming inputs of a ``DerivativesSink`` writing an output of ``kind``: entities, suffix, extension,
        datatype (the sink builds the path with :func:`output_path`)."""
        spec = OUTPUTS[kind]
        return {"kind": kind, "entities": self.entities(kind, **entities), "extension": spec.extension}

    def betas(self, session: str | None, run: str | int | None, extension: str = ".nii.gz",
              task: str | None = None) -> Path:
        """Single-trial betas of one run: 4D statmap (one volume per trial), TSV of volumes, JSON; ``task``: the run's
        own (see :meth:`design`)."""
        return self.path("betas", extension, ses=session, run=run, **({"task": task} if task else {}))

    def stat_map(self, session: str | None, stat: str, extension: str = ".nii.gz") -> Path:
        """A map of the beta stage (per session, or per participant when ``session`` is None)."""
        return self.path("stat_map", extension, ses=session, stat=stat)

    def design(self, session: str | None, run: str | int | None, task: str | None = None) -> Path:
        """Design matrix of one run's single-trial GLM (volumes x regressors); ``task``: the run's own (several tasks
        analysed together name their runs by their own task)."""
        return self.path("design", ses=session, run=run, **({"task": task} if task else {}))

    def trials(self) -> Path:
        """The participant's trial table (all runs, with repeat and train/test split), rows = beta order."""
        return self.path("trials")

    def roi_mask(self, label: str, atlas: str | None, extension: str = ".nii.gz") -> Path:
        """ROI mask in the BOLD grid; the atlas goes in ``desc-`` (the schema has no ``atlas-`` here)."""
        return self.path("roi_mask", extension, label=label, desc=atlas)

    def brain_mask(self, extension: str = ".nii.gz") -> Path:
        """Brain mask shared by all runs (intersection of the runs' masks)."""
        return self.path("brain_mask", extension)

    def decoder(self, roi: str, target: str, extension: str = ".npz") -> Path:
        """Fitted decoder (weights, alphas, CV scores, voxel indices, scaling) and its sidecar."""
        return self.path("decoder", extension, label=roi, desc=target)

    def features(self, roi: str, target: str, extension: str = ".npz") -> Path:
        """Decoded features of the test stimuli (and the true ones, for evaluation)."""
        return self.path("features", extension, label=roi, desc=target)

    def recon_image(self, stimulus: str, generator: str, extension: str = ".png") -> Path:
        """One reconstructed image (``stim-`` from the stimulus name without its extension)."""
        return self.path("recon_image", extension, stim=Path(stimulus).stem, desc=generator)

    def recon_variant_image(self, stimulus: str, variant: str, sample: int, extension: str = ".png") -> Path:
        """One image of the diffusion generator: ``variant`` (z, c, zc) and 0-based ``sample`` in ``desc-``.

        E.g. ``sub-01_task-images_stim-stim0001_desc-diffusionzcsample1_recon.png`` (z has one sample: no suffix).
        """
        desc = f"diffusion{variant}" + ("" if variant == "z" else f"sample{int(sample) + 1}")
        return self.recon_image(stimulus, desc, extension)

    def recon_index(self, generator: str) -> Path:
        """TSV index of the reconstructions: stimulus, trials, file, and each stimulus's metrics."""
        return self.path("recon_index", desc=generator)

    def metrics(self, generator: str, extension: str = ".tsv") -> Path:
        """Evaluation metrics (one row per metric)."""
        return self.path("metrics", extension, desc=generator)

    def encoding_map(self, model: str, stat: str, extension: str = ".nii.gz") -> Path:
        """A voxelwise encoding map: ``desc-encoding<model label>`` (``z``, ``c``, ``zandc``...), ``stat-`` r, p, q,
        uniquevariance or sharedvariance."""
        from bids_recon.decoding.encoding import model_label

        return self.path("encoding_map", extension, desc=f"encoding{model_label(model)}", stat=stat)

    def encoding_summary(self, extension: str = ".tsv") -> Path:
        """The encoding models' ROI summary table (one row per ROI and model)."""
        return self.path("encoding_summary", extension)

    def report(self) -> Path:
        """The participant's HTML report."""
        return Path(f"sub-{self.subject}.html")

    def figures_dir(self) -> Path:
        """Folder of the report's figures."""
        return self.root / "figures"


def group_metrics_path(task: str) -> Path:
    """Group table of every participant's metrics."""
    return Path("group") / build_name({"task": task}, "metrics", ".tsv")


def group_report_path() -> Path:
    """The group HTML report."""
    return Path("group.html")


def group_encoding_path(task: str, space: str, resolution: str | None, desc: str, suffix: str = "statmap",
                        extension: str = ".nii.gz", stat: str | None = None) -> Path:
    """A group-level encoding output: a map averaged over participants (``desc-encoding<model>_stat-<stat>``), the
    participants' union brain mask (``desc-brain``, suffix ``mask``) or the ROI table (``desc-rois``, ``encoding``)."""
    return Path("group") / build_name({"task": task, "space": space, "res": resolution, "desc": sanitize_label(desc),
                                       "stat": stat}, suffix, extension)


def group_figures_dir() -> Path:
    """Folder of the group report's figures."""
    return Path("group") / "figures"


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
