"""Synthetic BIDS + fMRIPrep-like datasets with known ground truth (``bids_recon-sim``).

A simulated dataset looks like NSD-style data to the pipeline: a raw BIDS dataset whose events name
synthetic images in ``stimuli/`` (with captions), preprocessed BOLD in an MNI-like 2 mm grid with brain
masks and confounds, a TemplateFlow folder with a Harvard-Oxford-style atlas in the same grid, and the
ground truth (receptive fields, semantic weights, HRFs, single-trial amplitudes, noise levels).

Examples
--------
>>> from bids_recon.sim import simulate_dataset, load_truth
>>> ds = simulate_dataset("/tmp/demo", preset="tiny", seed=0)  # doctest: +SKIP
>>> truth = load_truth(ds.truth_dir, "01")  # doctest: +SKIP
"""

from bids_recon.sim.multisubject import (
    MULTI_PRESETS,
    MultiSubjectData,
    MultiSubjectPreset,
    SimSubject,
    simulate_multisubject,
    write_nsd_multisubject,
)
from bids_recon.sim.presets import PRESETS, TASK, SimPreset
from bids_recon.sim.simulate import SimulatedDataset, load_truth, output_paths, simulate_dataset

__all__ = [
    "MULTI_PRESETS",
    "PRESETS",
    "MultiSubjectData",
    "MultiSubjectPreset",
    "SimSubject",
    "TASK",
    "SimPreset",
    "SimulatedDataset",
    "load_truth",
    "output_paths",
    "simulate_dataset",
    "simulate_multisubject",
    "write_nsd_multisubject",
]
