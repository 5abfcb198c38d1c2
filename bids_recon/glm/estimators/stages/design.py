"""Nuisance basis and trial designs: the first stage of every estimator.

A constant, polynomial drift of degree round(run minutes / 2) (GLMsingle's; a discrete cosine basis with
``drift_model="cosine"``) and the confounds are projected out of the data and of every trial regressor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bids_recon.glm.estimators.session import GlmSettings, SessionFit, SessionRun
from bids_recon.glm.hrf import HrfLibrary, trial_regressors

#: Drift models of the nuisance basis (``drift_model``).
DRIFT_MODELS = ("polynomial", "cosine")
#: The settings this stage reads.
SETTINGS = ("drift_model", "high_pass_hz")
#: The library member nearest this time to peak (s) stands for "the canonical HRF" (task voxels, on/off R²).
CANONICAL_PEAK_S = 5.0


def cosine_drift(n_volumes: int, repetition_time: float, high_pass_hz: float) -> np.ndarray:
    """Discrete cosine basis (nilearn's ``cosine`` drift model without the constant): ``(n_volumes, order)``."""
    order = min(n_volumes - 1, int(np.floor(2 * n_volumes * high_pass_hz * repetition_time)))
    n = np.arange(n_volumes)
    k = np.arange(1, order + 1)
    return np.sqrt(2.0 / n_volumes) * np.cos(np.pi / n_volumes * (n[:, None] + 0.5) * k[None, :])


def drift_degree(n_volumes: int, repetition_time: float) -> int:
    """GLMsingle's drift degree: run minutes / 2, rounded half up."""
    return int(np.floor(n_volumes * repetition_time / 60.0 / 2.0 + 0.5))


def polynomial_drift(n_volumes: int, degree: int) -> np.ndarray:
    """Legendre polynomials of degrees 1..``degree`` over the run, unit norm: ``(n_volumes, degree)``."""
    x = np.linspace(-1.0, 1.0, n_volumes)
    columns = [np.polynomial.legendre.Legendre.basis(d)(x) for d in range(1, degree + 1)]
    if not columns:
        return np.zeros((n_volumes, 0))
    out = np.column_stack(columns)
    return out / np.linalg.norm(out, axis=0)


def drift_regressors(n_volumes: int, repetition_time: float, high_pass_hz: float = 0.01,
                     drift_model: str = "polynomial", degree: int | None = None) -> np.ndarray:
    """Drift regressors without the constant: ``(n_volumes, n_drift)``.

    ``"polynomial"``: Legendre polynomials up to ``degree`` (default :func:`drift_degree`, GLMsingle's);
    ``"cosine"``: a discrete cosine basis with cut-off ``high_pass_hz``.
    """
    if drift_model == "polynomial":
        return polynomial_drift(n_volumes, drift_degree(n_volumes, repetition_time) if degree is None else degree)
    if drift_model == "cosine":
        return cosine_drift(n_volumes, repetition_time, high_pass_hz)
    raise ValueError(f"drift_model must be one of {DRIFT_MODELS}, got {drift_model!r}")


def orthonormal(matrix: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Orthonormal basis of the column space of ``matrix`` ``(n, k)`` (rank-revealing SVD)."""
    if matrix.size == 0:
        return np.zeros((matrix.shape[0], 0))
    u, s, _ = np.linalg.svd(matrix, full_matrices=False)
    return u[:, s > tol * s.max()]


def nuisance_basis(run: SessionRun, high_pass_hz: float, drift_model: str = "polynomial",
                   degree: int | None = None) -> np.ndarray:
    """Orthonormal basis of constant, drift and (standardised) confounds: ``(n_volumes, m)``.

    Parameters
    ----------
    drift_model, degree
        See :func:`drift_regressors`.
    """
    drift = drift_regressors(run.n_volumes, run.repetition_time, high_pass_hz, drift_model, degree)
    parts = [np.ones((run.n_volumes, 1)), drift]
    if run.confounds is not None and run.confounds.size:
        c = np.asarray(run.confounds, dtype=float)
        c = c - c.mean(axis=0)
        sd = c.std(axis=0)
        parts.append(c[:, sd > 0] / sd[sd > 0])
    return orthonormal(np.concatenate(parts, axis=1))


def residualise(matrix: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Remove the span of orthonormal ``basis`` from the columns of ``matrix`` (in place for float32 data)."""
    if basis.shape[1] == 0:
        return matrix
    b = basis.astype(matrix.dtype, copy=False)
    matrix -= b @ (b.T @ matrix)
    return matrix


def session_designs(runs: list[SessionRun], library: HrfLibrary, bases: list[np.ndarray]) -> list[np.ndarray]:
    """Residualised trial designs per run: ``(n_hrfs, n_volumes, n_trials)``."""
    designs = []
    for run, basis in zip(runs, bases, strict=True):
        x = trial_regressors(library, run.onsets, run.durations, run.frame_times, run.modulations)
        for k in range(len(library)):
            x[k] = x[k] - basis @ (basis.T @ x[k])
        designs.append(x)
    return designs


def onoff_r2(runs: list[SessionRun], designs: list[np.ndarray], hrf: int = 0) -> np.ndarray:
    """Variance explained ``(n_voxels,)`` by one regressor for all trials with HRF ``hrf`` of the designs (task
    responsiveness)."""
    explained = np.zeros(runs[0].data.shape[1])
    total = np.zeros_like(explained)
    for run, x in zip(runs, designs, strict=True):
        onoff = x[hrf].sum(axis=1, keepdims=True)
        q = onoff / max(np.linalg.norm(onoff), 1e-12)
        explained += (q.T.astype(np.float32) @ run.data)[0].astype(np.float64) ** 2
        total += (run.data.astype(np.float64) ** 2).sum(axis=0)
    return explained / np.where(total > 0, total, 1.0)


@dataclass
class SessionModel:
    """A session on its way through an estimator's stages.

    Attributes
    ----------
    runs : list of SessionRun
        Their data residualised in place (nuisance, then any noise components).
    library : HrfLibrary
        The HRFs of the designs.
    bases : list of ndarray, each (n_volumes, n_nuisance)
        Orthonormal nuisance basis of each run.
    designs : list of ndarray, each (n_hrfs, n_volumes, n_trials)
        Trial regressors of each run with every HRF, residualised like the data.
    onoff_r2 : ndarray, shape (n_voxels,)
        Variance explained by one regressor for all trials (canonical HRF).
    info : dict
        What was run, chosen and why so far (becomes :attr:`SessionFit.info`).
    extra : list of ndarray, each (n_volumes, n_components), optional
        Noise components projected out after the nuisance (see :meth:`project_out`).
    """

    runs: list[SessionRun]
    library: HrfLibrary
    bases: list[np.ndarray]
    designs: list[np.ndarray]
    onoff_r2: np.ndarray
    info: dict[str, Any]
    extra: list[np.ndarray] | None = None

    @property
    def n_voxels(self) -> int:
        return int(self.runs[0].data.shape[1])

    @property
    def canonical(self) -> int:
        """Library index of the HRF that peaks nearest :data:`CANONICAL_PEAK_S`."""
        return canonical_index(self.library)

    def split(self, stacked: np.ndarray) -> list[np.ndarray]:
        """Stacked trials ``(n_trials, n)`` as one array per run."""
        return np.split(stacked, np.cumsum([len(r.onsets) for r in self.runs])[:-1])

    def n_nuisance(self) -> list[int]:
        """Dimensions projected out of each run (nuisance basis and noise components)."""
        return [b.shape[1] + (0 if self.extra is None else self.extra[r].shape[1]) for r, b in enumerate(self.bases)]

    def project_out(self, extra: list[np.ndarray]) -> None:
        """Project orthonormal ``extra`` regressors (per run ``(n_volumes, k)``) out of the data and the designs."""
        self.extra = extra
        if not any(e.shape[1] for e in extra):
            return
        for run, basis in zip(self.runs, extra, strict=True):
            residualise(run.data, basis)
        # the designs lose the same span as the data
        self.designs = [x - b[None] @ (b.T[None] @ x) for x, b in zip(self.designs, extra, strict=True)]

    def result(self, betas: list[np.ndarray], hrf_index: np.ndarray, r2: np.ndarray,
               fractions: np.ndarray | None = None, n_noise_components: int = 0,
               cv_noise: list[float] | None = None, cv_fractions: list[float] | None = None) -> SessionFit:
        """The :class:`SessionFit`: float32 betas, int16 HRF indices, this session's on/off R² and info."""
        return SessionFit(
            betas=[np.ascontiguousarray(b, dtype=np.float32) for b in betas],
            hrf_index=hrf_index.astype(np.int16), r2=r2.astype(np.float32), onoff_r2=self.onoff_r2.astype(np.float32),
            fractions=np.ones(self.n_voxels, dtype=np.float32) if fractions is None else fractions,
            n_noise_components=n_noise_components, cv_noise=cv_noise or [], cv_fractions=cv_fractions or [],
            info=self.info,
        )


def canonical_index(library: HrfLibrary) -> int:
    """Index of the library's HRF whose time to peak is nearest :data:`CANONICAL_PEAK_S`."""
    return int(np.argmin(np.abs(library.time_to_peak - CANONICAL_PEAK_S)))


def prepare(runs: list[SessionRun], glm: GlmSettings, library: HrfLibrary,
            polynomial_degree: int | None = None) -> SessionModel:
    """Project the nuisance out of the runs (in place) and build the trial designs with ``library``.

    Parameters
    ----------
    runs : list of SessionRun
    glm : GlmSettings
        Reads ``estimator`` (recorded), ``drift_model`` and ``high_pass_hz``.
    library : HrfLibrary
    polynomial_degree : int, optional
        Degree of the polynomial drift (default: run minutes / 2, rounded).
    """
    info: dict[str, Any] = {"Estimator": glm.estimator, "DriftModel": glm.drift_model, "HRFLibrary": library.name,
                            "HRFLibrarySize": len(library), "Warnings": []}
    if glm.drift_model == "cosine":
        info["HighPassHz"] = glm.high_pass_hz
    else:
        info["PolynomialDegree"] = [drift_degree(r.n_volumes, r.repetition_time) if polynomial_degree is None
                                    else polynomial_degree for r in runs]
    bases = [nuisance_basis(run, glm.high_pass_hz, glm.drift_model, polynomial_degree) for run in runs]
    for run, basis in zip(runs, bases, strict=True):
        residualise(run.data, basis)
    designs = session_designs(runs, library, bases)
    return SessionModel(runs, library, bases, designs, onoff_r2(runs, designs, canonical_index(library)), info)

