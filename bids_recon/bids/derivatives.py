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
        raise ValueError(f"cannot make a BIDS label from {value!r}")
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


@dataclass(frozen=True)
class SubjectOutputs:
    """Names of one participant's outputs, relative to the output dataset's root."""

    subject: str
    task: str
    space: str
    resolution: str | None = None

    @property
    def root(self) -> Path:
        return Path(f"sub-{self.subject}")

    def betas(self, session: str | None, run: str | int | None, extension: str = ".nii.gz") -> Path:
        """Single-trial betas of one run: 4D statmap (one volume per trial), TSV of volumes, JSON."""
        folder = self.root / (f"ses-{session}" if session else "") / "func"
        name = build_name(
            {"sub": self.subject, "ses": session, "task": self.task, "run": run, "space": self.space,
             "res": self.resolution, "desc": "singletrial", "stat": "effect"},
            "statmap", extension,
        )
        return folder / name

    def stat_map(self, session: str | None, stat: str, extension: str = ".nii.gz") -> Path:
        """A map of the beta stage (per session, or per participant when ``session`` is None)."""
        folder = self.root / (f"ses-{session}" if session else "") / "func"
        name = build_name(
            {"sub": self.subject, "ses": session, "task": self.task, "space": self.space, "res": self.resolution,
             "desc": "singletrial", "stat": sanitize_label(stat)},
            "statmap", extension,
        )
        return folder / name

    def design(self, session: str | None, run: str | int | None) -> Path:
        """Design matrix of one run's single-trial GLM (volumes x regressors)."""
        return self.betas(session, run, ".tsv").with_name(
            self.betas(session, run, ".tsv").name.replace("_stat-effect_statmap", "_design"))

    def trials(self) -> Path:
        """The participant's trial table (all runs, with repeat and train/test split), rows = beta order."""
        name = build_name({"sub": self.subject, "task": self.task, "desc": "singletrial"}, "trials", ".tsv")
        return self.root / "func" / name

    def roi_mask(self, label: str, atlas: str | None, extension: str = ".nii.gz") -> Path:
        """ROI mask in the BOLD grid; the atlas goes in ``desc-`` (the schema has no ``atlas-`` here)."""
        name = build_name(
            {"sub": self.subject, "task": self.task, "space": self.space, "res": self.resolution,
             "label": sanitize_label(label), "desc": sanitize_label(atlas) if atlas else None},
            "mask", extension,
        )
        return self.root / "func" / name

    def brain_mask(self, extension: str = ".nii.gz") -> Path:
        """Brain mask shared by all runs (intersection of the runs' masks)."""
        name = build_name(
            {"sub": self.subject, "task": self.task, "space": self.space, "res": self.resolution, "desc": "brain"},
            "mask", extension,
        )
        return self.root / "func" / name

    def decoder(self, roi: str, target: str, extension: str = ".npz") -> Path:
        """Fitted decoder (weights, alphas, CV scores, voxel indices, scaling) and its sidecar."""
        name = build_name(
            {"sub": self.subject, "task": self.task, "label": sanitize_label(roi), "desc": sanitize_label(target)},
            "decoder", extension,
        )
        return self.root / "decoding" / name

    def features(self, roi: str, target: str, extension: str = ".npz") -> Path:
        """Decoded features of the test stimuli (and the true ones, for evaluation)."""
        name = build_name(
            {"sub": self.subject, "task": self.task, "label": sanitize_label(roi), "desc": sanitize_label(target)},
            "features", extension,
        )
        return self.root / "decoding" / name

    def recon_image(self, stimulus: str, generator: str, extension: str = ".png") -> Path:
        """One reconstructed image."""
        name = build_name(
            {"sub": self.subject, "task": self.task, "stim": sanitize_label(Path(stimulus).stem),
             "desc": sanitize_label(generator)},
            "recon", extension,
        )
        return self.root / "recon" / name

    def recon_variant_image(self, stimulus: str, variant: str, sample: int, extension: str = ".png") -> Path:
        """One image of the diffusion generator: ``variant`` (z, c, zc) and 0-based ``sample`` in ``desc-``.

        E.g. ``sub-01_task-images_stim-stim0001_desc-diffusionzcsample1_recon.png`` (z has one sample: no suffix).
        """
        desc = f"diffusion{variant}" + ("" if variant == "z" else f"sample{int(sample) + 1}")
        return self.recon_image(stimulus, desc, extension)

    def recon_index(self, generator: str) -> Path:
        """TSV index of the reconstructions: stimulus, trials, file, and each stimulus's metrics."""
        name = build_name({"sub": self.subject, "task": self.task, "desc": sanitize_label(generator)},
                          "reconstructions", ".tsv")
        return self.root / "recon" / name

    def metrics(self, generator: str, extension: str = ".tsv") -> Path:
        """Evaluation metrics (one row per metric)."""
        name = build_name({"sub": self.subject, "task": self.task, "desc": sanitize_label(generator)},
                          "metrics", extension)
        return self.root / "recon" / name

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


def write_bidsignore(output_dir: Path) -> Path:
    """Write ``.bidsignore`` listing the outputs the BIDS specification does not name yet."""
    return atomic_write_text(Path(output_dir) / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")
