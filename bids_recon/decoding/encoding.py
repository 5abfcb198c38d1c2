"""Voxelwise encoding models: which voxels each stimulus feature space (z, c, z_c...) predicts.

The second half of Takagi & Nishimoto (2023): a ridge model per voxel from each feature space to the betas,
trained on the training stimuli and scored by Pearson r on the held-out test stimuli (repeat-averaged betas),
with a one-sided p value per voxel (the null of r between independent Gaussian vectors of the test length, as
the paper, or a seeded permutation of the test stimuli), Benjamini-Hochberg q values, and variance partitioning
from a joint model (unique variance of z: ``R²(z+c) - R²(c)``).

Every model is fitted by :class:`bids_recon.decoding.solver.EigenRidge` on a precomputed kernel over the
training stimuli: each feature space is standardised (training mean and sd) and scaled to unit total variance
per stimulus, so that one alpha grid suits spaces of 6,400 and 59,136 features and a joint model's kernel is the
sum of its spaces' kernels (each space then weighs the same in it). The kernels are made once, from feature
columns read in blocks (memory-mapped ``.npy`` features are fine); betas are read in blocks of voxels, so a
whole brain fits in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_recon.decoding.params import ENCODING_NULLS as NULLS
from bids_recon.decoding.params import EncodingParams
from bids_recon.decoding.ridge import average_repeats
from bids_recon.decoding.solver import EigenRidge
from bids_recon.errors import BadDataError, UsageError
from bids_recon.invariants import check_features, check_finite
from bids_recon.params import default_of

#: candidate penalties for kernels of trace n_train per feature space (mean eigenvalue 1): 10^-2..10^4, 13 values
DEFAULT_ALPHAS = tuple(default_of(EncodingParams, "alphas"))
#: memory for one float32 block of betas (the voxel block is chosen from it when not given)
BLOCK_BYTES = 64 * 2**20


@dataclass
class EncodingMaps:
    """Held-out accuracy of voxelwise encoding models.

    Attributes
    ----------
    models : list of str
        Model names: one per feature space ("z", "c") and joint models ("z+c"), rows of every map below.
    r : ndarray, shape (n_models, n_voxels)
        Pearson r between predicted and measured test betas (0 where either is constant).
    p : ndarray, shape (n_models, n_voxels)
        One-sided p value of r > 0 (``info["Null"]`` says which null).
    q : ndarray, shape (n_models, n_voxels)
        Benjamini-Hochberg q values, per model over the voxels.
    r2 : ndarray, shape (n_models, n_voxels)
        Held-out coefficient of determination ``1 - SSE / SS`` (around the test mean); can be negative.
    alphas : ndarray, shape (n_models, n_voxels)
        Alpha chosen per voxel.
    cv_scores : ndarray, shape (n_models, n_voxels)
        Cross-validated R² on the training stimuli at that alpha.
    joint : str or None
        The joint model the variance partitioning uses.
    unique : dict of str to ndarray, shape (n_voxels,)
        Per feature space of ``joint``: ``R²(joint) - R²(joint without the space)``, the variance only it explains.
    shared : ndarray, shape (n_voxels,) or None
        With a two-space joint model ``a+b``: ``R²(a) + R²(b) - R²(a+b)``.
    n_test : int
        Test stimuli the scores are over.
    info : dict
        Provenance (solver, CV, null, feature sizes...).
    """

    models: list[str]
    r: np.ndarray
    p: np.ndarray
    q: np.ndarray
    r2: np.ndarray
    alphas: np.ndarray
    cv_scores: np.ndarray
    joint: str | None
    unique: dict[str, np.ndarray]
    shared: np.ndarray | None
    n_test: int
    info: dict[str, Any] = field(default_factory=dict)

    def row(self, model: str) -> int:
        """Row of ``model`` in the maps."""
        if model not in self.models:
            raise UsageError(f"no encoding model '{model}' (have: {', '.join(self.models)})")
        return self.models.index(model)


def fit_encoding_models(
    features_train: Mapping[str, Any],
    betas_train: Any,
    features_test: Mapping[str, Any],
    betas_test: Any,
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    *,
    joint: Sequence[str] | None = None,
    joint_mixes: Sequence[float] = (0.9,),
    cv: str = "gcv",
    n_folds: int = 5,
    null: str = "analytic",
    n_permutations: int = 1000,
    seed: int = 0,
    block_voxels: int | None = None,
    backend: str = "auto",
    device: str = "cpu",
    eigh_threads: int | None = None,
    scratch_dir: Path | None = None,
) -> EncodingMaps:
    """Fit voxelwise encoding models from each feature space (and a joint one) and score them on test stimuli.

    Parameters
    ----------
    features_train : mapping of str to array-like, each shape (n_train, n_features_space)
        Feature spaces of the training stimuli (e.g. ``{"z": ..., "c": ...}``), rows aligned with
        ``betas_train``; memory maps are fine (read by column blocks).
    betas_train : array-like, shape (n_train, n_voxels)
        Repeat-averaged betas of the training stimuli (see :func:`stimulus_betas`); read by voxel blocks.
    features_test : mapping of str to array-like, each shape (n_test, n_features_space)
        The same spaces for the test stimuli.
    betas_test : array-like, shape (n_test, n_voxels)
        Repeat-averaged betas of the test stimuli.
    alphas : sequence of float
        Candidate penalties, in units of kernels whose trace is n_train per feature space (default 10^-2..10^4,
        13 values).
    joint : sequence of str, optional
        Feature spaces of the joint model used for variance partitioning; default: all spaces when there are
        two or more; ``()`` for none. The models without each of its spaces are fitted too.
    joint_mixes : sequence of float
        Banded ridge by grid search: a model of several spaces tries, besides equal weights, for each value ``f``
        and each space, weight ``f`` on that space and ``1 - f`` shared by the others; per voxel the weighting
        with the best cross-validated score on the training stimuli is kept (one eigendecomposition each).
        ``()``: equal weights only (one alpha for all spaces).
    cv : {"gcv", "loo", "kfold"}
        Alpha per voxel by :class:`~bids_recon.decoding.solver.EigenRidge` on the training stimuli.
    n_folds : int
        Folds when ``cv="kfold"``.
    null : {"analytic", "permutation"}
        ``"analytic"``: r of two independent Gaussian vectors of length n_test (Student t with n_test - 2
        degrees of freedom), as Takagi & Nishimoto; ``"permutation"``: ``n_permutations`` shuffles of the test
        stimuli (the same for every voxel and model), ``p = (1 + #{r_null >= r}) / (1 + n_permutations)``.
    n_permutations : int
        Shuffles for the permutation null.
    seed : int
        Seed of the shuffles.
    block_voxels : int, optional
        Voxels per block; default: a 64 MB float32 block of training betas.
    backend, device, eigh_threads
        As :class:`~bids_recon.decoding.solver.EigenRidge`.
    scratch_dir : Path, optional
        Where the test predictions ``(n_test, n_voxels)`` are kept as a memory-mapped file (a whole brain);
        default: in memory.

    Returns
    -------
    EncodingMaps
    """
    spaces = _check_spaces(features_train, features_test, betas_train, betas_test)
    if null not in NULLS:
        raise UsageError(f"encoding null must be one of {', '.join(NULLS)}, not {null!r}")
    if null == "permutation" and n_permutations < 1:
        raise UsageError(f"n_permutations must be positive, got {n_permutations}")
    joint_spaces = tuple(spaces) if joint is None and len(spaces) > 1 else tuple(joint or ())
    unknown = sorted(set(joint_spaces) - set(spaces))
    if unknown or len(joint_spaces) == 1:
        raise UsageError(f"the joint encoding model needs two or more of the feature spaces {spaces}, got "
                         f"{list(joint_spaces)}")
    models = [(s,) for s in spaces]
    if joint_spaces:
        for left_out in joint_spaces:  # the joint model without each space, for its unique variance
            rest = tuple(s for s in joint_spaces if s != left_out)
            if rest not in models:
                models.append(rest)
        models.append(joint_spaces)
    n_train, n_voxels = betas_train.shape
    n_test = betas_test.shape[0]
    block = block_voxels or max(1, BLOCK_BYTES // (4 * n_train))

    kernels = {s: _space_kernels(features_train[s], features_test[s]) for s in spaces}
    permutations = None
    if null == "permutation":
        rng = np.random.default_rng(seed)
        permutations = np.stack([rng.permutation(n_test) for _ in range(n_permutations)])
    shape = (len(models), n_voxels)
    r, r2, p = np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.ones(shape)
    chosen, cv_scores = np.zeros(shape), np.zeros(shape, np.float32)
    info: dict[str, Any] = {}
    mixes_chosen: dict[str, list[int]] = {}
    for k, model in enumerate(models):
        mixes = _mixes(len(model), joint_mixes)
        predictions = _buffer((n_test, n_voxels), scratch_dir, f"predictions{k}")
        best = np.full(n_voxels, -np.inf)
        which = np.zeros(n_voxels, np.int64)
        for m, mix in enumerate(mixes):
            train_kernel = sum(w * kernels[s][0] for w, s in zip(mix, model, strict=True))
            test_kernel = sum(w * kernels[s][1] for w, s in zip(mix, model, strict=True))
            ridge = EigenRidge(train_kernel, alphas, cv=cv, n_folds=n_folds, precomputed=True, backend=backend,
                               device=device, eigh_threads=eigh_threads)
            del train_kernel
            for start in range(0, n_voxels, block):
                stop = min(n_voxels, start + block)
                fit = ridge.fit(np.asarray(betas_train[:, start:stop], dtype=np.float32), x_new=test_kernel,
                                return_weights=False)
                better = fit.cv_scores > best[start:stop]  # chosen on the training stimuli only
                columns = np.flatnonzero(better) + start
                best[columns], which[columns] = fit.cv_scores[better], m
                predictions[:, columns] = fit.predictions[:, better]
                chosen[k, columns], cv_scores[k, columns] = fit.alphas[better], fit.cv_scores[better]
                info = fit.info
            del ridge, test_kernel
        if len(mixes) > 1:
            mixes_chosen["+".join(model)] = np.bincount(which, minlength=len(mixes)).tolist()
        for start in range(0, n_voxels, block):
            stop = min(n_voxels, start + block)
            measured = np.asarray(betas_test[:, start:stop], dtype=np.float32)
            r[k, start:stop] = _column_r(predictions[:, start:stop], measured)
            r2[k, start:stop] = _column_r2(predictions[:, start:stop], measured)
            if permutations is not None:
                p[k, start:stop] = _permutation_p(predictions[:, start:stop], measured, r[k, start:stop],
                                                  permutations)
        del predictions
        if scratch_dir is not None:
            (Path(scratch_dir) / f"predictions{k}.npy").unlink(missing_ok=True)
    if permutations is None:
        p = _analytic_p(r, n_test)
    q = np.stack([fdr_bh(row) for row in p])
    names = ["+".join(m) for m in models]
    unique, shared, joint_name = {}, None, None
    if joint_spaces:
        joint_name = "+".join(joint_spaces)
        full = r2[names.index(joint_name)]
        for s in joint_spaces:
            rest = "+".join(x for x in joint_spaces if x != s)
            unique[s] = full - r2[names.index(rest)]
        if len(joint_spaces) == 2:
            a, b = joint_spaces
            shared = r2[names.index(a)] + r2[names.index(b)] - full
    info = {
        "Solver": info.get("Solver"), "CVKind": info.get("CVKind"), "CV": info.get("CV"),
        "AlphasTried": info.get("AlphasTried"), "Backend": info.get("Backend"), "Device": info.get("Device"),
        "Null": ("r of independent Gaussian vectors (Student t, n_test - 2 dof), one-sided" if null == "analytic"
                 else f"{n_permutations} permutations of the test stimuli (seed {seed}), one-sided"),
        "MultipleComparisons": "Benjamini-Hochberg FDR per model over voxels",
        "FeatureScaling": "standardised with the training mean and sd, then unit total variance per space",
        "JointModels": ("kernel = weighted sum of the spaces' kernels, weights per voxel among "
                        f"{[list(m) for m in _mixes(2, joint_mixes)]} (for two spaces) by the same CV"),
        "JointMixesChosen": mixes_chosen,
        "FeatureSizes": {s: int(features_train[s].shape[1]) for s in spaces},
        "TrainStimuli": int(n_train), "TestStimuli": int(n_test),
    }
    return EncodingMaps(models=names, r=r, p=p.astype(np.float32), q=q.astype(np.float32), r2=r2,
                        alphas=chosen, cv_scores=cv_scores, joint=joint_name, unique=unique, shared=shared,
                        n_test=int(n_test), info=info)


def _buffer(shape: tuple[int, int], scratch_dir: Path | None, name: str) -> np.ndarray:
    """A float32 array of zeros, in memory or memory-mapped in ``scratch_dir``."""
    if scratch_dir is None:
        return np.zeros(shape, np.float32)
    Path(scratch_dir).mkdir(parents=True, exist_ok=True)
    return np.lib.format.open_memmap(Path(scratch_dir) / f"{name}.npy", "w+", np.float32, shape)


def _mixes(n_spaces: int, dominant: Sequence[float]) -> list[tuple[float, ...]]:
    """Kernel weightings of a model of ``n_spaces`` spaces: equal, then each space at each ``dominant`` weight."""
    mixes = [tuple([1.0 / n_spaces] * n_spaces)]
    if n_spaces > 1:
        for f in dominant:
            if not 0 < f < 1:
                raise UsageError(f"joint_mixes must be weights between 0 and 1, got {f}")
            for s in range(n_spaces):
                mix = tuple(f if t == s else (1 - f) / (n_spaces - 1) for t in range(n_spaces))
                if mix not in mixes:
                    mixes.append(mix)
    return mixes


def stimulus_betas(betas: Any, trials: pd.DataFrame, split: str, voxel_indices: np.ndarray | None = None,
                   block_voxels: int | None = None, out: Any | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Repeat-averaged betas of the ``split`` stimuli, by voxel blocks.

    Parameters
    ----------
    betas : array-like, shape (n_trials, n_brain_voxels)
        Single-trial betas, rows aligned with ``trials`` (a memory map is fine).
    trials : pandas.DataFrame
        Trial table with ``stim_id`` and ``split``.
    split : {"train", "test"}
    voxel_indices : ndarray of int, optional
        Columns to keep (default: all).
    block_voxels : int, optional
        Voxels read at a time (default: 64 MB of the split's trials).
    out : array-like, shape (n_stimuli, n_voxels), optional
        Where to write (e.g. ``numpy.lib.format.open_memmap`` for a whole brain); default: a new array.

    Returns
    -------
    stim_ids : ndarray of str, shape (n_stimuli,)
        Sorted stimulus ids.
    averaged : ndarray, shape (n_stimuli, n_voxels)
    """
    if len(betas) != len(trials):
        raise BadDataError(f"{len(betas)} beta rows but {len(trials)} trials")
    rows = np.flatnonzero((trials["split"] == split).to_numpy())
    if len(rows) == 0:
        raise BadDataError(f"no {split} trials")
    stims = trials["stim_id"].astype(str).to_numpy()[rows]
    columns = np.arange(betas.shape[1]) if voxel_indices is None else np.asarray(voxel_indices, dtype=np.int64)
    stim_ids = np.unique(stims)
    if out is None:
        out = np.zeros((len(stim_ids), len(columns)), dtype=np.float32)
    elif tuple(out.shape) != (len(stim_ids), len(columns)):
        raise UsageError(f"out must have shape {(len(stim_ids), len(columns))}, got {tuple(out.shape)}")
    block = block_voxels or max(1, BLOCK_BYTES // (4 * len(rows)))
    for start in range(0, len(columns), block):
        part = columns[start:start + block]
        out[:, start:start + len(part)] = average_repeats(np.asarray(betas[:, part])[rows], stims)[0]
    check_finite(out, f"repeat-averaged betas of the {split} stimuli")
    return stim_ids, out


def fdr_bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q values of p values ``(n,)`` (NaN stays NaN and is not counted)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    if len(valid) == 0:
        return q
    order = valid[np.argsort(p[valid], kind="stable")]
    ranked = p[order] * len(order) / np.arange(1, len(order) + 1)
    q[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return q


def roi_summary(maps: EncodingMaps, rois: Mapping[str, np.ndarray], q_threshold: float = 0.05) -> pd.DataFrame:
    """One row per ROI and model: voxels, mean and median r, fraction with q below the threshold, unique variance.

    Parameters
    ----------
    maps : EncodingMaps
    rois : mapping of str to ndarray of bool, shape (n_voxels,)
        Voxel masks over the maps' voxels.
    q_threshold : float
    """
    rows = []
    for roi, mask in rois.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (maps.r.shape[1],):
            raise UsageError(f"ROI '{roi}' mask must cover the {maps.r.shape[1]} voxels, got shape {mask.shape}")
        for k, model in enumerate(maps.models):
            r = maps.r[k, mask]
            rows.append({
                "roi": roi, "model": model, "voxels": int(mask.sum()),
                "mean_r": float(r.mean()) if r.size else np.nan, "median_r": float(np.median(r)) if r.size else np.nan,
                "fraction_significant": float((maps.q[k, mask] < q_threshold).mean()) if r.size else np.nan,
                "mean_unique_variance": (float(maps.unique[model][mask].mean())
                                         if model in maps.unique and r.size else np.nan),
            })
    return pd.DataFrame(rows)


@dataclass
class EncodingResult:
    """What :func:`encoding_analysis` found, over the voxels it modelled.

    Attributes
    ----------
    maps : EncodingMaps
        r, p, q, R², alphas per model and voxel; unique and shared variance.
    voxel_indices : ndarray of int, shape (n_voxels,)
        Columns of the whole-brain beta matrix that were modelled (the maps' voxels).
    rois : dict of str to ndarray of bool, shape (n_voxels,)
        Each ROI's voxels among them.
    summary : pandas.DataFrame
        :func:`roi_summary` of the maps (one row per ROI and model).
    fdr : float
        FDR level of ``summary["fraction_significant"]``.
    """

    maps: EncodingMaps
    voxel_indices: np.ndarray
    rois: dict[str, np.ndarray]
    summary: pd.DataFrame
    fdr: float

    def statmaps(self) -> list[tuple[str, str, np.ndarray]]:
        """``(model, stat, values over the voxels)`` of every map to write.

        ``r``, ``p``, ``q`` for every model; ``uniquevariance`` for each space of the joint model (under the
        space's name) and ``sharedvariance`` (under the joint model's name) when it has two spaces.
        """
        m = self.maps
        out = [(model, stat, getattr(m, stat)[k]) for k, model in enumerate(m.models) for stat in ("r", "p", "q")]
        out += [(space, "uniquevariance", values) for space, values in m.unique.items()]
        if m.shared is not None and m.joint is not None:
            out.append((m.joint, "sharedvariance", m.shared))
        return out


def encoding_voxels(brain_mask: Any, roi_masks: Mapping[str, Any], mask: str = EncodingParams.mask,
                    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The beta columns an encoding analysis models, and each ROI's voxels among them.

    Parameters
    ----------
    brain_mask : nibabel image
        The brain mask whose voxels (C order) are the columns of the beta matrix.
    roi_masks : mapping of str to nibabel image
        ROI masks on the same grid.
    mask : {"visual", "brain"}
        ``"visual"``: the union of the ROIs; ``"brain"``: every brain voxel.

    Returns
    -------
    voxel_indices : ndarray of int64, shape (n_voxels,)
    rois : dict of str to ndarray of bool, shape (n_voxels,)
    """
    from bids_recon.rois import roi_columns

    if mask not in ("visual", "brain"):
        raise UsageError(f"encoding mask must be 'visual' or 'brain', not {mask!r}")
    columns = {name: roi_columns(brain_mask, img) for name, img in roi_masks.items()}
    if mask == "brain":
        voxel_indices = np.arange(int((np.asarray(brain_mask.dataobj) > 0).sum()), dtype=np.int64)
    else:
        if not columns:
            raise UsageError("the 'visual' encoding mask is the union of the ROIs, but there are none")
        voxel_indices = np.unique(np.concatenate(list(columns.values()))).astype(np.int64)
    if len(voxel_indices) == 0:
        raise BadDataError(f"the encoding mask ('{mask}') has no voxels inside the brain mask")
    return voxel_indices, {name: np.isin(voxel_indices, cols) for name, cols in columns.items()}


def encoding_analysis(
    betas: Any,
    trials: pd.DataFrame,
    voxel_indices: np.ndarray,
    features: Mapping[str, tuple[np.ndarray, Any]],
    params: EncodingParams | None = None,
    *,
    rois: Mapping[str, np.ndarray] | None = None,
    partition: Sequence[str] = (),
    seed: int = 0,
    device: str = "cpu",
    scratch_dir: Path | None = None,
) -> EncodingResult:
    """Voxelwise encoding models from each feature space to single-trial betas, as Takagi & Nishimoto (2023).

    Betas are averaged over the repeats of each stimulus (training and test separately, by voxel blocks); a
    ridge model per voxel and feature space is trained on the training stimuli and scored by Pearson r on the
    test stimuli (:func:`fit_encoding_models`).

    Parameters
    ----------
    betas : array-like, shape (n_trials, n_brain_voxels)
        Single-trial betas, rows aligned with ``trials`` (a memory-mapped ``.npy`` is fine).
    trials : pandas.DataFrame
        Trial table with ``stim_id`` and ``split``.
    voxel_indices : ndarray of int
        Columns of ``betas`` to model (see :func:`encoding_voxels`).
    features : mapping of str to (stim_ids, array)
        Per feature space: the stimulus ids ``(n_stimuli,)`` and their features ``(n_stimuli, n_features)``;
        names are letters and digits (they name the output files).
    params : EncodingParams, optional
        Alphas, CV, null, FDR level, block size (default: the defaults).
    rois : mapping of str to ndarray of bool, shape (n_voxels,), optional
        ROIs over the modelled voxels, for the summary table.
    partition : sequence of str
        Two or more feature spaces whose unique variance a joint model partitions; ``()`` for none.
    seed : int
        Seed of the permutation null.
    device : str
        ``"cpu"`` or ``"cuda"`` (torch backend on a GPU).
    scratch_dir : Path, optional
        Where the repeat-averaged betas and the predictions are memory-mapped (a whole brain stays out of memory).

    Returns
    -------
    EncodingResult
    """
    params = params or EncodingParams()
    bad = [name for name in features if not name.isalnum() or not name.isascii()]
    if bad:
        raise UsageError(f"feature space names must be letters and digits (they name output files): {bad}")
    if len(betas) != len(trials):
        raise BadDataError(f"{len(betas)} beta rows but {len(trials)} trials")
    voxel_indices = np.asarray(voxel_indices, dtype=np.int64)
    block = params.block_voxels or None
    averaged, ids = {}, {}
    for split in ("train", "test"):
        n_stim = int(trials.loc[trials["split"] == split, "stim_id"].astype(str).nunique())
        out = None if scratch_dir is None else _buffer((n_stim, len(voxel_indices)), scratch_dir, f"betas{split}")
        ids[split], averaged[split] = stimulus_betas(betas, trials, split, voxel_indices, block, out)
    spaces = {}
    for name, (stim_ids, array) in features.items():
        check_features(stim_ids, array, f"encoding feature space '{name}'")
        row_of = {s: i for i, s in enumerate(np.asarray(stim_ids).astype(str))}
        missing = [s for split in ids.values() for s in split if s not in row_of]
        if missing:
            raise BadDataError(f"feature space '{name}' has no features for {len(missing)} stimuli "
                               f"(first: {missing[0]})")
        spaces[name] = {split: _Rows(array, np.array([row_of[s] for s in ids[split]])) for split in ids}
    maps = fit_encoding_models(
        {k: v["train"] for k, v in spaces.items()}, averaged["train"], {k: v["test"] for k, v in spaces.items()},
        averaged["test"], list(params.alphas), joint=tuple(partition), joint_mixes=tuple(params.partition_mixes),
        cv=params.cv, n_folds=params.cv_folds,
        null=params.null, n_permutations=params.n_permutations, seed=seed, block_voxels=block,
        backend="torch" if device == "cuda" else "auto", device=device, scratch_dir=scratch_dir)
    maps.info.update({"Mask": params.mask, "Voxels": int(len(voxel_indices)), "FDR": params.fdr})
    rois = {k: np.asarray(v, dtype=bool) for k, v in (rois or {}).items()}
    return EncodingResult(maps, voxel_indices, rois, roi_summary(maps, rois, params.fdr), params.fdr)


def to_volume(values: np.ndarray, brain_mask: np.ndarray, voxel_indices: np.ndarray) -> np.ndarray:
    """Values over modelled voxels as a float32 volume of the brain mask's shape, NaN elsewhere.

    Parameters
    ----------
    values : ndarray, shape (n_voxels,)
    brain_mask : ndarray of bool, shape (x, y, z)
        Its voxels in C order are the beta columns ``voxel_indices`` index.
    voxel_indices : ndarray of int, shape (n_voxels,)
    """
    brain = np.flatnonzero(np.asarray(brain_mask).ravel() > 0)
    volume = np.full(np.asarray(brain_mask).size, np.nan, np.float32)
    volume[brain[np.asarray(voxel_indices)]] = values
    return volume.reshape(np.asarray(brain_mask).shape)


class _Rows:
    """Rows ``rows`` of a 2-D array, read by column blocks (``x[:, a:b]``) without copying the whole array."""

    def __init__(self, array: Any, rows: np.ndarray) -> None:
        if getattr(array, "ndim", None) != 2:
            raise BadDataError(f"features must be 2-D (stimuli, features), got shape {getattr(array, 'shape', None)}")
        self.array, self.rows = array, rows
        self.shape = (len(rows), array.shape[1])
        self.ndim = 2

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        return np.asarray(self.array[:, key[1]])[self.rows]


# ---------------------------------------------------------------------------------------------------- helpers
def _check_spaces(features_train: Mapping[str, Any], features_test: Mapping[str, Any], betas_train: Any,
                  betas_test: Any) -> list[str]:
    spaces = list(features_train)
    if not spaces:
        raise UsageError("encoding models need at least one feature space")
    if set(spaces) != set(features_test):
        raise UsageError(f"training and test feature spaces differ: {sorted(spaces)} vs {sorted(features_test)}")
    if any("+" in s for s in spaces):
        raise UsageError(f"feature space names must not contain '+' (it joins models): {spaces}")
    if getattr(betas_train, "ndim", None) != 2 or getattr(betas_test, "ndim", None) != 2:
        raise BadDataError("training and test betas must be 2-D (stimuli, voxels) arrays")
    if betas_train.shape[1] != betas_test.shape[1]:
        raise BadDataError(f"training betas have {betas_train.shape[1]} voxels, test betas {betas_test.shape[1]}")
    if betas_test.shape[0] < 3:
        raise BadDataError(f"encoding models need at least 3 test stimuli, got {betas_test.shape[0]}")
    for s in spaces:
        train, test = features_train[s], features_test[s]
        if getattr(train, "ndim", None) != 2 or getattr(test, "ndim", None) != 2 or train.shape[1] != test.shape[1]:
            raise BadDataError(f"feature space '{s}': training and test features must be 2-D with the same "
                               f"columns, got {getattr(train, 'shape', None)} and {getattr(test, 'shape', None)}")
        if train.shape[0] != betas_train.shape[0] or test.shape[0] != betas_test.shape[0]:
            raise BadDataError(f"feature space '{s}': {train.shape[0]} training / {test.shape[0]} test rows, but "
                               f"{betas_train.shape[0]} / {betas_test.shape[0]} stimuli of betas")
    return spaces


def _space_kernels(train: Any, test: Any) -> tuple[np.ndarray, np.ndarray]:
    """Float64 kernels ``(n_train, n_train)`` and ``(n_test, n_train)`` of one standardised feature space.

    Columns are standardised with the training mean and sd (constant ones dropped) and scaled by
    ``1 / sqrt(n_kept_columns)``, so that the kernel's trace is n_train whatever the space's size.
    """
    n, f = train.shape
    step = max(1, (32 * 2**20) // (8 * n))
    gram = np.zeros((n, n))
    cross = np.zeros((test.shape[0], n))
    kept = 0
    for start in range(0, f, step):
        a = np.asarray(train[:, start:start + step], dtype=np.float64)
        b = np.asarray(test[:, start:start + step], dtype=np.float64)
        mean, sd = a.mean(0), a.std(0)
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(b))):
            raise BadDataError(f"features contain NaN or inf (columns {start}..{start + a.shape[1] - 1})")
        keep = sd > 0
        a = (a[:, keep] - mean[keep]) / sd[keep]
        b = (b[:, keep] - mean[keep]) / sd[keep]
        gram += a @ a.T
        cross += b @ a.T
        kept += int(keep.sum())
    if kept == 0:
        raise BadDataError("a feature space is constant over the training stimuli")
    return gram / kept, cross / kept


def _column_r(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Pearson r per column of two ``(n, v)`` arrays; 0 where either column is constant."""
    a = predicted - predicted.mean(0)
    b = measured - measured.mean(0)
    denominator = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    return np.divide((a * b).sum(0), denominator, out=np.zeros(a.shape[1], np.float32), where=denominator > 0)


def _column_r2(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """``1 - SSE / SS`` per column (SS around the measured mean); 0 where the measured column is constant."""
    total = ((measured - measured.mean(0)) ** 2).sum(0)
    error = ((measured - predicted) ** 2).sum(0)
    return np.divide(total - error, total, out=np.zeros(measured.shape[1], np.float32), where=total > 0)


def _analytic_p(r: np.ndarray, n: int) -> np.ndarray:
    """One-sided p of Pearson r > 0 for two independent Gaussian vectors of length ``n``."""
    from scipy import stats

    r = np.clip(np.asarray(r, dtype=np.float64), -1 + 1e-12, 1 - 1e-12)
    t = r * np.sqrt((n - 2) / (1 - r**2))
    return stats.t.sf(t, n - 2)


def _permutation_p(predicted: np.ndarray, measured: np.ndarray, r: np.ndarray, permutations: np.ndarray,
                   ) -> np.ndarray:
    """``(1 + #{r of shuffled test stimuli >= r}) / (1 + n_permutations)`` per column."""
    a = predicted - predicted.mean(0)
    b = measured - measured.mean(0)
    norm = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    scale = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)
    b = b * scale
    exceed = np.zeros(a.shape[1])
    for order in permutations:
        exceed += (a[order] * b).sum(0) >= r - 1e-6
    return (1 + exceed) / (1 + len(permutations))
