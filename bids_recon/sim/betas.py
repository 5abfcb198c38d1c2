"""Single-trial betas written the way public datasets publish them, so that every beta importer
(:mod:`bids_recon.glm.importers`) is tested end to end against known values.

A :class:`BetaSet` is one participant's betas per session (percent signal change, trials in the trial table's
order) on a grid with a brain mask. It comes from the simulator's ground truth (:func:`simulated_betas`: the true
single-trial amplitudes plus estimation noise at each voxel's target NCSNR, the betas a good GLM would publish) or
from bids_recon's own outputs (:func:`read_output_betas`: so that a run's betas exported to a format and imported
back must give the same decoders). The writers put it in each format:

- :func:`write_nsd`: ``nsddata_betas/ppdata/subjNN/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_sessionNN.nii.gz``
  (int16 = % x 300) and ``.hdf5`` (``/betas``, axes reversed), ``brainmask.nii.gz``, ``behav/responses.tsv``,
  ``nsd_expdesign.mat`` and, with :func:`write_nsd_rois`, ``roi/streams.nii.gz`` + ``streams.mgz.ctab``;
- :func:`write_glmsingle`: ``TYPED_FITHRF_GLMDENOISE_RR.npy`` + ``DESIGNINFO.npy`` (or MATLAB v7.3 ``.mat``);
- :func:`write_bold5000`: ``CSI{n}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-NN.nii.gz``, ``imgnames.txt``,
  ``brainmask.nii.gz``;
- :func:`write_things_vol` and :func:`write_things_csv`: ``betas_vol`` runs + ``conditions.tsv``, and
  ``betas_csv`` (pandas fixed-format HDF5 written with h5py + the two CSVs), with ``brainmasks/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_recon.design.table import NO_LABEL, NOT_DECODED, TRIAL_COLUMNS

#: NSD's int16 scale: stored value = percent signal change x 300.
NSD_SCALE = 300.0
#: NSD's streams labels (``streams.mgz.ctab``).
STREAMS = {0: "Unknown", 1: "early", 2: "midventral", 3: "midlateral", 4: "midparietal", 5: "ventral", 6: "lateral",
           7: "parietal"}


@dataclass
class BetaSet:
    """One participant's single-trial betas, session by session.

    Attributes
    ----------
    subject : str
        Label (``01``).
    sessions : list of str
        Session labels, as the trial tables name them.
    betas : list of ndarray, each (n_trials_session, n_voxels) float32
        Percent signal change over ``mask``'s voxels (C order), rows as ``trials``.
    trials : list of pandas.DataFrame
        Each session's trials (``run``, ``stim_file``: how the dataset names the image, ``kind`` where the layout
        has catch trials).
    mask : ndarray of bool, shape (X, Y, Z)
    affine : ndarray, shape (4, 4)
    """

    subject: str
    sessions: list[str]
    betas: list[np.ndarray]
    trials: list[pd.DataFrame]
    mask: np.ndarray
    affine: np.ndarray

    def volume(self, betas: np.ndarray, fill: float = 0.0, dtype=np.float32) -> np.ndarray:
        """``(X, Y, Z, n_trials)`` array of ``betas`` (n_trials, n_voxels), ``fill`` outside the mask."""
        out = np.full((*self.mask.shape, len(betas)), fill, dtype=dtype)
        out[self.mask] = betas.T.astype(dtype)
        return out

    @property
    def all_trials(self) -> pd.DataFrame:
        return pd.concat(self.trials, ignore_index=True)


def simulated_betas(model, affine: np.ndarray, rng: np.random.Generator, noise_floor: float = 0.05) -> BetaSet:
    """The betas a GLMsingle-class estimator would publish for a simulated subject.

    ``beta = amplitude + noise``: the true single-trial amplitude (``evoked + response + jitter``) plus Gaussian
    estimation noise of sd ``sqrt((response_sd / ncsnr_target)^2 - jitter_sd^2)`` in signal voxels (so that their
    single-trial NCSNR is the target), and the signal voxels' median noise sd elsewhere.

    Parameters
    ----------
    model : bids_recon.sim.model.SubjectModel
    affine : ndarray, shape (4, 4)
        The grid's affine (the simulator's template grid).
    rng : numpy.random.Generator
    noise_floor : float
        Smallest NCSNR used to size the noise (targets are clipped above it).
    """
    amplitudes = np.asarray(model.amplitudes, dtype=np.float32)
    signal = np.asarray(model.signal, dtype=bool)
    response_sd = np.asarray(model.response_sd, dtype=np.float64)
    total = response_sd / np.maximum(np.asarray(model.ncsnr_target, dtype=np.float64), noise_floor)
    jitter = 0.25 * response_sd
    sd = np.sqrt(np.maximum(total**2 - jitter**2, 1e-6))
    sd = np.where(signal, sd, float(np.median(sd[signal])) if signal.any() else 1.0)
    betas = (amplitudes + rng.standard_normal(amplitudes.shape) * sd[None, :]).astype(np.float32)
    trials = model.trials.reset_index(drop=True)
    sessions = list(dict.fromkeys(trials["session"].astype(str)))
    rows = [np.flatnonzero(trials["session"].astype(str).to_numpy() == s) for s in sessions]
    return BetaSet(model.subject, sessions, [betas[r] for r in rows], [trials.iloc[r].reset_index(drop=True)
                                                                       for r in rows],
                   np.asarray(model.mask, dtype=bool), np.asarray(affine))


def read_output_betas(output_dir: Path, subject: str) -> BetaSet:
    """A bids_recon run's single-trial betas (its statmaps, before the session z-scoring) as a :class:`BetaSet`.

    Rows keep every modelled trial (catch images too), in the order the statmaps list them
    (:func:`bids_recon.group.shared.read_participant_betas`).
    """
    from bids_recon.group.shared import read_participant_betas

    betas, table, mask_img = read_participant_betas(Path(output_dir), subject)
    labels = table["session"].astype(str).replace({"nan": NO_LABEL}).to_numpy()
    sessions = list(dict.fromkeys(labels))
    return BetaSet(subject, sessions, [betas[labels == s] for s in sessions],
                   [table[labels == s].reset_index(drop=True) for s in sessions],
                   np.asarray(mask_img.dataobj) > 0, np.asarray(mask_img.affine))


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    img.header.set_xyzt_units("mm")
    nib.save(img, path)
    return path


def _number(session: str) -> int:
    digits = "".join(ch for ch in str(session) if ch.isdigit())
    return int(digits) if digits else 1


# -- NSD ---------------------------------------------------------------------------------------------------------


def write_nsd(root: Path, beta_sets: list[BetaSet], shared: np.ndarray | None = None,
              forms: tuple[str, ...] = ("nii", "hdf5")) -> list[Path]:
    """Write betas as NSD distributes them under the download root ``root``.

    Every trial table's ``stim_file`` must be the 1-based 73k id of its image. Writes, per participant ``subjNN``
    (index ``NN`` from its label): ``betas_sessionNN.nii.gz`` (int16, x 300) and/or ``.hdf5`` (``betas``, trials x Z
    x Y x X), ``brainmask.nii.gz``, ``behav/responses.tsv`` (SUBJECT, SESSION, RUN, TRIAL, 73KID); and one
    ``nsddata/experiments/nsd/nsd_expdesign.mat`` whose ``subjectim[s, masterordering - 1]`` gives every subject's
    trials in order (``masterordering`` = 1..n: the simulated subjects do not share one order as NSD's do) and
    ``sharedix`` = ``shared``.

    Returns
    -------
    list of Path
        The session files written.
    """
    import h5py
    from scipy.io import savemat

    root = Path(root)
    written = []
    orders = []
    for beta_set in beta_sets:
        index = _number(beta_set.subject)
        pp = root / "nsddata" / "ppdata" / f"subj{index:02d}"
        folder = root / "nsddata_betas" / "ppdata" / f"subj{index:02d}" / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR"
        folder.mkdir(parents=True, exist_ok=True)
        _save(beta_set.mask.astype(np.int16), beta_set.affine, pp / "func1pt8mm" / "brainmask.nii.gz")
        rows = []
        for session, betas, trials in zip(beta_set.sessions, beta_set.betas, beta_set.trials, strict=True):
            number = _number(session)
            scaled = np.clip(np.rint(betas * NSD_SCALE), -32768, 32767).astype(np.int16)
            volume = beta_set.volume(scaled, dtype=np.int16)
            if "nii" in forms:
                written.append(_save(volume, beta_set.affine, folder / f"betas_session{number:02d}.nii.gz"))
            if "hdf5" in forms:
                with h5py.File(folder / f"betas_session{number:02d}.hdf5", "w") as handle:
                    handle.create_dataset("betas", data=np.ascontiguousarray(volume.transpose(3, 2, 1, 0)))
                written.append(folder / f"betas_session{number:02d}.hdf5")
            runs = trials["run"].astype(int).to_numpy()
            within = trials.groupby("run", sort=False).cumcount().to_numpy() + 1
            rows.append(pd.DataFrame({"SUBJECT": index, "SESSION": number, "RUN": runs, "TRIAL": within,
                                      "73KID": trials["stim_file"].astype(int).to_numpy()}))
        table = pd.concat(rows, ignore_index=True)
        (pp / "behav").mkdir(parents=True, exist_ok=True)
        table.to_csv(pp / "behav" / "responses.tsv", sep="\t", index=False)
        orders.append(table["73KID"].to_numpy())
    n = max(len(o) for o in orders)
    subjectim = np.zeros((8, n), dtype=float)
    for beta_set, order in zip(beta_sets, orders, strict=True):
        subjectim[_number(beta_set.subject) - 1] = np.pad(order, (0, n - len(order)), mode="edge")
    experiments = root / "nsddata" / "experiments" / "nsd"
    experiments.mkdir(parents=True, exist_ok=True)
    design = {"masterordering": np.arange(1, n + 1, dtype=float)[None, :], "subjectim": subjectim}
    if shared is not None:
        design["sharedix"] = np.sort(np.asarray(shared, dtype=float))[None, :]
    savemat(experiments / "nsd_expdesign.mat", design)
    return written


def write_nsd_rois(root: Path, beta_set: BetaSet, early: np.ndarray, ventral: np.ndarray) -> Path:
    """NSD-style ROI volumes of one participant on the betas' grid: ``streams.nii.gz`` (-1 outside the brain, 0 in
    no stream, 1 ``early``, 5 ``ventral``), ``nsdgeneral.nii.gz`` (-1 / 0 / 1) and the colour table
    ``nsddata/freesurfer/fsaverage/label/streams.mgz.ctab`` (``INDEX NAME R G B A`` lines)."""
    root = Path(root)
    roi_dir = root / "nsddata" / "ppdata" / f"subj{_number(beta_set.subject):02d}" / "func1pt8mm" / "roi"
    streams = np.where(beta_set.mask, 0, -1).astype(np.int16)
    streams[early & beta_set.mask] = 1
    streams[ventral & beta_set.mask & ~early] = 5
    general = np.where(beta_set.mask, 0, -1).astype(np.int16)
    general[(early | ventral) & beta_set.mask] = 1
    _save(general, beta_set.affine, roi_dir / "nsdgeneral.nii.gz")
    labels = root / "nsddata" / "freesurfer" / "fsaverage" / "label"
    labels.mkdir(parents=True, exist_ok=True)
    (labels / "streams.mgz.ctab").write_text("".join(f"{k} {v} {40 * k % 256} {90 * k % 256} {150 * k % 256} 0\n"
                                                     for k, v in STREAMS.items()))
    (labels / "nsdgeneral.mgz.ctab").write_text("0 Unknown 0 0 0 0\n1 nsdgeneral 255 0 0 0\n")
    return _save(streams, beta_set.affine, roi_dir / "streams.nii.gz")


# -- GLMsingle ---------------------------------------------------------------------------------------------------


def write_glmsingle(folder: Path, beta_set: BetaSet, form: str = "npy", per_session: bool = False) -> list[Path]:
    """GLMsingle's outputs of one participant in ``folder`` (``sub-XX/``, or ``sub-XX/ses-YY/`` per session).

    ``form`` ``npy`` (Python: ``TYPED_FITHRF_GLMDENOISE_RR.npy`` dict with ``betasmd`` X x Y x Z x trials, NaN
    outside the brain as GLMsingle's division by a zero mean gives; ``DESIGNINFO.npy`` with 0-based ``stimorder``)
    or ``mat`` (MATLAB v7.3: ``modelmd``, 1-based ``stimorder``). A ``brainmask.nii.gz`` gives the grid.
    """
    import h5py

    folder = Path(folder) / f"sub-{beta_set.subject}"
    units = ([(f"ses-{s}", [i]) for i, s in enumerate(beta_set.sessions)] if per_session
             else [("", list(range(len(beta_set.sessions))))])
    written = []
    for name, indices in units:
        target = folder / name if name else folder
        target.mkdir(parents=True, exist_ok=True)
        betas = np.concatenate([beta_set.betas[i] for i in indices])
        trials = pd.concat([beta_set.trials[i] for i in indices], ignore_index=True)
        volume = beta_set.volume(betas, fill=np.nan)
        conditions = {s: k for k, s in enumerate(dict.fromkeys(trials["stim_file"].astype(str)))}
        order = np.array([conditions[s] for s in trials["stim_file"].astype(str)])
        per_run = trials.groupby(["session", "run"], sort=False).size().to_numpy()
        if form == "npy":
            np.save(target / "TYPED_FITHRF_GLMDENOISE_RR.npy", {"betasmd": volume, "R2": np.zeros(volume.shape[:3]),
                                                                 "meanvol": np.ones(volume.shape[:3])})
            np.save(target / "DESIGNINFO.npy", {"stimorder": order, "numtrialrun": per_run.tolist()})
            written.append(target / "TYPED_FITHRF_GLMDENOISE_RR.npy")
        else:
            with h5py.File(target / "TYPED_FITHRF_GLMDENOISE_RR.mat", "w", userblock_size=512) as handle:
                handle.create_dataset("modelmd", data=np.ascontiguousarray(volume.transpose(3, 2, 1, 0)))
            with h5py.File(target / "DESIGNINFO.mat", "w", userblock_size=512) as handle:
                handle.create_dataset("stimorder", data=(order + 1).astype(float)[:, None])
                handle.create_dataset("numtrialrun", data=per_run.astype(float)[:, None])
            written.append(target / "TYPED_FITHRF_GLMDENOISE_RR.mat")
        _save(beta_set.mask.astype(np.uint8), beta_set.affine, target / "brainmask.nii.gz")
    return written


# -- BOLD5000 ----------------------------------------------------------------------------------------------------


def write_bold5000(folder: Path, beta_set: BetaSet) -> list[Path]:
    """BOLD5000 release 2's files of one participant ``CSI{n}``: per-session 4D betas, ``imgnames.txt`` (the
    trials' ``stim_file``), ``brainmask.nii.gz``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    subject = beta_set.subject
    written = []
    for session, betas in zip(beta_set.sessions, beta_set.betas, strict=True):
        name = f"{subject}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-{_number(session):02d}.nii.gz"
        written.append(_save(beta_set.volume(betas), beta_set.affine, folder / name))
    (folder / f"{subject}_imgnames.txt").write_text("".join(f"{n}\n" for n in beta_set.all_trials["stim_file"]))
    _save(beta_set.mask.astype(np.uint8), beta_set.affine, folder / f"{subject}_brainmask.nii.gz")
    return written


# -- THINGS ------------------------------------------------------------------------------------------------------


def write_things_brainmask(derivatives: Path, beta_set: BetaSet) -> Path:
    """``brainmasks/sub-XX_space-T1w_brainmask.nii.gz`` (1 brain, 0 not)."""
    return _save(beta_set.mask.astype(np.uint8), beta_set.affine,
                 Path(derivatives) / "brainmasks" / f"sub-{beta_set.subject}_space-T1w_brainmask.nii.gz")


def write_things_vol(derivatives: Path, beta_set: BetaSet) -> list[Path]:
    """THINGS' volume form: ``betas_vol/sub-XX/ses-thingsNN/sub-XX_ses-thingsNN_run-NN_betas.nii.gz`` with
    ``_conditions.tsv`` (pandas' index column, then ``image_filename``), catch trials included."""
    written = []
    for session, betas, trials in zip(beta_set.sessions, beta_set.betas, beta_set.trials, strict=True):
        number = _number(session)
        folder = Path(derivatives) / "betas_vol" / f"sub-{beta_set.subject}" / f"ses-things{number:02d}"
        for run in dict.fromkeys(trials["run"].astype(str)):
            rows = np.flatnonzero(trials["run"].astype(str).to_numpy() == run)
            stem = f"sub-{beta_set.subject}_ses-things{number:02d}_run-{int(run):02d}"
            written.append(_save(beta_set.volume(betas[rows]), beta_set.affine, folder / f"{stem}_betas.nii.gz"))
            pd.DataFrame(trials["stim_file"].iloc[rows].to_numpy()).to_csv(
                folder / f"{stem}_conditions.tsv", sep="\t", header=["image_filename"])
    write_things_brainmask(derivatives, beta_set)
    return written


def write_things_csv(derivatives: Path, beta_set: BetaSet) -> Path:
    """THINGS' table form in ``betas_csv/``: ``sub-XX_ResponseData.h5`` (a pandas fixed-format frame written with
    h5py: ``voxel_id`` and one float column per non-catch trial, rows = brain voxels in C order),
    ``sub-XX_StimulusMetadata.csv`` and ``sub-XX_VoxelMetadata.csv``."""
    import h5py

    folder = Path(derivatives) / "betas_csv"
    folder.mkdir(parents=True, exist_ok=True)
    trials = beta_set.all_trials
    keep = ~trials["stim_file"].astype(str).str.startswith("catch").to_numpy()
    betas = np.concatenate(beta_set.betas)[keep]
    kept = trials[keep].reset_index(drop=True)
    counts = kept["stim_file"].map(kept["stim_file"].value_counts())
    concept = kept["stim_file"].str.split("/").str[0]
    pd.DataFrame({"trial_type": np.where(counts > 1, "test", "train"),
                  "session": kept["session"].map(_number), "run": kept["run"].astype(int),
                  "subject_id": _number(beta_set.subject), "trial_id": np.arange(len(kept)),
                  "stimulus": kept["stim_file"].str.split("/").str[-1], "concept": concept}
                 ).to_csv(folder / f"sub-{beta_set.subject}_StimulusMetadata.csv", index=False)
    xyz = np.argwhere(beta_set.mask)
    pd.DataFrame({"voxel_id": np.arange(len(xyz)), "subject_id": _number(beta_set.subject), "voxel_x": xyz[:, 0],
                  "voxel_y": xyz[:, 1], "voxel_z": xyz[:, 2], "nc_testset": 0.0, "V1": 0}
                 ).to_csv(folder / f"sub-{beta_set.subject}_VoxelMetadata.csv", index=False)
    path = folder / f"sub-{beta_set.subject}_ResponseData.h5"
    with h5py.File(path, "w") as handle:
        group = handle.create_group("ResponseData")
        group.attrs["pandas_type"] = np.bytes_(b"frame")
        group.attrs["nblocks"] = 2
        group.create_dataset("axis1", data=np.arange(len(xyz), dtype=np.int64))
        group.create_dataset("block0_values", data=betas.T.astype(np.float32))
        group.create_dataset("block0_items", data=np.arange(len(kept), dtype=np.int64))
        group.create_dataset("block1_values", data=np.arange(len(xyz), dtype=np.int64)[:, None])
        group.create_dataset("block1_items", data=np.array([b"voxel_id"]))
    write_things_brainmask(derivatives, beta_set)
    return path


# -- bids_recon's own ---------------------------------------------------------------------------------------------


def write_bids_outputs(output_dir: Path, beta_set: BetaSet, task: str = "images",
                       space: str = "MNI152NLin2009cAsym", resolution: str | None = "2") -> list[Path]:
    """bids_recon's single-trial outputs of one participant, named as the GLM stage names them: a statmap per run
    (one volume per trial) with its trial rows (``.tsv``), and the brain mask (what ``--betas bids=`` reads)."""
    from bids_recon.naming import SubjectOutputs

    names = SubjectOutputs(beta_set.subject, task, space, resolution)
    output_dir = Path(output_dir)
    written = []
    for session, betas, trials in zip(beta_set.sessions, beta_set.betas, beta_set.trials, strict=True):
        for run in dict.fromkeys(trials["run"].astype(str)):
            rows = np.flatnonzero(trials["run"].astype(str).to_numpy() == run)
            path = output_dir / names.betas(session, run)
            written.append(_save(beta_set.volume(betas[rows]), beta_set.affine, path))
            table = trials.iloc[rows].reset_index(drop=True).copy()
            table["subject"], table["trial_index"] = beta_set.subject, np.arange(len(rows))
            table["task"] = table["task"] if "task" in table else task
            table["stim_id"] = table.get("stim_id", table["stim_file"]).astype(str)
            table["split"] = np.where(table.get("kind", pd.Series([""] * len(rows))).astype(str) == "catch",
                                      NOT_DECODED, "train")
            for column in ("onset", "duration", "repeat"):
                table[column] = table[column] if column in table else 0
            table[TRIAL_COLUMNS].to_csv(output_dir / names.betas(session, run, ".tsv"), sep="\t", index=False)
    _save(beta_set.mask.astype(np.uint8), beta_set.affine, output_dir / names.brain_mask())
    return written


def export_betas(output_dir: Path, subject: str, fmt: str, dest: Path) -> list[Path]:
    """Export a bids_recon run's single-trial betas of ``subject`` to a public format (``nsd``, ``glmsingle``,
    ``bold5000``, ``things-vol``, ``things-csv``), so that importing them back (``--betas FORMAT=``) can be
    compared with the run itself. For ``nsd`` the stimulus ids must be NSD 73k ids."""
    beta_set = read_output_betas(output_dir, subject)
    for trials in beta_set.trials:
        trials["stim_file"] = trials["stim_id"].astype(str)
    if fmt == "nsd":
        return write_nsd(dest, [beta_set])
    if fmt == "glmsingle":
        return write_glmsingle(dest, beta_set)
    if fmt == "bold5000":
        return write_bold5000(dest, beta_set)
    if fmt == "things-vol":
        return write_things_vol(dest, beta_set)
    if fmt == "things-csv":
        return [write_things_csv(dest, beta_set)]
    from bids_recon.errors import UsageError

    raise UsageError(f"cannot export to '{fmt}' (nsd, glmsingle, bold5000, things-vol, things-csv)")


__all__ = ["BetaSet", "export_betas", "read_output_betas", "simulated_betas", "write_bids_outputs", "write_bold5000",
           "write_glmsingle", "write_nsd", "write_nsd_rois", "write_things_csv", "write_things_vol"]
