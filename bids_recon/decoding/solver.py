"""One ridge solver for decoders and encoding models: one eigendecomposition, alpha per target in its eigenbasis.

The model is ``y ≈ x_std @ w + y_mean`` with ``x_std`` the inputs standardised by their training mean and sd,
no intercept beyond that centring (as Takagi & Nishimoto 2023), and one ridge penalty ``alpha`` per target,
chosen among candidates by cross-validation:

- ``"gcv"``: generalised cross-validation (the rotation-invariant form of leave-one-out) from the eigenbasis:
  once the targets are projected on it, every further alpha costs O(rank) per target;
- ``"loo"``: exact leave-one-out (each sample's residual divided by ``1 - leverage``), also from the eigenbasis;
  one (samples x rank) matrix product per alpha;
- ``"kfold"``: K-fold on the given folds (contiguous by default, as scikit-learn's ``KFold(shuffle=False)``),
  scored by R² per fold and averaged as himalaya's ``RidgeCV`` / ``KernelRidgeCV`` do, so it chooses the same
  alphas on the same folds.

Whatever the CV, the Gram matrix of the smaller side (``X'X`` when samples >= features, else ``XX'``) is formed
once in float64 and diagonalised once; all products with the targets are float32. Targets are processed in
batches of columns (memory flat), read from any array-like that supports ``y[rows, start:stop]`` (a memory-mapped
``.npy`` is fine). When samples repeat rows of the targets (single trials of repeated stimuli, targets per
stimulus), pass ``target_rows``: the targets are never expanded per sample, since ``X'Y = (G'X)'F`` with ``G``
the (samples x rows) indicator and ``F`` the per-row targets.

Backends: numpy (scipy LAPACK) or torch, on the CPU or a CUDA device; the same code runs on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bids_recon.errors import BadDataError, UsageError

CV_KINDS = ("gcv", "loo", "kfold")
BACKENDS = ("auto", "numpy", "torch")
DEVICES = ("cpu", "cuda")

#: memory for one float32 block of a batch of targets (the batch size is chosen from it when not given)
BATCH_BYTES = 128 * 2**20
#: himalaya's tie-break: among equal scores, the largest alpha
_TIE_SLOPE = 1e-10


# ---------------------------------------------------------------------------------------------------- backends
class _NumpyOps:
    """numpy arrays, scipy LAPACK."""

    name = "numpy"
    device = "cpu"
    float32, float64 = np.float32, np.float64

    def __init__(self, eigh_threads: int | None = None) -> None:
        self.eigh_threads = eigh_threads

    def asarray(self, a: Any, dtype: Any) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=dtype)

    def index(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.int64)

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)

    def cast(self, a: np.ndarray, dtype: Any) -> np.ndarray:
        return a.astype(dtype, copy=False)

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)

    def log(self, a: np.ndarray) -> np.ndarray:
        return np.log(a)

    def clip_min(self, a: np.ndarray, low: float) -> np.ndarray:
        return np.maximum(a, low)

    def where(self, condition: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(condition, a, b)

    def eigh(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues ascending and eigenvectors of a symmetric float64 matrix (``a`` is overwritten)."""
        import scipy.linalg

        if self.eigh_threads is None:
            return scipy.linalg.eigh(a, driver="evr", overwrite_a=True, check_finite=False)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.eigh_threads, user_api="blas"):
            return scipy.linalg.eigh(a, driver="evr", overwrite_a=True, check_finite=False)

    def group_sum(self, a: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
        """Sum the rows of ``a`` (n, k) by group (n,) -> (n_groups, k)."""
        import scipy.sparse

        indicator = scipy.sparse.csr_matrix((np.ones(len(groups), dtype=a.dtype), (groups, np.arange(len(groups)))),
                                            shape=(n_groups, len(groups)))
        return np.ascontiguousarray(indicator @ a)


class _TorchOps:
    """torch tensors on one device; the caller's default dtype and thread settings are left alone."""

    name = "torch"

    def __init__(self, device: str) -> None:
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            raise UsageError("device 'cuda' was asked for the ridge solver, but torch sees no CUDA device")
        self.torch = torch
        self.device = device
        self.float32, self.float64 = torch.float32, torch.float64

    def asarray(self, a: Any, dtype: Any) -> Any:
        if isinstance(a, self.torch.Tensor):
            return a.to(device=self.device, dtype=dtype).contiguous()
        host = np.float32 if dtype == self.torch.float32 else np.float64
        return self.torch.as_tensor(np.ascontiguousarray(a, dtype=host), device=self.device)

    def index(self, a: np.ndarray) -> Any:
        return self.torch.as_tensor(np.asarray(a, dtype=np.int64), device=self.device)

    def to_numpy(self, a: Any) -> np.ndarray:
        return a.detach().cpu().numpy()

    def cast(self, a: Any, dtype: Any) -> Any:
        return a.to(dtype)

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self.torch.zeros(shape, dtype=dtype, device=self.device)

    def log(self, a: Any) -> Any:
        return self.torch.log(a)

    def clip_min(self, a: Any, low: float) -> Any:
        return self.torch.clamp(a, min=low)

    def where(self, condition: Any, a: Any, b: Any) -> Any:
        return self.torch.where(condition, a, b)

    def eigh(self, a: Any) -> tuple[Any, Any]:
        return self.torch.linalg.eigh(a)

    def group_sum(self, a: Any, groups: np.ndarray, n_groups: int) -> Any:
        out = self.torch.zeros((n_groups, a.shape[1]), dtype=a.dtype, device=self.device)
        return out.index_add_(0, self.index(groups), a)


def _ops(backend: str, device: str, eigh_threads: int | None) -> _NumpyOps | _TorchOps:
    if backend not in BACKENDS:
        raise UsageError(f"ridge backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if device not in DEVICES:
        raise UsageError(f"ridge device must be one of {', '.join(DEVICES)}, not {device!r}")
    if backend == "numpy" and device != "cpu":
        raise UsageError("the numpy ridge backend runs on the CPU only: use backend 'torch' (or 'auto') for cuda")
    if backend == "torch" or (backend == "auto" and device == "cuda"):
        return _TorchOps(device)
    return _NumpyOps(eigh_threads)


# ---------------------------------------------------------------------------------------------------- results
@dataclass
class RidgeSolution:
    """Ridge fitted to a batch-processed set of targets.

    Attributes
    ----------
    alphas : ndarray, shape (n_targets,)
        The alpha chosen per target.
    cv_scores : ndarray, shape (n_targets,)
        Cross-validated R² at that alpha (GCV, exact leave-one-out or mean over folds, as ``info["CV"]`` says);
        0 for constant targets.
    y_mean : ndarray, shape (n_targets,)
        Training mean of each target over the samples (the intercept).
    constant : ndarray of bool, shape (n_targets,)
        Targets constant over the training samples (nothing to fit: zero weights, score 0).
    weights : ndarray, shape (n_features, n_targets) or None
        Weights on the standardised inputs (float32), unless ``return_weights=False``.
    predictions : ndarray, shape (n_new, n_targets) or None
        Predictions for ``x_new`` (intercept included), when given.
    info : dict
        Provenance: solver, form, CV kind, backend, alphas tried...
    """

    alphas: np.ndarray
    cv_scores: np.ndarray
    y_mean: np.ndarray
    constant: np.ndarray
    weights: np.ndarray | None = None
    predictions: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Spectrum:
    """One eigendecomposition (all training samples, or one fold's training part) and what targets need from it.

    With ``B`` the (samples x rank) basis (``X V`` in the primal form, ``U`` in the dual): ``m = B'y`` is what a
    target contributes, ``m / (λ + α)`` its coefficients, ``phi`` turns those into in-sample predictions
    (``B diag(phi) c``): 1 in the primal form, ``λ`` in the dual.
    """

    eigenvalues: Any  # (k,) float64
    phi: Any  # (k,) float64
    vectors: Any  # float32 eigenvectors, V (p, k) or U (n, k); kept for all samples only (weights, predictions)
    projection: Any  # (n_rows, k) float32: G'B, summed over the samples that read each row
    rows: Any  # (n_rows,) positions in the batch's target block, or None: the block as it is
    counts: Any  # (n_rows,) float32: samples reading each row
    n_samples: int
    basis: Any = None  # (n_samples, k) float32, exact LOO only
    leverage: Any = None  # (n_alphas, n_samples) float32: hat-matrix diagonal per alpha, exact LOO only
    sample_rows: Any = None  # (n_samples,) positions in the batch's target block, exact LOO only
    validation: Any = None  # (n_val, k) float32: the fold's held-out samples in this basis (k-fold only)
    validation_rows: Any = None  # (n_val,) positions in the batch's target block (k-fold only)


# ---------------------------------------------------------------------------------------------------- the solver
class EigenRidge:
    """Ridge with alpha per target: decompose the inputs once, then fit any number of target batches.

    Parameters
    ----------
    x : array-like, shape (n_samples, n_features)
        Training inputs (e.g. single-trial betas of an ROI, or stimulus features); any float dtype, a memory map
        is fine (it is read once, in blocks, to standardise it).
    alphas : sequence of float
        Candidate penalties (positive), in the units of the standardised inputs.
    target_rows : ndarray of int, shape (n_samples,), optional
        Row of the targets each sample reads (``G``). Default: targets are aligned with the samples.
    cv : {"gcv", "loo", "kfold"}
        How alpha is chosen per target (module docstring).
    n_folds : int
        Contiguous folds for ``cv="kfold"`` (scikit-learn ``KFold(n_folds, shuffle=False)``), when ``folds`` is not
        given.
    folds : sequence of (train, validation) index arrays, optional
        Explicit folds for ``cv="kfold"`` (e.g. grouped by stimulus).
    standardize : bool
        Centre and scale the inputs by their training mean and sd (zero-sd columns are only centred). With
        False the inputs are only centred.
    precomputed : bool
        ``x`` is the (n_samples, n_samples) Gram matrix ``XX'`` of inputs the caller prepared (centred), e.g. a
        sum of per-feature-space kernels; ``fit(..., x_new=K_new)`` then takes ``X_new X'`` (n_new, n_samples)
        and there are no weights.
    backend : {"auto", "numpy", "torch"}
        "auto": numpy on the CPU, torch on CUDA.
    device : {"cpu", "cuda"}
    eigh_threads : int, optional
        BLAS threads for the eigendecomposition only (numpy backend; threadpoolctl, restored afterwards). OpenBLAS
        eigh is much slower with 2 threads than 1 on small shared VMs while matrix products gain from 2.
    """

    def __init__(
        self,
        x: Any,
        alphas: Sequence[float] | np.ndarray,
        *,
        target_rows: np.ndarray | None = None,
        cv: str = "gcv",
        n_folds: int = 5,
        folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
        standardize: bool = True,
        precomputed: bool = False,
        backend: str = "auto",
        device: str = "cpu",
        eigh_threads: int | None = None,
    ) -> None:
        if cv not in CV_KINDS:
            raise UsageError(f"ridge cv must be one of {', '.join(CV_KINDS)}, not {cv!r}")
        alphas = np.asarray(alphas, dtype=np.float64).ravel()
        if alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
            raise UsageError(f"ridge alphas must be positive and finite, got {alphas.tolist()}")
        if getattr(x, "ndim", None) != 2:
            raise BadDataError(f"ridge inputs must be a 2-D (samples, features) array, got shape "
                               f"{getattr(x, 'shape', None)}")
        n, p = x.shape
        if n < 3 or p < 1 or (precomputed and n != p):
            raise BadDataError(f"ridge needs at least 3 samples and 1 feature (a square kernel when precomputed), "
                               f"got {n} x {p}")
        self.ops = ops = _ops(backend, device, eigh_threads)
        self.alphas = np.sort(alphas)
        self.cv = cv
        self.precomputed = precomputed
        self.n_samples = n
        self.n_features = None if precomputed else p
        self.dual = precomputed or p > n
        if precomputed:  # a copy: the decomposition overwrites it
            if not np.all(np.isfinite(np.asarray(x))):
                raise BadDataError("the precomputed ridge kernel contains NaN or inf")
            self.x_mean = self.x_scale = None
            self._x = None
        else:
            self.x_mean, self.x_scale = _column_stats(x, standardize)
            self._x = ops.asarray(_standardised(x, self.x_mean, self.x_scale), ops.float32)

        self._target_rows_given = target_rows is not None
        if target_rows is None:
            self.used_rows = np.arange(n)
            self._sample_pos = np.arange(n)
            self._repeats = False
        else:
            target_rows = np.asarray(target_rows)
            if target_rows.shape != (n,) or not np.issubdtype(target_rows.dtype, np.integer):
                raise BadDataError(f"target_rows must be {n} integer row indices (one per sample), got "
                                   f"{target_rows.dtype} of shape {target_rows.shape}")
            if target_rows.min() < 0:
                raise BadDataError("target_rows must be non-negative row indices")
            self.used_rows, self._sample_pos = np.unique(target_rows, return_inverse=True)
            self._repeats = len(self.used_rows) < n
        # samples read the batch's block row by row: no gather needed
        self._identity = bool(np.array_equal(self._sample_pos, np.arange(n)))

        self.folds: list[tuple[np.ndarray, np.ndarray]] = []
        self._contiguous_folds = folds is None
        if cv == "kfold":
            self.folds = _check_folds(folds, n_folds, n)
        gram = ops.asarray(np.array(x, dtype=np.float64), ops.float64) if precomputed else self._gram(self._x)
        # the folds first: the last decomposition overwrites the Gram matrix
        self._fold_spectra = [self._fold_spectrum(gram, train, val) for train, val in self.folds]
        self._full = self._spectrum(gram, np.arange(n), need_leverage=cv == "loo")
        del gram
        self._feature_basis = None  # (p, k): V, or X'U in the dual form; made when weights are first asked for

    # -- decomposition ------------------------------------------------------------------------------------------
    def _gram(self, x: Any) -> Any:
        """``X'X`` (primal) or ``XX'`` (dual) in float64, from float32 blocks of 64 MB."""
        ops = self.ops
        n, p = x.shape
        if self.dual:
            gram = ops.zeros((n, n), ops.float64)
            step = max(1, (64 * 2**20) // (8 * n))
            for start in range(0, p, step):
                block = ops.cast(x[:, start:start + step], ops.float64)
                gram += block @ block.T
        else:
            gram = ops.zeros((p, p), ops.float64)
            step = max(1, (64 * 2**20) // (8 * p))
            for start in range(0, n, step):
                block = ops.cast(x[start:start + step], ops.float64)
                gram += block.T @ block
        return gram

    def _decompose(self, gram: Any) -> tuple[Any, Any]:
        """Eigenvalues above rounding and their eigenvectors (float64) of a Gram matrix (overwritten)."""
        values, vectors = self.ops.eigh(gram)
        tol = float(values[-1]) * max(gram.shape) * np.finfo(np.float64).eps
        keep = int((values > tol).sum())
        if keep == 0:
            raise BadDataError("ridge inputs are constant: every standardised column is zero")
        return values[-keep:], vectors[:, -keep:]  # eigh sorts them ascending

    def _spectrum(self, gram: Any, samples: np.ndarray, validation: np.ndarray | None = None,
                  validation_gram: Any = None, need_leverage: bool = False) -> _Spectrum:
        """Decompose the Gram matrix of ``samples`` (already restricted to them) and project what targets need.

        ``validation``: held-out samples of a fold; in the dual form ``validation_gram`` is their float64 kernel
        against ``samples`` (n_val, n_train).
        """
        ops = self.ops
        x = self._x
        all_samples = len(samples) == self.n_samples
        values, vectors = self._decompose(gram)
        positions = self._sample_pos[samples]
        if all_samples:  # every row of the batch's block is read: no gather
            rows, inverse = None, None if self._identity else positions
            counts = np.bincount(positions, minlength=len(self.used_rows))
        else:
            rows, inverse = np.unique(positions, return_inverse=True)
            counts = np.bincount(inverse, minlength=len(rows))
        n_rows = len(counts)

        if self.dual:
            phi = values
            basis = ops.cast(vectors, ops.float32)  # U
            projection = basis if inverse is None else ops.group_sum(basis, inverse, n_rows)
            val = None if validation is None else ops.cast(validation_gram @ vectors, ops.float32)
        else:
            phi = values * 0 + 1
            v32 = ops.cast(vectors, ops.float32)
            x_s = x if all_samples else x[ops.index(samples)]
            basis = x_s @ v32 if (need_leverage or inverse is None) else None  # X V
            if inverse is None:
                projection = basis
            elif basis is not None:
                projection = ops.group_sum(basis, inverse, n_rows)
            else:  # (G'X) V: rows x p x k flops instead of samples x p x k
                projection = ops.group_sum(x_s, inverse, n_rows) @ v32
            del x_s
            val = None if validation is None else x[ops.index(validation)] @ v32
        leverage = None
        if need_leverage:  # (n_alphas, n_samples): diag of the hat matrix, + 1/n for the centring
            weights = phi[None, :] / (values[None, :] + ops.asarray(self.alphas, ops.float64)[:, None])
            leverage = (basis**2) @ ops.cast(weights, ops.float32).T
            leverage = leverage.T + 1.0 / len(samples)
        return _Spectrum(
            eigenvalues=values, phi=phi, projection=projection, rows=None if rows is None else ops.index(rows),
            counts=ops.asarray(counts, ops.float32), n_samples=len(samples),
            vectors=(basis if self.dual else v32) if all_samples else None,
            basis=basis if need_leverage else None,
            leverage=leverage,
            sample_rows=ops.index(positions) if need_leverage and not self._identity else None,
            validation=val,
            validation_rows=None if validation is None else ops.index(self._sample_pos[validation]),
        )

    def _fold_spectrum(self, gram: Any, train: np.ndarray, val: np.ndarray) -> _Spectrum:
        """The fold's training Gram: a sub-matrix of the kernel (dual), or ``X'X - X_val'X_val`` (primal)."""
        ops = self.ops
        if self.dual:
            train_index, val_index = ops.index(train), ops.index(val)
            return self._spectrum(gram[train_index][:, train_index], train, val,
                                  validation_gram=gram[val_index][:, train_index])
        held_out = self._gram(self._x[ops.index(val)])
        return self._spectrum(gram - held_out, train, val)

    @property
    def rank(self) -> int:
        return int(self._full.eigenvalues.shape[0])

    def _features_basis(self) -> Any:
        """(p, k) float32 map from coefficients to weights: V (primal) or X'U (dual)."""
        if self.precomputed:
            raise UsageError("a ridge fitted on a precomputed kernel has no weights: use return_weights=False")
        if self._feature_basis is None:
            self._feature_basis = self._x.T @ self._full.vectors if self.dual else self._full.vectors
        return self._feature_basis

    def _new_basis(self, x_new: Any) -> Any:
        """New inputs in the coefficient basis: ``x V`` (primal), ``x X' U`` (dual) or ``K_new U`` (precomputed)."""
        ops = self.ops
        width = self.n_samples if self.precomputed else self.n_features
        if getattr(x_new, "ndim", None) != 2 or x_new.shape[1] != width:
            what = "kernel columns (one per training sample)" if self.precomputed else "columns like the inputs"
            raise BadDataError(f"x_new must have {width} {what}, got shape {getattr(x_new, 'shape', None)}")
        if self.precomputed:
            return ops.asarray(x_new, ops.float32) @ self._full.vectors
        x_new = ops.asarray(_standardised(x_new, self.x_mean, self.x_scale), ops.float32)
        if self.dual:
            return (x_new @ self._x.T) @ self._full.vectors
        return x_new @ self._full.vectors

    # -- fitting targets ----------------------------------------------------------------------------------------
    def fit(self, y: Any, *, x_new: Any | None = None, return_weights: bool = True,
            batch_size: int | None = None) -> RidgeSolution:
        """Choose alpha per target, refit on all training samples, and return weights and/or predictions.

        Parameters
        ----------
        y : array-like, shape (n_rows, n_targets)
            Targets: one row per sample, or, with ``target_rows``, per row those indices read (e.g. stimuli).
            Read in batches of columns, ``y[rows, start:stop]``: a memory-mapped ``.npy`` is fine.
        x_new : array-like, shape (n_new, n_features), optional
            Inputs (raw, standardised here with the training statistics) to predict; with ``precomputed``, their
            kernel against the training inputs, shape (n_new, n_samples).
        return_weights : bool
            Return the (n_features, n_targets) weights; False saves the memory (encoding models of many voxels).
        batch_size : int, optional
            Targets per batch; default: as many as fit a 128 MB float32 block of the largest per-batch array.
        """
        ops = self.ops
        if getattr(y, "ndim", None) != 2:
            raise BadDataError(f"ridge targets must be a 2-D (rows, targets) array, got shape "
                               f"{getattr(y, 'shape', None)}")
        if self._target_rows_given and y.shape[0] <= int(self.used_rows[-1]):
            raise BadDataError(f"ridge targets have {y.shape[0]} rows but the samples read row "
                               f"{int(self.used_rows[-1])}")
        if not self._target_rows_given and y.shape[0] != self.n_samples:
            raise BadDataError(f"ridge targets have {y.shape[0]} rows for {self.n_samples} samples (give "
                               f"target_rows when samples read rows of per-stimulus targets)")
        n_targets = y.shape[1]
        batch = batch_size or self.default_batch_size(return_weights)
        if batch < 1:
            raise UsageError(f"ridge batch_size must be positive, got {batch}")
        new_basis = self._new_basis(x_new) if x_new is not None else None
        features_basis = self._features_basis() if return_weights else None
        alphas = np.zeros(n_targets)
        scores = np.zeros(n_targets, dtype=np.float32)
        y_mean = np.zeros(n_targets, dtype=np.float32)
        constant = np.zeros(n_targets, dtype=bool)
        weights = np.zeros((len(features_basis), n_targets), dtype=np.float32) if return_weights else None
        predictions = np.zeros((x_new.shape[0], n_targets), dtype=np.float32) if x_new is not None else None
        all_rows = len(self.used_rows) == y.shape[0]  # then used_rows is 0..n_rows-1 (sorted, unique)
        candidates = ops.asarray(self.alphas, ops.float64)
        slope = ops.log(candidates) * _TIE_SLOPE
        full = self._full
        for start in range(0, n_targets, batch):
            stop = min(n_targets, start + batch)
            block = ops.asarray(y[:, start:stop] if all_rows else y[self.used_rows, start:stop], ops.float32)
            if not bool(ops.to_numpy((block == block).all())):
                raise BadDataError(f"ridge targets (columns {start}..{stop - 1}) contain NaN")
            mean = (full.counts @ block) / full.n_samples  # (t,) training mean over the samples
            flat = (block == block[:1]).all(0)  # constant targets: centred to exact zeros
            mean = ops.where(flat, block[0], mean)
            block = block - mean[None, :]  # centred (a new array: the caller's targets are left alone)
            total = ops.cast(full.counts @ (block * block), ops.float64)  # (t,) ||y_c||² over the samples
            m = full.projection.T @ block  # (k, t)
            if self.cv == "kfold":
                score = self._kfold_scores(block)
            elif self.cv == "gcv":
                score = self._gcv_scores(full, total, m)
            else:
                score = self._loo_scores(full, block, total, m)
            constant[start:stop] = ops.to_numpy(total <= 0)
            best = (score + slope[:, None]).argmax(0)  # (t,)
            best_alpha = candidates[best]
            coef = m / ops.cast(full.eigenvalues[:, None] + best_alpha[None, :], ops.float32)  # (k, t)
            alphas[start:stop] = ops.to_numpy(best_alpha)
            scores[start:stop] = ops.to_numpy(score[best, ops.index(np.arange(stop - start))])
            y_mean[start:stop] = ops.to_numpy(mean)
            if weights is not None:
                weights[:, start:stop] = ops.to_numpy(features_basis @ coef)
            if predictions is not None:
                predictions[:, start:stop] = ops.to_numpy(new_basis @ coef) + y_mean[start:stop]
        return RidgeSolution(alphas=alphas, cv_scores=scores, y_mean=y_mean, constant=constant, weights=weights,
                             predictions=predictions, info=self.info(batch))

    def _gcv_scores(self, spec: _Spectrum, total: Any, m: Any) -> Any:
        """GCV R² (n_alphas, t): ``1 - [RSS/n / (1 - (tr H + 1)/n)^2] / var``, RSS from the eigenbasis.

        With ``z = U'y`` the target's coordinates on the orthonormal basis of the inputs' range
        (``z² = phi m² / λ``), ``RSS(α) = ||y_c||² - Σz² + Σ (α / (λ + α))² z²``: float64, O(n_alphas x rank)
        per target, and no cancellation in the alpha-dependent part (small alphas stay accurate).
        """
        ops = self.ops
        n = spec.n_samples
        z2 = ops.cast(m, ops.float64) ** 2 * (spec.phi / spec.eigenvalues)[:, None]  # (k, t)
        outside = ops.clip_min(total - z2.sum(0), 0.0)  # the part of y the inputs cannot fit
        alpha = ops.asarray(self.alphas, ops.float64)[:, None]
        lam = spec.eigenvalues[None, :]
        rss = outside[None, :] + ((alpha / (lam + alpha)) ** 2) @ z2  # (A, t)
        dof = (lam / (lam + alpha)).sum(1) + 1.0  # (A,) trace of the hat matrix; centring counts as one
        denominator = ops.clip_min((1.0 - dof / n) ** 2, 1e-12)
        return _r2(rss / denominator[:, None], total)

    def _loo_scores(self, spec: _Spectrum, block: Any, total: Any, m: Any) -> Any:
        """Exact leave-one-out R² (n_alphas, t): each residual over ``1 - leverage - 1/n`` (centring)."""
        ops = self.ops
        y = _take(block, spec.sample_rows)  # (n, t), centred
        out = ops.zeros((len(self.alphas), y.shape[1]), ops.float64)
        for a, alpha in enumerate(self.alphas):
            weight = ops.cast(spec.phi / (spec.eigenvalues + alpha), ops.float32)  # (k,)
            residual = (y - spec.basis @ (m * weight[:, None])) / ops.clip_min(1.0 - spec.leverage[a], 1e-6)[:, None]
            out[a] = ops.cast((residual * residual).sum(0), ops.float64)
        return _r2(out, total)

    def _kfold_scores(self, block: Any) -> Any:
        """Mean over folds of the validation R² (n_alphas, t), as himalaya's ``r2_score`` (fold mean removed)."""
        ops = self.ops
        out = None
        for spec in self._fold_spectra:
            m = spec.projection.T @ _take(block, spec.rows)  # (k, t)
            y = block[spec.validation_rows]  # (n_val, t)
            centred = y - y.mean(0)[None, :]
            total = ops.cast((centred * centred).sum(0), ops.float64)
            fold = ops.zeros((len(self.alphas), y.shape[1]), ops.float64)
            for a, alpha in enumerate(self.alphas):
                coef = m * ops.cast(1.0 / (spec.eigenvalues + alpha), ops.float32)[:, None]
                residual = y - spec.validation @ coef
                fold[a] = ops.cast((residual * residual).sum(0), ops.float64)
            fold = _r2(fold, total)
            out = fold if out is None else out + fold
        return out / len(self._fold_spectra)

    def default_batch_size(self, return_weights: bool = True) -> int:
        """Targets per batch so that the largest float32 block of a batch is about ``BATCH_BYTES``."""
        tall = max(len(self.used_rows), self.rank, (self.n_features or 0) if return_weights else 0)
        if self.cv in ("loo", "kfold"):
            tall = max(tall, self.n_samples)
        return max(64, int(BATCH_BYTES // (4 * tall)))

    def info(self, batch_size: int | None = None) -> dict[str, Any]:
        """Provenance for sidecars and the methods text."""
        folds = "contiguous " if self._contiguous_folds else ""
        cv = {"gcv": "generalised cross-validation (GCV)", "loo": "exact leave-one-out cross-validation",
              "kfold": f"{len(self.folds)}-fold {folds}cross-validation (R² averaged over folds)"}[self.cv]
        info: dict[str, Any] = {
            "Solver": "bids_recon.EigenRidge", "Form": "kernel" if self.dual else "primal",
            "Decomposition": ("eigendecomposition of XX' (samples x samples)" if self.dual else
                              "eigendecomposition of X'X (features x features)") + ", float64",
            "Rank": self.rank, "CVKind": self.cv, "CV": cv, "AlphasTried": self.alphas.tolist(), "CVScore": "R2",
            "Backend": self.ops.name, "Device": self.ops.device,
            "InputScaling": "standardised with training mean and sd",
            "RepeatedTargets": bool(self._repeats),
        }
        if self.cv == "kfold":
            info["CVFolds"] = len(self.folds)
        if batch_size is not None:
            info["BatchSize"] = int(batch_size)
        return info


def solve_ridge(x: Any, y: Any, alphas: Sequence[float] | np.ndarray, *, target_rows: np.ndarray | None = None,
                cv: str = "gcv", n_folds: int = 5, folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
                x_new: Any | None = None, return_weights: bool = True, batch_size: int | None = None,
                standardize: bool = True, precomputed: bool = False, backend: str = "auto", device: str = "cpu",
                eigh_threads: int | None = None) -> tuple[RidgeSolution, EigenRidge]:
    """Decompose ``x`` and fit ``y`` in one call; returns the solution and the solver (for its statistics).

    See :class:`EigenRidge` and :meth:`EigenRidge.fit` for the parameters.
    """
    solver = EigenRidge(x, alphas, target_rows=target_rows, cv=cv, n_folds=n_folds, folds=folds,
                        standardize=standardize, precomputed=precomputed, backend=backend, device=device,
                        eigh_threads=eigh_threads)
    return solver.fit(y, x_new=x_new, return_weights=return_weights, batch_size=batch_size), solver


# ---------------------------------------------------------------------------------------------------- helpers
def _take(block: Any, rows: Any) -> Any:
    """Rows of a batch's target block (all of it when ``rows`` is None)."""
    return block if rows is None else block[rows]


def _r2(squared_error: Any, total: Any) -> Any:
    """``1 - error / total`` per (alpha, target); 0 where a target is constant (as himalaya's r2_score)."""
    constant = total <= 0
    safe = total + constant  # 1 where constant
    return (1.0 - squared_error / safe[None, :]) * (~constant)[None, :]


def _column_stats(x: Any, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Training mean and sd per column (float64 sums over 64 MB row blocks), as float32; sd 1 if constant."""
    n, p = x.shape
    total = np.zeros(p)
    squares = np.zeros(p)
    step = max(1, (64 * 2**20) // (8 * p))
    for start in range(0, n, step):
        block = np.asarray(x[start:start + step], dtype=np.float64)
        total += block.sum(0)
    mean = total / n
    if standardize:
        for start in range(0, n, step):
            block = np.asarray(x[start:start + step], dtype=np.float64) - mean
            squares += (block**2).sum(0)
        scale = np.sqrt(squares / n)
        if not np.all(np.isfinite(scale)):
            bad = np.flatnonzero(~np.isfinite(scale))[:5].tolist()
            raise BadDataError(f"ridge inputs contain NaN or inf (columns {bad})")
        scale[scale == 0] = 1.0
    else:
        if not np.all(np.isfinite(mean)):
            raise BadDataError("ridge inputs contain NaN or inf")
        scale = np.ones(p)
    return mean.astype(np.float32), scale.astype(np.float32)


def _standardised(x: Any, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(x - mean) / scale`` as float32, in 64 MB row blocks (one float32 copy of ``x`` in all)."""
    n, p = x.shape
    out = np.empty((n, p), dtype=np.float32)
    step = max(1, (64 * 2**20) // (4 * p))
    for start in range(0, n, step):
        block = np.asarray(x[start:start + step], dtype=np.float32)
        np.subtract(block, mean, out=out[start:start + step])
        out[start:start + step] /= scale
    return out


def _check_folds(folds: Sequence[tuple[np.ndarray, np.ndarray]] | None, n_folds: int, n: int,
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Explicit folds, checked, or scikit-learn's contiguous ``KFold(n_folds, shuffle=False)``."""
    if folds is None:
        if not isinstance(n_folds, int | np.integer) or n_folds < 2 or n_folds > n:
            raise UsageError(f"cv_folds must be an integer between 2 and the number of samples ({n}), "
                             f"got {n_folds}")
        from sklearn.model_selection import KFold

        folds = list(KFold(n_splits=int(n_folds), shuffle=False).split(np.zeros(n)))
    checked = []
    for k, (train, val) in enumerate(folds):
        train, val = np.asarray(train, dtype=np.int64), np.asarray(val, dtype=np.int64)
        if len(train) < 2 or len(val) < 1 or min(train.min(), val.min()) < 0 or max(train.max(), val.max()) >= n:
            raise UsageError(f"fold {k} must have >= 2 training and >= 1 validation samples among 0..{n - 1}")
        if np.intersect1d(train, val).size:
            raise UsageError(f"fold {k} has samples in both its training and validation parts")
        checked.append((train, val))
    if len(checked) < 2:
        raise UsageError(f"k-fold cross-validation needs at least 2 folds, got {len(checked)}")
    return checked
