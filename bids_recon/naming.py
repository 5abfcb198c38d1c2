"""Output names of the bids_recon derivatives dataset: the one place that decides what every output file is called.

:data:`OUTPUTS` is the table of per-participant output kinds (folder, suffix, extension, entities);
:class:`SubjectOutputs` names one participant's files, :func:`find_outputs` finds them again in a dataset, and the
``group_*`` functions name the group level's. Names follow the BIDS derivatives specification where it has one;
files it does not name yet are listed in ``.bidsignore`` (:data:`bids_recon.bids.derivatives.BIDSIGNORE`, with the
reason for each). :func:`output_kind_of` parses a written name back through the table, and :data:`SIDECAR_KEYS` with
:func:`missing_sidecar_keys` says what each kind's JSON sidecar must hold. Sidecars name their inputs as BIDS URIs
(:func:`bids_uri`; ``bids::<path>`` for a file of this dataset, :func:`own_uri`), resolved by :func:`resolve_bids_uri`.

A floor-level module (it imports nothing of bids_recon but the errors), so that the importers of bids_recon's own
betas and the simulator read and write these names without the BIDS layer; :mod:`bids_recon.bids.derivatives`
writes the dataset-level files (``dataset_description.json``, ``.bidsignore``, the incomplete markers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

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


#: The dataset name of a BIDS URI that points into the dataset it is written in (``bids::sub-01/...``); never a key of
#: ``DatasetLinks``.
OWN_DATASET = ""


def bids_uri(dataset: str, relative_path: Path | str) -> str:
    """A BIDS URI naming a file of a dataset: ``bids:<dataset>:<path>`` (``bids::<path>`` for :data:`OWN_DATASET`).

    Parameters
    ----------
    dataset : str
        A name of ``DatasetLinks`` in ``dataset_description.json`` (``raw``, ``fmriprep``...), or ``""`` for the
        dataset the URI is written in.
    relative_path : Path or str
        The file's path relative to that dataset's root (no leading ``/``).
    """
    relative = Path(relative_path).as_posix()
    if relative.startswith("/"):
        raise ValueError(f"a BIDS URI's path is relative to its dataset's root, not {relative!r}")
    return f"bids:{dataset}:{relative}"


def own_uri(relative_path: Path | str) -> str:
    """``bids::<path>``: a file of the bids_recon derivatives dataset itself (e.g. the betas a decoder read)."""
    return bids_uri(OWN_DATASET, relative_path)


def to_bids_uri(location: Path | str, datasets: dict[str, Path | str], own_root: Path | str | None = None) -> str:
    """A file as a BIDS URI: ``bids::`` when it lies in ``own_root``, else ``bids:<name>:`` of the deepest dataset of
    ``datasets`` that holds it; a file outside all of them stays an absolute ``file://`` URI.

    ``location`` may already be a BIDS URI (returned as is), a ``file://`` URI or a path (absolute, or relative to
    the current folder).
    """
    text = str(location)
    if text.startswith("bids:"):
        return text
    path = Path(unquote(urlparse(text).path) if text.startswith("file://") else text).absolute()
    roots = {**({OWN_DATASET: own_root} if own_root is not None else {}), **datasets}
    for name, root in sorted(roots.items(), key=lambda item: -len(Path(item[1]).absolute().parts)):
        try:
            relative = path.resolve().relative_to(Path(root).absolute().resolve())
        except ValueError:
            continue
        return bids_uri(name, relative)
    return path.as_uri()


def resolve_bids_uri(uri: str, own_root: Path | str, links: dict[str, str]) -> Path:
    """The local file a BIDS URI names (``bids::`` in ``own_root``; other names through ``DatasetLinks``).

    Raises
    ------
    ValueError
        For a string that is not a BIDS URI, a dataset name not in ``links``, or a link that is not a local
        ``file://`` URI or a path relative to ``own_root``.
    """
    scheme, sep, rest = uri.partition(":")
    name, sep2, relative = rest.partition(":")
    if scheme != "bids" or not sep or not sep2 or not relative or relative.startswith("/"):
        raise ValueError(f"not a BIDS URI (bids:[<dataset>]:<relative path>): {uri!r}")
    if name == OWN_DATASET:
        return Path(own_root) / relative
    if name not in links:
        raise ValueError(f"{uri!r}: dataset {name!r} is not in DatasetLinks ({sorted(links)})")
    root = link_folder(links[name], own_root)
    if root is None:
        raise ValueError(f"{uri!r}: dataset {name!r} links to {links[name]!r}, not a local folder")
    return root / relative


def link_folder(link: str, own_root: Path | str) -> Path | None:
    """The local folder a ``DatasetLinks`` value names: a ``file://`` URI, or a path relative to ``own_root`` (BIDS:
    a link without a scheme is relative to the dataset's root); None for a remote one (``doi:``, ``https://``)."""
    parsed = urlparse(link)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # a scheme, not a Windows drive letter
        return None
    return Path(own_root) / link


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
    extras : tuple of str
        Other extensions written beside the file under the same name (the JSON sidecar is in :data:`SIDECAR_KEYS`).
    """

    datatype: str
    suffix: str
    extension: str
    entities: tuple[str, ...]
    fixed: tuple[tuple[str, str], ...] = ()
    extras: tuple[str, ...] = ()


_GRID = ("sub", "ses", "task", "run", "space", "res")
#: Every per-participant output kind: the one table that names outputs.
OUTPUTS: dict[str, OutputKind] = {
    "betas": OutputKind("func", "statmap", ".nii.gz", _GRID, (("desc", "singletrial"), ("stat", "effect")), (".tsv",)),
    "design": OutputKind("func", "design", ".tsv", _GRID, (("desc", "singletrial"),)),
    "stat_map": OutputKind("func", "statmap", ".nii.gz", ("sub", "ses", "task", "space", "res", "stat"),
                           (("desc", "singletrial"),)),
    "trials": OutputKind("func", "trials", ".tsv", ("sub", "task"), (("desc", "singletrial"),)),
    "roi_mask": OutputKind("func", "mask", ".nii.gz", ("sub", "task", "space", "res", "label", "desc")),
    "brain_mask": OutputKind("func", "mask", ".nii.gz", ("sub", "task", "space", "res"), (("desc", "brain"),)),
    "decoder": OutputKind("decoding", "decoder", ".npz", ("sub", "task", "label", "desc")),
    "features": OutputKind("decoding", "features", ".npz", ("sub", "task", "label", "desc")),
    "basis": OutputKind("decoding", "basis", ".npz", ("sub", "task", "label", "desc")),
    "recon_image": OutputKind("recon", "recon", ".png", ("sub", "task", "stim", "desc")),
    "recon_index": OutputKind("recon", "reconstructions", ".tsv", ("sub", "task", "desc")),
    "metrics": OutputKind("recon", "metrics", ".tsv", ("sub", "task", "desc")),
    "encoding_map": OutputKind("func", "statmap", ".nii.gz", ("sub", "task", "space", "res", "desc", "stat")),
    "encoding_summary": OutputKind("decoding", "encoding", ".tsv", ("sub", "task"), (("desc", "rois"),)),
}
#: The keys every output kind's JSON sidecar must have (no entry: the kind has no sidecar). ``Sources`` are BIDS URIs
#: of the files it was made from (see :func:`to_bids_uri`); images with ``res-`` need ``Resolution`` (BIDS, common
#: derivatives), the betas their ``Units``.
_DESCRIBED = ("Description", "Sources")
SIDECAR_KEYS: dict[str, tuple[str, ...]] = {
    "betas": (*_DESCRIBED, "Units", "RepetitionTime"),
    "design": _DESCRIBED,
    "stat_map": _DESCRIBED,
    "trials": _DESCRIBED,
    "roi_mask": (*_DESCRIBED, "Type"),
    "brain_mask": (*_DESCRIBED, "Type"),
    "decoder": _DESCRIBED,
    "features": _DESCRIBED,
    "basis": _DESCRIBED,
    "recon_index": _DESCRIBED,
    "metrics": _DESCRIBED,
    "encoding_map": _DESCRIBED,
    "encoding_summary": _DESCRIBED,
}


def missing_sidecar_keys(kind: str, entities: dict[str, str], sidecar: dict[str, Any]) -> list[str]:
    """The keys :data:`SIDECAR_KEYS` requires of a ``kind`` output's sidecar that ``sidecar`` lacks or leaves empty
    (``Resolution`` too for an image with ``res-``)."""
    wanted = list(SIDECAR_KEYS.get(kind, ()))
    if "res" in entities and OUTPUTS[kind].extension.startswith(".nii"):
        wanted.append("Resolution")
    return [key for key in wanted if sidecar.get(key) in (None, "", [], {})]


#: What the fixed ``desc-`` labels of :data:`OUTPUTS` mean (rows of ``descriptions.tsv``; the other labels are
#: described by the sidecars of the files that carry them).
DESC_LABELS: dict[str, str] = {
    "singletrial": "single-trial GLM: one beta per trial (the betas, their design matrices, the trial table and the "
                   "GLM's maps)",
    "brain": "brain mask: the voxels inside every run's brain mask (group: inside any participant's)",
    "rois": "encoding models summarised per ROI and model",
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


def output_kind_of(relative_path: Path | str) -> tuple[str, dict[str, str]] | None:
    """The output kind a participant-level file belongs to, with its entities, or None when no kind of
    :data:`OUTPUTS` names it: its folder, suffix, extension (the kind's, an extra or its ``.json`` sidecar) and fixed
    entities match, and building the name back from its entities gives the same path. Where two kinds fit (a
    ``desc-singletrial`` statmap is also an encoding map by shape), the one with more fixed entities wins.

    Parameters
    ----------
    relative_path : Path or str
        Path relative to the root of the derivatives dataset (``sub-01/func/...``).
    """
    rel = Path(relative_path)
    entities, suffix, extension = parse_name(rel)
    matches = []
    for kind, spec in OUTPUTS.items():
        sidecar = ".json" if kind in SIDECAR_KEYS else None
        if suffix != spec.suffix or extension not in (spec.extension, *spec.extras, sidecar):
            continue
        if rel.parent.name != spec.datatype or any(entities.get(k) != v for k, v in spec.fixed):
            continue
        carried = {k: v for k, v in entities.items() if k not in dict(spec.fixed)}
        try:
            if output_path(kind, carried, extension) == rel:
                matches.append((len(spec.fixed), kind))
        except (ValueError, KeyError):
            continue
    if not matches:
        return None
    return max(matches)[1], entities


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


__all__ = ["DESC_LABELS", "ENTITY_ORDER", "EXTENSIONS", "OUTPUTS", "OWN_DATASET", "OutputKind", "SIDECAR_KEYS",
           "SubjectOutputs", "bids_uri", "build_name", "find_outputs", "group_encoding_path", "group_figures_dir",
           "group_metrics_path", "group_report_path", "link_folder", "missing_sidecar_keys", "model_label",
           "output_entities", "output_kind_of", "output_path", "own_uri", "parse_name", "resolve_bids_uri",
           "sanitize_label", "sidecar_path", "split_extension", "to_bids_uri"]
