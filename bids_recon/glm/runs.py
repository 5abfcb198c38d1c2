"""File-level steps of the beta stage: one run's GLM, the subject's mask, the session z-scoring."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_recon.design.confounds import ConfoundChoice, load_confounds
from bids_recon.design.events import load_events
from bids_recon.design.repeats import assign_repeats_and_split, number_repeats
from bids_recon.design.table import decoded_trials, read_trials
from bids_recon.design.trials import event_modulations, run_trials
from bids_recon.errors import BadDataError, MissingInputError
from bids_recon.features.params import StimulusParams, stimulus_params
from bids_recon.glm.estimators import (
    FitOptions,
    NpySource,
    SessionFit,
    SessionRun,
    drift_regressors,
    fit_session,
    fit_session_source,
)
from bids_recon.glm.hrf import canonical_library, event_regressor, trial_regressors
from bids_recon.glm.params import GlmParams
from bids_recon.glm.singletrial import TRIAL_PREFIX, percent_signal_change, zscore_by_group
from bids_recon.io import atomic_write


def load_image(path: Path, ndim: int | None = None) -> nib.Nifti1Image:
    """Load a NIfTI image, failing with the file's name when it is missing, unreadable or of the wrong rank."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError("image does not exist", path)
    try:
        img = nib.load(path)
        if ndim is not None and len(img.shape) != ndim and not (ndim == 3 and len(img.shape) == 4
                                                                   and img.shape[3] == 1):
            raise BadDataError(f"expected a {ndim}D image, got shape {img.shape}", path)
    except BadDataError:
        raise
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise BadDataError(f"cannot read NIfTI ({exc})", path) from exc
    return img


def same_grid(a: nib.Nifti1Image, b: nib.Nifti1Image) -> bool:
    """True when two images share the 3D shape and affine."""
    return a.shape[:3] == b.shape[:3] and np.allclose(a.affine, b.affine, atol=1e-3)


def _mask_or_epi_mask(path: Path) -> nib.Nifti1Image:
    """A 3D mask as it is, or the EPI mask (nilearn's ``compute_epi_mask``) of a 4D BOLD with no fMRIPrep mask."""
    img = load_image(path)
    if len(img.shape) == 4 and img.shape[3] > 1:
        from nilearn.masking import compute_epi_mask

        try:
            return compute_epi_mask(img)
        except Exception as exc:  # nilearn raises ValueError for unusable series
            raise BadDataError(f"cannot compute an EPI mask of the BOLD ({exc})", path) from exc
    return load_image(path, ndim=3)


def intersect_masks(mask_paths: list[Path]) -> nib.Nifti1Image:
    """Brain mask common to all runs (voxel in every run's mask).

    An entry may be a run's 4D preprocessed BOLD instead of a mask (published fMRIPrep outputs without brain
    masks, e.g. NOD's): its EPI mask is used.

    Raises
    ------
    BadDataError
        Masks on different grids, or an empty intersection.
    """
    first = _mask_or_epi_mask(mask_paths[0])
    common = np.asarray(first.dataobj).reshape(first.shape[:3]) > 0
    for path in mask_paths[1:]:
        img = _mask_or_epi_mask(path)
        if not same_grid(first, img):
            raise BadDataError(f"brain mask grid differs from {Path(mask_paths[0]).name}", path)
        common &= np.asarray(img.dataobj).reshape(img.shape[:3]) > 0
    if not common.any():
        raise BadDataError("the runs' brain masks have no voxel in common", mask_paths[0])
    return nib.Nifti1Image(common.astype(np.uint8), first.affine)


@dataclass(frozen=True)
class RunFiles:
    """The files and labels of one run (what a session's estimation needs)."""

    bold: Path
    events: Path
    confounds: Path
    repetition_time: float
    subject: str
    session: str | None
    run: str | None
    task: str | None = None
    #: seconds after each volume's start that its data stand for (fMRIPrep's StartTime after slice-timing correction)
    start_time: float = 0.0


@dataclass
class SessionBetas:
    """Result of one session's single-trial estimation.

    Attributes
    ----------
    betas : list of ndarray, each (n_trials_run, n_voxels)
        Percent signal change, one array per run, voxels of the brain mask in C order.
    trials : list of pandas.DataFrame
        The trial table of each run.
    design : pandas.DataFrame
        Design matrix of the first run with the canonical HRF (for the report).
    fit : SessionFit
        Per-voxel choices (HRF index, R², fraction) and the session's noise components.
    n_unusable_voxels : int
        Voxels with NaN, a constant or a non-positive mean in some run (their betas are 0).
    confounds : list of ConfoundChoice
        Per run: the confound columns regressed out and the default groups its table lacked.
    """

    betas: list[np.ndarray]
    trials: list[pd.DataFrame]
    design: pd.DataFrame
    fit: SessionFit
    n_unusable_voxels: int
    confounds: list[ConfoundChoice] = field(default_factory=list)


def masked_series(volumes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The time series of the voxels of ``mask`` ``(x, y, z)`` (C order, as ``volumes[mask]``) from ``volumes``
    ``(x, y, z, n_volumes)``: ``(n_volumes, n_voxels)``, C-contiguous.

    Volume by volume: a NIfTI's data are Fortran-ordered, so each volume is contiguous and ``volumes[mask]``, which
    gathers each voxel's series across all volumes, is twice as slow on a whole brain.
    """
    n_volumes = volumes.shape[3]
    if not volumes.flags.f_contiguous:
        return np.ascontiguousarray(volumes[mask].T, dtype=np.float32)
    flat = volumes.reshape(-1, n_volumes, order="F")  # a view
    where = np.ravel_multi_index(np.nonzero(mask), mask.shape, order="F")
    out = np.empty((n_volumes, where.size), dtype=np.float32)
    for t in range(n_volumes):
        np.take(flat[:, t], where, out=out[t])
    return out


def _load_run(files: RunFiles, mask_img: nib.Nifti1Image, confounds_setting: list[str],
              stimuli: StimulusParams | str | None
              ) -> tuple[SessionRun, pd.DataFrame, np.ndarray, ConfoundChoice, list[str]]:
    bold = load_image(files.bold, ndim=4)
    if not same_grid(bold, mask_img):
        raise BadDataError(f"BOLD grid {bold.shape[:3]} differs from the brain mask's {mask_img.shape[:3]}",
                           files.bold)
    n_volumes = bold.shape[3]
    mask = np.asarray(mask_img.dataobj) > 0
    try:
        data = masked_series(np.asarray(bold.dataobj, dtype=np.float32), mask)
    except Exception as exc:  # truncated gzip streams, short files
        raise BadDataError(f"cannot read BOLD data ({exc})", files.bold) from exc
    events = load_events(files.events, n_volumes, files.repetition_time)
    trials = run_trials(events, files.subject, files.session, files.run, stimulus_params(stimuli), files.events,
                        task=files.task)
    if trials.empty:
        raise BadDataError("no events row is a trial (none names a stimulus)", files.events)
    confounds, choice = load_confounds(files.confounds, confounds_setting, n_volumes)
    modulations = event_modulations(events, stimulus_params(stimuli), files.events)
    frame_times = np.arange(n_volumes) * files.repetition_time + files.start_time
    # non-trial events with a modulation: nuisance regressors, regressed out like the confounds
    nuisance = {group.name: event_regressor(group.onsets, group.durations, group.modulations, frame_times)
                for group in modulations.nuisance}
    confounds = confounds.assign(**nuisance)
    psc, usable = percent_signal_change(data)
    # NaN or constant voxels are never bright: one NaN voxel made the 99th percentile NaN and the noise pool empty
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf voxels are not usable: 0 below
        mean_intensity = np.where(usable, data.mean(axis=0), 0.0)
    del data
    run = SessionRun(data=psc, onsets=trials["onset"].to_numpy(float), durations=trials["duration"].to_numpy(float),
                     stim_ids=trials["stim_id"].to_numpy(str), repetition_time=files.repetition_time,
                     confounds=confounds.to_numpy(float), mean_intensity=mean_intensity,
                     modulations=modulations.trials, start_time=files.start_time)
    return run, trials, usable, choice, list(confounds.columns)


def report_design(run: SessionRun, confound_names: list[str], high_pass_hz: float,
                  drift_model: str = "polynomial") -> pd.DataFrame:
    """Canonical-HRF single-trial design of a run with its nuisance regressors, as a table for the report.

    The drift columns are those the estimators project out (``drift_model``, see
    :func:`~bids_recon.glm.estimators.drift_regressors`).
    """
    trials = trial_regressors(canonical_library(), run.onsets, run.durations, run.frame_times, run.modulations)[0]
    drift = drift_regressors(run.n_volumes, run.repetition_time, high_pass_hz, drift_model)
    columns = {f"{TRIAL_PREFIX}{i:04d}": trials[:, i] for i in range(trials.shape[1])}
    if run.confounds is not None:
        columns.update({name: run.confounds[:, i] for i, name in enumerate(confound_names)})
    columns.update({f"drift_{k + 1}": drift[:, k] for k in range(drift.shape[1])})
    columns["constant"] = np.ones(run.n_volumes)
    return pd.DataFrame(columns)


def estimate_session_betas(
    runs: list[RunFiles],
    mask_img: nib.Nifti1Image,
    params: GlmParams | None = None,
    stimuli: StimulusParams | str | None = None,
    seed: int = 0,
    options: FitOptions | None = None,
    store: Path | None = None,
    voxels_per_chunk: int | None = None,
) -> SessionBetas:
    """Single-trial betas of the runs of one session inside the brain mask.

    Runs are read one at a time into float32 percent signal change (whole-brain time series are never
    held in float64); see :func:`bids_recon.glm.estimators.fit_session` for the estimators.

    Parameters
    ----------
    runs : list of RunFiles
        The session's runs, in acquisition order.
    mask_img : nibabel image
        Brain mask on the runs' grid; voxels inside it are estimated.
    params : GlmParams, optional
        Estimator, drift model and cut-off, confounds (resolved per run by
        :func:`~bids_recon.design.confounds.resolve_confounds`), noise components and their selection, ridge selection
        (defaults when omitted).
    stimuli : StimulusParams or str, optional
        How events rows name stimuli (which rows are trials: every presented image gets a regressor); a string
        is the column of the ``files`` resolver. The defaults when omitted.
    seed : int
        Seed of the random steps (noise-pool subset, parallel analysis).
    options : FitOptions, optional
        The estimators' knobs that are not settings (:class:`~bids_recon.glm.estimators.FitOptions`: ``library``,
        ``polynomial_degree``, ``reselect_hrf``, ...); their defaults when omitted.
    store : Path, optional
        A folder for the session's time series on disk: each run is read once and written there, the estimator
        reads a chunk of voxels at a time (memory bounded whatever the number of voxels for the estimators whose
        card is ``chunked``: the default and the other ``fithrf`` estimators) and the betas are memory maps there.
        Without it, the whole session is held in memory. The betas are the same either way.
    voxels_per_chunk : int, optional
        With ``store``: voxels per chunk (default: about 192 MB of time series per chunk).
    """
    params = params or GlmParams()
    if store is None:
        loaded = [_load_run(files, mask_img, list(params.confounds), stimuli) for files in runs]
        session_runs = [run for run, *_ in loaded]
        fit = fit_session(session_runs, params, seed, options or FitOptions())
        usable = np.logical_and.reduce([u for _, _, u, *_ in loaded])
        betas = [np.where(usable[None, :], b, 0.0).astype(np.float32) for b in fit.betas]
    else:
        loaded, fit = _fit_from_store(runs, mask_img, params, stimuli, seed, options, Path(store), voxels_per_chunk)
        session_runs = [run for run, *_ in loaded]
        usable = np.logical_and.reduce([u for _, _, u, *_ in loaded])
        betas = fit.betas
        for run_betas in betas:  # unusable voxels: 0, in place (memory maps)
            run_betas[:, ~usable] = 0.0
    design = report_design(session_runs[0], loaded[0][4], params.high_pass_hz, params.drift_model)
    return SessionBetas(betas=betas, trials=[t for _, t, *_ in loaded], design=design, fit=fit,
                        n_unusable_voxels=int((~usable).sum()), confounds=[c for _, _, _, c, _ in loaded])


#: Runs read at once into the session store (threads).
READ_THREADS = 2


def _fit_from_store(runs: list[RunFiles], mask_img: nib.Nifti1Image, params: GlmParams,
                    stimuli: StimulusParams | str | None, seed: int, options: FitOptions | None, store: Path,
                    voxels_per_chunk: int | None) -> tuple[list, SessionFit]:
    """Each run read once into ``store`` (percent signal change, ``.npy``), then fitted a chunk of voxels at a time
    (:func:`~bids_recon.glm.estimators.fit_session_source`); the betas are memory maps in ``store``. At most two runs'
    time series are ever in memory, besides one chunk of voxels of all runs."""
    store.mkdir(parents=True, exist_ok=True)

    def read(index: int) -> tuple:
        run, *rest = _load_run(runs[index], mask_img, list(params.confounds), stimuli)
        path = store / f"psc_{index:02d}.npy"
        np.save(path, run.data)
        return path, (replace(run, data=np.zeros((run.n_volumes, 0), dtype=np.float32)), *rest)

    # two runs at a time: gzip decompression and numpy release the GIL, so two threads read about twice as fast
    # on two cores, and memory holds at most two runs' volumes
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        results = list(pool.map(read, range(len(runs))))
    files = [path for path, _ in results]
    loaded = [entry for _, entry in results]
    templates = [entry[0] for entry in loaded]
    n_voxels = int(np.load(files[0], mmap_mode="r").shape[1])
    betas_out = [np.lib.format.open_memmap(store / f"betas_{index:02d}.npy", mode="w+", dtype=np.float32,
                                           shape=(len(t.onsets), n_voxels)) for index, t in enumerate(templates)]
    fit = fit_session_source(NpySource(files, templates), params, seed, options or FitOptions(), betas_out,
                             voxels_per_chunk)
    for path in files:  # the time series are no longer needed (the betas are)
        path.unlink()
    return loaded, fit


#: Bytes of betas z-scored at once by :func:`combine_runs` (a block of voxels over all trials).
COMBINE_BLOCK_BYTES = 64 * 2**20


def combine_runs(
    betas: list[np.ndarray], trials: list[pd.DataFrame], test_min_repeats: int = StimulusParams.test_min_repeats,
    zscore: bool = GlmParams.zscore_per_session,
    split_from_events: bool = False, out_file: Path | None = None, block_bytes: int = COMBINE_BLOCK_BYTES,
    split: bool = True, need_training: bool = True,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Stack runs in acquisition order, z-score per session, number repeats and assign the split.

    Rows that are modelled but not decoded (``split`` ``none``: catch images, one-back repeats) are dropped here,
    from the betas and the table alike. What crosses is checked (:mod:`bids_recon.invariants`): each run's betas
    finite and as many rows as its trial table, the result finite and z-scored within each session (a dataset without
    sessions is one group, ``n/a``), the trial table's labels never missing.

    Parameters
    ----------
    betas : list of ndarray, each (n_trials_run, n_voxels)
        Arrays or memory maps (``np.load(path, mmap_mode="r")``): they are read a block of voxels at a time.
    trials : list of pandas.DataFrame
        The matching trial tables.
    test_min_repeats, split_from_events
        How the test set is chosen (see :func:`bids_recon.design.repeats.assign_repeats_and_split`).
    out_file : Path, optional
        Write the stacked betas there (``.npy``, atomically) and return them as a read-only memory map, so
        that memory stays near ``block_bytes`` however many trials and voxels there are (NSD: 30,000 trials x
        the whole brain would not fit). Without it, the result is an array in memory.
    block_bytes : int
        Size of the blocks of voxels z-scored at once.
    split : bool
        Assign train/test (the default). ``False`` (``--betas-only`` without ``--test-split``): only repeats are
        numbered, ``split`` is ``n/a`` and no train/test set is required.

    Returns
    -------
    betas : ndarray or memmap, shape (n_trials, n_voxels), float32
    trials : pandas.DataFrame
        The subject's trial table (see :data:`bids_recon.design.TRIAL_COLUMNS`).

    Raises
    ------
    BadDataError
        Runs that do not fit together (voxel counts, rows against their tables).
    InvariantError
        Betas not finite, labels missing, z-scores not standardised (exit 70).
    """
    from bids_recon.invariants import check_finite, check_standardised, check_trial_table

    if len(betas) != len(trials) or not betas:
        raise BadDataError(f"need one trial table per beta array and at least one run ({len(betas)} beta arrays, "
                           f"{len(trials)} trial tables)")
    n_voxels = {b.shape[1] for b in betas}
    if len(n_voxels) != 1:
        raise BadDataError(f"runs have different voxel counts {sorted(n_voxels)}")
    for run_betas, table in zip(betas, trials, strict=True):
        if len(run_betas) != len(table):
            raise BadDataError(f"{len(run_betas)} beta rows but {len(table)} trials in a run")
    keep = [decoded_trials(t) for t in trials]
    table = pd.concat([t[k] for t, k in zip(trials, keep, strict=True)], ignore_index=True)
    table = (assign_repeats_and_split(table, test_min_repeats, split_from_events, need_training) if split else
             number_repeats(table))
    shape = (len(table), n_voxels.pop())
    check_trial_table(table, "participant trial table", out_file, n_rows=shape[0])
    sessions = table["session"].astype(str).to_numpy()
    block = max(1, block_bytes // (4 * max(shape[0], 1)))

    def fill(target: np.ndarray) -> None:
        for start in range(0, shape[1], block):
            stop = min(start + block, shape[1])
            stacked = np.concatenate([np.asarray(b[:, start:stop], dtype=np.float32)[k]
                                      for b, k in zip(betas, keep, strict=True)])
            check_finite(stacked, f"single-trial betas of the runs (voxels {start}-{stop - 1})", out_file)
            done = zscore_by_group(stacked, sessions) if zscore else stacked
            if zscore:
                check_standardised(done, sessions, "betas z-scored per session", out_file, start)
            target[:, start:stop] = done

    if out_file is None:
        result = np.zeros(shape, dtype=np.float32)  # every column block is filled by ``fill``
        fill(result)
        return result, table

    def write(tmp: Path) -> None:
        target = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        fill(target)
        target.flush()
        del target

    atomic_write(Path(out_file), write)
    return np.load(out_file, mmap_mode="r"), table


def read_betas(betas_file: Path, trials_file: Path, mask_file: Path | None = None,
               what: str = "z-scored betas") -> tuple[np.ndarray, pd.DataFrame]:
    """Read betas another stage wrote, as a read-only memory map, with their trial table, checked where they are read:
    the table's contract, as many rows as the table, as many columns as the mask has voxels
    (:mod:`bids_recon.invariants`; values are checked by the reader on the columns it uses).

    Returns
    -------
    betas : memmap, shape (n_trials, n_voxels)
    trials : pandas.DataFrame
    """
    from bids_recon.invariants import check_shape, check_trial_table

    betas = np.load(betas_file, mmap_mode="r")
    trials = read_trials(trials_file)
    check_trial_table(trials, "trial table", trials_file, n_rows=betas.shape[0])
    n_voxels = None if mask_file is None else int((np.asarray(nib.load(mask_file).dataobj) > 0).sum())
    check_shape(betas, (len(trials), n_voxels), what, betas_file,
                ("rows = trials of the trial table", "columns = voxels of the brain mask"))
    return betas, trials


def betas_to_image(betas: np.ndarray, mask_img: nib.Nifti1Image) -> nib.Nifti1Image:
    """A 4D float32 image (one volume per trial) from ``(n_trials, n_voxels)`` betas inside ``mask_img``."""
    mask = np.asarray(mask_img.dataobj) > 0
    volume = np.zeros((*mask.shape, len(betas)), dtype=np.float32)
    volume[mask] = betas.T
    img = nib.Nifti1Image(volume, mask_img.affine)
    img.header.set_xyzt_units("mm")
    return img
