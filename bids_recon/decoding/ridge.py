"""Ridge decoders from voxel patterns to stimulus features (alpha per target by cross-validation)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_recon.decoding.params import DecodingParams
from bids_recon.decoding.solver import EigenRidge
from bids_recon.errors import BadDataError, UsageError
from bids_recon.invariants import check_finite
from bids_recon.io import save_npz, write_json


@dataclass
class RidgeDecoder:
    """A fitted linear decoder ``Y ≈ ((X - x_mean) / x_scale) @ weights + y_mean``.

    Attributes
    ----------
    weights : ndarray, shape (n_voxels, n_targets)
    alphas : ndarray, shape (n_targets,)
        Regularisation chosen per target by cross-validation.
    cv_scores : ndarray, shape (n_targets,)
        Cross-validated R² at the chosen alpha.
    x_mean, x_scale : ndarray, shape (n_voxels,)
        Standardisation of the inputs (training statistics).
    y_mean : ndarray, shape (n_targets,)
    voxel_indices : ndarray, shape (n_voxels,)
        Columns of the brain-mask beta matrix the decoder reads.
    info : dict
        Provenance (solver, folds, alphas tried...).
    """

    weights: np.ndarray
    alphas: np.ndarray
    cv_scores: np.ndarray
    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: np.ndarray
    voxel_indices: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, betas: np.ndarray) -> np.ndarray:
        """Decode features from betas ``(n_samples, n_brain_voxels)``; returns ``(n_samples, n_targets)``."""
        x = (betas[:, self.voxel_indices] - self.x_mean) / self.x_scale
        return (x @ self.weights + self.y_mean).astype(np.float32)

    def save(self, path: Path, sidecar: dict[str, Any] | None = None) -> Path:
        """Save arrays to ``path`` (.npz) and a JSON sidecar beside it."""
        save_npz(path, weights=self.weights, alphas=self.alphas, cv_scores=self.cv_scores, x_mean=self.x_mean,
                 x_scale=self.x_scale, y_mean=self.y_mean, voxel_indices=self.voxel_indices,
                 info=np.asarray(json.dumps(self.info)))
        meta = {**self.info, **(sidecar or {}),
                "NumberOfVoxels": int(len(self.voxel_indices)), "NumberOfTargets": int(self.weights.shape[1]),
                "MedianCVScore": float(np.median(self.cv_scores))}
        write_json(Path(str(path).removesuffix(".npz") + ".json"), meta)
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> RidgeDecoder:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files if k != "info"}
            info = json.loads(str(data["info"]))
        return cls(**arrays, info=info)


SOLVERS = ("eigen", "himalaya")


def fit_ridge_decoder(
    betas: np.ndarray,
    targets: np.ndarray,
    voxel_indices: np.ndarray,
    params: DecodingParams | None = None,
    device: str = "cpu",
    *,
    target_rows: np.ndarray | None = None,
) -> RidgeDecoder:
    """Fit ridge from betas to targets with inputs standardised and alpha chosen per target.

    Parameters
    ----------
    betas : ndarray, shape (n_trials, n_brain_voxels)
        Training betas (z-scored per session).
    targets : ndarray, shape (n_trials, n_targets), or (n_rows, n_targets) with ``target_rows``
        Features of each trial's stimulus, or of each stimulus (a memory map is fine: read in batches).
    voxel_indices : ndarray of int, shape (n_voxels,)
        Columns of ``betas`` to use (the ROI).
    params : DecodingParams, optional
        The ``[workflow.decoding]`` settings (defaults when omitted): ``alphas`` (candidate regularisation strengths,
        in the units of the standardised betas); ``cv`` (how alpha is chosen per target: generalised or exact
        leave-one-out cross-validation from one eigendecomposition, seconds to minutes at NSD scale, or
        ``cv_folds``-fold CV, the paper's 5-fold, ~K times the decomposition); ``cv_folds`` (contiguous folds:
        trials are in acquisition order, so folds do not mix neighbours; ``kfold`` and ``himalaya`` only);
        ``solver`` (``eigen``: :class:`bids_recon.decoding.solver.EigenRidge`; ``himalaya``: its RidgeCV, or
        KernelRidgeCV when trials < voxels, with ``cv_folds`` contiguous folds as Takagi & Nishimoto; the caller's
        himalaya backend is restored afterwards); ``backend`` (EigenRidge's: ``auto`` is numpy on the CPU, torch on
        CUDA); ``batch_size`` (targets per batch, 0: from a 128 MB block); ``eigh_threads`` (BLAS threads of the
        eigendecomposition, numpy backend; 0: the caller's).
    device : {"cpu", "cuda"}
        Where the solver runs (torch on CUDA; himalaya's ``torch_cuda`` backend for ``solver="himalaya"``).
    target_rows : ndarray of int, shape (n_trials,), optional
        Row of ``targets`` each trial shows: targets stay per stimulus and are never expanded per trial.
    """
    params = params or DecodingParams()
    alphas, cv_folds, cv, solver, backend = params.alphas, params.cv_folds, params.cv, params.solver, params.backend
    batch_size, eigh_threads = params.batch_size or None, params.eigh_threads or None
    if solver not in SOLVERS:
        raise UsageError(f"ridge solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    n_rows = len(targets) if target_rows is None else len(target_rows)
    if len(betas) != n_rows:
        what = "target rows" if target_rows is None else "target_rows entries (one per trial)"
        raise BadDataError(f"{len(betas)} beta rows but {n_rows} {what}")
    voxel_indices = np.asarray(voxel_indices, dtype=np.int64)
    x = np.asarray(betas[:, voxel_indices], dtype=np.float32)
    if solver == "himalaya":
        y = np.asarray(targets if target_rows is None else targets[np.asarray(target_rows)], dtype=np.float32)
        return _fit_himalaya(x, y, voxel_indices, alphas, cv_folds, device)
    model = EigenRidge(x, alphas, target_rows=target_rows, cv=cv, n_folds=cv_folds, backend=backend, device=device,
                       eigh_threads=eigh_threads)
    del x
    with np.errstate(divide="ignore", invalid="ignore"):
        fit = model.fit(targets, batch_size=batch_size)
    return RidgeDecoder(
        weights=fit.weights, alphas=fit.alphas, cv_scores=fit.cv_scores, x_mean=model.x_mean,
        x_scale=model.x_scale, y_mean=fit.y_mean, voxel_indices=voxel_indices,
        info={**fit.info, "ConstantTargets": int(fit.constant.sum()),
              "Description": describe_solver(fit.info)},
    )


def describe_solver(info: dict[str, Any]) -> str:
    """One methods sentence from a decoder's ``info``: solver, form, CV and alphas."""
    alphas = info.get("AlphasTried", [])
    span = f"{len(alphas)} values ({min(alphas):g} to {max(alphas):g})" if alphas else "the candidate values"
    if str(info.get("Solver", "")).startswith("himalaya"):
        how = (f"{info.get('CVFolds', 5)}-fold contiguous cross-validation "
               f"(himalaya {info['Solver'].split('.')[-1]})")
    else:
        gram = "X'X (voxels x voxels)" if info.get("Form") == "primal" else "XX' (trials x trials)"
        how = f"{info.get('CV', info.get('CVKind', 'cross-validation'))}, computed from one float64 " \
              f"eigendecomposition of {gram}"
        if info.get("CVKind") == "kfold":
            how += " and one per fold"
    return (f"Ridge regression (inputs standardised with the training mean and sd, no intercept beyond centring) "
            f"with alpha chosen per target among {span} by {how}.")


def _fit_himalaya(x: np.ndarray, y: np.ndarray, voxel_indices: np.ndarray, alphas: list[float] | np.ndarray,
                  cv_folds: int, device: str) -> RidgeDecoder:
    """The decoder as Takagi & Nishimoto fit it: himalaya RidgeCV / KernelRidgeCV, K contiguous folds."""
    from himalaya.backend import get_backend, set_backend
    from himalaya.kernel_ridge import KernelRidgeCV
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import r2_score
    from sklearn.model_selection import KFold

    x_mean = x.mean(axis=0)
    x_scale = x.std(axis=0)
    x_scale[x_scale == 0] = 1.0
    x = (x - x_mean) / x_scale
    y_mean = y.mean(axis=0)
    y = y - y_mean
    alphas = np.asarray(alphas, dtype=np.float64)
    kernel = x.shape[0] < x.shape[1]
    # himalaya scores with the negative squared error by default: ask for R² so that the saved CV scores
    # mean what the report says (alpha choice per target is the same up to fold weighting)
    params = {"alphas": alphas, "cv": KFold(n_splits=cv_folds, shuffle=False),
              "solver_params": {"score_func": r2_score}}
    previous = get_backend().name  # set_backend is global: give the caller theirs back
    try:
        backend = set_backend("torch_cuda" if device == "cuda" else "numpy", on_error="raise")
        model = KernelRidgeCV(kernel="linear", **params) if kernel else RidgeCV(**params)
        with np.errstate(divide="ignore", invalid="ignore"):  # R² of a constant target is 0/0
            model.fit(x, y)
        weights = backend.to_numpy(model.get_primal_coef() if kernel else model.coef_)
        cv_scores = np.asarray(backend.to_numpy(model.cv_scores_), dtype=np.float32).reshape(-1)
        best = np.asarray(backend.to_numpy(model.best_alphas_), dtype=np.float64)
    finally:
        set_backend(previous)
    constant = y.std(axis=0) == 0  # e.g. the BOS position of a text embedding: nothing to decode, score 0
    cv_scores[constant | ~np.isfinite(cv_scores)] = 0.0
    info = {"Solver": "himalaya." + type(model).__name__, "Form": "kernel" if kernel else "primal",
            "AlphasTried": alphas.tolist(), "CVKind": "kfold",
            "CV": f"{cv_folds}-fold contiguous cross-validation (R² averaged over folds)",
            "CVFolds": cv_folds, "CVScore": "R2", "ConstantTargets": int(constant.sum()),
            "Backend": "torch_cuda" if device == "cuda" else "numpy", "Device": device,
            "InputScaling": "standardised with training mean and sd"}
    info["Description"] = describe_solver(info)
    return RidgeDecoder(weights=np.asarray(weights, dtype=np.float32), alphas=best, cv_scores=cv_scores,
                        x_mean=x_mean, x_scale=x_scale, y_mean=y_mean, voxel_indices=voxel_indices, info=info)


def average_repeats(betas: np.ndarray, stim_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average betas over presentations of the same stimulus.

    Parameters
    ----------
    betas : ndarray, shape (n_trials, n_voxels)
    stim_ids : ndarray, shape (n_trials,)

    Returns
    -------
    mean_betas : ndarray, shape (n_stimuli, n_voxels)
    unique_ids : ndarray, shape (n_stimuli,)
        Sorted stimulus ids.
    counts : ndarray, shape (n_stimuli,)
    """
    unique_ids, inverse, counts = np.unique(np.asarray(stim_ids), return_inverse=True, return_counts=True)
    sums = np.zeros((len(unique_ids), betas.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, betas)
    return (sums / counts[:, None]).astype(np.float32), unique_ids, counts


@dataclass
class DecodedTest:
    """Decoded features of the test stimuli (repeat-averaged betas)."""

    stim_ids: np.ndarray  # (n_test,)
    n_trials: np.ndarray  # (n_test,) presentations averaged
    decoded: np.ndarray  # (n_test, n_targets)
    true: np.ndarray  # (n_test, n_targets)

    def save(self, path: Path) -> Path:
        return save_npz(path, stim_ids=self.stim_ids, n_trials=self.n_trials, decoded=self.decoded, true=self.true)

    @classmethod
    def load(cls, path: Path) -> DecodedTest:
        with np.load(path) as data:
            return cls(data["stim_ids"], data["n_trials"], data["decoded"], data["true"])


def train_and_decode(
    betas: np.ndarray,
    trials: pd.DataFrame,
    voxel_indices: np.ndarray,
    stim_ids: np.ndarray,
    features: np.ndarray,
    params: DecodingParams | None = None,
    device: str = "cpu",
) -> tuple[RidgeDecoder, DecodedTest]:
    """Train a decoder on single training trials and decode the repeat-averaged test stimuli.

    Parameters
    ----------
    betas : ndarray, shape (n_trials, n_brain_voxels)
        Z-scored single-trial betas, rows aligned with ``trials``; a memory map is fine: only the ROI
        columns are read into memory.
    trials : pandas.DataFrame
        Trial table with ``stim_id`` and ``split``.
    voxel_indices : ndarray of int
        ROI columns of ``betas``.
    stim_ids : ndarray of str, shape (n_stimuli,)
    features : ndarray, shape (n_stimuli, n_targets)
        Target features of each stimulus (a memory-mapped ``.npy`` is fine: they are read in batches of
        targets and never expanded per trial).
    params, device
        As :func:`fit_ridge_decoder` (the ``[workflow.decoding]`` settings, defaults when omitted).
    """
    if len(betas) != len(trials):
        raise BadDataError(f"{len(betas)} beta rows but {len(trials)} trials")
    row_of = {s: i for i, s in enumerate(np.asarray(stim_ids).astype(str))}
    trial_stims = trials["stim_id"].astype(str).to_numpy()
    missing = sorted(set(trial_stims) - set(row_of))
    if missing:
        raise BadDataError(f"no features for stimuli {missing[:5]}")
    train = (trials["split"] == "train").to_numpy()
    target_rows = np.array([row_of[s] for s in trial_stims[train]], dtype=np.int64)
    voxel_indices = np.asarray(voxel_indices, dtype=np.int64)
    roi_betas = np.asarray(betas[:, voxel_indices], dtype=np.float32)  # (n_trials, n_roi): all that is held
    check_finite(roi_betas, "betas of the decoder's ROI voxels")
    check_finite(features, "decoding targets")
    in_roi = np.arange(len(voxel_indices))
    decoder = fit_ridge_decoder(roi_betas[train], features, in_roi, params, device, target_rows=target_rows)
    test = ~train
    mean_betas, test_ids, counts = average_repeats(roi_betas[test], trial_stims[test])
    decoded = decoder.predict(mean_betas)
    check_finite(decoded, "decoded test features")
    true = np.asarray(features[[row_of[s] for s in test_ids]])
    decoder = replace(decoder, voxel_indices=voxel_indices)  # saved as columns of the whole-brain betas
    return decoder, DecodedTest(test_ids.astype(str), counts, decoded, true.astype(np.float32))
