"""``nsd``: the Natural Scenes Dataset's own single-trial betas, as NSD distributes them.

``--betas nsd=ROOT`` where ``ROOT`` is NSD's download root (``nsddata/``, ``nsddata_betas/``, ``nsddata_stimuli/``
side by side; the raw dataset's folder or any folder under the root works too):

- betas: ``nsddata_betas/ppdata/subjNN/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_sessionNN.nii.gz`` (X x Y x Z x
  750, int16 = percent signal change x 300, so divided by 300) or ``betas_sessionNN.hdf5`` (dataset ``betas``, the
  same integers with the axes reversed: 750 x Z x Y x X; its grid's affine is the brain mask's);
- trials: ``nsddata/ppdata/subjNN/behav/responses.tsv`` (``SESSION``, ``RUN``, ``TRIAL``, ``73KID``, 1-based), as
  Takagi & Nishimoto read them, else ``nsddata/experiments/nsd/nsd_expdesign.mat`` (trial ``t`` of the subject shows
  73k image ``subjectim[s, masterordering[t] - 1]``); when both are there they must agree. The trials of each
  session are read from the data, never assumed: the responses' ``SESSION`` and ``RUN``; else the design's
  ``stimpattern`` (sessions x runs x trial slots, 1 where an image was shown: NSD's 750 trials a session in runs of
  63 and 62); else, without it, the trial count of each session's betas file, in session order (runs unknown:
  ``n/a``). A session whose betas file holds another number of trials than the design lists is refused, with
  both counts;
- brain mask: ``nsddata/ppdata/subjNN/func1pt8mm/brainmask.nii.gz`` (without it, the voxels that are non-zero in
  some trial of the first session: see :meth:`~bids_recon.glm.importers.base.BetaImporter.brain_mask`).

Participants ``subjNN`` are ``sub-NN``; sessions ``nsdNN`` (as the raw BIDS dataset names them); stimulus ids the
1-based 73k ids the ``nsd`` resolver reads; ``--session-label 1-37`` chooses sessions (Takagi & Nishimoto: 37).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError, MissingInputError, UsageError
from bids_recon.glm.importers import register
from bids_recon.glm.importers.base import (
    READ_BLOCK_BYTES,
    BetaFile,
    BetaImporter,
    ImportedSession,
    ImportPlan,
    check_series,
    fortran_columns,
    iter_nifti_blocks,
    nifti_header,
    session_trials,
    wanted_sessions,
)

LOGGER = logging.getLogger("bids_recon.glm.importers")
BETA_TYPE = "betas_fithrf_GLMdenoise_RR"
_SESSION_FILE = re.compile(r"^betas_session(\d+)\.(nii\.gz|nii|hdf5)$")


def find_root(path: Path) -> Path | None:
    """NSD's download root from ``path`` or a folder above it: the folder that holds ``nsddata_betas/``."""
    path = Path(path).expanduser().absolute()
    for candidate in (path, *path.parents):
        if (candidate / "nsddata_betas").is_dir():
            return candidate
        if candidate.name == "nsddata_betas":
            return candidate.parent
    return None


def expdesign_trials(path: Path, subject_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The 73k ids (1-based) of a subject's trials in ``nsd_expdesign.mat`` order, the shared images and the trial
    pattern.

    Parameters
    ----------
    subject_index : int
        1-based (``subj01`` -> 1).

    Returns
    -------
    ids : ndarray of int, shape (n_trials,)
        ``subjectim[subject - 1, masterordering - 1]``.
    shared : ndarray of int
        ``sharedix`` (1-based 73k ids).
    pattern : ndarray of bool, shape (n_sessions, n_runs, n_slots), or None
        ``stimpattern`` (1 where a trial shows an image), when the file has it.
    """
    from bids_recon.io import read_matlab

    found = read_matlab(path, ["masterordering", "subjectim", "sharedix", "stimpattern"])
    missing = [name for name in ("masterordering", "subjectim") if name not in found]
    if missing:
        raise BadDataError(f"no {' or '.join(missing)} variable: not NSD's experimental design", path)
    order = np.asarray(found["masterordering"]).ravel().astype(np.int64)
    images = np.atleast_2d(np.asarray(found["subjectim"])).astype(np.int64)
    if not 1 <= subject_index <= images.shape[0]:
        raise BadDataError(f"subjectim has {images.shape[0]} rows: no subject {subject_index}", path)
    if order.min() < 1 or order.max() > images.shape[1]:
        raise BadDataError(f"masterordering holds {order.min()}..{order.max()}, outside subjectim's 1.."
                           f"{images.shape[1]} (both are 1-based)", path)
    shared = np.asarray(found.get("sharedix", np.zeros(0))).ravel().astype(np.int64)
    pattern = found.get("stimpattern")
    if pattern is not None:
        pattern = np.asarray(pattern)
        if pattern.ndim != 3:
            raise BadDataError(f"stimpattern has shape {pattern.shape}: expected sessions x runs x trial slots", path)
        pattern = pattern > 0
    return images[subject_index - 1, order - 1], shared, pattern


def pattern_positions(pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Session and run (1-based) of every trial in order, from ``stimpattern`` (sessions x runs x slots).

    Returns
    -------
    session, run : ndarray of int, shape (n_trials,)
    """
    sessions, runs, _ = np.nonzero(pattern)  # C order: session, then run, then slot, as the trials were shown
    return sessions.astype(np.int64) + 1, runs.astype(np.int64) + 1


def responses_trials(path: Path) -> pd.DataFrame:
    """A subject's ``responses.tsv`` in trial order (``SESSION``, ``RUN``, ``TRIAL``; ``SESSION`` and ``73KID`` are
    needed, the others used when there)."""
    try:
        table = pd.read_csv(path, sep="\t")
    except Exception as exc:  # pandas raises several parser errors
        raise BadDataError(f"cannot read NSD's responses table ({exc})", path) from exc
    missing = [c for c in ("SESSION", "73KID") if c not in table]
    if missing:
        raise BadDataError(f"no {', '.join(missing)} column (have: {', '.join(map(str, table.columns))})", path)
    order = [c for c in ("SESSION", "RUN", "TRIAL") if c in table]  # the file's own order within what is missing
    return table.sort_values(order, kind="stable").reset_index(drop=True)


@register
class NsdImporter(BetaImporter):
    """NSD's ``betas_fithrf_GLMdenoise_RR`` (GLMsingle's type D) in ``func1pt8mm``."""

    format = "nsd"
    summary = ("NSD's single-trial betas (betas_fithrf_GLMdenoise_RR, GLMsingle type D, func1pt8mm: int16 / 300 = "
               "% signal change), trials from responses.tsv or nsd_expdesign.mat")
    options = {
        "type": f"beta folder (default {BETA_TYPE}; betas_fithrf, betas_assumehrf are NSD's others)",
        "grid": "func1pt8mm (default) or func1mm",
        "file": "nii or hdf5 (default: betas_sessionNN.nii.gz where present, else .hdf5)",
        "design": "responses or expdesign (default: responses.tsv when present, else nsd_expdesign.mat)",
    }
    space = "func1pt8mm"
    task = "nsdcore"
    integer_scale = 1.0 / 300.0

    # -- where things are --------------------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        root = find_root(self.path)
        if root is None:
            raise MissingInputError("no nsddata_betas/ folder here or above: --betas nsd= needs NSD's download root "
                                    "(nsddata/, nsddata_betas/ and nsddata_stimuli/ side by side)", self.path)
        return root

    @property
    def grid(self) -> str:
        return self.opts.get("grid", "func1pt8mm")

    def beta_dir(self, subject: str) -> Path:
        return (self.root / "nsddata_betas" / "ppdata" / f"subj{subject}" / self.grid
                / self.opts.get("type", BETA_TYPE))

    def subjects(self) -> list[str]:
        folder = self.root / "nsddata_betas" / "ppdata"
        return sorted(p.name.removeprefix("subj") for p in folder.glob("subj*") if p.is_dir()
                      and (p / self.grid).is_dir())

    def _session_files(self, subject: str) -> dict[int, Path]:
        folder = self.beta_dir(subject)
        if not folder.is_dir():
            raise MissingInputError(f"no betas for sub-{subject} (looked for {folder.relative_to(self.root)})",
                                    self.root)
        files: dict[int, dict[str, Path]] = {}
        for path in folder.iterdir():
            found = _SESSION_FILE.match(path.name)
            if found:
                files.setdefault(int(found.group(1)), {})["hdf5" if found.group(2) == "hdf5" else "nii"] = path
        wanted = self.opts.get("file")
        if wanted not in (None, "nii", "hdf5"):
            raise UsageError(f"--betas nsd: file={wanted!r} must be nii or hdf5")
        chosen = {}
        for number, kinds in files.items():
            kind = wanted or ("nii" if "nii" in kinds else "hdf5")
            if kind not in kinds:
                raise MissingInputError(f"betas_session{number:02d}.{'nii.gz' if kind == 'nii' else 'hdf5'} does not "
                                        f"exist (file={kind})", folder)
            chosen[number] = kinds[kind]
        if not chosen:
            raise MissingInputError("no betas_sessionNN.nii.gz or .hdf5 files", folder)
        return chosen

    def _design(self, subject: str) -> tuple[str, Path, Path | None]:
        """``(kind, file, other)``: the design used and the other one (cross-checked) when present."""
        responses = self.root / "nsddata" / "ppdata" / f"subj{subject}" / "behav" / "responses.tsv"
        expdesign = self.root / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat"
        choice = self.opts.get("design")
        if choice not in (None, "responses", "expdesign"):
            raise UsageError(f"--betas nsd: design={choice!r} must be responses or expdesign")
        if choice == "expdesign" or (choice is None and not responses.is_file()):
            if not expdesign.is_file():
                raise MissingInputError("NSD's trial order not found: neither nsddata/ppdata/subjNN/behav/"
                                        "responses.tsv nor nsddata/experiments/nsd/nsd_expdesign.mat exists",
                                        self.root)
            return "expdesign", expdesign, responses if responses.is_file() else None
        if not responses.is_file():
            raise MissingInputError("NSD's responses table does not exist (design=responses)", responses)
        return "responses", responses, expdesign if expdesign.is_file() else None

    # -- the plan ----------------------------------------------------------------------------------------------------

    def plan(self, subject: str, sessions: list[str] | None = None) -> ImportPlan:
        files = self._session_files(subject)
        kind, design, other = self._design(subject)
        labels = {f"nsd{n:02d}": n for n in sorted(files)}
        chosen = wanted_sessions(sessions, labels)
        if chosen is None:
            check_series(files, "betas_session{n:02d}" + _extension(files), self.beta_dir(subject), design)
            chosen = list(labels)
        mask_file = self.mask_option() or _existing(self.root / "nsddata" / "ppdata" / f"subj{subject}" / self.grid
                                                    / "brainmask.nii.gz")
        headers: dict[int, tuple] = {}

        def header(number: int) -> tuple:
            if number not in headers:
                headers[number] = self._header(files[number], mask_file)
            return headers[number]

        trials, counted = self._trials(subject, kind, design, other, files, lambda n: header(n)[0])
        shape, affine, dtype, sample = None, None, None, None
        out = []
        for label in chosen:
            number = labels[label]
            path = files[number]
            n_volumes, grid, file_affine, file_dtype = header(number)
            if shape is None:
                shape, affine, dtype, first = grid, file_affine, file_dtype, path
            elif grid != shape or not np.allclose(file_affine, affine, atol=1e-3):
                raise BadDataError(f"grid {'x'.join(map(str, grid))} differs from {'x'.join(map(str, shape))} of "
                                   f"{first.name} (shape or affine)", path)
            elif file_dtype != dtype:
                raise BadDataError(f"stored as {file_dtype} where {first.name} is {dtype}", path)
            rows = trials[trials["session"] == number]
            if len(rows) != n_volumes:
                raise BadDataError(f"{path.name} holds {n_volumes} trials but {design.name} lists {len(rows)} for "
                                   f"session {number} ({counted}): trials the betas lack, or the reverse", path)
            table = session_trials(subject, label, rows["run"].to_numpy(), [str(i) for i in rows["73k"]])
            metadata = pd.DataFrame({"73k_id": rows["73k"].to_numpy(), "shared1000": rows["shared"].to_numpy()})
            out.append(ImportedSession(label, [BetaFile(path, n_volumes, "hdf5" if path.suffix == ".hdf5" else
                                                        "nifti", "betas")], table, metadata))
        if sample is None:
            sample = next(self.read_file(None, out[0].files[0], np.arange(int(np.prod(shape)), dtype=np.int64),
                                         None, 4 * int(np.prod(shape))))
        scale, note = self.decide_scale(dtype, sample[:1], out[0].files[0].path)
        design_files = [design] + ([other] if other is not None else [])
        return ImportPlan(self.format, subject, self.path, out, shape, affine, scale, note, self.units, mask_file,
                          design_files, self.space if self.grid == "func1pt8mm" else self.grid, self.task,
                          str(dtype))

    def _trials(self, subject: str, kind: str, design: Path, other: Path | None, files: dict[int, Path],
                n_trials_of) -> tuple[pd.DataFrame, str]:
        """Every trial of the subject: session, run (1-based), 73k id, whether the image is shared; and where each
        session's trials were counted from (for messages).

        Sessions (and runs) are read from the data: the responses' ``SESSION``/``RUN``, else the design's
        ``stimpattern``, else the trial counts of the betas files (``n_trials_of(session number)``), in order.
        """
        index = int(subject) if subject.isdigit() else 0
        expdesign = design if kind == "expdesign" else other
        ids, shared, pattern = (expdesign_trials(expdesign, index) if expdesign is not None and index
                                else (None, np.zeros(0, np.int64), None))
        if kind == "expdesign":
            if ids is None:
                raise BadDataError(f"participant '{subject}' is not an NSD subject number (subj01..subj08)", design)
            if pattern is not None:
                session, run = pattern_positions(pattern)
                if len(session) != len(ids):
                    raise BadDataError(f"stimpattern marks {len(session)} trials but masterordering lists {len(ids)}",
                                       design)
                counted = "its stimpattern"
            else:
                session, counted = self._sessions_from_betas(files, n_trials_of, len(ids), design), \
                    "the betas files' trial counts, in session order: the design has no stimpattern"
                ids, run = ids[:len(session)], np.zeros(len(session), np.int64)
            table = pd.DataFrame({"session": session, "run": run, "73k": ids})
        else:
            responses = responses_trials(design)
            table = pd.DataFrame({"session": responses["SESSION"].astype(int).to_numpy(),
                                  "run": responses["RUN"].astype(int).to_numpy() if "RUN" in responses else 0,
                                  "73k": responses["73KID"].astype(int).to_numpy()})
            counted = "its SESSION column"
            if ids is not None:
                n = min(len(ids), len(table))
                differ = np.flatnonzero(ids[:n] != table["73k"].to_numpy()[:n])
                if len(differ):
                    t = int(differ[0])
                    raise BadDataError(
                        f"{design.name} and {expdesign.name} disagree on {len(differ)} trials (first: trial {t + 1}, "
                        f"session {table['session'][t]}: 73KID {table['73k'][t]} vs subjectim/masterordering "
                        f"{ids[t]})", design)
        if (table["73k"] < 1).any():
            raise BadDataError("73k ids count from 1: a 0 or negative id is not an NSD image", design)
        table["run"] = table["run"].map(lambda r: f"{int(r):02d}" if int(r) > 0 else "n/a")
        table["shared"] = np.isin(table["73k"].to_numpy(), shared)
        return table, counted

    @staticmethod
    def _sessions_from_betas(files: dict[int, Path], n_trials_of, n_design: int, design: Path) -> np.ndarray:
        """Session number of each design trial when the design has no ``stimpattern``: the betas files' trial
        counts, session 1 first (every session up to the last file is needed to know where each begins)."""
        numbers = sorted(files)
        gaps = [n for n in range(1, numbers[-1] + 1) if n not in files]
        if gaps:
            raise BadDataError(f"{design.name} has no stimpattern, so each session's trials are counted from the "
                               f"betas files in order, which needs every session from 1: betas_session{gaps[0]:02d} "
                               "is absent (give responses.tsv, or NSD's nsd_expdesign.mat with its stimpattern)",
                               design)
        counts = [int(n_trials_of(n)) for n in numbers]
        if sum(counts) > n_design:
            raise BadDataError(f"the betas files of sessions 1-{numbers[-1]} hold {sum(counts)} trials but "
                               f"{design.name} lists {n_design} (masterordering)", design)
        LOGGER.info("%s has no stimpattern: trials assigned to sessions by the betas files' trial counts (%s); runs "
                    "unknown (n/a)", design.name, ", ".join(f"session {n}: {c}" for n, c in zip(numbers, counts,
                                                                                               strict=True)))
        return np.repeat(np.asarray(numbers, dtype=np.int64), counts)

    def _header(self, path: Path, mask_file: Path | None) -> tuple[int, tuple[int, int, int], np.ndarray, np.dtype]:
        """``(n_trials, grid, affine, dtype)`` of one session file (HDF5: the affine is the brain mask's)."""
        if path.suffix != ".hdf5":
            shape, affine, dtype = nifti_header(path)
            if len(shape) != 4:
                raise BadDataError(f"expected a 4D image (X x Y x Z x trials), got shape {shape}", path)
            return shape[3], tuple(shape[:3]), affine, dtype
        import h5py

        if mask_file is None:
            raise MissingInputError("HDF5 betas have no affine: NSD's brainmask.nii.gz (or mask=PATH) gives it",
                                    path)
        import nibabel as nib

        mask = nib.load(mask_file)
        try:
            with h5py.File(path, "r") as handle:
                if "betas" not in handle:
                    raise BadDataError(f"no 'betas' dataset (has: {', '.join(handle)})", path)
                shape, dtype = handle["betas"].shape, np.dtype(handle["betas"].dtype)
        except OSError as exc:
            raise BadDataError(f"not an HDF5 file h5py can read ({exc})", path) from exc
        grid = tuple(int(s) for s in shape[1:][::-1])
        if len(shape) != 4 or grid != tuple(mask.shape[:3]):
            raise BadDataError(f"'betas' has shape {shape}: expected trials x Z x Y x X of the brain mask's grid "
                               f"{'x'.join(map(str, mask.shape[:3]))} ({mask_file.name}), NSD's axes reversed", path)
        return int(shape[0]), grid, np.asarray(mask.affine), dtype

    def brain_mask(self, plan: ImportPlan):
        """The brain mask (see :meth:`BetaImporter.brain_mask`); with ``brainmask.nii.gz``, the voxels outside it that
        hold a non-zero beta in the first trial are counted too (NSD's betas are 0 outside its mask: a count above
        0 means a mask of another participant or grid)."""
        img = super().brain_mask(plan)
        if plan.mask_file is not None:
            first = plan.sessions[0].files[0]
            everything = np.ones(plan.shape, dtype=bool)
            block = next(self.read_file(plan, first, fortran_columns(everything), everything, READ_BLOCK_BYTES))
            values = np.asarray(block[0], dtype=np.float32).reshape(plan.shape)  # C order, as the columns
            outside = int((np.isfinite(values) & (values != 0) & ~(np.asarray(img.dataobj) > 0)).sum())
            (LOGGER.warning if outside else LOGGER.info)(
                "sub-%s: %d voxels outside %s have a non-zero beta in the first trial of %s (not read)", plan.subject,
                outside, plan.mask_file.name, first.name)
        return img

    # -- reading -----------------------------------------------------------------------------------------------------

    def read_file(self, plan, beta_file, columns, mask, block_bytes=READ_BLOCK_BYTES):
        if beta_file.path.suffix != ".hdf5":
            for _, block in iter_nifti_blocks(beta_file.path, block_bytes):
                yield block[:, columns]
            return
        import h5py

        with h5py.File(beta_file.path, "r") as handle:
            data = handle["betas"]
            per_trial = int(np.prod(data.shape[1:])) * data.dtype.itemsize
            step = max(1, int(block_bytes) // per_trial)
            for start in range(0, data.shape[0], step):
                block = data[start:start + step]  # (k, Z, Y, X): a C view of the NIfTI's Fortran order
                yield block.reshape(len(block), -1)[:, columns]


def _extension(files: dict[int, Path]) -> str:
    first = next(iter(files.values()))
    return ".hdf5" if first.suffix == ".hdf5" else ".nii.gz"


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


__all__ = ["NsdImporter", "expdesign_trials", "find_root", "responses_trials"]
