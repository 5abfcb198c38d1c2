"""NSD-synthetic (Gifford, Cichy, Naselaris & Kay): NSD's 8 participants, one session of 284 synthetic images.

Laid out as NSD's download (NSD's own betas, no raw data needed): ``--betas nsdsynthetic=ROOT``
(:mod:`bids_recon.glm.importers.nsdexperiments`: ``nsdsyntheticbetas_fithrf_GLMdenoise_RR/betas_nsdsynthetic``,
744 trials in ``nsdsynthetic_expdesign.mat`` order), images through the ``nsdsynthetic`` resolver
(:mod:`bids_recon.features.resolvers.nsdexperiments`), the ROIs of NSD's ``streams`` atlas as for ``--dataset nsd``,
outputs in ``space-func1pt8mm``. Every decoded trial is a test trial (``--test-split all``): the experiment tests
decoders trained on NSD's core experiment (``--decoders-from``), out of distribution. It has no captions: the
preset turns on ``category_captions`` (``a photo of a <subclass>`` from ``nsdsyntheticimageinformation.csv``);
a captions TSV keyed by stimulus id replaces them. The sources of every fact are in the importer's docstring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bids_recon.datasets import DatasetPreset, register
from bids_recon.datasets.nsd import nsd_root, streams_masks


def experiment_import(fmt: str, bids_dir: Path | None) -> dict[str, Any]:
    """The import settings of one of NSD's further experiments (``fmt``: ``nsdsynthetic``, ``nsdimagery``) when
    ``bids_dir`` (or its parent) is NSD's download root with its betas; empty otherwise."""
    root = nsd_root(bids_dir)
    if root is None:
        return {}
    roi_dir = root / "nsddata" / "ppdata" / "subj{subject}" / "func1pt8mm" / "roi"
    return {"workflow.glm.betas": f"{fmt}={root}:voxels=rois", "workflow.rois.user_masks": streams_masks(roi_dir),
            "workflow.space": "func1pt8mm", "workflow.resolution": None}


@register
class NsdSynthetic(DatasetPreset):
    name = "nsdsynthetic"
    title = "NSD-synthetic (NSD's synthetic-image session)"
    recipe = "datasets/nsdsynthetic.md"
    settings = {
        "execution.task_id": "nsdsynthetic",
        "workflow.stimuli.resolver": "nsdsynthetic",
        "workflow.stimuli.test_split": "all",
        "workflow.stimuli.category_captions": True,
    }

    def settings_for(self, bids_dir: Path | None) -> dict[str, Any]:
        return {**self.settings, **experiment_import(self.name, bids_dir)}
