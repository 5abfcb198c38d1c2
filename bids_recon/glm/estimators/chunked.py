"""The ``fithrf`` family voxel chunk by voxel chunk: the same betas whatever the number of voxels, in bounded memory.

Every per-voxel step (nuisance projection, HRF choice, least squares, the marginal-likelihood ridge) runs on one
chunk of voxels at a time, read from a :class:`VoxelSource`; the session's decisions (task voxels, noise pool, the
cross-validations, the noise components and how many are kept, the ridge diagnostics) are made once, on the task and
noise-pool voxels only. A session in memory is one chunk: the in-memory estimators and a whole-brain session read
from files run the same code (``tests/glm/test_chunked.py`` checks that the betas agree).

Two passes over the voxels and one over a few thousand: screen (each voxel's best HRF among a few spread over the
library, its R² and its held-out R², to choose the task voxels and the noise pool), decide (on the task and
noise-pool voxels, each with its HRF from the whole library), apply (components projected out, every voxel's HRF
from the whole library, betas written to ``betas_out``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from bids_recon.errors import UsageError
from bids_recon.glm.estimators.options import FitOptions
from bids_recon.glm.estimators.session import LOGGER, GlmSettings, SessionFit, SessionRun
from bids_recon.glm.estimators.stages import design, hrfs, noise, ridge
from bids_recon.glm.estimators.stages.crossval import check_repeats, count_repeats
from bids_recon.glm.estimators.stages.heldout import heldout_r2
from bids_recon.glm.estimators.stages.ols import grouped_betas
from bids_recon.glm.estimators.stages.task import task_voxels
from bids_recon.glm.hrf import default_library

#: Bytes of time series (all runs of a session, float32) held per chunk of voxels by :func:`chunk_voxels`.
CHUNK_BYTES = 192 * 2**20


class VoxelSource(Protocol):
    """A session's runs whose data are read a set of voxels at a time."""

    templates: list[SessionRun]  # the runs' designs and mean intensities; their ``data`` have no voxel columns

    @property
    def n_voxels(self) -> int: ...

    def runs(self, voxels: slice | np.ndarray) -> list[SessionRun]:
        """The runs restricted to ``voxels``: fresh float32 copies (the estimators residualise them in place)."""


def _template(run: SessionRun) -> SessionRun:
    return replace(run, data=np.zeros((run.n_volumes, 0), dtype=np.float32))


@dataclass
class ArraySource:
    """Runs held in memory (:class:`SessionRun` with their whole ``data``)."""

    whole: list[SessionRun]

    def __post_init__(self) -> None:
        self.templates = [_template(run) for run in self.whole]

    @property
    def n_voxels(self) -> int:
        return int(self.whole[0].data.shape[1])

    def runs(self, voxels: slice | np.ndarray) -> list[SessionRun]:
        if isinstance(voxels, slice) and voxels == slice(0, self.n_voxels):
            return self.whole  # one chunk: the runs themselves, residualised in place as before
        return [replace(run, data=np.array(run.data[:, voxels], dtype=np.float32),
                        mean_intensity=None if run.mean_intensity is None else run.mean_intensity[voxels])
                for run in self.whole]


@dataclass
class NpySource:
    """Runs whose percent-signal-change data live in ``.npy`` files ``(n_volumes, n_voxels)`` float32, one per run
    (:func:`bids_recon.glm.runs.estimate_session_betas` writes them); ``templates`` carry everything else."""

    files: list[Path]
    templates: list[SessionRun]

    @property
    def n_voxels(self) -> int:
        return int(np.load(self.files[0], mmap_mode="r").shape[1])

    def runs(self, voxels: slice | np.ndarray) -> list[SessionRun]:
        out = []
        for path, template in zip(self.files, self.templates, strict=True):
            stored = np.load(path, mmap_mode="r")
            data = np.array(stored[:, voxels], dtype=np.float32)
            del stored  # unmapped: the pages read do not stay in this process
            out.append(replace(template, data=data, mean_intensity=None if template.mean_intensity is None
                               else template.mean_intensity[voxels]))
        return out


class _Timer:
    """Logs how long each pass took (``bids_recon.glm``, INFO) when the session is read in several chunks."""

    def __init__(self, n_voxels: int, n_chunks: int) -> None:
        self.n_voxels, self.n_chunks, self.start = n_voxels, n_chunks, time.perf_counter()

    def done(self, what: str) -> None:
        if self.n_chunks > 1:
            now = time.perf_counter()
            LOGGER.info("GLM %s: %.1f s (%d voxels in %d chunks)", what, now - self.start, self.n_voxels,
                        self.n_chunks)
            self.start = now


def chunk_voxels(source: VoxelSource, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Voxels per chunk so that one chunk of all runs' time series takes about ``chunk_bytes``."""
    n_volumes = sum(run.n_volumes for run in source.templates)
    return max(1000, chunk_bytes // (4 * max(n_volumes, 1)))


def _prepare(runs: list[SessionRun], glm: GlmSettings, options: FitOptions) -> design.SessionModel:
    return design.prepare(runs, glm, options.library or default_library(), options.polynomial_degree)


def fit_chunked(source: VoxelSource, glm: GlmSettings, rng: np.random.Generator, options: FitOptions,
                denoise: bool, ridge_selection: str | None, betas_out: list[np.ndarray] | None = None,
                voxels_per_chunk: int | None = None) -> SessionFit:
    """``fithrf`` (``denoise=False``, ``ridge_selection=None``), ``fithrf-denoise`` or ``fithrf-denoise-rr``.

    Parameters
    ----------
    source : VoxelSource
    glm : GlmSettings
    rng : numpy.random.Generator
        Draws the task-voxel and noise-pool subsets, the shuffled repeat pairs and the parallel analysis' phases.
    options : FitOptions
    denoise : bool
        Choose and project out noise components.
    ridge_selection : {"evidence", "session", "voxel"} or None
        The ridge (``None``: least squares). Only ``"evidence"`` (per voxel) runs in several chunks; the
        cross-validated fractions need the whole session at once.
    betas_out : list of ndarray, each (n_trials_run, n_voxels), optional
        Where the betas go (arrays or writable memory maps); new arrays when omitted.
    voxels_per_chunk : int, optional
        Default: :func:`chunk_voxels`; all voxels when the source holds fewer.

    Returns
    -------
    SessionFit
        Its ``betas`` are ``betas_out``.
    """
    n_voxels = source.n_voxels
    step = max(1, voxels_per_chunk or chunk_voxels(source))
    chunks = [slice(start, min(start + step, n_voxels)) for start in range(0, n_voxels, step)]
    whole = len(chunks) == 1
    if not whole and ridge_selection not in (None, "evidence"):
        raise UsageError(f"fraction_selection {ridge_selection!r} needs the whole session in memory; only "
                         "'evidence' (the default) runs a chunk of voxels at a time")
    templates = source.templates
    betas_out = betas_out if betas_out is not None else [
        np.zeros((len(run.onsets), n_voxels), dtype=np.float32) for run in templates]
    hrf_index = np.zeros(n_voxels, dtype=int)
    r2 = np.zeros(n_voxels)
    onoff = np.zeros(n_voxels)
    screened = np.zeros(n_voxels)  # single-trial R² among a few HRFs spread over the library
    predicted = np.full(n_voxels, np.nan)  # held-out R² of the on/off model (the noise pool's criterion)
    timer = _Timer(n_voxels, len(chunks))
    # 1. screen: each voxel's best HRF among a few (not the library's middle one) and its R², to choose voxels
    info: dict = {}
    for chunk in chunks:
        model = _prepare(source.runs(chunk), glm, options)
        screen_hrf, screened[chunk] = hrfs.screen_hrfs(model, options.hrf_selection)
        onoff[chunk] = model.onoff_r2
        if denoise:
            predicted[chunk] = heldout_r2(model, screen_hrf)
        info = model.info
    timer.done("screen")
    # 2. decide, on the task voxels and the noise pool, each with its HRF from the whole library
    task = task_voxels(screened, rng, options.task_voxels_max)
    pool = (noise.noise_pool(templates, screened, rng, options.noise_pool_max, predicted) if denoise
            else np.zeros(0, dtype=int))
    chosen = np.union1d(task, pool)
    if whole:  # the session itself is the model (no second read)
        decide = whole_model = model
        hrf_index[:], r2[:] = hrfs.choose_hrfs(model, options.hrf_selection)
        chosen_hrf, chosen_r2, task_at, pool_at = hrf_index, r2, task, pool
    else:
        whole_model = None
        decide = _prepare(source.runs(chosen), glm, options)
        decide.info = info
        chosen_hrf, chosen_r2 = hrfs.choose_hrfs(decide, options.hrf_selection)
        task_at, pool_at = np.searchsorted(chosen, task), np.searchsorted(chosen, pool)
    cv = count_repeats(decide)
    n_components, cv_noise, components = 0, [], [np.zeros((run.n_volumes, 0)) for run in templates]
    reliable = False
    if denoise or ridge_selection is not None:
        without_cv = [*noise.without_repeats(glm.noise_selection)] if denoise else []
        if_unreliable = [*noise.if_unreliable(glm.noise_selection)] if denoise else []
        if ridge_selection is not None:
            without_cv.append(ridge.WITHOUT_CV)
            if_unreliable.append(ridge.IF_UNRELIABLE)
        reliable = check_repeats(decide, cv, chosen_hrf, task_at, rng, without_cv, if_unreliable)
    if denoise:
        kept = noise.denoise(decide, chosen_hrf, chosen_r2, task_at, cv, reliable, rng, glm.max_noise_components,
                             glm.noise_selection, options.noise_pool_max, options.min_cv_gain, pool=pool_at)
        n_components, cv_noise, components = kept.n_components, kept.cv_noise, kept.components
    reselect = options.reselect_hrf and n_components > 0
    if reselect and not whole:
        chosen_hrf = hrfs.choose_hrfs(decide, options.hrf_selection)[0]
    cv_fractions: list[float] = []
    if ridge_selection is not None and not whole:  # the diagnostics (the betas come per chunk below)
        cv_fractions = ridge.ridge(decide, chosen_hrf, task_at, cv, reliable, ridge_selection, options.fractions)[2]
    info["NoiseComponents"] = n_components
    timer.done("decisions")
    # 3. apply, chunk by chunk: components out, every voxel's HRF from the whole library, betas
    fractions = np.ones(n_voxels, dtype=np.float32)
    for chunk in chunks:
        if whole:
            model = whole_model
        else:
            model = _prepare(source.runs(chunk), glm, options)
            if not reselect:  # chosen before the components are projected out (as GLMsingle)
                hrf_index[chunk], r2[chunk] = hrfs.choose_hrfs(model, options.hrf_selection)
            model.project_out(components)
        if reselect:
            hrf_index[chunk], r2[chunk] = hrfs.choose_hrfs(model, options.hrf_selection)
        if ridge_selection is None:
            stacked = grouped_betas(model.runs, model.designs, hrf_index[chunk])
            info["Fractions"] = [1.0]
            per_run = model.split(stacked)
        elif whole:
            per_run, fractions, cv_fractions = ridge.ridge(model, hrf_index, task, cv, reliable, ridge_selection,
                                                           options.fractions)
        else:
            stacked, _, fractions[chunk], _ = ridge.evidence_ridge(model.runs, model.designs, hrf_index[chunk],
                                                                   model.n_nuisance(), None, min(options.fractions))
            per_run = model.split(stacked)
        for target, betas in zip(betas_out, per_run, strict=True):
            target[:, chunk] = betas
    timer.done("betas")
    hrfs.record_hrfs(decide, hrf_index, task)
    return SessionFit(betas=betas_out, hrf_index=hrf_index.astype(np.int16), r2=r2.astype(np.float32),
                      onoff_r2=onoff.astype(np.float32), fractions=fractions, n_noise_components=n_components,
                      cv_noise=cv_noise, cv_fractions=cv_fractions, info=info)
