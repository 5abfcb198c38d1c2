"""Stimulus resolvers: one small module per way datasets name and store their images, behind one interface.

``--stimuli KIND[:KEY=VALUE,...]`` (``[workflow.stimuli] resolver``) chooses one; a dataset preset
(``--dataset``) chooses it for you. Each kind is a :class:`StimulusResolver` subclass in a module of this package,
registered with :func:`register` (:mod:`.registry`):

- ``files`` (:mod:`.files`): a column naming an image file (``stim_file``, ``file_path``, ``condition``,
  ``ImgName``...), resolved in the dataset's ``stimuli/`` and in ``--stimuli-dir`` folders, with a fallback index
  by bare file name for nested folders (BOLD5000, COCO, THINGS).
- ``nsd`` (:mod:`.nsd`): ``73k_id`` (1-based) or ``nsdId`` (0-based) rows of ``nsd_stimuli.hdf5:/imgBrick``, read
  lazily; ``nsd_stim_info_merged.csv`` for COCO ids and ``shared1000``.
- ``imagenet`` (:mod:`.imagenet`): Kamitani-lab tables (GOD, Deeprecon): ``stimulus_name`` or the float
  ``stimulus_id`` -> ``<name>.JPEG``; rest rows dropped, one-back repeats modelled but not decoded.

Call sites build the resolver from the settings with :func:`resolver_for` and use only the interface. Nothing
outside this package branches on a resolver's kind.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pandas as pd

from bids_recon.design.table import ROW_COLUMNS
from bids_recon.features.params import StimulusParams
from bids_recon.features.resolvers.base import StimulusResolver
from bids_recon.features.resolvers.registry import RESOLVERS, parse_resolver, register


def resolver_class(params: StimulusParams | None = None) -> type[StimulusResolver]:
    """The class of the resolver ``params.resolver`` names."""
    return RESOLVERS[parse_resolver((params or StimulusParams()).resolver)[0]]


def resolver_for(bids_dir: Path | str, params: StimulusParams | None = None) -> StimulusResolver:
    """The resolver the settings describe, for the dataset in ``bids_dir`` (reads no file).

    Parameters
    ----------
    bids_dir : Path
        Root of the raw dataset.
    params : StimulusParams, optional
        ``[workflow.stimuli]``; the defaults (``files`` in ``stimuli/``) when omitted.
    """
    params = params or StimulusParams()
    return resolver_class(params)(Path(bids_dir), params)


def trial_rows(events: pd.DataFrame, params: StimulusParams | None = None, source: Path | None = None
               ) -> pd.DataFrame:
    """The events rows that are trials, their stimulus ids and whether each is decoded (no file is read).

    See :meth:`StimulusResolver.trial_rows`; the columns are :data:`ROW_COLUMNS`.
    """
    return (params or StimulusParams()).trial_rows(events, source)


def _import_all() -> None:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: (m.name != "files", m.name)):
        if module.name not in ("base", "registry"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_all()

__all__ = ["RESOLVERS", "ROW_COLUMNS", "StimulusResolver", "parse_resolver", "register", "resolver_class",
           "resolver_for", "trial_rows"]
