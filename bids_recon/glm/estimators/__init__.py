"""Single-trial estimators: each one module with its card, composed from shared stages.

``lsa`` and ``lss`` fit one canonical HRF by least squares (all trials at once, or each trial against the others);
``fithrf`` chooses each voxel's HRF from a library; ``fithrf-denoise`` adds noise regressors and
``fithrf-denoise-rr`` a ridge per voxel: GLMsingle's method (Prince et al. 2022) that produced NSD's betas
(``betas_fithrf_GLMdenoise_RR``), rewritten to vectorise across voxels. The stages (:mod:`.stages`) are the
nuisance basis and trial designs, the HRF choice, the task voxels, the cross-validation of repeats, the noise pool
and its component count, the ridge (by marginal likelihood or by a cross-validated fraction) and least squares.

Every estimator works on one session at a time: runs arrive as ``(n_volumes, n_voxels)`` float32 arrays in
percent signal change, already restricted to the brain mask. What was chosen, the cross-validation curves and
plain-language warnings (also logged to ``logging.getLogger("bids_recon.glm")``) are in ``SessionFit.info``.

A new estimator is one module here that subclasses :class:`EstimatorCard` and decorates it with :func:`register`
(modules of this package are imported, and so registered, when the package is first imported).
"""

from __future__ import annotations

import importlib
import pkgutil

from bids_recon.glm.estimators.card import ESTIMATORS, EstimatorCard, estimator_card, estimators_doc, register
from bids_recon.glm.estimators.chunked import ArraySource, NpySource
from bids_recon.glm.estimators.fit import fit_session, fit_session_source
from bids_recon.glm.estimators.options import FitOptions
from bids_recon.glm.estimators.session import GlmSettings, SessionFit, SessionRun
from bids_recon.glm.estimators.stages.design import DRIFT_MODELS, drift_regressors
from bids_recon.glm.estimators.stages.noise import NOISE_SELECTIONS
from bids_recon.glm.estimators.stages.ridge import FRACTION_SELECTIONS

__all__ = ["DRIFT_MODELS", "ESTIMATORS", "FRACTION_SELECTIONS", "NOISE_SELECTIONS", "ArraySource", "EstimatorCard",
           "FitOptions", "GlmSettings", "NpySource", "SessionFit", "SessionRun", "drift_regressors", "estimator_card",
           "estimators_doc", "fit_session", "fit_session_source", "register"]


def _import_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_all()
