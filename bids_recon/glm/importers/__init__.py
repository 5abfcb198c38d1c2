"""Beta importers: published single-trial betas read in place of the GLM stage (``--betas FORMAT=PATH``).

Most people who reconstruct images from NSD never rerun a GLM: they use the betas the dataset ships, as Takagi &
Nishimoto, Brain-Diffuser and MindEye do. An importer yields exactly what the GLM stage yields, so every later stage
is unchanged: the trial table (:data:`~bids_recon.design.table.TRIAL_COLUMNS`, stimulus ids the configured stimulus
resolver understands), ``(n_trials, n_voxels)`` float32 betas per session (z-scored per session, combined and
rated by the noise ceiling as the GLM's are), the brain mask on the betas' grid, and provenance (files with size,
modification time and the sha256 of the small ones, the scale applied). One module per format registers a
:class:`BetaImporter` with :func:`register`:

- ``nsd`` (:mod:`.nsd`): ``betas_fithrf_GLMdenoise_RR/betas_sessionNN.nii.gz`` (int16, / 300) or ``.hdf5``;
  trials from ``nsd_expdesign.mat`` or ``responses.tsv``.
- ``nsdsynthetic``, ``nsdimagery`` (:mod:`.nsdexperiments`): NSD's two further experiments (``betas_nsdsynthetic``,
  ``betas_nsdimagery``), NsdImporter with their own betas folder and design.
- ``glmsingle`` (:mod:`.glmsingle`): a GLMsingle output folder, its trials named by the events that produced it.
- ``bold5000`` (:mod:`.bold5000`): ``CSI{n}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-NN.nii.gz`` + ``imgnames.txt``.
- ``things`` (:mod:`.things`): ``betas_vol`` NIfTI + ``conditions.tsv``, or ``betas_csv`` (HDF5 + CSVs).
- ``bids`` (:mod:`.bids`): bids_recon's own single-trial statmaps (a second analysis reuses a first one's).

Betas are read a block of trials at a time into the ``.npy`` each session's node writes (only the voxels of the
brain mask, or of the ROIs with ``voxels=rois``), so 40 NSD sessions of 750 trials never hold the whole brain of
all sessions in memory. Nothing outside this package branches on a format's name.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from bids_recon.errors import UsageError
from bids_recon.glm.importers.base import (
    COMMON_OPTIONS,
    BetaFile,
    BetaImporter,
    BetasSpec,
    ImportContext,
    ImportedSession,
    ImportPlan,
    split_betas_spec,
)
from bids_recon.registry import Registry

#: Registered importer classes by format, in registration order.
IMPORTERS: dict[str, type[BetaImporter]] = Registry("format", key="format", instances=False)
#: ``--betas`` values that mean "no import: run the GLM".
NO_IMPORT = ("", "none")


#: Class decorator: add an importer class to :data:`IMPORTERS` under its ``format``.
register = IMPORTERS.register


def parse_betas(spec: str | None) -> BetasSpec | None:
    """``FORMAT=PATH[:KEY=VALUE,...]`` -> :class:`BetasSpec` (``None`` for empty or ``none``: the GLM runs).

    Raises
    ------
    UsageError
        An unknown format or option, or text of another form (exit 64).
    """
    if spec is None or str(spec).strip().lower() in NO_IMPORT:
        return None
    fmt, path, options = split_betas_spec(spec)
    allowed = {**COMMON_OPTIONS, **IMPORTERS.named(fmt, prefix="--betas: ").options}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UsageError(f"--betas {fmt}: unknown option '{unknown[0]}' (options of {fmt}: {', '.join(allowed)})")
    return BetasSpec(fmt, Path(path).expanduser(), options)


def importer_for(spec: str | BetasSpec, context: ImportContext | None = None) -> BetaImporter:
    """The importer a ``--betas`` value describes (reads no file).

    Raises
    ------
    UsageError
        ``spec`` names no import (empty), or is malformed (exit 64).
    """
    parsed = spec if isinstance(spec, BetasSpec) else parse_betas(spec)
    if parsed is None:
        raise UsageError("no --betas given: nothing to import")
    return IMPORTERS[parsed.format](parsed.path, parsed.options, context)


def _import_all() -> None:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")


_import_all()

__all__ = ["IMPORTERS", "BetaFile", "BetaImporter", "BetasSpec", "ImportContext", "ImportPlan", "ImportedSession",
           "importer_for", "parse_betas", "register"]
