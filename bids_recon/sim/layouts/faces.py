"""``faces``: a HYPER-style experiment (Dado et al. 2022), faces generated from known latents.

The stimuli, the generator and the latents table come from :mod:`bids_recon.sim.faces` (imported when the layout
is used: it needs torch); higher-visual voxels respond linearly to the latents. The command it prints runs
``bids_recon --generator latent`` on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bids_recon.sim.layouts import LayoutContext, SimLayout, register
from bids_recon.sim.presets import SimPreset


@register
class FacesLayout(SimLayout):
    name = "faces"
    summary = ("HYPER-style faces made by a small random generator from known latents (the generator as TorchScript "
               "and the latents table in stimuli/), higher-visual responses driven by the latents")
    bids_stimuli = True

    def make_stimuli(self, rng: np.random.Generator, preset: SimPreset) -> Any:
        from bids_recon.sim.faces import make_face_stimuli

        return make_face_stimuli(rng, preset.n_train, preset.n_test, preset.n_test_repeats, preset.image_size)

    def stimulus_features(self, stim: Any) -> np.ndarray:
        return stim.latents

    def finish(self, ctx: LayoutContext) -> None:
        from bids_recon.sim.faces import write_face_files

        write_face_files(ctx.bids_dir, ctx.truth_dir, ctx.stim)

    def run_args(self, bids_dir: Path, stores_dir: Path) -> list[str]:
        from bids_recon.sim.faces import GENERATOR_FILE

        return ["--generator", "latent", "--latent-generator", str(Path(bids_dir) / "stimuli" / GENERATOR_FILE)]
