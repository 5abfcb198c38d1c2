"""Find a raw run's fMRIPrep outputs by entities, whatever fMRIPrep version wrote them.

fMRIPrep's names changed over its versions, and the published derivatives of image datasets use several:

- current (>= 20.2): ``sub-X_ses-Y_task-T_run-R_space-S[_res-N]_desc-preproc_bold.nii.gz``,
  ``_desc-brain_mask.nii.gz``, ``_boldref.nii.gz``, ``_desc-confounds_timeseries.tsv``;
- 1.2 to 20.1: ``_desc-confounds_regressors.tsv``;
- legacy (1.0, 1.1; BOLD5000's ds001499): ``_bold_space-T1w_preproc.nii.gz``, ``_bold_space-T1w_brainmask.nii.gz``,
  ``_bold_confounds.tsv`` (with CamelCase confound names, mapped by
  :func:`bids_recon.design.confounds.load_confounds`);
- 20.2.x writes ``run-1`` for a raw ``run-01`` (NOD's ds004496, THINGS' code) and ``space-T1w`` has no ``res-``;
  entities such as ``acq-``, ``rec-``, ``dir-``, ``ce-``, ``echo-`` and ``part-`` may be present or not.

So files are parsed into entities and matched with the raw run's: run numbers as integers, other entities by
equality where both have them (fMRIPrep drops ``echo-`` when it combines echoes, and may drop ``part-``).

fMRIPrep 23.2 to 25.x (checked against fMRIPrep's ``docs/outputs.rst``, ``fmriprep/workflows/bold/base.py`` and
``outputs.py`` and its CI's expected output lists, ``.circleci/ds*_outputs.txt``) add, per run: ``desc-hmc_boldref``,
``desc-coreg_boldref``, ``desc-brain_mask`` without ``space-`` (the boldref grid), the transforms
``from-orig_to-boldref_mode-image_desc-hmc_xfm.txt``, ``from-boldref_to-T1w_mode-image_desc-coreg_xfm.txt`` and
``from-boldref_to-<fmapid>_mode-image[_desc-fmap]_xfm.txt``, surfaces (``hemi-L_space-fsaverage5_bold.func.gii``) and
CIFTI (``space-fsLR_den-91k_bold.dtseries.nii``), which are parsed (``from-``, ``to-``, ``mode-``, ``hemi-``, ``den-``)
and never taken for volumes (their extensions differ). ``--level minimal`` and ``--level resampling`` write only
those fit outputs, no preprocessed BOLD in any space and no confounds (``desc-preproc_bold`` without ``space-``
appears there only as per-echo series of multi-echo runs): :func:`fit_only_runs` and :func:`missing_bold_advice`
say so. Sidecars of 23.2+ name their inputs as BIDS URIs (``"Sources": ["bids:raw:sub-01/func/..._bold.nii.gz",
...]``, ``raw`` being a key of ``DatasetLinks`` in ``dataset_description.json``): :func:`raw_sources`.
Everything here reads file names, and at most a JSON sidecar.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

#: Entities that identify a run in the raw dataset and in fMRIPrep's outputs.
RUN_ENTITIES = ("subject", "session", "task", "acquisition", "ceagent", "direction", "reconstruction", "run",
                "echo", "part")
#: Raw entities fMRIPrep may leave out of its output names.
MAY_DROP = ("echo", "part", "reconstruction")
#: BIDS name keys -> entity names.
KEYS = {"sub": "subject", "ses": "session", "task": "task", "acq": "acquisition", "ce": "ceagent",
        "dir": "direction", "rec": "reconstruction", "run": "run", "echo": "echo", "part": "part",
        "space": "space", "res": "res", "den": "density", "desc": "desc", "label": "label", "cohort": "cohort",
        "hemi": "hemi", "from": "from", "to": "to", "mode": "mode", "fmapid": "fmapid"}
#: Legacy (fMRIPrep 1.0/1.1) suffix words after ``_bold`` -> (suffix, desc) of the current names.
LEGACY_SUFFIXES = {"preproc": ("bold", "preproc"), "brainmask": ("mask", "brain"), "confounds": ("timeseries",
                   "confounds"), "boldref": ("boldref", None)}
_PAIR = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9]+)$")


@dataclass(frozen=True)
class DerivativeFile:
    """One fMRIPrep output, parsed: entities (``run`` as an int), suffix, extension, and whether it is legacy."""

    path: Path
    entities: dict[str, object] = field(hash=False)
    suffix: str
    extension: str
    legacy: bool = False


def parse_entities(name: str) -> tuple[dict[str, object], list[str], str] | None:
    """``sub-01_run-1_space-T1w_desc-preproc_bold.nii.gz`` -> (entities, suffix words, extension), or ``None``."""
    if "." not in name:
        return None
    stem, extension = name[:name.index(".")], name[name.index("."):]
    entities: dict[str, object] = {}
    words: list[str] = []
    for part in stem.split("_"):
        pair = _PAIR.match(part)
        if pair and pair.group(1) in KEYS:
            key = KEYS[pair.group(1)]
            value: object = pair.group(2)
            if key in ("run", "echo") and str(value).isdigit():
                value = int(str(value))
            entities[key] = value
        else:
            words.append(part)
    if not words or "subject" not in entities:
        return None
    return entities, words, extension


def parse_derivative(path: Path) -> DerivativeFile | None:
    """Parse an fMRIPrep file name (current, intermediate or legacy), or ``None`` for other files."""
    parsed = parse_entities(Path(path).name)
    if parsed is None:
        return None
    entities, words, extension = parsed
    if len(words) == 2 and words[0] == "bold" and words[1] in LEGACY_SUFFIXES:
        suffix, desc = LEGACY_SUFFIXES[words[1]]
        if desc:
            entities["desc"] = desc
        return DerivativeFile(Path(path), entities, suffix, extension, legacy=True)
    if len(words) != 1:
        return None
    suffix = words[0]
    if suffix == "regressors" and entities.get("desc") == "confounds":  # fMRIPrep 1.2-20.1
        suffix = "timeseries"
    return DerivativeFile(Path(path), entities, suffix, extension)


def index_subject(fmriprep_dir: Path, subject: str) -> list[DerivativeFile]:
    """Every parsable file in ``fmriprep_dir/sub-<subject>/[ses-*/]func/``, sorted by path."""
    root = Path(fmriprep_dir) / f"sub-{subject}"
    found = []
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        if path.parent.name == "func" and path.is_file():
            parsed = parse_derivative(path)
            if parsed is not None and str(parsed.entities.get("subject")) == subject:
                found.append(parsed)
    return found


def _same(a: object, b: object) -> bool:
    if isinstance(a, int) or isinstance(b, int):
        try:
            return int(str(a)) == int(str(b))
        except ValueError:
            return False
    return str(a) == str(b)


def matches_run(candidate: DerivativeFile, raw: dict[str, object]) -> int | None:
    """How well an output matches a raw run's entities: ``None`` = not this run; larger = closer.

    Entities both have must be equal (run numbers as integers: ``run-1`` is ``run-01``); an entity only the output
    has is another run's; an entity only the raw run has is accepted for those fMRIPrep drops (:data:`MAY_DROP`).
    """
    score = 0
    for key in RUN_ENTITIES:
        have, want = candidate.entities.get(key), raw.get(key)
        if have is None and want is None:
            continue
        if have is None:
            if key not in MAY_DROP:
                return None
            continue
        if want is None or not _same(have, want):
            return None
        score += 1
    return score


def find_output(files: list[DerivativeFile], raw: dict[str, object], suffix: str, desc: str | None,
                extensions: tuple[str, ...], space: str | None = None, resolution: str | None = None
                ) -> list[DerivativeFile]:
    """The outputs of one kind for a raw run, best match first.

    Parameters
    ----------
    files : list of DerivativeFile
        :func:`index_subject`.
    raw : dict
        The raw BOLD's entities (pybids names: ``subject``, ``session``, ``run``...).
    suffix, desc : str
        ``bold``/``preproc``, ``mask``/``brain``, ``timeseries``/``confounds``, ``boldref``/``None``.
    space, resolution : str, optional
        Output space and ``res-`` label; files without ``res-`` are accepted after those with the wanted one (a
        ``space-T1w`` output has none); with ``resolution`` None, files without ``res-`` first, then any.
    """
    ranked = []
    for candidate in files:
        if candidate.suffix != suffix or candidate.extension not in extensions:
            continue
        if desc is not None and candidate.entities.get("desc") != desc:
            continue
        if desc is None and candidate.entities.get("desc") not in (None,):
            continue
        if space is not None and str(candidate.entities.get("space")) != space:
            continue
        res = candidate.entities.get("res")
        if space is not None and resolution is not None and res is not None \
                and str(res).lstrip("0") != str(resolution).lstrip("0"):
            continue
        score = matches_run(candidate, raw)
        if score is None:
            continue
        unwanted_res = (res is not None) if resolution is None else (res is None)
        ranked.append((-score, unwanted_res, candidate.legacy, str(candidate.path), candidate))
    return [entry[-1] for entry in sorted(ranked, key=lambda e: e[:4])]


def spaces_of(files: list[DerivativeFile], suffix: str = "bold", desc: str | None = "preproc",
              raw: dict[str, object] | None = None, extensions: tuple[str, ...] = (".nii.gz", ".nii")
              ) -> list[tuple[str, str | None]]:
    """The ``(space, res)`` pairs of the outputs of one kind (preprocessed BOLD images by default), sorted; of one raw
    run's outputs when ``raw`` is given (its entities), else of every run's. ``res`` is ``None`` where the names
    have no ``res-``; files without ``space-`` are left out."""
    found = set()
    for candidate in files:
        if candidate.suffix != suffix or (desc is not None and candidate.entities.get("desc") != desc):
            continue
        if candidate.extension not in extensions:
            continue
        if raw is not None and matches_run(candidate, raw) is None:
            continue
        space = candidate.entities.get("space")
        if space is None:
            continue
        res = candidate.entities.get("res")
        found.add((str(space), None if res is None else str(res)))
    return sorted(found, key=lambda pair: (pair[0], pair[1] or ""))


def describe_spaces(pairs: list[tuple[str, str | None]]) -> str:
    """``space-T1w (no res-), space-MNI152NLin2009cAsym res-2: select one with --space T1w --res none or --space
    MNI152NLin2009cAsym --res 2``, for messages (``none`` when the list is empty)."""
    if not pairs:
        return "no space- label in any preprocessed BOLD name"
    there = ", ".join(f"space-{s} " + (f"res-{r}" if r else "(no res-)") for s, r in pairs)
    flags = " or ".join(f"--space {s} --res {r or 'none'}" for s, r in pairs)
    return f"{there}: select one with {flags}"


def scan_spaces(fmriprep_dir: Path, suffix: str = "bold", desc: str | None = "preproc") -> list[tuple[str, str | None]]:
    """``(space, res)`` of the outputs of one kind anywhere in an fMRIPrep folder (every participant), from names
    only; empty when the folder does not exist."""
    root = Path(fmriprep_dir)
    if not root.is_dir():
        return []
    files = [parsed for path in sorted(root.glob("sub-*/**/func/*")) if path.is_file()
             and (parsed := parse_derivative(path)) is not None]
    return spaces_of(files, suffix, desc)


# --------------------------------------------------------------------------------------------------------------------
# fMRIPrep 23.2+: processing levels, BIDS-URI Sources, anatomical references

#: ``(suffix, desc)`` of the outputs fMRIPrep's fit stage writes for every run at every ``--level`` (23.2+): the two
#: BOLD references and the head-motion and coregistration transforms.
FIT_OUTPUTS = (("boldref", "hmc"), ("boldref", "coreg"), ("xfm", "hmc"), ("xfm", "coreg"))
#: First fMRIPrep version with ``--level`` (23.2.0, per its ``docs/outputs.rst``).
LEVELS_SINCE = (23, 2)
#: ``space-`` labels fMRIPrep gives the subject's anatomical reference (``--output-spaces T1w``/``anat``).
ANATOMICAL_SPACES = ("T1w", "T2w", "anat")


def _images(candidate: DerivativeFile) -> bool:
    return candidate.extension in (".nii.gz", ".nii")


def fit_only_runs(files: list[DerivativeFile], raw: dict[str, object] | None = None) -> list[DerivativeFile]:
    """The fit outputs (``desc-hmc_boldref``, ``desc-coreg_boldref``, ``desc-hmc``/``desc-coreg`` transforms) of runs
    for which fMRIPrep wrote no preprocessed BOLD volume in any ``space-`` and no confounds: what ``--level minimal``
    and ``--level resampling`` leave (the latter adds, for multi-echo runs, per-echo series without ``space-``).

    Parameters
    ----------
    files : list of DerivativeFile
        :func:`index_subject`.
    raw : dict, optional
        One raw run's entities: only its outputs are considered (every run's when ``None``).

    Returns
    -------
    list of DerivativeFile
        One fit output per such run (its ``desc-coreg_boldref`` where there is one), sorted by path; empty when every
        run considered has a preprocessed BOLD in some space, or confounds, or no fit output at all (fMRIPrep before
        23.2, trimmed copies).
    """
    def key(candidate: DerivativeFile) -> tuple:
        return tuple(sorted((k, str(candidate.entities.get(k))) for k in RUN_ENTITIES if k not in ("echo", "part")))

    fit: dict[tuple, DerivativeFile] = {}
    resampled: set[tuple] = set()
    for candidate in files:
        if raw is not None and matches_run(candidate, raw) is None:
            continue
        desc = candidate.entities.get("desc")
        if (candidate.suffix, desc) in FIT_OUTPUTS:
            if key(candidate) not in fit or (candidate.suffix, desc) == ("boldref", "coreg"):
                fit[key(candidate)] = candidate
        elif (candidate.suffix == "bold" and desc == "preproc" and _images(candidate)
              and candidate.entities.get("space") is not None) or (candidate.suffix, desc) == ("timeseries",
                                                                                                  "confounds"):
            resampled.add(key(candidate))
    return sorted((found for run, found in fit.items() if run not in resampled), key=lambda f: str(f.path))


def fmriprep_version(fmriprep_dir: Path) -> str | None:
    """``GeneratedBy[0].Version`` (or the old top-level ``PipelineDescription.Version``) of an fMRIPrep folder's
    ``dataset_description.json``; ``None`` when it has none or cannot be read."""
    path = Path(fmriprep_dir) / "dataset_description.json"
    try:
        description = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(description, dict):
        return None
    generated = description.get("GeneratedBy")
    if isinstance(generated, list) and generated and isinstance(generated[0], dict):
        version = generated[0].get("Version")
        return None if version is None else str(version)
    pipeline = description.get("PipelineDescription")
    return str(pipeline["Version"]) if isinstance(pipeline, dict) and "Version" in pipeline else None


def _has_levels(version: str | None) -> bool:
    found = re.match(r"^(\d+)\.(\d+)", version or "")
    return found is None or (int(found.group(1)), int(found.group(2))) >= LEVELS_SINCE


def output_spaces_flag(space: str, resolution: str | None) -> str:
    """fMRIPrep's ``--output-spaces`` value for a space and ``res-`` (``MNI152NLin2009cAsym:res-2``, ``T1w``)."""
    return f"--output-spaces {space}" + (f":res-{resolution}" if resolution and space not in ANATOMICAL_SPACES else "")


def missing_bold_advice(files: list[DerivativeFile], raw: dict[str, object], space: str, resolution: str | None,
                        fmriprep_dir: Path) -> str | None:
    """Why a run has no preprocessed BOLD when the reason is fMRIPrep's processing level, with the command to rerun;
    ``None`` otherwise.

    A run whose only outputs are fMRIPrep's fit outputs (:func:`fit_only_runs`) was processed with ``--level minimal``
    or ``--level resampling`` (single-echo runs get the same outputs from both): bids_recon reads preprocessed BOLD
    series and the confounds, which only ``--level full`` (fMRIPrep's default) writes. Resampling the raw BOLD with
    the transforms is fMRIPrep's job (slice timing, per-volume head motion, susceptibility distortion, normalisation
    in one interpolation; see docs/inputs.md).

    Parameters
    ----------
    files : list of DerivativeFile
        :func:`index_subject`.
    raw : dict
        The raw run's entities.
    space, resolution : str
        The space and ``res-`` asked for.
    fmriprep_dir : Path
        The derivatives folder (its ``dataset_description.json`` gives fMRIPrep's version).
    """
    fit = fit_only_runs(files, raw)
    if not fit:
        return None
    version = fmriprep_version(fmriprep_dir)
    echoes = sorted({f.path.name for f in files if f.suffix == "bold" and f.entities.get("desc") == "preproc"
                     and f.entities.get("space") is None and f.entities.get("echo") is not None
                     and _images(f) and matches_run(f, raw) is not None})
    others = fit_only_runs(files)
    level = "--level minimal or --level resampling" if _has_levels(version) else "a subset of its workflow"
    return (f"fMRIPrep{' ' + version if version else ''} wrote only its fit outputs for this run ({fit[0].path.name}"
            f"{' and per-echo series in the BOLD reference grid, ' + echoes[0] if echoes else ''}: BOLD references "
            f"and transforms, no preprocessed BOLD in any space and no confounds), as {level} does"
            + (f"; so did {len(others) - 1} other run(s) of this participant" if len(others) > 1 else "")
            + ". bids_recon reads preprocessed BOLD and confounds and does not resample raw BOLD itself: rerun "
            f"fMRIPrep with --level full {output_spaces_flag(space, resolution)} (with --derivatives "
            f"fit={Path(fmriprep_dir)} it reuses these boldrefs and transforms: only the resampling and the confounds "
            "are computed)")


def raw_sources(sidecar: Path) -> list[str] | None:
    """The raw-dataset files a derivative's sidecar names in ``Sources`` as BIDS URIs ``bids:raw:<path>`` (fMRIPrep
    23.2+; ``raw`` is its ``DatasetLinks`` name for the input dataset), as paths relative to that dataset.

    Returns
    -------
    list of str or None
        ``None`` when the sidecar is absent, unreadable or names no ``bids:raw:`` source (older fMRIPrep, a trimmed
        copy): nothing to check.
    """
    try:
        meta = json.loads(Path(sidecar).read_text())
    except (OSError, ValueError):
        return None
    sources = meta.get("Sources") if isinstance(meta, dict) else None
    if not isinstance(sources, list):
        return None
    found = [s[len("bids:raw:"):] for s in sources if isinstance(s, str) and s.startswith("bids:raw:")]
    return found or None


def sources_name_run(sources: list[str], raw_relative: str, raw: dict[str, object]) -> bool:
    """Whether ``bids:raw:`` sources (:func:`raw_sources`) name the raw run: its own path, or any file of the same run
    (another echo or part of it: fMRIPrep lists every echo it combined)."""
    if raw_relative in sources:
        return True
    for source in sources:
        parsed = parse_entities(Path(source).name)
        if parsed is None or parsed[1] != ["bold"]:
            continue
        pairs = [(parsed[0].get(k), raw.get(k)) for k in RUN_ENTITIES if k not in ("echo", "part")]
        if all((a is None and b is None) or (a is not None and b is not None and _same(a, b)) for a, b in pairs):
            return True
    return False


def anatomical_references(fmriprep_dir: Path, subject: str) -> dict[str | None, list[Path]]:
    """The subject's anatomical references in an fMRIPrep folder (``desc-preproc_T1w`` images without ``space-``,
    in ``sub-<subject>/[ses-*/]anat/``), by their ``ses-`` label (``None``: no ``ses-``).

    One reference (``sub-01_desc-preproc_T1w``, or ``sub-01_ses-01_..._desc-preproc_T1w`` when one session had the
    only T1w) is shared by every session; several references with different ``ses-`` labels come from
    ``--subject-anatomical-reference sessionwise`` (fMRIPrep 25.2) or from runs of fMRIPrep per session: each
    session's ``space-T1w`` is then its own.
    """
    root = Path(fmriprep_dir) / f"sub-{subject}"
    found: dict[str | None, list[Path]] = {}
    for path in sorted(root.rglob("*_desc-preproc_T1w.nii*")) if root.is_dir() else []:
        parsed = parse_entities(path.name)
        if path.parent.name != "anat" or parsed is None or parsed[1] != ["T1w"] or "space" in parsed[0]:
            continue
        session = parsed[0].get("session")
        found.setdefault(None if session is None else str(session), []).append(path)
    return found
