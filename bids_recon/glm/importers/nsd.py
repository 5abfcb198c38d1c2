"""``nsd``: the Natural Scenes Dataset's own single-trial betas, as NSD distributes them.

``--betas nsd=ROOT`` where ``ROOT`` is NSD's download root (``nsddata/``, ``nsddata_betas/``, ``nsddata_stimuli/``
side by side; the raw dataset's folder or any folder under the root works too):

- betas: ``nsddata_betas/ppdata/subjNN/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_sessionNN.nii.gz`` (X x Y x Z x
  750, int16 = percent signal change x 300, so divided by 300) or ``betas_sessionNN.hdf5`` (dataset ``betas``, the
  same integers with the axes reversed: 750 x Z x Y x X; its grid's affine is the brain mask's);
- trials: ``nsddata/ppdata/subjNN/behav/responses.tsv`` (``SESSION``, ``RUN``, ``TRIAL``, ``73KID``, 1-based), as
  Takagi & Nishimoto read them, else ``nsddata/experiments/nsd/nsd_expdesign.mat`` (trial ``t`` of the subject shows
  73k image ``subjectim[s, masterordering[t] - 1]``, 750 trials a session, runs of 63 and 62 trials); when both are
  there they must agree;
- brain mask: ``nsddata/ppdata/subjNN/func1pt8mm/brainmask.nii.gz``.

Participants ``subjNN`` are ``sub-NN``; sessions ``nsdNN`` (as the raw BIDS dataset names them); stimulus ids the
1-based 73k ids the ``nsd`` resolver reads; ``--session-label 1-37`` chooses sessions (Takagi & Nishimoto: 37).
"""

from __future__ import annotations

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
    iter_nifti_blocks,
    nifti_header,
    session_trials,
    wanted_sessions,
)

#: Trials of one NSD session, and of each of its 12 runs (odd runs 63, even runs 62).
TRIALS_PER_SESSION = 750
RUN_SIZES = (63, 62) * 6
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


def expdesign_trials(path: Path, subject_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The 73k ids (1-based) of a subject's trials in ``nsd_expdesign.mat`` order, and the shared images.

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
    """
    from bids_recon.io import read_matlab

    found = read_matlab(path, ["masterordering", "subjectim", "sharedix"])
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
    return images[subject_index - 1, order - 1], shared


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
        trials = self._trials(subject, kind, design, other)
        mask_file = self.mask_option() or _existing(self.root / "nsddata" / "ppdata" / f"subj{subject}" / self.grid
                                                    / "brainmask.nii.gz")
        shape, affine, dtype, sample = None, None, None, None
        out = []
        for label in chosen:
            number = labels[label]
            path = files[number]
            n_volumes, grid, file_affine, file_dtype = self._header(path, mask_file)
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
                                   f"session {number}: trials the betas lack, or the reverse", path)
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

    def _trials(self, subject: str, kind: str, design: Path, other: Path | None) -> pd.DataFrame:
        """Every trial of the subject: session, run (1-based), 73k id, whether the image is shared."""
        index = int(subject) if subject.isdigit() else 0
        expdesign = design if kind == "expdesign" else other
        ids, shared = (expdesign_trials(expdesign, index) if expdesign is not None and index
                       else (None, np.zeros(0, np.int64)))
        if kind == "expdesign":
            if ids is None:
                raise BadDataError(f"participant '{subject}' is not an NSD subject number (subj01..subj08)", design)
            n = len(ids)
            session = np.arange(n) // TRIALS_PER_SESSION + 1
            within = np.arange(n) % TRIALS_PER_SESSION
            run = np.searchsorted(np.cumsum(RUN_SIZES), within, side="right") + 1
            table = pd.DataFrame({"session": session, "run": run, "73k": ids})
        else:
            responses = responses_trials(design)
            table = pd.DataFrame({"session": responses["SESSION"].astype(int).to_numpy(),
                                  "run": responses["RUN"].astype(int).to_numpy() if "RUN" in responses else 0,
                                  "73k": responses["73KID"].astype(int).to_numpy()})
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
        return table

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
