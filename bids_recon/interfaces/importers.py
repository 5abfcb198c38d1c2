"""Interfaces of an import (``--betas``): the mask the betas are read in, one session's betas, the test split."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, InputMultiObject, TraitedSpec, traits

from bids_recon.features.params import StimulusParams
from bids_recon.interfaces.base import RecordingInterface, load_params, params_trait
from bids_recon.invariants import check_betas, check_trial_table
from bids_recon.io import atomic_write, read_tsv, write_json, write_tsv
from bids_recon.rois.params import RoiParams


def _context(inputs):
    from bids_recon.glm.importers import ImportContext

    stimuli = load_params(StimulusParams, inputs.stimuli, "workflow.stimuli")
    task = list(inputs.task) if len(inputs.task) > 1 else (inputs.task[0] if inputs.task else None)
    return ImportContext(Path(inputs.bids_dir) if inputs.bids_dir else None, stimuli, task)


class _ImportInputSpec(BaseInterfaceInputSpec):
    betas = traits.Str(mandatory=True, desc="--betas FORMAT=PATH[:KEY=VALUE,...]")
    subject = traits.Str(mandatory=True)
    bids_dir = traits.Str("", usedefault=True, desc="raw dataset (events naming GLMsingle's trials)")
    stimuli = params_trait(StimulusParams)  # only the fields that decide the trial rows (StimulusParams.rows_only)
    task = traits.List(traits.Str, desc="task(s) of the events (GLMsingle)")


class _ImportMaskInputSpec(_ImportInputSpec):
    sessions = traits.List(traits.Str, desc="session labels imported")
    rois = params_trait(RoiParams)


class _ImportMaskOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc="voxels read, on the betas' grid")
    provenance = File(exists=True, desc="JSON: format, files (size, mtime, sha256), scale, voxels")


class ImportMask(RecordingInterface):
    """The brain mask of imported betas (restricted to the ROIs with ``voxels=rois``) and where they came from."""

    input_spec = _ImportMaskInputSpec
    output_spec = _ImportMaskOutputSpec

    def _run(self, runtime):
        from bids_recon.glm.importers.steps import import_mask
        from bids_recon.rois import build_rois

        i = self.inputs
        rois = load_params(RoiParams, i.rois, "workflow.rois")
        img, provenance = import_mask(i.betas, i.subject, list(i.sessions) or None, _context(i), lambda brain, source:
                                      build_rois(brain, rois, brain_source=source, subject=i.subject)[0])
        cwd = Path(runtime.cwd)
        out = atomic_write(cwd / "brain_mask.nii.gz", lambda tmp: nib.save(img, tmp))
        self._results["out_mask"] = str(out)
        self._results["provenance"] = str(write_json(cwd / "provenance.json", {"ImportedBetas": provenance}))


class _ImportSessionInputSpec(_ImportInputSpec):
    session = traits.Str(mandatory=True, desc="session label")
    mask_file = File(exists=True, mandatory=True, desc="voxels to read (ImportMask)")
    beta_files = InputMultiObject(File(exists=True), desc="the session's files (a change reruns the node)")


class _ImportSessionOutputSpec(TraitedSpec):
    betas = File(exists=True, desc="(n_trials, n_voxels) float32 .npy, the format's units scaled")
    trials = File(exists=True, desc="the session's trial table")
    metadata = File(exists=True, desc="the format's per-trial columns (a --test-split COLUMN=VALUE reads them)")


class ImportSession(RecordingInterface):
    """One session's imported betas, read a block of trials at a time."""

    input_spec = _ImportSessionInputSpec
    output_spec = _ImportSessionOutputSpec

    def _run(self, runtime):
        from bids_recon.glm.importers.steps import import_session

        i = self.inputs
        cwd = Path(runtime.cwd)
        mask = nib.load(i.mask_file)
        _, trials, metadata = import_session(i.betas, i.subject, i.session, mask, _context(i), cwd / "betas.npy")
        check_trial_table(trials, "imported trial table", i.beta_files[0] if i.beta_files else None)
        check_betas(np.load(cwd / "betas.npy", mmap_mode="r"), f"imported betas of session {i.session}",
                    cwd / "betas.npy", len(trials), int((np.asarray(mask.dataobj) > 0).sum()))
        self._results["betas"] = str(cwd / "betas.npy")
        self._results["trials"] = str(write_tsv(cwd / "trials.tsv", trials))
        self._results["metadata"] = str(write_tsv(cwd / "metadata.tsv", metadata))


class _ImportSplitInputSpec(BaseInterfaceInputSpec):
    trials = InputMultiObject(File(exists=True), mandatory=True, desc="per-session trial tables")
    metadata = InputMultiObject(File(exists=True), mandatory=True, desc="per-session metadata, same order")
    stimuli = params_trait(StimulusParams)
    bids_dir = traits.Str("", usedefault=True, desc="raw dataset (the resolver's named test sets: shared1000)")


class _ImportSplitOutputSpec(TraitedSpec):
    trials = traits.List(File(exists=True), desc="the trial tables with their split")


class ImportSplit(RecordingInterface):
    """Set each imported session's test split (``--test-split``; changing it reads no beta again)."""

    input_spec = _ImportSplitInputSpec
    output_spec = _ImportSplitOutputSpec

    def _run(self, runtime):
        from bids_recon.design.table import read_trials
        from bids_recon.glm.importers.steps import mark_splits

        i = self.inputs
        tables = [read_trials(p) for p in i.trials]
        metadata = [read_tsv(p) for p in i.metadata]
        marked = mark_splits(tables, metadata, load_params(StimulusParams, i.stimuli, "workflow.stimuli"),
                             i.bids_dir, [Path(p) for p in i.trials])
        cwd = Path(runtime.cwd)
        self._results["trials"] = [str(write_tsv(cwd / f"trials_{k:02d}.tsv", t)) for k, t in enumerate(marked)]


__all__ = ["ImportMask", "ImportSession", "ImportSplit"]
