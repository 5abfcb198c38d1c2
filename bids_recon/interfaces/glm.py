"""Interfaces of the beta stage: subject mask, one run's GLM, combining runs."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, InputMultiObject, TraitedSpec, traits

from bids_recon.glm import betas_to_image, combine_runs, estimate_run_betas, intersect_masks
from bids_recon.glm.trials import read_trials
from bids_recon.interfaces.base import RecordingInterface
from bids_recon.io import atomic_write, write_tsv


class _SubjectMaskInputSpec(BaseInterfaceInputSpec):
    mask_files = InputMultiObject(File(exists=True), mandatory=True, desc="brain mask of every run")


class _SubjectMaskOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc="voxels inside every run's brain mask")


class SubjectMask(RecordingInterface):
    """Intersect the runs' brain masks."""

    input_spec = _SubjectMaskInputSpec
    output_spec = _SubjectMaskOutputSpec

    def _run(self, runtime):
        img = intersect_masks([Path(p) for p in self.inputs.mask_files])
        out = Path(runtime.cwd) / "brain_mask.nii.gz"
        atomic_write(out, lambda tmp: nib.save(img, tmp))
        self._results["out_mask"] = str(out)


class _RunBetasInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="preprocessed BOLD (4D)")
    mask_file = File(exists=True, mandatory=True, desc="subject brain mask")
    events_file = File(exists=True, mandatory=True, desc="BIDS events.tsv")
    confounds_file = File(exists=True, mandatory=True, desc="fMRIPrep confounds TSV")
    repetition_time = traits.Float(mandatory=True)
    subject = traits.Str(mandatory=True)
    session = traits.Either(None, traits.Str, default=None, usedefault=True)
    run = traits.Either(None, traits.Str, default=None, usedefault=True)
    confound_columns = traits.List(traits.Str, mandatory=True)
    stimulus_column = traits.Str("stim_file", usedefault=True)
    hrf_model = traits.Str("glover", usedefault=True)
    drift_model = traits.Str("cosine", usedefault=True)
    high_pass_hz = traits.Float(0.01, usedefault=True)


class _RunBetasOutputSpec(TraitedSpec):
    betas = File(exists=True, desc="(n_trials, n_voxels) float32 .npy, percent signal change")
    betas_image = File(exists=True, desc="4D statmap, one volume per trial")
    trials = File(exists=True, desc="trial table of the run")
    design = File(exists=True, desc="design matrix TSV")
    n_unusable_voxels = traits.Int()


class RunBetas(RecordingInterface):
    """Single-trial betas (LSA) of one run."""

    input_spec = _RunBetasInputSpec
    output_spec = _RunBetasOutputSpec

    def _run(self, runtime):
        i = self.inputs
        mask_img = nib.load(i.mask_file)
        result = estimate_run_betas(
            Path(i.bold_file), mask_img, Path(i.events_file), Path(i.confounds_file), i.repetition_time,
            i.subject, i.session, i.run, list(i.confound_columns), i.stimulus_column, i.hrf_model, i.drift_model,
            i.high_pass_hz,
        )
        cwd = Path(runtime.cwd)
        self._results["betas"] = str(atomic_write(cwd / "betas.npy", lambda tmp: np.save(tmp, result.betas)))
        image = betas_to_image(result.betas, mask_img)
        self._results["betas_image"] = str(atomic_write(cwd / "betas.nii.gz", lambda tmp: nib.save(image, tmp)))
        self._results["trials"] = str(write_tsv(cwd / "trials.tsv", result.trials))
        self._results["design"] = str(write_tsv(cwd / "design.tsv", result.design))
        self._results["n_unusable_voxels"] = result.n_unusable_voxels


class _CombineRunsInputSpec(BaseInterfaceInputSpec):
    betas = InputMultiObject(File(exists=True), mandatory=True, desc="per-run betas, acquisition order")
    trials = InputMultiObject(File(exists=True), mandatory=True, desc="per-run trial tables, same order")
    test_min_repeats = traits.Int(2, usedefault=True)
    zscore = traits.Bool(True, usedefault=True)


class _CombineRunsOutputSpec(TraitedSpec):
    betas = File(exists=True, desc="(n_trials, n_voxels) z-scored per session, .npy")
    trials = File(exists=True, desc="the participant's trial table")


class CombineRuns(RecordingInterface):
    """Stack runs, z-score per session, number repeats and split train/test."""

    input_spec = _CombineRunsInputSpec
    output_spec = _CombineRunsOutputSpec

    def _run(self, runtime):
        betas = [np.load(p) for p in self.inputs.betas]
        trials = [read_trials(p) for p in self.inputs.trials]
        stacked, table = combine_runs(betas, trials, self.inputs.test_min_repeats, self.inputs.zscore)
        cwd = Path(runtime.cwd)
        self._results["betas"] = str(atomic_write(cwd / "betas_zscored.npy", lambda tmp: np.save(tmp, stacked)))
        self._results["trials"] = str(write_tsv(cwd / "trials.tsv", table))


__all__ = ["CombineRuns", "RunBetas", "SubjectMask"]
