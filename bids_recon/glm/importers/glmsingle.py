"""``glmsingle``: a GLMsingle output folder (Prince et al. 2022), its trials named by the events that produced it.

``--betas glmsingle=DIR[:mask=BRAINMASK.nii.gz]``. ``DIR`` holds one participant's outputs, or one folder per
participant (``DIR/sub-01/``); inside, each ``TYPED_FITHRF_GLMDENOISE_RR`` file is one fit: in a ``ses-LABEL``
folder, that session's runs; elsewhere, all the participant's runs. The forms GLMsingle writes are read:

- Python: ``TYPED_FITHRF_GLMDENOISE_RR.npy`` (a pickled dict, ``betasmd`` X x Y x Z x trials, percent signal
  change) or ``.hdf5`` (``wanthdf5``; dataset ``betasmd``), with ``DESIGNINFO.npy`` (``stimorder``, 0-based);
- MATLAB: ``TYPED_FITHRF_GLMDENOISE_RR.mat`` (v7.3, ``modelmd``) with ``DESIGNINFO.mat`` (``stimorder``, 1-based).

GLMsingle keeps no affine and no trial names: the grid is the brain mask's (``mask=``, or ``brainmask.nii.gz`` /
``*mask.nii.gz`` beside the outputs); the trials are the events rows of the raw dataset's runs (those the stimulus
resolver makes trials), in run and onset order, as GLMsingle orders them. Betas of 1-D data (voxels x 1 x 1 x
trials) are the mask's voxels in C order. ``DESIGNINFO`` is checked against the events: a stimulus is one condition.
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
    find_one,
    nifti_header,
)

#: The model type read by default (GLMsingle's final betas).
MODEL = "TYPED_FITHRF_GLMDENOISE_RR"
#: Names of the betas in each form.
BETAS_KEYS = ("betasmd", "modelmd")
_ENTITY = re.compile(r"_(ses|task|run)-([A-Za-z0-9]+)")


def _entities(name: str) -> dict[str, str]:
    return dict(_ENTITY.findall(name))


@register
class GlmsingleImporter(BetaImporter):
    """GLMsingle's outputs: Python ``.npy``/``.hdf5`` or MATLAB ``.mat``."""

    format = "glmsingle"
    summary = ("a GLMsingle output folder (TYPED_FITHRF_GLMDENOISE_RR, % signal change), its trials named by the raw "
               "dataset's events")
    options = {"model": f"GLMsingle model file stem (default {MODEL}; TYPEB_FITHRF, TYPEC_FITHRF_GLMDENOISE too)",
               "subject": "the participant of a folder without sub- folders (default: the dataset's only one)"}

    @property
    def model(self) -> str:
        return self.opts.get("model", MODEL)

    def subjects(self) -> list[str]:
        own = sorted(p.name.removeprefix("sub-") for p in self.path.glob("sub-*") if p.is_dir())
        if own:
            return own
        if "subject" in self.opts:
            return [self.opts["subject"].removeprefix("sub-")]
        bids_dir = self.context.bids_dir
        raw = sorted(p.name.removeprefix("sub-") for p in Path(bids_dir).glob("sub-*") if p.is_dir()) \
            if bids_dir is not None else []
        if len(raw) == 1:
            return raw
        raise UsageError(f"--betas glmsingle: {self.path} has no sub-LABEL folders and the dataset has "
                         f"{len(raw)} participants: say whose outputs they are with "
                         "--betas glmsingle=DIR:subject=LABEL")

    def _folder(self, subject: str) -> Path:
        folder = self.path / f"sub-{subject}"
        return folder if folder.is_dir() else self.path

    def _fits(self, subject: str) -> list[Path]:
        folder = self._folder(subject)
        found = sorted(p for ext in (".npy", ".hdf5", ".mat") for p in folder.rglob(f"{self.model}{ext}"))
        by_folder: dict[Path, Path] = {}
        for path in found:  # one form per folder: .npy before .hdf5 before .mat
            by_folder.setdefault(path.parent, path)
        if not by_folder:
            raise MissingInputError(f"no {self.model}.npy, .hdf5 or .mat (GLMsingle's outputs) for sub-{subject}",
                                    folder)
        return sorted(by_folder.values())

    # -- events ------------------------------------------------------------------------------------------------------

    def _events(self, subject: str, session: str | None) -> list[Path]:
        bids_dir = self.context.bids_dir
        if bids_dir is None:
            raise UsageError("--betas glmsingle names its trials from the raw dataset's events: give the dataset")
        folder = Path(bids_dir) / f"sub-{subject}" / (f"ses-{session}" if session else "")
        files = sorted(folder.rglob("*_events.tsv"))
        files = [f for f in files if f.parent.name == "func"]
        tasks = self.context.task
        if tasks:
            tasks = [tasks] if isinstance(tasks, str) else list(tasks)
            files = [f for f in files if _entities(f.name).get("task") in tasks]
        if not files:
            raise MissingInputError(f"no events.tsv of sub-{subject}" + (f" ses-{session}" if session else "")
                                    + " to name GLMsingle's trials", folder)
        found_tasks = {_entities(f.name).get("task") for f in files}
        if len(found_tasks) > 1:
            raise UsageError(f"the events of sub-{subject} are of tasks {sorted(found_tasks)}: choose the one "
                             "GLMsingle was run on with --task-id")
        return sorted(files, key=lambda f: (_entities(f.name).get("ses", ""), int(_entities(f.name).get("run", 0))))

    def _trials(self, subject: str, events_files: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame, list[int]]:
        from bids_recon.design.events import load_events
        from bids_recon.design.trials import run_trials
        from bids_recon.features.resolvers import trial_rows

        stimuli = self.context.stimuli.rows_only()
        tables, metadata, per_run = [], [], []
        for path in events_files:
            ents = _entities(path.name)
            events = load_events(path)
            table = run_trials(events, subject, ents.get("ses"), ents.get("run"), stimuli, path, task=ents.get("task"))
            rows = trial_rows(events, stimuli, path)
            tables.append(table)
            metadata.append(events.iloc[rows["row"].to_numpy()].reset_index(drop=True))
            per_run.append(len(table))
        return pd.concat(tables, ignore_index=True), pd.concat(metadata, ignore_index=True), per_run

    # -- the plan ----------------------------------------------------------------------------------------------------

    def plan(self, subject: str, sessions: list[str] | None = None) -> ImportPlan:
        from bids_recon.glm.importers.base import wanted_sessions

        fits = self._fits(subject)
        labels = {}
        for path in fits:
            session = path.parent.name.removeprefix("ses-") if path.parent.name.startswith("ses-") else "all"
            labels[session] = len(labels) + 1
        chosen = wanted_sessions(sessions, labels) if sessions else None
        mask_file = self.mask_option() or find_one(self._folder(subject), ("brainmask.nii.gz", "*mask.nii.gz",
                                                                            "*mask.nii"))
        if mask_file is None:
            raise MissingInputError("GLMsingle's outputs keep no affine: give the brain mask of the grid they were "
                                    "fitted on with --betas glmsingle=DIR:mask=PATH", self._folder(subject))
        mask_shape, affine, _ = nifti_header(mask_file)
        out, dtype, shape = [], None, tuple(int(s) for s in mask_shape[:3])
        for path in fits:
            session = path.parent.name.removeprefix("ses-") if path.parent.name.startswith("ses-") else None
            if chosen is not None and (session or "all") not in chosen:
                continue
            stored, stored_dtype = self._stored_shape(path)
            events_files = self._events(subject, session)
            trials, metadata, per_run = self._trials(subject, events_files)
            if stored[-1] != len(trials):
                raise BadDataError(
                    f"{path.name} holds {stored[-1]} trials but the {len(events_files)} events files of "
                    f"sub-{subject}" + (f" ses-{session}" if session else "") + f" name {len(trials)} (per run: "
                    f"{', '.join(map(str, per_run))}; first {events_files[0].name}): trials the betas lack, or the "
                    "reverse", path)
            self._check_grid(stored, shape, path, mask_file)
            self._check_design(path, trials, per_run, events_files[0])
            if dtype is None:
                dtype, first = stored_dtype, path
            out.append(ImportedSession(session or "all", [BetaFile(path, int(stored[-1]), path.suffix[1:])], trials,
                                       metadata))
        if not out:
            raise BadDataError(f"no GLMsingle fit of the sessions {', '.join(chosen or [])}", self._folder(subject))
        sample = next(self.read_file(None, out[0].files[0], None, nifti_mask(mask_file), READ_BLOCK_BYTES))
        scale, note = self.decide_scale(dtype, sample[:1], first)
        design = [d for d in (self._designinfo(s.files[0].path) for s in out) if d is not None]
        return ImportPlan(self.format, subject, self.path, out, shape, affine, scale, note, self.units, mask_file,
                          design, self.space, self.task, str(dtype))

    def _check_grid(self, stored: tuple[int, ...], shape: tuple[int, ...], path: Path, mask_file: Path) -> None:
        spatial = tuple(stored[:-1])
        if spatial == shape:
            return
        n_mask = int(nifti_mask(mask_file).sum())
        if len(spatial) == 3 and spatial[1:] == (1, 1) and spatial[0] == n_mask:
            return  # 1-D data: the mask's voxels
        raise BadDataError(f"betas grid {'x'.join(map(str, spatial))} differs from the brain mask's "
                           f"{'x'.join(map(str, shape))} ({mask_file.name}, {n_mask} voxels)", path)

    def _designinfo(self, fit: Path) -> Path | None:
        for name in ("DESIGNINFO.npy", "DESIGNINFO.mat"):
            if (fit.parent / name).is_file():
                return fit.parent / name
        return None

    def _check_design(self, fit: Path, trials: pd.DataFrame, per_run: list[int], events: Path) -> None:
        """GLMsingle's own design must name the trials as the events do: one condition per stimulus."""
        path = self._designinfo(fit)
        if path is None:
            return
        if path.suffix == ".npy":
            info = np.load(path, allow_pickle=True).item()
            order, runs = np.asarray(info.get("stimorder", [])).ravel(), info.get("numtrialrun")
        else:
            from bids_recon.io import read_matlab

            info = read_matlab(path, ["stimorder", "numtrialrun"])
            order, runs = np.asarray(info.get("stimorder", np.zeros(0))).ravel() - 1, info.get("numtrialrun")
        if len(order) != len(trials):
            raise BadDataError(f"stimorder lists {len(order)} trials but the events ({events.name}...) name "
                               f"{len(trials)}", path)
        if runs is not None and [int(r) for r in np.asarray(runs).ravel()] != list(per_run):
            raise BadDataError(f"numtrialrun {[int(r) for r in np.asarray(runs).ravel()]} differs from the trials "
                               f"per run of the events {per_run} ({events.name}...)", path)
        pairs = pd.DataFrame({"stim": trials["stim_id"].astype(str).to_numpy(), "cond": order.astype(int)})
        for by, other in (("stim", "cond"), ("cond", "stim")):
            counts = pairs.groupby(by)[other].nunique()
            if (counts > 1).any():
                key = counts.index[counts > 1][0]
                rows = pairs[pairs[by] == key]
                what, others = ("stimulus", "conditions") if by == "stim" else ("condition", "stimuli")
                raise BadDataError(
                    f"the events do not name the trials GLMsingle modelled: {what} {key} is {others} "
                    f"{', '.join(map(str, rows[other].unique()[:4]))} in {path.name} (trials "
                    f"{', '.join(str(i + 1) for i in rows.index[:4])}; events {events.name}...)", path)

    # -- reading -----------------------------------------------------------------------------------------------------

    def _stored_shape(self, path: Path) -> tuple[tuple[int, ...], np.dtype]:
        if path.suffix == ".npy":
            betas = self._npy_betas(path)
            return tuple(betas.shape), betas.dtype
        import h5py

        try:
            with h5py.File(path, "r") as handle:
                key = next((k for k in BETAS_KEYS if k in handle), None)
                if key is None:
                    raise BadDataError(f"no {' or '.join(BETAS_KEYS)} dataset (has: {', '.join(handle)})", path)
                shape, dtype = handle[key].shape, np.dtype(handle[key].dtype)
        except OSError as exc:
            raise BadDataError(f"cannot read as HDF5 ({exc}); MATLAB files must be v7.3 (GLMsingle saves them so)",
                               path) from exc
        return (tuple(shape) if path.suffix == ".hdf5" else tuple(shape[::-1])), dtype

    def _npy_betas(self, path: Path) -> np.ndarray:
        try:
            content = np.load(path, allow_pickle=True)  # GLMsingle pickles a dict of arrays: the user's own file
            content = content.item() if content.dtype == object and content.shape == () else content
        except Exception as exc:  # numpy raises several types for files that are not .npy
            raise BadDataError(f"cannot read GLMsingle's .npy ({exc})", path) from exc
        if not isinstance(content, dict) or not any(k in content for k in BETAS_KEYS):
            have = ", ".join(content) if isinstance(content, dict) else type(content).__name__
            raise BadDataError(f"no {' or '.join(BETAS_KEYS)} entry (has: {have})", path)
        return np.asarray(next(content[k] for k in BETAS_KEYS if k in content))

    def read_file(self, plan, beta_file, columns, mask, block_bytes=READ_BLOCK_BYTES):
        """Blocks of trials inside ``mask`` (``columns`` unused: the stored order depends on the form)."""
        path = beta_file.path
        mask = np.asarray(mask, dtype=bool)
        brain = nifti_mask(plan.mask_file) if plan is not None and plan.mask_file is not None else mask
        if path.suffix == ".npy":
            betas = self._npy_betas(path)  # pickled: read whole (GLMsingle's own form)
            flat = betas.reshape(-1, betas.shape[-1])
            rows = _voxel_rows(betas.shape[:-1], mask, brain)
            step = max(1, block_bytes // max(1, 4 * len(rows)))
            for start in range(0, betas.shape[-1], step):
                yield flat[rows, start:start + step].T
            return
        import h5py

        with h5py.File(path, "r") as handle:
            data = handle[next(k for k in BETAS_KEYS if k in handle)]
            trials_last = path.suffix == ".hdf5"  # Python's (X, Y, Z, T); MATLAB v7.3 reads as (T, Z, Y, X)
            spatial = tuple(data.shape[:-1]) if trials_last else tuple(data.shape[1:][::-1])
            rows = _voxel_rows(spatial, mask, brain)
            if not trials_last:  # positions of C-ordered voxels in the reversed (Fortran) layout
                rows = np.ravel_multi_index(np.unravel_index(rows, spatial), spatial, order="F")
            n_trials = data.shape[-1] if trials_last else data.shape[0]
            step = max(1, int(block_bytes) // (int(np.prod(spatial)) * data.dtype.itemsize))
            for start in range(0, n_trials, step):
                stop = min(start + step, n_trials)
                if trials_last:
                    block = np.asarray(data[..., start:stop]).reshape(-1, stop - start).T
                else:
                    block = np.asarray(data[start:stop]).reshape(stop - start, -1)
                yield block[:, rows]


def nifti_mask(path: Path) -> np.ndarray:
    """A mask NIfTI's voxels (> 0) as a boolean 3D array."""
    import nibabel as nib

    img = nib.load(path)
    return np.asarray(img.dataobj).reshape(img.shape[:3]) > 0


def _voxel_rows(spatial: tuple[int, ...], mask: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Positions (C order over ``spatial``) of the stored voxels inside ``mask``: on the grid, the mask's voxels; for
    1-D data (voxels x 1 x 1: the brain mask's voxels in C order), the rank of each ``mask`` voxel among ``brain``'s."""
    spatial = tuple(int(s) for s in spatial)
    if spatial == mask.shape:
        return np.flatnonzero(mask.ravel())
    rank = np.full(brain.shape, -1, dtype=np.int64)
    rank[brain] = np.arange(int(brain.sum()))
    rows = rank[mask & brain]
    if len(rows) != int(mask.sum()):
        raise BadDataError(f"{int(mask.sum()) - len(rows)} voxels asked for are outside the brain mask of 1-D "
                           "GLMsingle betas")
    return rows


__all__ = ["GlmsingleImporter"]
