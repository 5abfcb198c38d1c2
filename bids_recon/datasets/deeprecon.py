"""Deep Image Reconstruction (Shen et al. 2019; OpenNeuro ds001506).

Like GOD (``imagenet`` resolver), with ``event_type`` 1 = stimulus, 2 = one-back repetition (modelled, not
decoded), -1/-2/-3 = rest. Only the natural-image sessions are used, as in the paper's training and test of natural
images: ``perceptionNaturalImageTraining01..15`` train, ``perceptionNaturalImageTest01..03`` test (50 images x 24
runs); the hook lists them from the dataset (the artificial-shape and letter sessions are left out). ROIs: the
dataset's per-hemisphere masks in ``sourcedata/``, combined as for GOD (:class:`bids_recon.datasets.kamitani.
KamitaniPreset`), with BOLD in T1w.
"""

from pathlib import Path
from typing import Any

from bids_recon.datasets import register, sessions_matching
from bids_recon.datasets.kamitani import KamitaniPreset


@register
class Deeprecon(KamitaniPreset):
    name = "deeprecon"
    title = "Deep Image Reconstruction (OpenNeuro ds001506)"
    recipe = "datasets/deeprecon.md"
    settings = {
        "execution.task_id": "perception",
        "workflow.stimuli.resolver": "imagenet",
        "workflow.stimuli.test_split": "ses-perceptionNaturalImageTest*",
        "workflow.stimuli.category_captions": True,
        "workflow.space": "T1w",
        "workflow.resolution": None,
    }

    def settings_for(self, bids_dir: Path | None) -> dict[str, Any]:
        found = super().settings_for(bids_dir)
        sessions = sessions_matching(bids_dir, ("perceptionNaturalImage",))
        if sessions:
            found["execution.session_label"] = sessions
        return found
