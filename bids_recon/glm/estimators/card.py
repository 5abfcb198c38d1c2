"""The estimator card: what the pipeline knows about one single-trial estimator, and the registry of cards.

A card names its estimator (``--glm``), says in one line what it does (``--help``, the settings reference), which
``[workflow.glm]`` settings its fit reads, the phrase of the methods text and the references it cites given the
settings, and fits a session by composing the shared stages (:mod:`bids_recon.glm.estimators.stages`). The beta
stage's methods text, the citations and the settings' choices ask the registry; none of them names an estimator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np

from bids_recon.glm.estimators.options import FitOptions
from bids_recon.glm.estimators.session import GlmSettings, SessionFit, SessionRun
from bids_recon.registry import Registry

if TYPE_CHECKING:
    from bids_recon.glm.estimators.chunked import VoxelSource

C = TypeVar("C", bound=type)


class EstimatorCard:
    """One single-trial estimator (subclass it in its own module, then decorate with :func:`register`).

    Attributes
    ----------
    name : str
        ``--glm`` value (``[workflow.glm] estimator``), recorded as ``info["Estimator"]`` of its fits.
    summary : str
        One line for ``--help`` and the settings reference.
    settings : tuple of str
        The ``[workflow.glm]`` settings its fit reads (:func:`~bids_recon.glm.estimators.fit.fit_session` checks
        their values before fitting).
    rank : int
        Place in the list of estimators (simplest first).
    chunked : bool
        Whether :meth:`fit_source` reads a chunk of voxels at a time (memory bounded whatever the number of
        voxels); otherwise the whole session is read into memory.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    settings: ClassVar[tuple[str, ...]] = ()
    rank: ClassVar[int] = 100
    chunked: ClassVar[bool] = False

    def methods(self, glm: GlmSettings) -> str:
        """How the betas were estimated with these settings, for the methods text: a phrase that completes
        "single-trial responses were estimated ... with" (no final punctuation)."""
        raise NotImplementedError

    def references(self, glm: GlmSettings) -> tuple[str, ...]:
        """Keys of :data:`bids_recon.reports.citation.REFERENCES` that a run with these settings cites."""
        return ()

    def fit(self, runs: list[SessionRun], glm: GlmSettings, rng: np.random.Generator,
            options: FitOptions) -> SessionFit:
        """Single-trial betas of one session.

        Parameters
        ----------
        runs : list of SessionRun
            Their data may be changed in place (residualised).
        glm : GlmSettings
            The ``[workflow.glm]`` settings (only those of :attr:`settings` are read).
        rng : numpy.random.Generator
            The fit's only source of randomness (seeded by the caller).
        options : FitOptions
        """
        raise NotImplementedError

    def fit_source(self, source: VoxelSource, glm: GlmSettings, rng: np.random.Generator, options: FitOptions,
                   betas_out: list[np.ndarray] | None = None, voxels_per_chunk: int | None = None) -> SessionFit:
        """Single-trial betas of a session read from ``source`` (:mod:`~bids_recon.glm.estimators.chunked`), written
        into ``betas_out`` when given (per run ``(n_trials_run, n_voxels)``, arrays or writable memory maps).

        This default reads the whole session into memory and calls :meth:`fit`; chunked estimators override it.
        """
        fit = self.fit(source.runs(slice(0, source.n_voxels)), glm, rng, options)
        if betas_out is not None:
            for target, betas in zip(betas_out, fit.betas, strict=True):
                target[:] = betas
            fit.betas = betas_out
        return fit


#: Registered estimators by name (one card each), simplest first (:attr:`EstimatorCard.rank`).
ESTIMATORS: dict[str, EstimatorCard] = Registry("estimator")


def register(cls: C) -> C:
    """Class decorator: add a card to :data:`ESTIMATORS` under its ``name``, in the order of the cards' ranks."""
    ESTIMATORS.register(cls)
    ordered = sorted(ESTIMATORS.items(), key=lambda item: item[1].rank)
    ESTIMATORS.clear()
    ESTIMATORS.update(ordered)
    return cls


def estimator_card(name: str) -> EstimatorCard:
    """The card registered as ``name`` (raises UsageError, exit 64, naming the known ones)."""
    return ESTIMATORS.named(name)


def estimators_doc() -> str:
    """The ``estimator`` setting's description: every registered estimator with its summary."""
    return "single-trial estimator: " + ", ".join(f"{name} ({card.summary})" for name, card in ESTIMATORS.items())
