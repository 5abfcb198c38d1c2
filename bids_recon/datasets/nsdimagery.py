"""NSD-Imagery (Kneeland et al. 2025): NSD's 8 participants seeing, attending to and imagining 18 targets.

Laid out as NSD's download: ``--betas nsdimagery=ROOT`` (:mod:`bids_recon.glm.importers.nsdexperiments`:
``nsdimagerybetas_fithrf_GLMdenoise_RR/betas_nsdimagery``, 720 betas of 12 runs, trials from
``nsddata/bdata/nsdimagery/nsdimagery_subjNN_<run>.tsv``), target images through the ``nsdimagery`` resolver, NSD's
``streams`` ROIs, ``space-func1pt8mm``. Decoded: the vision and the imagery trials of the two image sets (A simple
shapes, B NSD scenes), as separate stimulus groups (``vision-H``, ``imagery-H``); attention trials and set C (words)
are modelled only. Every decoded trial is a test trial (``--test-split all``): decoders come from NSD's core
experiment (``--decoders-from``). ``--betas nsdimagery=ROOT:decode=imagery`` decodes one condition only. Set A
targets get category captions (``a photo of a bar``); set B's need a captions TSV keyed by stimulus id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bids_recon.datasets import DatasetPreset, register
from bids_recon.datasets.nsdsynthetic import experiment_import


@register
class NsdImagery(DatasetPreset):
    name = "nsdimagery"
    title = "NSD-Imagery (NSD's vision / imagery session)"
    recipe = "datasets/nsdimagery.md"
    settings = {
        "execution.task_id": "nsdimagery",
        "workflow.stimuli.resolver": "nsdimagery",
        "workflow.stimuli.test_split": "all",
        "workflow.stimuli.category_captions": True,
    }

    def settings_for(self, bids_dir: Path | None) -> dict[str, Any]:
        return {**self.settings, **experiment_import(self.name, bids_dir)}
