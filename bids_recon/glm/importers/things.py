"""``things``: THINGS-fMRI's single-trial responses (Hebart et al. 2023), in either form they are published.

``--betas things=DIR``:

- volume form (``DIR`` = ``betas_vol``, or a folder holding it):
  ``sub-XX/ses-thingsNN/sub-XX_ses-thingsNN_run-NN_betas.nii.gz`` (one volume per trial) with
  ``..._run-NN_conditions.tsv`` (an unnamed index column and ``image_filename``: ``dog/dog_12s.jpg``; catch images
  ``catchNNN.jpg`` included), the brain mask ``brainmasks/sub-XX_space-T1w_brainmask.nii.gz`` beside ``betas_vol``.
  ``trial_type`` is derived: ``catch`` for catch images, ``test`` for images shown more than once (THINGS' test
  images, shown in every session; the others are shown once), ``exp`` otherwise.
- table form (``DIR`` = ``betas_csv``): ``sub-XX_ResponseData.h5`` (pandas HDF5, fixed format: rows are voxels, a
  ``voxel_id`` column and one column per trial), ``sub-XX_StimulusMetadata.csv`` (``trial_type`` train/test,
  ``session``, ``run``, ``stimulus``, ``concept``; no catch trials) and ``sub-XX_VoxelMetadata.csv``
  (``voxel_id``, ``voxel_x/y/z``); the brain mask (``brainmasks/``, or ``mask=``) gives the grid. The HDF5 is read
  with h5py (no PyTables needed), a block of voxels at a time.

Stimulus ids are ``concept/file`` (``dog/dog_12s.jpg``), the events' ``file_path``, as the ``things`` preset's
resolver reads them. Values are as published (THINGS' responses are regression weights of run-wise z-scored data,
not percent signal change: they are z-scored per session all the same).
"""

from __future__ import annotations

import pickle
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

_RUN_FILE = re.compile(r"^sub-([A-Za-z0-9]+)_ses-things(\d+)_run-(\d+)_betas\.nii(\.gz)?$")


def is_catch(name: str) -> bool:
    """THINGS' catch images (``catch008.jpg``): shown, modelled, never decoded."""
    return Path(str(name)).name.lower().startswith("catch")


@register
class ThingsImporter(BetaImporter):
    """THINGS-fMRI: ``betas_vol`` NIfTI runs + ``conditions.tsv``, or ``betas_csv`` HDF5 + CSVs."""

    format = "things"
    summary = ("THINGS-fMRI single-trial responses: betas_vol (NIfTI per run + conditions.tsv) or betas_csv "
               "(ResponseData.h5 + StimulusMetadata.csv + VoxelMetadata.csv)")
    options = {"form": "vol or csv (default: vol when DIR holds betas_vol runs, else csv)"}
    space = "T1w"
    task = "things"
    units = "as published (regression weights of run-wise z-scored BOLD)"

    # -- where things are --------------------------------------------------------------------------------------------

    @property
    def vol_dir(self) -> Path | None:
        for folder in (self.path, self.path / "betas_vol", self.path / "derivatives" / "betas_vol"):
            if any(folder.glob("sub-*/ses-things*/*_betas.nii*")):
                return folder
        return None

    @property
    def csv_dir(self) -> Path | None:
        for folder in (self.path, self.path / "betas_csv", self.path / "derivatives" / "betas_csv"):
            if any(folder.glob("sub-*_ResponseData.h5")):
                return folder
        return None

    @property
    def form(self) -> str:
        form = self.opts.get("form") or ("vol" if self.vol_dir is not None else "csv")
        if form not in ("vol", "csv"):
            raise UsageError(f"--betas things: form={form!r} must be vol or csv")
        if (self.vol_dir if form == "vol" else self.csv_dir) is None:
            what = ("betas_vol/sub-XX/ses-thingsNN/*_betas.nii.gz" if form == "vol" else
                    "betas_csv/sub-XX_ResponseData.h5")
            raise MissingInputError(f"no THINGS single-trial responses ({what}) here", self.path)
        return form

    def subjects(self) -> list[str]:
        if self.form == "vol":
            return sorted(p.name.removeprefix("sub-") for p in self.vol_dir.glob("sub-*") if p.is_dir())
        return sorted(p.name.split("_")[0].removeprefix("sub-") for p in self.csv_dir.glob("sub-*_ResponseData.h5"))

    def _brain_mask_file(self, subject: str, near: Path) -> Path | None:
        option = self.mask_option()
        if option is not None:
            return option
        name = f"sub-{subject}_space-T1w_brainmask.nii.gz"
        for folder in (near / "brainmasks", near.parent / "brainmasks", self.path / "brainmasks", near):
            if (folder / name).is_file():
                return folder / name
        return None

    def plan(self, subject: str, sessions: list[str] | None = None) -> ImportPlan:
        return self._plan_vol(subject, sessions) if self.form == "vol" else self._plan_csv(subject, sessions)

    # -- volume form -------------------------------------------------------------------------------------------------

    def _plan_vol(self, subject: str, sessions: list[str] | None) -> ImportPlan:
        folder = self.vol_dir / f"sub-{subject}"
        runs: dict[int, dict[int, Path]] = {}
        for path in sorted(folder.glob("ses-things*/*_betas.nii*")):
            match = _RUN_FILE.match(path.name)
            if match and match.group(1) == subject:
                runs.setdefault(int(match.group(2)), {})[int(match.group(3))] = path
        if not runs:
            raise MissingInputError(f"no sub-{subject}_ses-thingsNN_run-NN_betas.nii.gz", folder)
        check_series({n: sorted(r.values())[0] for n, r in runs.items()},
                     f"ses-things{{n:02d}}/sub-{subject}_ses-things{{n:02d}}_run-01_betas.nii.gz", folder)
        labels = {f"things{n:02d}": n for n in sorted(runs)}
        chosen = wanted_sessions(sessions, labels) or list(labels)
        conditions: dict[tuple[int, int], list[str]] = {}
        for n in sorted(runs):
            check_series(runs[n], f"sub-{subject}_ses-things{n:02d}_run-{{n:02d}}_betas.nii.gz",
                         folder / f"ses-things{n:02d}")
            for r, path in sorted(runs[n].items()):
                conditions[(n, r)] = _conditions(path)
        shown: dict[str, int] = {}
        for names in conditions.values():
            for name in names:
                shown[name] = shown.get(name, 0) + 1
        shape0 = affine0 = dtype0 = first = None
        out, design = [], []
        for label in chosen:
            n = labels[label]
            files, names, run_labels = [], [], []
            for r, path in sorted(runs[n].items()):
                shape, affine, dtype = nifti_header(path)
                if len(shape) != 4:
                    shape = (*shape[:3], 1)
                if shape0 is None:
                    shape0, affine0, dtype0, first = shape, affine, dtype, path
                elif shape[:3] != shape0[:3] or not np.allclose(affine, affine0, atol=1e-3):
                    raise BadDataError(f"grid {'x'.join(map(str, shape[:3]))} differs from "
                                       f"{'x'.join(map(str, shape0[:3]))} of {first.name}", path)
                table = conditions[(n, r)]
                tsv = _conditions_file(path)
                if len(table) != shape[3]:
                    raise BadDataError(f"{path.name} holds {shape[3]} trials but {tsv.name} names {len(table)}: "
                                       "trials the betas lack, or the reverse", tsv)
                files.append(BetaFile(path, int(shape[3])))
                names += table
                run_labels += [f"{r:02d}"] * len(table)
                design.append(tsv)
            decode = ~np.array([is_catch(x) for x in names], dtype=bool)
            kinds = ["catch" if is_catch(x) else "test" if shown[x] > 1 else "exp" for x in names]
            trials = session_trials(subject, label, run_labels, names, names, decode)
            out.append(ImportedSession(label, files, trials, pd.DataFrame({"trial_type": kinds})))
        sample = next(iter_nifti_blocks(out[0].files[0].path, 1))[1]
        scale, note = self.decide_scale(dtype0, sample[:1], out[0].files[0].path)
        return ImportPlan(self.format, subject, self.path, out, tuple(shape0[:3]), affine0, scale, note, self.units,
                          self._brain_mask_file(subject, self.vol_dir), design, self.space, self.task, str(dtype0))

    # -- table form --------------------------------------------------------------------------------------------------

    def _plan_csv(self, subject: str, sessions: list[str] | None) -> ImportPlan:
        import nibabel as nib

        folder = self.csv_dir
        data_file = folder / f"sub-{subject}_ResponseData.h5"
        stim_file = folder / f"sub-{subject}_StimulusMetadata.csv"
        voxel_file = folder / f"sub-{subject}_VoxelMetadata.csv"
        for path in (data_file, stim_file, voxel_file):
            if not path.is_file():
                raise MissingInputError("THINGS table-form file does not exist", path)
        mask_file = self._brain_mask_file(subject, folder)
        if mask_file is None:
            raise MissingInputError(f"the brain mask sub-{subject}_space-T1w_brainmask.nii.gz (brainmasks/ beside "
                                    "betas_csv) gives the voxels their grid: put it there or give mask=PATH", folder)
        stimuli = _read_csv(stim_file, ("trial_type", "session", "run", "stimulus", "concept"))
        voxels = _read_csv(voxel_file, ("voxel_x", "voxel_y", "voxel_z"))
        table = PandasFrame(data_file)
        if table.n_columns != len(stimuli):
            raise BadDataError(f"{data_file.name} holds {table.n_columns} trials (columns) but {stim_file.name} lists "
                               f"{len(stimuli)}: trials the betas lack, or the reverse", data_file)
        if table.n_rows != len(voxels):
            raise BadDataError(f"{data_file.name} holds {table.n_rows} voxels (rows) but {voxel_file.name} lists "
                               f"{len(voxels)}", data_file)
        mask_img = nib.load(mask_file)
        brain = np.asarray(mask_img.dataobj).reshape(mask_img.shape[:3]) > 0
        xyz = voxels[["voxel_x", "voxel_y", "voxel_z"]].to_numpy(int)
        if (xyz < 0).any() or (xyz >= np.asarray(brain.shape)).any() or not brain[tuple(xyz.T)].all():
            raise BadDataError(f"voxel coordinates of {voxel_file.name} fall outside the brain mask "
                               f"{mask_file.name} ({'x'.join(map(str, brain.shape))}): another participant's mask?",
                               voxel_file)
        numbers = sorted(int(s) for s in stimuli["session"].unique())
        labels = {f"things{n:02d}": n for n in numbers}
        chosen = wanted_sessions(sessions, labels) or list(labels)
        out = []
        for label in chosen:
            rows = stimuli.index[stimuli["session"].astype(int) == labels[label]].to_numpy()
            part = stimuli.loc[rows]
            ids = [f"{c}/{s}" for c, s in zip(part["concept"], part["stimulus"], strict=True)]
            trials = session_trials(subject, label, [f"{int(r):02d}" for r in part["run"]], ids, ids,
                                    ~np.array([is_catch(x) for x in ids], dtype=bool))
            key = f"{int(rows.min())}:{int(rows.max()) + 1}" if np.all(np.diff(rows) == 1) else \
                ",".join(map(str, rows))
            metadata = part.drop(columns=["stimulus", "concept"]).reset_index(drop=True)
            out.append(ImportedSession(label, [BetaFile(data_file, len(rows), "pandas-hdf5", key)], trials, metadata))
        sample = table.read(np.arange(min(table.n_rows, 1000)), np.arange(min(table.n_columns, 1)))
        scale, note = self.decide_scale(table.dtype, sample.T, data_file)
        return ImportPlan(self.format, subject, self.path, out, tuple(brain.shape), np.asarray(mask_img.affine), scale,
                          note, self.units, mask_file, [stim_file, voxel_file], self.space, self.task,
                          str(table.dtype))

    def brain_mask(self, plan):
        if self.form == "csv":  # the voxels the table holds
            import nibabel as nib

            voxels = _read_csv(plan.design_files[1], ("voxel_x", "voxel_y", "voxel_z"))
            data = np.zeros(plan.shape, dtype=np.uint8)
            data[tuple(voxels[["voxel_x", "voxel_y", "voxel_z"]].to_numpy(int).T)] = 1
            return nib.Nifti1Image(data, plan.affine)
        return super().brain_mask(plan)

    def read_file(self, plan, beta_file, columns, mask, block_bytes=READ_BLOCK_BYTES):
        if beta_file.kind != "pandas-hdf5":
            yield from super().read_file(plan, beta_file, columns, mask, block_bytes)
            return
        voxels = _read_csv(plan.design_files[1], ("voxel_x", "voxel_y", "voxel_z"))
        rank = np.full(plan.shape, -1, dtype=np.int64)
        rank[tuple(voxels[["voxel_x", "voxel_y", "voxel_z"]].to_numpy(int).T)] = np.arange(len(voxels))
        rows = rank[np.asarray(mask, dtype=bool)]  # table rows of the mask's voxels, in C order
        if (rows < 0).any():
            raise BadDataError(f"{int((rows < 0).sum())} voxels asked for are not in the table", beta_file.path)
        trial_columns = _key_columns(beta_file.key)
        table = PandasFrame(beta_file.path)
        step = max(1, int(block_bytes) // max(1, 4 * len(rows)))
        for start in range(0, len(trial_columns), step):
            yield table.read(rows, trial_columns[start:start + step]).T


# -- files -----------------------------------------------------------------------------------------------------------


def _conditions_file(betas: Path) -> Path:
    return betas.with_name(re.sub(r"_betas\.nii(\.gz)?$", "_conditions.tsv", betas.name))


def _conditions(betas: Path) -> list[str]:
    """``image_filename`` of a run's ``conditions.tsv`` (written by pandas with its index: an unnamed column)."""
    path = _conditions_file(betas)
    if not path.is_file():
        raise MissingInputError(f"the trial names of {betas.name} do not exist", path)
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "image_filename" not in table:
        raise BadDataError(f"no 'image_filename' column (have: {', '.join(table.columns)})", path)
    return [str(v).strip() for v in table["image_filename"]]


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path)
    except Exception as exc:  # pandas raises several parser errors
        raise BadDataError(f"cannot read CSV ({exc})", path) from exc
    missing = [c for c in columns if c not in table]
    if missing:
        raise BadDataError(f"no {', '.join(missing)} column (have: {', '.join(map(str, table.columns))})", path)
    return table


def _key_columns(key: str) -> np.ndarray:
    if ":" in key:
        start, stop = (int(v) for v in key.split(":"))
        return np.arange(start, stop)
    return np.asarray([int(v) for v in key.split(",")], dtype=np.int64)


class _NumpyOnly(pickle.Unpickler):
    """Unpickles the numpy arrays pandas stores for mixed-type column labels, and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a THINGS table's column labels")


class PandasFrame:
    """A DataFrame that pandas wrote with ``to_hdf`` (fixed format), read with h5py a block at a time.

    pandas stores each dtype's columns as one ``blockN_values`` dataset (rows x columns) with their labels in
    ``blockN_items``; THINGS' ``ResponseData`` has an integer ``voxel_id`` block and a float block of trials.

    Raises
    ------
    BadDataError
        Not a pandas fixed-format frame with one float block (the message names the file and what it has).
    """

    def __init__(self, path: Path) -> None:
        import h5py

        self.path = Path(path)
        try:
            with h5py.File(self.path, "r") as handle:
                groups = [k for k in handle if isinstance(handle[k], h5py.Group) and "block0_values" in handle[k]]
                if len(groups) != 1:
                    raise BadDataError(f"expected one pandas frame (to_hdf, fixed format), found groups "
                                       f"{', '.join(handle) or 'none'}", self.path)
                group = handle[groups[0]]
                blocks = sorted(k for k in group if re.fullmatch(r"block\d+_values", k))
                floats = [k for k in blocks if np.issubdtype(group[k].dtype, np.floating)]
                if len(floats) != 1:
                    raise BadDataError(f"expected one block of float columns (the trials), found {len(floats)}",
                                       self.path)
                self.key = f"{groups[0]}/{floats[0]}"
                self.n_rows, self.n_columns = group[floats[0]].shape
                self.dtype = np.dtype(group[floats[0]].dtype)
                self.items = _items(group[floats[0].replace("_values", "_items")])
        except OSError as exc:
            raise BadDataError(f"not an HDF5 file h5py can read ({exc})", self.path) from exc
        if self.items is not None and len(self.items) == self.n_columns:
            numbers = pd.to_numeric(pd.Series(self.items), errors="coerce")
            if numbers.notna().all() and (numbers.to_numpy() != np.arange(self.n_columns)).any():
                raise BadDataError("the trial columns are not numbered 0..n-1 in order: the StimulusMetadata rows "
                                   "cannot be matched to them", self.path)

    def read(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Values ``(len(rows), len(columns))`` (rows and columns: positions, any order)."""
        import h5py

        rows, columns = np.asarray(rows, dtype=np.int64), np.asarray(columns, dtype=np.int64)
        with h5py.File(self.path, "r") as handle:
            data = handle[self.key]
            c0, c1 = int(columns.min()), int(columns.max()) + 1
            r_order = np.argsort(rows, kind="stable")
            sorted_rows = rows[r_order]
            out = np.empty((len(rows), len(columns)), dtype=np.float32)
            step = max(1, (64 * 2**20) // max(1, 4 * (c1 - c0)))
            for start in range(0, len(sorted_rows), step):
                chunk = sorted_rows[start:start + step]
                block = np.asarray(data[int(chunk[0]):int(chunk[-1]) + 1, c0:c1], dtype=np.float32)
                out[r_order[start:start + step]] = block[chunk - chunk[0]][:, columns - c0]
            return out


def _items(dataset) -> list | None:
    """Column labels of a pandas block: a plain array, or (mixed types) a pickled numpy array."""
    values = dataset[()]
    if dataset.dtype.kind in "SUiuf":
        return [v.decode() if isinstance(v, bytes) else v for v in np.asarray(values).ravel()]
    try:
        raw = bytes(np.asarray(values[0], dtype=np.uint8))
        import io

        return list(np.asarray(_NumpyOnly(io.BytesIO(raw)).load()).ravel())
    except Exception:  # labels we cannot read: the trials are taken in stored order
        return None


__all__ = ["PandasFrame", "ThingsImporter", "is_catch"]
