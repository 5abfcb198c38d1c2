"""Each voxel's HRF: the library member whose model explains the most of its variance (GLMsingle's fithrf).

One QR per run and HRF, not per voxel. ``hrf_selection="singletrial"`` (GLMsingle's) fits one regressor per trial;
``"onoff"`` one regressor for all trials.
"""

from __future__ import annotations

import numpy as np

from bids_recon.glm.estimators.session import SessionRun, warn
from bids_recon.glm.estimators.stages.design import SessionModel
from bids_recon.glm.hrf import default_library

#: Models whose variance explained picks each voxel's HRF.
HRF_SELECTIONS = ("singletrial", "onoff")
#: Above this share of the task voxels at the library's first or last HRF, the fit warns.
AT_ENDS_WARNING = 0.5


def design_qr(design: np.ndarray) -> np.ndarray:
    """Orthonormal basis ``Q`` of a design's columns (its QR decomposition)."""
    q, _ = np.linalg.qr(design)
    return q


def select_hrf(runs: list[SessionRun], designs: list[np.ndarray], how: str = "singletrial",
               voxels: np.ndarray | None = None, members: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per voxel (of ``voxels``, default all), the HRF whose model explains the most variance; and that R².

    ``how="singletrial"`` fits one regressor per trial (GLMsingle's choice); ``"onoff"`` fits one
    regressor for all trials. ``members`` (library indices, default all) restricts the HRFs tried.
    """
    members = np.arange(designs[0].shape[0]) if members is None else np.asarray(members)
    n_out = runs[0].data.shape[1] if voxels is None else len(voxels)
    explained = np.zeros((len(members), n_out))
    total = np.zeros(n_out)
    for run, x in zip(runs, designs, strict=True):
        data = run.data if voxels is None else run.data[:, voxels]
        total += np.einsum("ij,ij->j", data, data, dtype=np.float64)
        for i, k in enumerate(members):
            design = x[k] if how == "singletrial" else x[k].sum(axis=1, keepdims=True)
            projected = design_qr(design).T.astype(np.float32) @ data
            explained[i] += np.einsum("ij,ij->j", projected, projected)
    r2 = explained / np.where(total > 0, total, 1.0)
    best = np.argmax(r2, axis=0)
    return members[best], r2[best, np.arange(r2.shape[1])]


def chosen_r2(runs: list[SessionRun], designs: list[np.ndarray], hrf_index: np.ndarray) -> np.ndarray:
    """Variance explained by the single-trial model with each voxel's chosen HRF: ``(n_voxels,)``."""
    explained = np.zeros(runs[0].data.shape[1])
    total = np.zeros_like(explained)
    for run, x in zip(runs, designs, strict=True):
        total += (run.data.astype(np.float64) ** 2).sum(axis=0)
        for k in np.unique(hrf_index):
            cols = np.flatnonzero(hrf_index == k)
            q = design_qr(x[k]).astype(np.float32)
            explained[cols] += ((q.T @ run.data[:, cols]) ** 2).sum(axis=0)
    return explained / np.where(total > 0, total, 1.0)


#: Library members tried by :func:`screen_hrfs` (evenly spread over GLMsingle's 20, earliest to latest).
SCREEN_MEMBERS = 5


def choose_hrfs(model: SessionModel, how: str = "singletrial") -> tuple[np.ndarray, np.ndarray]:
    """Each voxel's HRF index ``(n_voxels,)`` and the single-trial R² ``(n_voxels,)`` of the model with it."""
    hrf_index, r2 = select_hrf(model.runs, model.designs, how)
    if how != "singletrial":
        r2 = chosen_r2(model.runs, model.designs, hrf_index)
    return hrf_index, r2


def screen_hrfs(model: SessionModel, how: str = "singletrial") -> tuple[np.ndarray, np.ndarray]:
    """:func:`choose_hrfs` among :data:`SCREEN_MEMBERS` members spread over the library: a quarter of the cost,
    for choosing voxels (task-responsive, noise pool) before every voxel's HRF is chosen from the whole library."""
    n_hrfs = len(model.library)
    members = np.unique(np.round(np.linspace(0, n_hrfs - 1, min(SCREEN_MEMBERS, n_hrfs))).astype(int))
    hrf_index, r2 = select_hrf(model.runs, model.designs, how, members=members)
    if how != "singletrial":
        r2 = chosen_r2(model.runs, model.designs, hrf_index)
    return hrf_index, r2


def single_hrf(model: SessionModel) -> tuple[np.ndarray, np.ndarray]:
    """HRF index 0 for every voxel and its single-trial R² (a one-HRF library)."""
    return np.zeros(model.n_voxels, dtype=int), select_hrf(model.runs, model.designs)[1]


def _histogram(values: np.ndarray, n_bins: int) -> list[int]:
    return [int(c) for c in np.bincount(np.asarray(values, dtype=int), minlength=n_bins)[:n_bins]]


def record_hrfs(model: SessionModel, hrf_index: np.ndarray, task: np.ndarray) -> None:
    """Put the library's peaks and the histograms of the chosen HRFs in the fit's info; warn when most task voxels
    sit at either end of the library."""
    library, info = model.library, model.info
    info["HRFTimeToPeak"] = [round(float(t), 2) for t in library.time_to_peak]
    info["HRFIndexHistogram"] = _histogram(hrf_index, len(library))
    info["HRFIndexHistogramTaskVoxels"] = _histogram(hrf_index[task], len(library))
    at_ends = float(np.mean((hrf_index[task] == 0) | (hrf_index[task] == len(library) - 1)))
    if len(library) > 4 and at_ends > AT_ENDS_WARNING:
        warn(info, f"{at_ends:.0%} of the task-responsive voxels chose the first or the last HRF of the library: "
                   "their HRFs may lie outside it, or the single-trial fits are too noisy to tell HRFs apart.")


def library_text() -> str:
    """The default library, for the methods text."""
    library = default_library()
    return (f"GLMsingle's library of {len(library)} HRFs derived from NSD (time to peak "
            f"{library.time_to_peak.min():g}-{library.time_to_peak.max():g} s)")
