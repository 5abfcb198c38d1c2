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
Everything here reads file names only.
"""

from __future__ import annotations

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
        "space": "space", "res": "res", "den": "density", "desc": "desc", "label": "label", "cohort": "cohort"}
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
