"""The TemplateFlow files bids_recon reads, as queries: what a container or an HPC cache must hold.

:func:`required_templates` is the list that ``scripts/prefetch_templates.py`` downloads and checks; it is derived
from :class:`bids_recon.rois.params.RoiParams`, the same settings :func:`bids_recon.rois.atlas.atlas_rois` queries
with, so a change of atlas in the configuration changes what is prefetched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bids_recon.rois.params import RoiParams


@dataclass(frozen=True)
class TemplateQuery:
    """One TemplateFlow file: ``templateflow.api.get(template, **query)``.

    Attributes
    ----------
    template : str
        Template identifier, e.g. ``MNI152NLin2009cAsym``.
    query : dict
        TemplateFlow entities (``resolution``, ``atlas``, ``desc``, ``suffix``, ``extension``).
    purpose : str
        What bids_recon uses the file for.
    """

    template: str
    query: dict[str, object] = field(default_factory=dict)
    purpose: str = ""

    def describe(self) -> str:
        """``tpl-<template> key=value ...`` for messages and documentation."""
        return f"tpl-{self.template} " + " ".join(f"{k}={v}" for k, v in self.query.items())


def required_templates(rois: RoiParams | None = None) -> list[TemplateQuery]:
    """The TemplateFlow files a participant run with these ROI settings reads.

    Parameters
    ----------
    rois : RoiParams, optional
        ROI settings (template, resolution, atlas, label-table template); the defaults when omitted.

    Returns
    -------
    list of TemplateQuery
        The atlas (thresholded dseg), its label table, and the template's brain mask at the atlas resolution.
    """
    rois = rois or RoiParams()
    return [
        TemplateQuery(rois.template, {"resolution": rois.resolution, "atlas": rois.atlas, "desc": rois.atlas_desc,
                                      "suffix": "dseg", "extension": ".nii.gz"},
                      "atlas from which the default visual ROIs are taken"),
        TemplateQuery(rois.label_table_template, {"atlas": rois.atlas, "suffix": "dseg", "extension": ".tsv"},
                      "label table of the atlas (ROIs are defined by label names)"),
        TemplateQuery(rois.template, {"resolution": rois.resolution, "desc": "brain", "suffix": "mask",
                                      "extension": ".nii.gz"},
                      "brain mask of the template at the atlas resolution"),
    ]


def missing_templates(queries: list[TemplateQuery]) -> list[tuple[TemplateQuery, str]]:
    """The queries that do not resolve to exactly one non-empty file in ``$TEMPLATEFLOW_HOME`` (never downloads).

    Returns
    -------
    list of (TemplateQuery, str)
        Each failing query with the reason.
    """
    from bids_recon.rois.atlas import templateflow_file

    problems = []
    for item in queries:
        try:
            path = templateflow_file(item.template, **item.query)
        except Exception as exc:  # MissingInputError, BadDataError: report them all
            problems.append((item, str(exc)))
            continue
        if not Path(path).is_file():
            problems.append((item, f"not a file: {path}"))
    return problems
