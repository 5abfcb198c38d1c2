"""The interface every beta importer implements, and what they share: the ``--betas`` spec, session selection, the
scale of the stored values, provenance, and reading betas a block of trials at a time."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import nibabel as nib
import numpy as np
import pandas as pd

from bids_recon.design.table import trial_table
from bids_recon.errors import BadDataError, MissingInputError, UsageError
from bids_recon.features.params import StimulusParams
from bids_recon.io import sha256_file

LOGGER = logging.getLogger("bids_recon.glm.importers")

#: Options every importer knows (``--betas FORMAT=PATH:KEY=VALUE,...``).
COMMON_OPTIONS = {
    "scale": "factor from the stored values to the betas' units, e.g. 1/300 for NSD-style int16 (default: the "
             "format's own: 1/300 for NSD's integers, 1 otherwise)",
    "mask": "brain mask (NIfTI) on the betas' grid, instead of the one the format ships",
    "voxels": "brain (every voxel of the brain mask, the default) or rois (only the voxels of the ROIs, as Takagi "
              "& Nishimoto read them: far less to read and store for NSD)",
}
#: ``voxels=`` values.
VOXEL_SETS = ("brain", "rois")
#: Files up to this size get a sha256 in the provenance (bigger ones: size and modification time).
HASH_LIMIT_BYTES = 64 * 2**20
#: Bytes of stored betas read at once (a block of trials over the whole grid).
READ_BLOCK_BYTES = 128 * 2**20
#: Median |value| above which float "percent signal change" betas are taken to be NSD's x300 integers.
SCALED_INTEGER_LIMIT = 30.0


@dataclass(frozen=True)
class BetasSpec:
    """A parsed ``--betas FORMAT=PATH[:KEY=VALUE,...]``."""

    format: str
    path: Path
    options: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        """The spec as the user would type it."""
        opts = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.format}={self.path}" + (f":{opts}" if opts else "")


def split_betas_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``FORMAT=PATH[:KEY=VALUE,...]`` -> ``(format, path, options)`` (no registry lookup).

    Raises
    ------
    UsageError
        Not of that form (exit 64).
    """
    fmt, sep, rest = str(spec).strip().partition("=")
    if not sep or not fmt.strip() or not rest.strip():
        raise UsageError(f"--betas '{spec}' must be FORMAT=PATH[:KEY=VALUE,...], e.g. nsd=/data/NSD")
    path, options = rest, {}
    head, colon, tail = rest.rpartition(":")
    if colon and "=" in tail and "/" not in tail.split("=")[0]:
        path = head
        for item in (t.strip() for t in tail.split(",") if t.strip()):
            key, eq, value = item.partition("=")
            if not eq or not key.strip() or not value.strip():
                raise UsageError(f"--betas {fmt}: option '{item}' must be KEY=VALUE")
            options[key.strip()] = value.strip()
    return fmt.strip(), path.strip(), options


def parse_scale(text: str) -> float:
    """``0.00333``, ``1/300`` -> a positive float (UsageError otherwise)."""
    try:
        num, slash, den = str(text).partition("/")
        value = float(num) / float(den) if slash else float(num)
    except (ValueError, ZeroDivisionError):
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise UsageError(f"--betas scale={text!r} must be a positive number or a fraction such as 1/300")
    return value


# -- what an importer finds ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BetaFile:
    """One file of stored betas: ``n_trials`` volumes, read by the importer's ``kind`` of reader."""

    path: Path
    n_trials: int
    kind: str = "nifti"
    key: str = ""

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class ImportedSession:
    """The trials stored together (one session in every format but ``glmsingle``, where it is one output folder).

    Attributes
    ----------
    label : str
        Session label of its trials (``nsd01``), or ``all`` for a unit spanning several sessions.
    files : list of BetaFile
        The files holding its betas, in trial order (THINGS: one per run).
    trials : pandas.DataFrame
        :data:`~bids_recon.design.table.TRIAL_COLUMNS`, one row per stored trial, ``split`` ``train`` or ``none``
        (modelled but never decoded: catch images).
    metadata : pandas.DataFrame
        Per-trial columns of the format (``trial_type``, the events columns...), rows aligned with ``trials``; a
        ``--test-split COLUMN=VALUE`` rule reads them.
    """

    label: str
    files: list[BetaFile]
    trials: pd.DataFrame
    metadata: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def n_trials(self) -> int:
        return sum(f.n_trials for f in self.files)


@dataclass
class ImportPlan:
    """What an importer found for one participant (headers and design files only: no beta is read).

    Attributes
    ----------
    format, subject : str
        The importer and the participant label (``01``, ``CSI1``).
    source : Path
        The ``--betas`` path.
    sessions : list of ImportedSession
    shape : tuple of int
        The betas' 3D grid.
    affine : ndarray, shape (4, 4)
    scale : float
        Multiplier from the stored values to the betas' units (NSD: 1/300).
    scale_note : str
        Why this scale (for the provenance and the report).
    units : str
        The betas' units after scaling.
    mask_file : Path or None
        The brain mask the format ships (``None``: the voxels non-zero in some trial of the first session).
    design_files : list of Path
        Files that name the trials (``nsd_expdesign.mat``, ``responses.tsv``, ``imgnames.txt``...).
    space, task : str
        Labels of the outputs' ``space-`` and ``task-`` (empty space: the configuration's ``--space``).
    stored_dtype : str
        dtype of the stored values.
    resolution : str or None
        ``res-`` of the outputs (the source's, for bids_recon's own outputs).
    """

    format: str
    subject: str
    source: Path
    sessions: list[ImportedSession]
    shape: tuple[int, int, int]
    affine: np.ndarray
    scale: float = 1.0
    scale_note: str = ""
    units: str = "percent signal change"
    mask_file: Path | None = None
    design_files: list[Path] = field(default_factory=list)
    space: str = ""
    task: str = ""
    stored_dtype: str = "float32"
    resolution: str | None = None

    @property
    def n_trials(self) -> int:
        return sum(s.n_trials for s in self.sessions)

    @property
    def session_labels(self) -> list[str]:
        return [s.label for s in self.sessions]

    def session(self, label: str) -> ImportedSession:
        """The session labelled ``label`` (UsageError when there is none)."""
        for session in self.sessions:
            if session.label == label:
                return session
        raise UsageError(f"sub-{self.subject} has no imported session '{label}' (has: "
                         f"{', '.join(self.session_labels)})")

    def files(self) -> list[Path]:
        """Every file the import reads: betas, design, mask."""
        out = [f.path for s in self.sessions for f in s.files] + list(self.design_files)
        return out + ([self.mask_file] if self.mask_file is not None else [])

    def provenance(self, hash_limit: int = HASH_LIMIT_BYTES) -> dict:
        """Where the betas came from, for the sidecars and the report: format, files (size, mtime, sha256 of the
        small ones), scale, units, sessions and trial counts."""
        return {
            "Format": self.format, "Source": str(self.source), "Scale": self.scale, "ScaleNote": self.scale_note,
            "Units": self.units, "StoredDtype": self.stored_dtype, "Grid": list(self.shape),
            "Sessions": {s.label: s.n_trials for s in self.sessions},
            "Files": [describe_file(p, hash_limit) for p in dict.fromkeys(self.files())],
        }


def describe_file(path: Path, hash_limit: int = HASH_LIMIT_BYTES) -> dict:
    """``{"Path", "Bytes", "Modified", "Sha256"}`` of a file (sha256 only up to ``hash_limit`` bytes)."""
    path = Path(path)
    stat = path.stat()
    out = {"Path": str(path), "Bytes": int(stat.st_size),
           "Modified": datetime.fromtimestamp(stat.st_mtime, tz=UTC).isoformat(timespec="seconds")}
    if stat.st_size <= hash_limit:
        out["Sha256"] = sha256_file(path)
    return out


# -- sessions --------------------------------------------------------------------------------------------------------


_RANGE = re.compile(r"^([A-Za-z]*)(\d+)-([A-Za-z]*)(\d+)$")


def wanted_sessions(wanted: list[str] | None, available: dict[str, int]) -> list[str] | None:
    """The session labels ``--session-label`` names among ``available`` (label -> number), in their order.

    A value may be a label (``nsd01``, ``ses-nsd01``), a number (``1``, ``01``: the session of that number) or a
    range of numbers (``1-37``, ``nsd01-nsd37``). ``None`` when nothing was asked for (every session).

    Raises
    ------
    BadDataError
        A session asked for is not among the imported files (exit 65).
    """
    if not wanted:
        return None
    by_number = {n: label for label, n in available.items()}
    chosen: list[str] = []
    for value in (str(v).removeprefix("ses-") for v in wanted):
        found = _RANGE.match(value)
        if found:
            numbers = list(range(int(found.group(2)), int(found.group(4)) + 1))
        elif value in available:
            chosen.append(value)
            continue
        elif value.isdigit():
            numbers = [int(value)]
        else:
            numbers = [int(m.group(1))] if (m := re.search(r"(\d+)$", value)) else []
            if not numbers or by_number.get(numbers[0]) is None:
                raise BadDataError(f"--session-label {value}: no such imported session (have: "
                                   f"{', '.join(available) or 'none'})")
        missing = [n for n in numbers if n not in by_number]
        if missing:
            raise BadDataError(f"--session-label {value}: session(s) {', '.join(map(str, missing))} have no betas "
                               f"(have: {', '.join(available) or 'none'})")
        chosen += [by_number[n] for n in numbers]
    return list(dict.fromkeys(chosen))


def check_series(found: dict[int, Path], expected_name: str, where: Path, design: Path | None = None) -> None:
    """Refuse a numbered series of session files with a gap (``betas_session03`` absent between 02 and 04).

    Parameters
    ----------
    found : dict
        Session number -> its file.
    expected_name : str
        The name of a missing file, with ``{n}`` for its number (``betas_session{n:02d}.nii.gz``).
    where : Path
        The folder of the series (named in the message).
    design : Path, optional
        The design file that lists the trials of every session (named as well).

    Raises
    ------
    BadDataError
        Naming the missing file, the folder, the files on each side and the design file (exit 65).
    """
    if not found:
        return
    numbers = sorted(found)
    gaps = [n for n in range(numbers[0], numbers[-1] + 1) if n not in found]
    if gaps:
        n = gaps[0]
        before = max(k for k in numbers if k < n)
        after = min(k for k in numbers if k > n)
        raise BadDataError(
            f"session {n} is missing from the series: {expected_name.format(n=n)} is absent between "
            f"{found[before].name} and {found[after].name}"
            + (f" (the design {design.name} lists it)" if design else "")
            + f"; restore it, or choose sessions with --session-label (e.g. {numbers[0]}-{before})", where)


# -- reading ---------------------------------------------------------------------------------------------------------


def fortran_columns(mask: np.ndarray) -> np.ndarray:
    """Positions, in a volume stored in Fortran order (NIfTI; NSD's HDF5 read as (T, Z, Y, X)), of the mask's
    voxels taken in C order (the column order of every beta matrix here)."""
    mask = np.asarray(mask, dtype=bool)
    return np.ravel_multi_index(np.nonzero(mask), mask.shape, order="F").astype(np.int64)


def nifti_header(path: Path) -> tuple[tuple[int, ...], np.ndarray, np.dtype]:
    """``(shape, affine, stored dtype)`` of a NIfTI file, reading the header only."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError("beta file does not exist", path)
    try:
        img = nib.load(path)
        return tuple(int(s) for s in img.shape), np.asarray(img.affine), np.dtype(img.header.get_data_dtype())
    except Exception as exc:  # nibabel raises several types
        raise BadDataError(f"cannot read NIfTI header ({exc})", path) from exc


def iter_nifti_blocks(path: Path, block_bytes: int = READ_BLOCK_BYTES) -> Iterator[tuple[int, np.ndarray]]:
    """Stream a 4D NIfTI's volumes in blocks: ``(first volume, array (k, n_voxels_of_grid))`` in the stored dtype
    (``scl_slope``/``scl_inter`` applied when set), each volume flattened in Fortran (file) order.

    The file is read once, front to back (gzip streams cannot seek back cheaply), so memory stays near
    ``block_bytes`` whatever the number of volumes.

    Raises
    ------
    BadDataError
        A truncated file (the message names it and the volume where it ends).
    """
    from nibabel.openers import ImageOpener

    path = Path(path)
    img = nib.load(path)
    proxy = img.dataobj  # nibabel's reading of the header: data offset, dtype, scaling, order
    shape = img.shape
    n_grid = int(np.prod(shape[:3]))
    n_volumes = int(shape[3]) if len(shape) == 4 else 1
    dtype = np.dtype(proxy.dtype)
    slope, inter = float(proxy.slope), float(proxy.inter)
    scaled = slope != 1.0 or inter != 0.0
    if getattr(proxy, "order", "F") != "F":
        raise BadDataError("not a Fortran-ordered NIfTI (every NIfTI file is): cannot stream it", path)
    per_volume = n_grid * dtype.itemsize
    block = max(1, int(block_bytes) // max(1, per_volume))
    try:
        with ImageOpener(path) as handle:
            handle.seek(int(proxy.offset))
            for start in range(0, n_volumes, block):
                k = min(block, n_volumes - start)
                raw = handle.read(k * per_volume)
                if len(raw) < k * per_volume:
                    raise BadDataError(f"the file ends inside volume {start + len(raw) // per_volume + 1} of "
                                       f"{n_volumes} (truncated)", path)
                values = np.frombuffer(raw, dtype=dtype).reshape(k, n_grid)
                yield start, (values * slope + inter).astype(np.float32) if scaled else values
    except BadDataError:
        raise
    except (OSError, EOFError, ValueError) as exc:  # a corrupt gzip stream
        raise BadDataError(f"cannot read the betas ({exc})", path) from exc


def write_rows(out: np.ndarray, row: int, values: np.ndarray, scale: float, where: Path) -> int:
    """Write ``values * scale`` (float32) at ``out[row:]``; non-finite values become 0. Returns the rows written."""
    block = np.asarray(values, dtype=np.float32)
    if scale != 1.0:
        block = block * np.float32(scale)
    bad = ~np.isfinite(block)
    if bad.any():
        block = np.where(bad, np.float32(0), block)
    out[row:row + len(block)] = block
    return len(block)


def magnitude(values: np.ndarray) -> float:
    """Median of |value| over the finite, non-zero values (0 when there are none)."""
    values = np.abs(np.asarray(values, dtype=np.float64).ravel())
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.median(values)) if len(values) else 0.0


# -- trial tables ----------------------------------------------------------------------------------------------------


def session_trials(subject: str, session: str, runs: list[str] | np.ndarray, stim_ids: list[str],
                   stim_files: list[str] | None = None, decode: np.ndarray | None = None,
                   onsets: np.ndarray | None = None, durations: np.ndarray | None = None) -> pd.DataFrame:
    """A trial table of one imported session (:func:`bids_recon.design.table.trial_table`); ``trial_index`` counts
    within each run.

    ``onset`` and ``duration`` are NaN when the format does not keep them (nothing after the GLM reads them).
    """
    return trial_table(subject, session, None, runs, stim_ids, stim_files, decode, onsets, durations)


# -- the interface ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportContext:
    """What an importer may need besides its files: the raw dataset (events that name GLMsingle's trials), the
    stimulus settings (ids the resolver understands), the task."""

    bids_dir: Path | None = None
    stimuli: StimulusParams = field(default_factory=StimulusParams)
    task: str | list[str] | None = None


class BetaImporter:
    """Published single-trial betas of one format (subclass it, then decorate with
    :func:`bids_recon.glm.importers.register`).

    An importer answers: which participants the source holds (:meth:`subjects`), what it holds for one
    (:meth:`plan`: sessions, files, the trial table, grid, scale; headers and design files only, every
    inconsistency refused with :class:`~bids_recon.errors.BadDataError` naming the files), the brain mask on the
    betas' grid (:meth:`brain_mask`), and the betas of one session inside a mask, read a block of trials at a time
    into a ``.npy`` memory map (:meth:`read_session`).

    Parameters
    ----------
    path : Path
        The ``--betas`` path (a folder).
    options : dict
        The spec's ``KEY=VALUE`` options (:attr:`options` and :data:`COMMON_OPTIONS`).
    context : ImportContext, optional
    """

    #: ``--betas FORMAT=`` name
    format: ClassVar[str] = ""
    #: one sentence for the documentation and the methods text
    summary: ClassVar[str] = ""
    #: the format's own ``KEY=VALUE`` options: name -> what it does
    options: ClassVar[dict[str, str]] = {}
    #: ``space-`` label of the outputs (empty: the configuration's ``--space``)
    space: ClassVar[str] = ""
    #: ``task-`` label of the outputs when the configuration names none
    task: ClassVar[str] = "import"
    #: scale of integer-stored betas (NSD: 1/300); ``None``: the format stores floats, integers are refused
    integer_scale: ClassVar[float | None] = None
    #: units of the betas after scaling
    units: ClassVar[str] = "percent signal change"

    def __init__(self, path: Path | str, options: dict[str, str] | None = None,
                 context: ImportContext | None = None) -> None:
        self.path = Path(path).expanduser()
        self.opts = dict(options or {})
        self.context = context or ImportContext()
        allowed = {**COMMON_OPTIONS, **self.options}
        unknown = sorted(set(self.opts) - set(allowed))
        if unknown:
            raise UsageError(f"--betas {self.format}: unknown option '{unknown[0]}' (options of {self.format}: "
                             f"{', '.join(allowed)})")
        if self.opts.get("voxels", "brain") not in VOXEL_SETS:
            raise UsageError(f"--betas {self.format}: voxels={self.opts['voxels']!r} must be one of "
                             f"{', '.join(VOXEL_SETS)}")
        if "scale" in self.opts:
            parse_scale(self.opts["scale"])

    @property
    def voxels(self) -> str:
        """``brain`` or ``rois``: which voxels are read."""
        return self.opts.get("voxels", "brain")

    # -- what subclasses implement ----------------------------------------------------------------------------------

    def subjects(self) -> list[str]:
        """Participant labels the source holds (BIDS labels: ``01``, ``CSI1``)."""
        raise NotImplementedError

    def plan(self, subject: str, sessions: list[str] | None = None) -> ImportPlan:
        """What the source holds for ``subject`` (``sessions``: ``--session-label`` values, all when ``None``).

        Raises
        ------
        MissingInputError
            A file the format needs is absent (exit 66).
        BadDataError
            Trials in the design that the betas lack or the reverse, grids that differ, a session missing from the
            series, integers where the format stores floats (exit 65): each naming both files.
        """
        raise NotImplementedError

    def read_file(self, plan: ImportPlan, beta_file: BetaFile, columns: np.ndarray, mask: np.ndarray,
                  block_bytes: int) -> Iterator[np.ndarray]:
        """Blocks ``(k, n_voxels)`` of one file's trials inside ``mask`` (stored values, before scaling).

        The default reads 4D NIfTI files (``kind`` ``nifti``); ``columns`` are :func:`fortran_columns` of ``mask``.
        """
        if beta_file.kind != "nifti":
            raise NotImplementedError(f"{self.format} cannot read '{beta_file.kind}' files")
        for _, block in iter_nifti_blocks(beta_file.path, block_bytes):
            yield block[:, columns]

    # -- shared ------------------------------------------------------------------------------------------------------

    def mask_option(self) -> Path | None:
        """The ``mask=`` option as a path (MissingInputError when it does not exist)."""
        if "mask" not in self.opts:
            return None
        path = Path(self.opts["mask"]).expanduser()
        if not path.is_file():
            raise MissingInputError(f"brain mask given with --betas {self.format}:mask= does not exist", path)
        return path

    def brain_mask(self, plan: ImportPlan) -> nib.Nifti1Image:
        """The brain mask on the betas' grid: the format's mask file (or ``mask=``), else the voxels whose betas are
        finite and non-zero in at least one trial of the first session (a voxel is outside only when it is 0, or not
        finite, in every one of them: one trial's beta can be exactly 0 inside the brain). Either way the voxels
        left out are counted and logged.

        Raises
        ------
        BadDataError
            The mask's grid differs from the betas' (naming both files), or it is empty.
        """
        session = plan.sessions[0]
        first = session.files[0]
        everything = np.ones(plan.shape, dtype=bool)
        n_grid = int(everything.sum())
        if plan.mask_file is not None:
            img = nib.load(plan.mask_file)
            if tuple(img.shape[:3]) != tuple(plan.shape) or not np.allclose(img.affine, plan.affine, atol=1e-3):
                raise BadDataError(
                    f"brain mask grid {'x'.join(map(str, img.shape[:3]))} differs from the betas' grid "
                    f"{'x'.join(map(str, plan.shape))} of {first.name} (shape or affine)", plan.mask_file)
            data = np.asarray(img.dataobj).reshape(img.shape[:3]) > 0
            LOGGER.info("sub-%s: brain mask %s keeps %d of the %d voxels of the betas' grid; the %d outside it are "
                        "not read", plan.subject, plan.mask_file.name, int(data.sum()), n_grid,
                        n_grid - int(data.sum()))
        else:
            data = np.zeros(plan.shape, dtype=bool)
            n_trials = 0
            for beta_file in session.files:
                for block in self.read_file(plan, beta_file, fortran_columns(everything), everything,
                                            READ_BLOCK_BYTES):
                    values = np.asarray(block, dtype=np.float32)
                    data |= (np.isfinite(values) & (values != 0)).any(axis=0).reshape(plan.shape)
                    n_trials += len(values)
            LOGGER.info("sub-%s: no brain mask file: %d of the %d voxels of the betas' grid are non-zero in at least "
                        "one of the %d trials of session %s and are read; the %d that are 0 (or not finite) in every "
                        "one of them are left out", plan.subject, int(data.sum()), n_grid, n_trials, session.label,
                        n_grid - int(data.sum()))
        if not data.any():
            raise BadDataError("the brain mask has no voxel", plan.mask_file or first.path)
        return nib.Nifti1Image(data.astype(np.uint8), plan.affine)

    def decide_scale(self, dtype: np.dtype, sample: np.ndarray, source: Path) -> tuple[float, str]:
        """The factor from stored values to the betas' units, and why.

        Integers in a format that stores floats are refused (unless ``scale=`` says what they are), floats whose
        median |value| is above :data:`SCALED_INTEGER_LIMIT` in NSD's format are divided by 300 with a warning.

        Raises
        ------
        BadDataError
            Integer betas in a float format, naming the file, the dtype and the median |value| (exit 65).
        """
        level = magnitude(sample)
        if "scale" in self.opts:
            value = parse_scale(self.opts["scale"])
            return value, f"scale={self.opts['scale']} given (stored {dtype}, median |value| {level:.4g})"
        if np.issubdtype(dtype, np.integer):
            if self.integer_scale is None:
                raise BadDataError(
                    f"betas stored as {dtype} (median |value| {level:.4g}) where the {self.format} format stores "
                    f"float {self.units}: integers this large look like NSD's betas x 300 (median "
                    f"{level / 300:.3g} % if so); give --betas {self.format}=PATH:scale=1/300 (or the right factor) "
                    "if they are", source)
            return self.integer_scale, (f"stored as {dtype}: multiplied by {self.integer_scale:.6g} "
                                        f"(median |value| {level:.4g} -> {level * self.integer_scale:.3g})")
        if self.integer_scale is not None and level > SCALED_INTEGER_LIMIT:
            LOGGER.warning("%s: float betas with median |value| %.4g: taken to be %s's integers x %g stored as float, "
                           "so multiplied by %.6g (give scale=1 if they are already in %s)", source, level,
                           self.format, 1 / self.integer_scale, self.integer_scale, self.units)
            return self.integer_scale, (f"stored as {dtype} with median |value| {level:.4g}: NSD's integers saved "
                                        f"as float, multiplied by {self.integer_scale:.6g}")
        if level > SCALED_INTEGER_LIMIT:
            LOGGER.warning("%s: betas with median |value| %.4g are not plausible %s (x 300 integers saved as float?): "
                           "used as they are; give scale= if they are scaled", source, level, self.units)
        return 1.0, f"stored as {dtype} (median |value| {level:.4g}): used as they are"

    def read_session(self, plan: ImportPlan, session: ImportedSession, mask: np.ndarray, out_file: Path,
                     block_bytes: int = READ_BLOCK_BYTES) -> np.ndarray:
        """The betas of ``session`` inside ``mask``, scaled, as a ``(n_trials, n_voxels)`` float32 ``.npy``
        written a block of trials at a time; returns it as a read-only memory map.

        Parameters
        ----------
        mask : ndarray of bool, shape (X, Y, Z)
            The voxels to keep (columns in C order, as every beta matrix here).
        out_file : Path
            Where the ``.npy`` goes (written atomically).
        """
        from bids_recon.io import atomic_write

        mask = np.asarray(mask, dtype=bool)
        if mask.shape != tuple(plan.shape):
            raise BadDataError(f"mask grid {mask.shape} differs from the betas' grid {plan.shape}",
                               session.files[0].path)
        columns = fortran_columns(mask)
        shape = (session.n_trials, int(mask.sum()))

        def write(tmp: Path) -> None:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
            row = 0
            for beta_file in session.files:
                start = row
                for block in self.read_file(plan, beta_file, columns, mask, block_bytes):
                    row += write_rows(out, row, block, plan.scale, beta_file.path)
                if row - start != beta_file.n_trials:
                    raise BadDataError(f"holds {row - start} trials where {beta_file.n_trials} were expected",
                                       beta_file.path)
            out.flush()
            del out

        atomic_write(Path(out_file), write)
        return np.load(out_file, mmap_mode="r")


def find_one(folder: Path, patterns: tuple[str, ...]) -> Path | None:
    """The first file under ``folder`` (recursively, sorted) matching one of ``patterns``, or ``None``."""
    for pattern in patterns:
        found = sorted(Path(folder).rglob(pattern)) if Path(folder).is_dir() else []
        if found:
            return found[0]
    return None


__all__ = ["COMMON_OPTIONS", "BetaFile", "BetaImporter", "BetasSpec", "ImportContext", "ImportPlan",
           "ImportedSession", "check_series", "describe_file", "fortran_columns", "iter_nifti_blocks", "magnitude",
           "nifti_header", "parse_scale", "session_trials", "split_betas_spec", "wanted_sessions"]
