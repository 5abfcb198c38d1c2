"""Interfaces of the beta stage: subject mask, one run's GLM, combining runs."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, InputMultiObject, TraitedSpec, isdefined, traits

from bids_recon.design.events import load_events
from bids_recon.design.repeats import run_tables
from bids_recon.design.split import mark_test_split, parse_test_split
from bids_recon.design.table import read_trials
from bids_recon.features.params import StimulusParams
from bids_recon.glm import (
    RunFiles,
    betas_to_image,
    combine_runs,
    estimate_session_betas,
    intersect_masks,
    noise_ceiling_for_trials,
)
from bids_recon.glm.params import GlmParams
from bids_recon.interfaces.base import RecordingInterface, load_params, params_trait
from bids_recon.invariants import check_betas, check_shape, check_trial_table
from bids_recon.io import atomic_write, write_json, write_tsv


class _SubjectMaskInputSpec(BaseInterfaceInputSpec):
    mask_files = InputMultiObject(File(exists=True), mandatory=True,
                                  desc="brain mask of every run (or its 4D BOLD when fMRIPrep wrote none)")


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


class _SessionBetasInputSpec(BaseInterfaceInputSpec):
    bold_files = InputMultiObject(File(exists=True), mandatory=True, desc="preprocessed BOLD of each run (4D)")
    events_files = InputMultiObject(File(exists=True), mandatory=True, desc="events.tsv of each run")
    confounds_files = InputMultiObject(File(exists=True), mandatory=True, desc="fMRIPrep confounds of each run")
    repetition_times = traits.List(traits.Float, mandatory=True)
    start_times = traits.List(traits.Float, desc="seconds after each volume's start that its data stand for (slice-"
                                                 "timing reference, fMRIPrep's StartTime); 0 for every run if unset")
    runs = traits.List(traits.Either(None, traits.Str), mandatory=True, desc="run label of each run")
    tasks = traits.List(traits.Str, desc="task label of each run (the trial table's task column)")
    mask_file = File(exists=True, mandatory=True, desc="subject brain mask")
    subject = traits.Str(mandatory=True)
    session = traits.Either(None, traits.Str, default=None, usedefault=True)
    params = params_trait(GlmParams)
    stimuli = params_trait(StimulusParams)  # only the fields that decide the trial rows (StimulusParams.rows_only)
    seed = traits.Int(mandatory=True, desc="seed of the random steps")


class _SessionBetasOutputSpec(TraitedSpec):
    betas = traits.List(File(exists=True), desc="per run: (n_trials, n_voxels) float32 .npy, % signal change")
    betas_images = traits.List(File(exists=True), desc="per run: 4D statmap, one volume per trial")
    trials = traits.List(File(exists=True), desc="per run: trial table")
    design = File(exists=True, desc="design matrix TSV of the first run (canonical HRF)")
    maps = traits.Dict(traits.Str, File(exists=True), desc="hrfindex, rsquare, fraction maps (NIfTI)")
    info = File(exists=True, desc="JSON: estimator, noise components, cross-validation, each run's confounds")


class SessionBetas(RecordingInterface):
    """Single-trial betas of one session's runs (LSA, LSS or fithrf-denoise-rr)."""

    input_spec = _SessionBetasInputSpec
    output_spec = _SessionBetasOutputSpec

    def _run(self, runtime):
        i = self.inputs
        mask_img = nib.load(i.mask_file)
        tasks = list(i.tasks) if isdefined(i.tasks) and i.tasks else [None] * len(i.runs)
        starts = list(i.start_times) if isdefined(i.start_times) and i.start_times else [0.0] * len(i.runs)
        files = [RunFiles(Path(b), Path(e), Path(c), tr, i.subject, i.session, run, task, start)
                 for b, e, c, tr, run, task, start in zip(i.bold_files, i.events_files, i.confounds_files,
                                                          i.repetition_times, i.runs, tasks, starts, strict=True)]
        cwd = Path(runtime.cwd)
        store = cwd / "session_store"  # the runs' time series, read a chunk of voxels at a time
        result = estimate_session_betas(files, mask_img, load_params(GlmParams, i.params, "workflow.glm"),
                                        load_params(StimulusParams, i.stimuli, "workflow.stimuli"), i.seed,
                                        store=store)
        n_voxels = int((np.asarray(mask_img.dataobj) > 0).sum())

        def write_run(index: int) -> tuple[str, str, str]:
            run_betas, run_trials = result.betas[index], result.trials[index]
            target = cwd / f"betas_{index:02d}.npy"
            check_trial_table(run_trials, "run trial table", files[index].events, n_rows=len(run_betas))
            check_betas(run_betas, f"single-trial betas of {Path(files[index].bold).name}", target, len(run_trials),
                        n_voxels)
            image = betas_to_image(run_betas, mask_img)
            return (str(atomic_write(target, lambda tmp: np.save(tmp, run_betas))),
                    str(atomic_write(cwd / f"betas_{index:02d}.nii.gz", lambda tmp: nib.save(image, tmp))),
                    str(write_tsv(cwd / f"trials_{index:02d}.tsv", run_trials)))

        # two runs at a time: gzip compression releases the GIL (a whole-brain session: about 21 s -> 6 s)
        with ThreadPoolExecutor(max_workers=2) as pool:
            written = list(pool.map(write_run, range(len(result.betas))))
        betas, images, trials = (list(column) for column in zip(*written, strict=True))
        fit = result.fit
        maps = {}
        for name, values in (("hrfindex", fit.hrf_index.astype(np.float32)), ("rsquare", fit.r2),
                             ("onoffrsquare", fit.onoff_r2), ("fraction", fit.fractions)):
            image = betas_to_image(values[None, :], mask_img).slicer[..., 0]
            maps[name] = str(atomic_write(cwd / f"{name}.nii.gz", lambda tmp, image=image: nib.save(image, tmp)))
        info = {**fit.info, "NoiseComponents": fit.n_noise_components, "UnusableVoxels": result.n_unusable_voxels,
                "MedianFraction": float(np.median(fit.fractions)), "MedianRSquare": float(np.median(fit.r2)),
                "RunConfounds": [{"Run": f.run, **choice.to_json()}  # the columns regressed out of each run
                                 for f, choice in zip(files, result.confounds, strict=True)]}
        self._results.update(betas=betas, betas_images=images, trials=trials, maps=maps,
                             design=str(write_tsv(cwd / "design.tsv", result.design)),
                             info=str(write_json(cwd / "session_info.json", info)))
        shutil.rmtree(store, ignore_errors=True)  # its betas are copied above


class _CombineRunsInputSpec(BaseInterfaceInputSpec):
    betas = InputMultiObject(File(exists=True), mandatory=True, desc="per-run betas, acquisition order")
    trials = InputMultiObject(File(exists=True), mandatory=True, desc="per-run trial tables, same order")
    stimuli = params_trait(StimulusParams)
    events_files = InputMultiObject(File(exists=True), desc="per-run events, same order (with test_split)")
    bids_dir = traits.Str(mandatory=True, desc="raw dataset (the resolver's named test sets: shared1000)")
    zscore = traits.Bool(mandatory=True, desc="z-score each voxel's betas within each session")
    mask_file = File(exists=True, mandatory=True, desc="subject brain mask (grid of the maps)")
    split_set = traits.Bool(False, usedefault=True, desc=(
        "the trial tables' split was set by the --test-split rule already (imported betas: ImportSplit)"))
    split = traits.Bool(True, usedefault=True, desc=(
        "assign train/test (False: --betas-only without --test-split, split 'n/a', no train/test set needed)"))
    need_training = traits.Bool(True, usedefault=True, desc=(
        "the split must leave training trials (False: --decoders-from, the decoders come from an earlier run)"))


class _CombineRunsOutputSpec(TraitedSpec):
    betas = File(exists=True, desc="(n_trials, n_voxels) z-scored per session, .npy")
    trials = File(exists=True, desc="the participant's trial table")
    run_trials = traits.List(File(exists=True), desc=(
        "per run: its trial table (all modelled trials, the rows of its statmap) with the real split and repeat"))
    maps = traits.Dict(traits.Str, File(exists=True), desc="ncsnr and noise-ceiling maps (NIfTI)")


class CombineRuns(RecordingInterface):
    """Stack runs, z-score per session, number repeats and split train/test."""

    input_spec = _CombineRunsInputSpec
    output_spec = _CombineRunsOutputSpec

    def _run(self, runtime):
        i = self.inputs
        stimuli = load_params(StimulusParams, i.stimuli, "workflow.stimuli")
        betas = [np.load(p, mmap_mode="r") for p in i.betas]  # read a block of voxels at a time
        trials = [read_trials(p) for p in i.trials]
        n_voxels = int((np.asarray(nib.load(i.mask_file).dataobj) > 0).sum())
        for path, run_betas, run_trials in zip(i.betas, betas, trials, strict=True):  # what is read: shapes
            check_trial_table(run_trials, "run trial table", path, n_rows=run_betas.shape[0])
            check_shape(run_betas, (len(run_trials), n_voxels), "single-trial betas", path,
                        ("rows = trials of the run's table", "columns = voxels of the brain mask"))
        if stimuli.test_split and not i.split_set:
            from bids_recon.features import resolver_for

            resolver = resolver_for(i.bids_dir, stimuli)
            trials = [mark_test_split(t, load_events(Path(e)), stimuli, resolver, Path(e))
                      for t, e in zip(trials, i.events_files, strict=True)]
        cwd = Path(runtime.cwd)
        split_rule = parse_test_split(stimuli.test_split) is not None
        stacked, table = combine_runs(betas, trials, stimuli.test_min_repeats, i.zscore, split_rule,
                                      out_file=cwd / "betas_zscored.npy", split=i.split or split_rule,
                                      need_training=i.need_training)
        self._results["betas"] = str(cwd / "betas_zscored.npy")
        self._results["trials"] = str(write_tsv(cwd / "trials.tsv", table))
        self._results["run_trials"] = [str(write_tsv(cwd / f"trials_run{index:02d}.tsv", run_table))
                                       for index, run_table in enumerate(run_tables(trials, table))]
        mask_img = nib.load(self.inputs.mask_file)
        ncsnr, nc = noise_ceiling_for_trials(stacked, table)
        maps = {}
        for name, values in (("ncsnr", ncsnr), ("noiseceiling", nc)):
            image = betas_to_image(values[None, :], mask_img).slicer[..., 0]
            maps[name] = str(atomic_write(cwd / f"{name}.nii.gz", lambda tmp, image=image: nib.save(image, tmp)))
        self._results["maps"] = maps


__all__ = ["CombineRuns", "SessionBetas", "SubjectMask"]
