"""Output names of the bids_recon derivatives dataset: the one place that decides what every output file is called.

:data:`OUTPUTS` is the table of per-participant output kinds (folder, suffix, extension, entities);
:class:`SubjectOutputs` names one participant's files, :func:`find_outputs` finds them again in a dataset, and the
``group_*`` functions name the group level's. Names follow the BIDS derivatives specification where it has one;
files it does not name yet are listed in ``.bidsignore`` (:data:`bids_recon.bids.derivatives.BIDSIGNORE`).

A floor-level module (it imports nothing of bids_recon but the errors), so that the importers of bids_recon's own
betas and the simulator read and write these names without the BIDS layer; :mod:`bids_recon.bids.derivatives`
writes the dataset-level files (``dataset_description.json``, ``.bidsignore``, the incomplete markers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Order of entities in file names (BIDS specification, entity table).
ENTITY_ORDER = ("sub", "ses", "task", "run", "space", "res", "label", "stim", "desc", "stat")


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


def model_label(model: str) -> str:
    """The BIDS label of an encoding model in output names: ``"z"`` -> ``"z"``, ``"z+c"`` -> ``"zandc"``."""
    return model.replace("+", "and")


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

    def recon_index(self, generator: str) -> Path:
        """TSV index of the reconstructions: stimulus, trials, file, and each stimulus's metrics."""
        return self.path("recon_index", desc=generator)

    def metrics(self, generator: str, extension: str = ".tsv") -> Path:
        """Evaluation metrics (one row per metric)."""
        return self.path("metrics", extension, desc=generator)

    def encoding_map(self, model: str, stat: str, extension: str = ".nii.gz") -> Path:
        """A voxelwise encoding map: ``desc-encoding<model label>`` (``z``, ``c``, ``zandc``...), ``stat-`` r, p, q,
        uniquevariance or sharedvariance."""
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


__all__ = ["ENTITY_ORDER", "EXTENSIONS", "OUTPUTS", "OutputKind", "SubjectOutputs", "build_name", "find_outputs",
           "group_encoding_path", "group_figures_dir", "group_metrics_path", "group_report_path", "model_label",
           "output_entities", "output_path", "parse_name", "sanitize_label", "sidecar_path", "split_extension"]
